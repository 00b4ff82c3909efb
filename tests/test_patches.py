"""The text rules of evoengine.patches: markers, frozen text, diffs, full rewrites."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evoengine.blocks import check_frozen, evolve_blocks
from evoengine.patches import Edit, PatchError, apply_diff, apply_rewrite, extract_code, parse_diff

PROGRAM = """\
import math


def score(x):
    # EVOLVE-BLOCK-START
    y = x * 2
    if y > 3:
        y -= 1
    return y
    # EVOLVE-BLOCK-END


print(score(2))
"""

TWO_BLOCKS = """\
// header
// EVOLVE-BLOCK-START
int a = 1;
// EVOLVE-BLOCK-END
int frozen = 0;
// EVOLVE-BLOCK-START
int b = 2;
// EVOLVE-BLOCK-END
"""


def diff(search: str, replace: str, marks: int = 7) -> str:
    return f"{'<' * marks} SEARCH\n{search}{'=' * marks}\n{replace}{'>' * marks} REPLACE\n"


# ---------------------------------------------------------------- markers


def test_evolve_blocks_are_the_text_between_marker_lines():
    [block] = evolve_blocks(PROGRAM)
    assert PROGRAM[block.start : block.end] == "    y = x * 2\n    if y > 3:\n        y -= 1\n    return y\n"
    assert block.line == 6


def test_markers_use_the_languages_comment_syntax():
    blocks = evolve_blocks(TWO_BLOCKS, "//")
    assert [TWO_BLOCKS[b.start : b.end] for b in blocks] == ["int a = 1;\n", "int b = 2;\n"]
    # with the wrong comment syntax there are no markers, so the whole text is editable
    assert not evolve_blocks(TWO_BLOCKS, "#")[0].marked


def test_text_without_markers_is_wholly_editable():
    text = "You are a helpful assistant.\nAnswer briefly.\n"
    [block] = evolve_blocks(text)
    assert (block.start, block.end, block.marked) == (0, len(text), False)
    check_frozen(text, "Completely different prompt.\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# EVOLVE-BLOCK-START\na\n# EVOLVE-BLOCK-START\nb\n# EVOLVE-BLOCK-END\n",
            "line 3: EVOLVE-BLOCK-START inside the block opened at line 1",
        ),
        ("a\n# EVOLVE-BLOCK-END\n", "line 2: EVOLVE-BLOCK-END without"),
        ("x\n# EVOLVE-BLOCK-START\na\n", "line 2: EVOLVE-BLOCK-START is never closed"),
    ],
)
def test_unbalanced_or_nested_markers_name_the_line(text, message):
    with pytest.raises(PatchError, match=message):
        evolve_blocks(text)


# ---------------------------------------------------------------- frozen text


def test_changing_only_block_content_passes_the_frozen_check():
    check_frozen(PROGRAM, PROGRAM.replace("x * 2", "x * 7 + 1\n    y = y ** 2"))


def test_a_change_to_frozen_text_names_the_changed_line():
    with pytest.raises(PatchError, match=r"line 13 is frozen .*'print\(score\(2\)\)'.*'print\(score\(3\)\)'"):
        check_frozen(PROGRAM, PROGRAM.replace("score(2)", "score(3)"))


def test_removing_a_marker_or_a_block_is_rejected():
    with pytest.raises(PatchError, match="EVOLVE-BLOCK"):
        check_frozen(PROGRAM, PROGRAM.replace("    # EVOLVE-BLOCK-END\n", ""))
    with pytest.raises(PatchError, match="has 2 EVOLVE-BLOCK"):
        check_frozen(TWO_BLOCKS, "// header\n// EVOLVE-BLOCK-START\nint a = 1;\n// EVOLVE-BLOCK-END\n", "//")
    with pytest.raises(PatchError, match="frozen"):
        check_frozen(PROGRAM, PROGRAM.replace("# EVOLVE-BLOCK-START", "# EVOLVE-BLOCK-START (edit me)"))


def test_adding_markers_to_an_unmarked_text_is_rejected():
    with pytest.raises(PatchError, match="no EVOLVE-BLOCK markers"):
        check_frozen("a prompt\n", "a prompt\n# EVOLVE-BLOCK-START\nx\n# EVOLVE-BLOCK-END\n")


# ---------------------------------------------------------------- parsing diffs


def test_parse_diff_finds_several_blocks_among_prose_and_fences():
    reply = (
        "I will make two changes.\n```python\n"
        + diff("    y = x * 2\n", "    y = x * 3\n")
        + "```\nAnd then:\n\n"
        + diff("    return y\n", "    return y + 1\n")
        + "That should help."
    )
    assert parse_diff(reply) == [
        Edit("    y = x * 2\n", "    y = x * 3\n"),
        Edit("    return y\n", "    return y + 1\n"),
    ]


@pytest.mark.parametrize("marks", [5, 6, 8, 9])
def test_parse_diff_tolerates_marker_counts_from_5_to_9(marks):
    assert parse_diff(diff("a\n", "b\n", marks)) == [Edit("a\n", "b\n")]


def test_parse_diff_tolerates_crlf_and_trailing_spaces_on_markers():
    reply = "<<<<<<< SEARCH  \r\na = 1\r\n=======   \r\na = 2\r\n>>>>>>> REPLACE \r\n"
    assert parse_diff(reply) == [Edit("a = 1\n", "a = 2\n")]


def test_parse_diff_reports_an_unclosed_block():
    with pytest.raises(PatchError, match="edit 1 .*not closed by '>>>>>>> REPLACE'"):
        parse_diff("<<<<<<< SEARCH\na\n=======\nb\n")
    with pytest.raises(PatchError, match="no '=======' line"):
        parse_diff("<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n")


def test_a_reply_without_blocks_is_an_error_when_applied():
    assert parse_diff("I think the code is fine.") == []
    with pytest.raises(PatchError, match="no SEARCH/REPLACE blocks"):
        apply_diff(PROGRAM, [])


# ---------------------------------------------------------------- applying diffs


def test_apply_diff_applies_edits_in_order():
    edits = [Edit("    y = x * 2\n", "    y = x * 5\n"), Edit("    y = x * 5\n", "    y = x * 6\n")]
    assert "y = x * 6" in apply_diff(PROGRAM, edits)


def test_apply_diff_tolerates_indentation_drift_and_reindents_the_replacement():
    # The model dropped the function's indentation; the replacement is moved back under it.
    edit = Edit("if y > 3:   \n    y -= 1\n", "if y > 4:\n    y -= 2\ny += 0\n")
    child = apply_diff(PROGRAM, [edit])
    assert "    if y > 4:\n        y -= 2\n    y += 0\n    return y\n" in child
    check_frozen(PROGRAM, child)


def test_apply_diff_tolerates_a_deeper_indented_search():
    edit = Edit("        y = x * 2\n        if y > 3:\n", "        y = x * 9\n        if y > 3:\n")
    assert "\n    y = x * 9\n    if y > 3:\n" in apply_diff(PROGRAM, [edit])


def test_a_search_that_matches_nothing_says_which_edit_and_the_closest_line():
    edits = [Edit("    y = x * 2\n", "    y = x * 3\n"), Edit("    if z > 3:\n", "    if z > 4:\n")]
    with pytest.raises(PatchError) as info:
        apply_diff(PROGRAM, edits)
    message = str(info.value)
    assert "edit 2 (SEARCH starting 'if z > 3:')" in message
    assert "closest line is 7: 'if y > 3:'" in message


def test_an_ambiguous_search_asks_for_more_context():
    text = "# EVOLVE-BLOCK-START\nx = 1\nx = 1\n# EVOLVE-BLOCK-END\n"
    with pytest.raises(PatchError, match=r"edit 1 .*occurs 2 times \(lines 2, 3\).*more surrounding lines"):
        apply_diff(text, [Edit("x = 1\n", "x = 2\n")])


def test_an_empty_search_is_an_error():
    with pytest.raises(PatchError, match="edit 1: the SEARCH part is empty"):
        apply_diff(PROGRAM, [Edit("\n", "x = 1\n")])


def test_an_edit_that_touches_frozen_text_is_rejected_with_its_number():
    edits = [
        Edit("    return y\n", "    return y + 1\n"),
        Edit("print(score(2))\n", "print(score(3))\n"),
    ]
    with pytest.raises(PatchError, match="edit 2 .*line 13 is frozen"):
        apply_diff(PROGRAM, edits)


def test_edits_that_change_nothing_are_reported():
    with pytest.raises(PatchError, match="unchanged"):
        apply_diff(PROGRAM, [Edit("    return y\n", "    return y\n")])


def test_apply_diff_keeps_crlf_line_ends():
    parent = PROGRAM.replace("\n", "\r\n")
    child = apply_diff(parent, parse_diff(diff("    return y\n", "    y += 1\n    return y\n")))
    assert "    y += 1\r\n    return y\r\n" in child
    check_frozen(parent, child)


# ---------------------------------------------------------------- full rewrites


def test_extract_code_prefers_the_block_tagged_with_the_language():
    reply = "Example:\n```\nlonger untagged example text here\n```\nAnswer:\n```python\nx = 1\n```\n"
    assert extract_code(reply, "python") == "x = 1\n"


def test_extract_code_takes_the_longest_block_when_none_is_tagged():
    reply = "```\nshort\n```\n```\nthe longer one\nwith two lines\n```"
    assert extract_code(reply, "python") == "the longer one\nwith two lines\n"


def test_a_reply_without_a_fence_is_an_error_unless_the_candidate_is_plain_text():
    with pytest.raises(PatchError, match="no fenced code block"):
        extract_code("x = 1", "python")
    assert extract_code("\nBe concise.\n\n", "text", require_fence=False) == "Be concise.\n"


def test_a_cut_off_fence_is_reported():
    with pytest.raises(PatchError, match="never closed"):
        extract_code("```python\nx = 1\n", "python")


def test_a_rewrite_of_only_the_block_content_is_spliced_into_the_block():
    child = apply_rewrite(PROGRAM, "Here:\n```python\nz = x + 1\nreturn z\n```")
    assert "    # EVOLVE-BLOCK-START\n    z = x + 1\n    return z\n    # EVOLVE-BLOCK-END\n" in child
    check_frozen(PROGRAM, child)


def test_a_whole_program_rewrite_keeps_frozen_text_byte_for_byte():
    # trailing whitespace and a lost final newline in frozen text are restored from the parent
    reply = (
        "```python\n"
        + PROGRAM.replace("x * 2", "x * 5").replace("import math", "import math   ").rstrip("\n")
        + "\n```"
    )
    assert apply_rewrite(PROGRAM, reply) == PROGRAM.replace("x * 2", "x * 5")


def test_a_rewrite_that_changes_frozen_text_is_rejected():
    reply = "```python\n" + PROGRAM.replace("x * 2", "x * 5").replace("score(2)", "score(9)") + "```"
    with pytest.raises(PatchError, match="line 13 is frozen"):
        apply_rewrite(PROGRAM, reply)


def test_a_whole_program_without_its_markers_is_not_spliced_into_the_block():
    code = PROGRAM.replace("    # EVOLVE-BLOCK-START\n", "").replace("    # EVOLVE-BLOCK-END\n", "")
    with pytest.raises(PatchError, match="drops the EVOLVE-BLOCK markers"):
        apply_rewrite(PROGRAM, f"```python\n{code}```")


def test_a_prompt_can_be_rewritten_without_a_fence():
    assert (
        apply_rewrite("Be brief.\n", "Be brief and exact.", language="text", require_fence=False)
        == "Be brief and exact.\n"
    )


# ---------------------------------------------------------------- arbitrary text

FRAGMENTS = st.sampled_from(
    [
        "<<<<<<< SEARCH",
        "=======",
        ">>>>>>> REPLACE",
        "<<<<< SEARCH",
        ">>>>>>>>> REPLACE",
        "```",
        "```python",
        "~~~",
        "# EVOLVE-BLOCK-START",
        "# EVOLVE-BLOCK-END",
        "// EVOLVE-BLOCK-START",
        "    x = 1",
        "x = 1",
        "\ty = 2",
        "",
        "   ",
        "\r",
        "return y",
        "    # EVOLVE-BLOCK-END",
    ]
)
TEXTS = st.lists(st.one_of(FRAGMENTS, st.text(max_size=12)), max_size=14).map("\n".join)
COMMENTS = st.sampled_from(["#", "//", "--"])
ONLY_PATCH_ERRORS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ONLY_PATCH_ERRORS
@given(TEXTS, TEXTS, COMMENTS)
def test_arbitrary_replies_raise_nothing_but_patch_errors(parent, reply, comment):
    for call in (
        lambda: evolve_blocks(reply, comment),
        lambda: check_frozen(parent, reply, comment),
        lambda: extract_code(reply, "python"),
        lambda: extract_code(reply, "text", require_fence=False),
        lambda: apply_rewrite(parent, reply, comment=comment),
        lambda: apply_diff(parent, parse_diff(reply), comment),
    ):
        try:
            call()
        except PatchError:
            pass


@ONLY_PATCH_ERRORS
@given(TEXTS, TEXTS, TEXTS)
def test_applied_diffs_never_change_frozen_text(parent, search, replace):
    text = f"head\n# EVOLVE-BLOCK-START\n{parent}\n# EVOLVE-BLOCK-END\ntail\n"
    try:
        child = apply_diff(text, [Edit(search + "\n", replace + "\n")])
    except PatchError:
        return
    check_frozen(text, child)
    assert child.startswith("head\n# EVOLVE-BLOCK-START\n")
    assert child.endswith("\n# EVOLVE-BLOCK-END\ntail\n")


@ONLY_PATCH_ERRORS
@given(st.lists(st.text(alphabet=" \tabc=()#:", max_size=10), min_size=1, max_size=6))
def test_a_verbatim_search_of_unique_lines_always_applies(lines):
    body = "".join(f"{line}  # {k}\n" for k, line in enumerate(lines))
    text = f"# EVOLVE-BLOCK-START\n{body}# EVOLVE-BLOCK-END\n"
    first = body.split("\n")[0] + "\n"
    child = apply_diff(text, [Edit(first, "changed = True\n")])
    assert "changed = True\n" in child
    check_frozen(text, child)
