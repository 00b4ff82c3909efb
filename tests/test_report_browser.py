"""The HTML report, checked in a real headless Chromium on real runs: an offline run, a
model run against the scripted server (with repairs and failed replies) and a prompt run
whose minibatch gate screens children; plus a synthetic run whose texts are hostile.

The `browser` fixture and the page helpers are shared with tests/test_viewer.py.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import cli
from test_lineage import make_run

from evoengine.records import Candidate
from evoengine.report import write_comparison, write_report
from evoengine.report.data import arm_shares, run_summary, tree_layout
from evoengine.report.elites import elites_from_candidates, elites_from_engine
from evoengine.report.html import script_json
from evoengine.store import RunReader, RunStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

# Text a model could write: it tries to end the data block, run script, and load an image.
HOSTILE = (
    "</script><script>window.__pwned=1</script>\n"
    '<img src=x onerror="window.__pwned=2">\n'
    "<!-- <script>window.__pwned=3</script> -->\n"
    "print('&amp; & < > \" \\u003c')\n"
)
HOSTILE_AT = 7  # the 7th admitted child carries it
SCRIPTS = 4  # the data block and the page's three scripts


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; skipped (with the reason) where there is none."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are needed for browser tests (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="evo-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, url: str, timeout: float = 60, texts: bool = True) -> list[dict]:
    """Load `url`, wait until the report has drawn (and opened every text); the console log."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    flag = "detailsReady" if texts else "ready"
    deadline = time.monotonic() + timeout
    while not driver.execute_script(f"return !!(window.evoReport && window.evoReport.{flag})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"the report did not finish drawing in {timeout} s: {driver.get_log('browser')}")
        time.sleep(0.1)
    return driver.get_log("browser")


def errors(log: list[dict]) -> list[str]:
    return [e["message"] for e in log if e["level"] == "SEVERE"]


def drawn_nodes(driver) -> list[int]:
    """Candidate ids of every node the lineage canvas draws (those the filters let through)."""
    return driver.execute_script("return window.evoReport.drawn()")


def text_of(driver, element_id: str) -> str:
    return driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)


def click_node(driver, candidate_id: int, shift: bool = False) -> None:
    """Bring the candidate's node into view, move the mouse onto it and click it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.getElementById('lineage').scrollIntoView()")
    x, y, inside = driver.execute_script("return window.evoReport.nodeScreen(arguments[0])", candidate_id)
    if not inside:
        driver.execute_script("window.evoReport.centre(arguments[0])", candidate_id)
        x, y, inside = driver.execute_script("return window.evoReport.nodeScreen(arguments[0])", candidate_id)
    left, top, w, h = driver.execute_script(
        "const r = document.querySelector('#lineage canvas').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height]"
    )
    canvas = driver.find_element("css selector", "#lineage canvas")
    actions = ActionChains(driver).move_to_element_with_offset(canvas, int(x - left - w / 2), int(y - top - h / 2))
    if shift:
        actions = actions.key_down(Keys.SHIFT).click().key_up(Keys.SHIFT)
    else:
        actions = actions.pause(0.2).click()
    actions.perform()


def wait_for(driver, script: str, expected, timeout: float = 15, *args):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def click_row(driver, table: str, candidate_id: int, bottom: bool = False) -> str:
    """Click the candidate's row in a table that draws only the rows in view (scrolled to its
    bottom first if asked); the row's text. Its elements are reused as it scrolls (a redraw
    follows every scroll event), so the row is found and clicked in one step of the page's
    script, and looked for again (scrolled again) until it is drawn."""
    selector = f'#{table} .vrow[data-id="{candidate_id}"]:not([hidden])'
    deadline = time.monotonic() + 15
    while True:
        if bottom:
            driver.execute_script(f"const b = document.querySelector('#{table} .vbody'); b.scrollTop = b.scrollHeight;")
        text = driver.execute_script(
            "const r = document.querySelector(arguments[0]);"
            "if (!r) return null; const text = r.textContent; r.click(); return text;",
            selector,
        )
        if text is not None:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"no row for #{candidate_id} could be clicked in #{table}")
        time.sleep(0.1)


def shown_code(driver, candidate_id: int) -> str:
    """The code pane's text once it shows `candidate_id`."""
    wait_for(driver, "return document.getElementById('detail-title').textContent.split(' ')[0]", f"#{candidate_id}")
    wait_for(driver, "return document.getElementById('detail-code').textContent === '(opening…)'", False)
    return text_of(driver, "detail-code")


def tab(driver, name: str) -> None:
    driver.find_element("css selector", f'#detail-tabs button[data-tab="{name}"]').click()


def type_into(driver, element_id: str, text: str) -> None:
    """Replace what a box holds by typing (an emptied box gets its input event too)."""
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", element_id)
    box.clear()
    box.send_keys(text or " " + Keys.BACKSPACE)


def choose(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def table_ids(driver) -> list[int]:
    return driver.execute_script("return window.evoReport.tableIds()")


# ---------------------------------------------------------------- runs


def hostile_run(run_dir: Path, n: int = 40) -> tuple[RunStore, int]:
    """A run where one admitted child's text, feedback, change and artifact are hostile."""
    store = make_run(run_dir, n=n, texts={HOSTILE_AT: HOSTILE})
    cid = [c for c in store.candidates() if c.text == HOSTILE][0].id
    store.conn.execute(  # its evaluator feedback and artifacts echo the candidate's output
        "UPDATE candidates SET feedback=?, artifacts=?, change=? WHERE id=?",
        (HOSTILE, json.dumps({"stdout": HOSTILE}), HOSTILE, cid),
    )
    store.conn.execute(
        "UPDATE candidates SET status='failed', reason=? WHERE id=(SELECT MAX(id) FROM candidates WHERE status='failed')",
        (HOSTILE,),
    )
    return store, cid


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, RunReader, int]:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    store, hostile_id = hostile_run(run_dir)
    store.close()
    path = write_report(run_dir)
    reader = RunReader.open(run_dir)
    yield path, reader, hostile_id
    reader.close()


def run_cli(run_dir: Path, problem: str, budget: int, *args: str) -> RunReader:
    cli("run", problem, "--budget", str(budget), "--run-dir", str(run_dir), "-q", *args, check=True, timeout=600)
    return RunReader.open(run_dir)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> RunReader:
    # two islands, so the island filter and colours have something to tell apart; offline
    # crossover (off by default), so some candidates have two parents to highlight
    reader = run_cli(
        tmp_path_factory.mktemp("offline") / "run",
        "circle_packing",
        40,
        "--set",
        "islands.count=2",
        "--set",
        "operators.offline_crossover=true",
    )
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory) -> RunReader:
    # Two descriptors (words, examples) and no built-in: a grid archive, drawn as a heat map.
    # A strict gate (a child must beat its parent on the minibatch), so some are screened.
    reader = run_cli(
        tmp_path_factory.mktemp("gated") / "run",
        "prompt_triage",
        60,
        "--set",
        "elites.builtin=[]",
        "--set",
        "evaluation.gate_strict=true",
    )
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> RunReader:
    """circle_packing with a scripted model: some replies are garbage and get repaired, some
    repairs are garbage too (a failed proposal after two calls)."""
    from scripted_server import ScriptedServer
    from test_model_run import improving_model

    firsts = itertools.count()
    draws: dict[str, int] = {}

    def moody(request: dict) -> str:
        """Every other first reply is garbage; of those, every other repair is garbage too (the
        proposal fails after two calls), the rest are good (a child made after a repair). Counted
        over first calls, not drawn from the prompt: refining one best asks the same prompt
        again and again, and a draw from it would repeat."""
        messages = request["messages"]
        first = next(m for m in messages if m["role"] == "user")
        if len(messages) == 2:
            draws[first["content"]] = next(firsts)
        draw = draws.get(first["content"], 1)
        if (draw % 2 == 0 and len(messages) == 2) or (draw % 4 == 0 and len(messages) > 2):
            return "I am not sure what you mean."
        return improving_model({"messages": [first]})

    server = ScriptedServer().start()
    server.script("good", moody)
    tmp = tmp_path_factory.mktemp("model")
    config = {
        "extends": "default",
        "models": [server.model("good", price_in=1.0, price_out=2.0, timeout_s=10.0).dump()],
        "operators": {"diff": 0.6, "full": 0.2, "crossover": 0.2, "repair_attempts": 1},
        "concurrency": {"proposals": 2, "evaluations": 2},
    }
    (tmp / "models.yaml").write_text(yaml.safe_dump(config))
    try:
        reader = run_cli(tmp / "run", "circle_packing", 20, "-c", str(tmp / "models.yaml"))
    finally:
        server.stop()
    yield reader
    reader.close()


def report_of(reader: RunReader) -> Path:
    return write_report(Path(reader.path).parent)


# ---------------------------------------------------------------- without a browser


def test_report_is_one_small_file_that_loads_nothing_from_anywhere(report) -> None:
    path, _, _ = report
    assert path == path.parent / "report.html" and path.is_file()
    page = path.read_text()
    assert not re.search(r"<(script|img|iframe|link)\b[^>]*\b(src|href)\s*=", page, re.I), "no external resources"
    assert "@import" not in page and "plotly" not in page.lower()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src &#x27;none&#x27;" in csp and "unsafe-eval" not in csp
    assert len(page) < 300_000


def test_report_is_written_with_the_permissions_the_umask_gives(report, tmp_path: Path) -> None:
    _, reader, _ = report
    old = os.umask(0o022)
    try:
        out = write_report(Path(reader.path).parent, tmp_path / "elsewhere" / "r.html")
    finally:
        os.umask(old)
    assert out == tmp_path / "elsewhere" / "r.html" and out.stat().st_mode & 0o777 == 0o644


def test_model_written_text_cannot_end_the_data_block(report) -> None:
    path, _, hostile_id = report
    page = path.read_text()
    assert page.lower().count("</script") == SCRIPTS, "nothing but the page's own blocks closes a block"
    assert "window.__pwned" not in page.split('id="evo-data">')[0]
    assert "<img src=x" not in page
    data = re.search(r'<script type="application/json" id="evo-data">(.*?)</script>', page, re.S).group(1)
    parsed = json.loads(data)
    assert hostile_id in parsed["rows"]["id"]


def test_script_json_escapes_markup_characters_and_survives_nan() -> None:
    text = script_json({"t": "</script><b>&", "x": float("nan")})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"t": "</script><b>&", "x": None}


def test_lineage_layout_keeps_every_node_apart_and_parents_among_their_children() -> None:
    ids = list(range(1, 9))
    parents = [None, 1, 1, 2, 2, 3, 6, 6]
    y = tree_layout(ids, parents)
    gen = [0, 1, 1, 2, 2, 2, 3, 3]
    assert len(set(zip(gen, y, strict=True))) == len(ids)
    for i, cid in enumerate(ids):
        kids = [y[j] for j, q in enumerate(parents) if q == cid]
        if kids:
            assert min(kids) <= y[i] <= max(kids)
    deep = tree_layout(list(range(20000)), [None] + list(range(19999)))  # no recursion limit
    assert deep == [0.0] * 20000


def test_elite_maps_show_every_cell_and_mark_elites_beyond_the_declared_range() -> None:
    grid = elites_from_engine(
        {
            "kind": "grid",
            "cells": 12,
            "dimensions": [
                {"name": "a", "low": 0, "high": 1, "bins": 4},
                {"name": "n", "low": 10, "high": 1000, "bins": 3, "scale": "log"},
            ],
            "filled": [
                {"index": 5, "id": 7, "score": 2.5, "grid": [1, 2], "features": {"a": 0.3, "n": 900}},
                {"index": 3, "id": 9, "score": 1.5, "grid": [3, 0], "features": {"a": 1.7, "n": 12}},
            ],
        }
    )
    assert len(grid) == 1 and grid[0]["type"] == "heatmap"
    assert grid[0]["best"][2][1] == 2.5 and grid[0]["best_id"][2][1] == 7
    assert sum(v is None for row in grid[0]["best"] for v in row) == 10, "empty cells are kept, as None"
    assert grid[0]["outside"][0][3] and not grid[0]["outside"][2][1], "a = 1.7 lies beyond its high of 1"
    assert grid[0]["seen_x"] == [0.3, 1.7]
    cvt = elites_from_engine(
        {
            "kind": "cvt",
            "cells": 64,
            "dimensions": [{"name": d, "low": 0, "high": 1, "bins": 10} for d in "abc"],
            "filled": [{"index": 1, "id": 3, "score": 1.0, "features": {"a": 0.1, "b": 2.2, "c": 0.3}}],
            "centroids": [[0.5, 0.25, 1.0], [0.0, 1.0, 0.5]],
        }
    )
    assert [m["type"] for m in cvt] == ["scatter"] * 3 and cvt[0]["px"] == [0.1] and cvt[0]["py"] == [2.2]
    assert cvt[0]["centres"] == [[0.5, 0.25], [0.0, 1.0]], "every cell's centre, in real values"
    binned = elites_from_candidates(
        [1, 2, 3], [1.0, 3.0, 2.0], [True, True, False], [{"a": 0.0}, {"a": 0.05}, {"a": 1.0}]
    )
    assert len(binned) == 1 and binned[0]["best"][0][0] == 3.0 and binned[0]["best_id"][0][0] == 2
    assert binned[0]["count"][0][0] == 2 and binned[0]["best"][0][9] is None, "invalid candidates hold no cell"


def test_bandit_choices_are_summarised_as_recent_shares_per_arm() -> None:
    shares = arm_shares(["a"] * 300 + ["b"] * 300, points=60)
    assert len(shares["x"]) == 60 and shares["x"][-1] == 600 and shares["window"] == 20
    assert shares["share"]["a"][0] == 1.0 and shares["share"]["b"][-1] == 1.0
    assert all(abs(a + b - 1) < 1e-3 for a, b in zip(shares["share"]["a"], shares["share"]["b"], strict=True))


def test_summary_has_every_closed_proposal_and_counts_match_the_store(report) -> None:
    _, reader, _ = report
    summary = run_summary(reader, Path(reader.path).parent)
    rows, counts = summary["rows"], reader.outcome_counts()
    closed = [p["id"] for p in reader.proposals()]
    assert rows["id"] == closed and len(closed) == counts["admitted"] + counts["rejected"] + counts["failed"]
    assert sum(y is not None for y in rows["y"]) == counts["admitted"] == 40
    assert summary["run"]["best"]["id"] == reader.best(1)[0].id
    arms = {a["arm"]: a for a in summary["models"]["arms"]}
    assert sum(a["proposals"] for a in arms.values()) == len(closed) - 1 == summary["models"]["picks"]["total"]
    assert set(arms) == {"gpt-small", "gpt-large", "offline"}


# ---------------------------------------------------------------- hostile text, in the browser


def test_model_written_text_is_shown_literally_and_runs_nothing(browser, report) -> None:
    path, reader, hostile_id = report
    log = open_page(browser, path.as_uri())
    click_node(browser, hostile_id)
    assert shown_code(browser, hostile_id) == HOSTILE
    assert HOSTILE in text_of(browser, "detail-feedback")
    tab(browser, "diff")
    assert HOSTILE.splitlines()[0] in text_of(browser, "detail-edit"), "the recorded change, as text"
    assert HOSTILE in text_of(browser, "detail-artifacts")
    assert HOSTILE[:40] in text_of(browser, "failures-table")
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.scripts.length") == SCRIPTS
    assert errors(log + browser.get_log("browser")) == []


def test_a_run_with_only_an_invalid_child_and_no_features_still_makes_a_report(browser, tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "plain", meta={})
    seed = store.start_proposal(0)
    store.admit(Candidate(id=seed, text="x = 1\n", score=0.5, valid=True), reward=None)
    child = store.start_proposal(0)
    store.admit(
        Candidate(id=child, text="x = \n", parents=(seed,), generation=1, valid=False, feedback="SyntaxError"),
        reward=0.0,
    )
    store.close()
    log = open_page(browser, write_report(tmp_path / "plain").as_uri())
    assert errors(log) == []
    assert sorted(drawn_nodes(browser)) == [seed, child]
    assert "No MAP-Elites descriptors" in text_of(browser, "elites-note")
    assert not browser.find_elements("id", "stat-stopped"), "a store that never said why it stopped: nothing shown"
    assert browser.find_element("id", "arms-panel").get_attribute("hidden"), "no arm made anything: no arms table"


# ---------------------------------------------------------------- an offline run


def test_offline_run_report_draws_every_candidate_and_only_what_the_run_has(browser, offline_run) -> None:
    log = open_page(browser, report_of(offline_run).as_uri())
    assert errors(log) == []
    counts = offline_run.outcome_counts()
    admitted = sorted(c.id for c in offline_run.candidates())
    assert sorted(drawn_nodes(browser)) == admitted
    assert text_of(browser, "stat-admitted") == str(counts["admitted"])
    assert text_of(browser, "stat-rejected") == str(counts["rejected"])
    assert text_of(browser, "stat-stopped") == "budget"  # why the run ended
    assert f"{counts['near_duplicates']} near-duplicates, {counts['exact_copies']} exact copies" in text_of(
        browser, "stats"
    )
    assert text_of(browser, "novelty-note").startswith(f"rejected before evaluation: {counts['rejected']} (")
    assert browser.find_element("id", "calls-box").get_attribute("hidden"), "no model calls: no calls table"
    assert browser.find_element("id", "picks-panel").get_attribute("hidden"), "one arm: no bandit line"
    best = offline_run.best(1)[0]
    assert shown_code(browser, best.id) == best.text, "the best candidate is shown first"
    assert browser.find_elements("css selector", "#detail-code .tk-keyword"), "the code is highlighted"
    tab(browser, "calls")
    assert "No model call made this proposal" in text_of(browser, "detail-calls")


def test_clicking_a_node_shows_its_code_diff_and_every_parent_in_its_ancestry(browser, offline_run) -> None:
    open_page(browser, report_of(offline_run).as_uri())
    crossed = [c for c in offline_run.candidates() if len(c.parents) > 1 and c.generation >= 2]
    target = crossed[-1] if crossed else max(offline_run.candidates(), key=lambda c: c.generation)
    click_node(browser, target.id)
    assert shown_code(browser, target.id) == target.text
    tab(browser, "diff")
    parent = offline_run.get(target.parents[0])
    diff = wait_for(browser, "return document.getElementById('detail-diff').textContent.includes('→')", True)
    assert diff and f"#{parent.id} → #{target.id}" in text_of(browser, "detail-diff")
    added = [line for line in target.text.splitlines() if line not in parent.text.splitlines()]
    if added:
        assert f"+{added[0]}" in text_of(browser, "detail-diff")
    path = browser.execute_script("return window.evoReport.path()")
    chain, node = [], target
    while node.parents:
        chain.append([node.parents[0], node.id])
        node = offline_run.get(node.parents[0])
    assert all(edge in path["main"] for edge in chain), "every main parent up to the seed is highlighted"
    for second in target.parents[1:]:
        assert [second, target.id] in path["cross"], "the crossover parent is highlighted in its own style"
    # a parent chosen as the diff's base for one candidate does not stick to the next one that
    # happens to have it as its crossover parent: that one's diff starts from its main parent
    pairs = [
        (a, b)
        for b in crossed
        for a in offline_run.candidates()
        if a.parents and a.id != b.id and a.parents[0] in b.parents[1:]
    ]
    assert pairs, "the run has a candidate whose crossover parent is another's main parent"
    before, after = pairs[-1]
    click_node(browser, before.id)
    choose(browser, "diff-base", str(before.parents[0]))
    click_node(browser, after.id)
    header = f"#{after.parents[0]} → #{after.id}"
    assert wait_for(browser, "return document.querySelector('#detail-diff h4')?.textContent", header) == header
    click_node(browser, target.id)
    tab(browser, "ancestry")
    assert re.search(r"[+-]\d|±0", text_of(browser, "detail-ancestry"))
    assert "e-1" not in text_of(browser, "detail-ancestry"), "no float noise"
    assert errors(browser.get_log("browser")) == []


def test_table_sorts_searches_and_filters_and_the_tree_follows(browser, offline_run) -> None:
    open_page(browser, report_of(offline_run).as_uri())
    proposals = offline_run.proposals()
    assert sorted(table_ids(browser)) == [p["id"] for p in proposals], "every closed proposal is a row"
    header = browser.find_element("css selector", '#cand-table .vhead span[data-key="score"]')
    header.click()  # numbers sort high to low first
    assert table_ids(browser)[0] == offline_run.best(1)[0].id
    # search over code: a line only some candidates have
    texts = {c.id: c.text for c in offline_run.candidates()}
    line = next(
        ln.strip()
        for c in reversed(list(offline_run.candidates()))
        for ln in c.text.splitlines()
        if ln.strip() and 0 < sum(ln.strip() in t for t in texts.values()) < len(texts)
    )
    type_into(browser, "search", line)
    expected = sorted(cid for cid, t in texts.items() if line.lower() in t.lower())
    assert wait_for(browser, "return window.evoReport.drawn().sort((a, b) => a - b)", expected) == expected
    assert set(expected) <= set(table_ids(browser))
    type_into(browser, "search", "")
    choose(browser, "f-island", "1")
    island1 = sorted(c.id for c in offline_run.candidates() if c.island == 1)
    assert wait_for(browser, "return window.evoReport.drawn().sort((a, b) => a - b)", island1) == island1
    assert {p["island"] for p in proposals if p["id"] in table_ids(browser)} == {1}
    choose(browser, "f-island", "")
    choose(browser, "f-status", "valid")
    valid = sorted(p["id"] for p in proposals if p["outcome"] == "valid")
    assert sorted(table_ids(browser)) == valid == sorted(drawn_nodes(browser))
    assert errors(browser.get_log("browser")) == []


def test_show_id_pans_to_the_candidate_and_a_new_x_axis_refits_the_view(browser, offline_run) -> None:
    open_page(browser, report_of(offline_run).as_uri())
    target = list(offline_run.candidates())[len(list(offline_run.candidates())) // 2]
    whole = browser.execute_script("return window.evoReport.view()")
    type_into(browser, "goto", f"#{target.id}\n")
    assert shown_code(browser, target.id) == target.text
    x, y, inside = browser.execute_script("return window.evoReport.nodeScreen(arguments[0])", target.id)
    left, top, w, h = browser.execute_script(
        "const r = document.querySelector('#lineage canvas').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]"
    )
    assert inside and abs(x - (left + w / 2)) < 2 and abs(y - (top + h / 2)) < 2, "centred on the candidate"
    choose(browser, "x-by", "seq")
    view = browser.execute_script("return window.evoReport.view()")
    assert view["x1"] - view["x0"] >= len(list(offline_run.candidates())) - 1, "the new axis is seen whole"
    assert view != whole
    type_into(browser, "goto", "999999\n")
    assert "no proposal #999999" in wait_for(
        browser, "return document.getElementById('goto-note').textContent", "no proposal #999999 in this run"
    )


def test_best_path_view_diff_of_any_two_and_widening(browser, offline_run) -> None:
    open_page(browser, report_of(offline_run).as_uri())
    best = offline_run.best(1)[0]
    browser.find_element("id", "best-path").click()
    ancestors, todo = set(), [best.id]
    while todo:
        cid = todo.pop()
        if cid not in ancestors:
            ancestors.add(cid)
            todo.extend(offline_run.get(cid).parents)
    assert sorted(drawn_nodes(browser)) == sorted(ancestors)
    browser.find_element("id", "best-path").click()
    seed = offline_run.seed()
    click_node(browser, best.id)
    shown_code(browser, best.id)
    click_node(browser, seed.id, shift=True)
    assert wait_for(browser, "return document.getElementById('detail-diff').textContent.startsWith('#')", True)
    assert text_of(browser, "detail-diff").startswith(f"#{seed.id} → #{best.id}")
    browser.find_element("css selector", '#detail [data-widen="detail"]').click()
    assert "widened" in browser.find_element("id", "detail").get_attribute("class")
    assert errors(browser.get_log("browser")) == []


def test_elites_maps_show_empty_cells_and_island_curves_are_drawn(browser, offline_run, gated_run) -> None:
    open_page(browser, report_of(gated_run).as_uri())
    assert "grey cells are empty" in text_of(browser, "elites-note"), "a grid archive: a heat map of every cell"
    open_page(browser, report_of(offline_run).as_uri())
    assert "grey rings are the cells' centres" in text_of(browser, "elites-note"), "a CVT archive: every centre"
    assert "coverage" in text_of(browser, "elites-note") and "QD-score" in text_of(browser, "elites-note")
    islands = {c.island for c in offline_run.candidates()}
    assert all(f"island {i}" in text_of(browser, "best-island") for i in islands), "one best curve per island"


def test_status_command_says_what_a_person_needs(offline_run, gated_run) -> None:
    out = cli("status", str(Path(gated_run.path).parent), check=True).stdout
    counts = gated_run.outcome_counts()
    assert f"{counts['screened']} screened by the gate" in out and counts["screened"] > 0
    assert "coverage" in out and "QD-score" in out
    assert f"novelty    {counts['rejected']} rejected: {counts['near_duplicates']} near-duplicates" in out
    assert "gate " in out.split("failures", 1)[1].splitlines()[0]
    data = json.loads(cli("status", str(Path(gated_run.path).parent), "--json", check=True).stdout)
    assert data["screened"] == counts["screened"] and data["failure_kinds"]["gate"] == counts["screened"]


# ---------------------------------------------------------------- a prompt run with a gate


def test_screened_children_are_drawn_and_counted_as_screened_not_invalid(browser, gated_run) -> None:
    log = open_page(browser, report_of(gated_run).as_uri())
    assert errors(log) == []
    counts = gated_run.outcome_counts()
    assert counts["screened"] > 0
    assert text_of(browser, "stat-screened") == str(counts["screened"])
    assert text_of(browser, "stat-invalid") == str(counts["invalid"])
    choose(browser, "f-status", "screened")
    screened = sorted(p["id"] for p in gated_run.proposals() if p["outcome"] == "screened")
    assert sorted(drawn_nodes(browser)) == screened
    shapes = browser.execute_script("return window.evoReport.shapes()")
    assert {shapes[str(cid)] for cid in screened} == {"screened"}, "drawn as screened (a diamond), not as invalid"
    click_node(browser, screened[0])
    shown_code(browser, screened[0])
    assert text_of(browser, "detail-title") == f"#{screened[0]} · screened"
    assert "gate:" in text_of(browser, "detail-feedback")
    rejected = next(p for p in gated_run.proposals() if p["outcome"] == "rejected")
    type_into(browser, "goto", f"{rejected['id']}\n")
    title = f"#{rejected['id']} · rejected"
    assert wait_for(browser, "return document.getElementById('detail-title').textContent", title) == title
    assert "not in the tree" in text_of(browser, "goto-note")
    assert "(no child text" in text_of(browser, "detail-code")
    assert rejected["reason"][:60] in text_of(browser, "detail-facts")


# ---------------------------------------------------------------- a model run


def test_model_run_shows_prompts_replies_repairs_and_failures(browser, model_run) -> None:
    log = open_page(browser, report_of(model_run).as_uri())
    assert errors(log) == []
    proposals = model_run.proposals()
    repaired = next(p for p in proposals if p["outcome"] == "valid" and p["calls"] == 2)
    calls = model_run.calls([repaired["id"]])[repaired["id"]]
    click_node(browser, repaired["id"])
    shown_code(browser, repaired["id"])
    tab(browser, "calls")
    shown = text_of(browser, "detail-calls")
    assert "call 2 (repair)" in shown
    for call in calls:
        for message in call["messages"]:
            assert message["content"] in shown, "the full prompt, system and user"
        assert call["reply"] in shown
        assert f"{call['tokens_in']} in / {call['tokens_out']} out tokens" in shown
    if repaired["operator"] == "diff":
        tab(browser, "diff")
        assert "SEARCH" in text_of(browser, "detail-edit") and "REPLACE" in text_of(browser, "detail-edit")
    failed = next(p for p in proposals if p["outcome"] == "failed" and p["calls"] == 2)
    type_into(browser, "goto", f"{failed['id']}\n")
    title = f"#{failed['id']} · failed"
    assert wait_for(browser, "return document.getElementById('detail-title').textContent", title) == title
    assert failed["reason"][:100] in text_of(browser, "detail-facts")
    tab(browser, "calls")
    assert wait_for(
        browser, "return document.getElementById('detail-calls').textContent.includes('call 2 (repair)')", True
    )
    assert "I am not sure what you mean." in text_of(browser, "detail-calls")
    click_node(browser, model_run.seed().id)
    # The failures table draws only the rows in view, newest first: the oldest is at the bottom.
    shown = click_row(browser, "failures-table", failed["id"], bottom=True)
    assert failed["reason"][:40] in shown
    title = f"#{failed['id']} · failed"
    assert wait_for(browser, "return document.getElementById('detail-title').textContent", title) == title
    assert not browser.find_element("id", "calls-box").get_attribute("hidden"), "model calls are tabled"
    assert "good" in text_of(browser, "calls-table")
    choose(browser, "f-status", "failed")
    assert sorted(table_ids(browser)) == sorted(p["id"] for p in proposals if p["outcome"] == "failed")
    assert errors(browser.get_log("browser")) == []


# ---------------------------------------------------------------- runs compared, and the CLI


def test_report_of_several_runs_compares_them_side_by_side(browser, offline_run, tmp_path: Path) -> None:
    other = run_cli(tmp_path / "hill", "circle_packing", 20, "--set", "selection.strategy=hill_climb")
    runs = [Path(offline_run.path).parent, tmp_path / "hill"]
    proc = cli("report", *map(str, runs), "-o", str(tmp_path / "cmp.html"), check=True)
    assert "cmp.html" in proc.stdout
    log = open_page(browser, (tmp_path / "cmp.html").as_uri(), texts=False)
    assert errors(log) == []
    table = text_of(browser, "runs-table")
    assert all(r.resolve().name in table for r in runs)
    assert "selection.strategy" in text_of(browser, "differs-table") and "hill_climb" in text_of(
        browser, "differs-table"
    )
    assert str(other.outcome_counts()["admitted"]) in table
    legend = text_of(browser, "cmp-seq")
    assert all(r.resolve().name in legend for r in runs), "one best-so-far curve per run"
    other.close()
    assert browser.execute_script("return document.getElementById('setups').hidden"), (
        "one run per setup: nothing to pair"
    )
    assert write_comparison(runs).name == "compare.html"


def test_a_comparison_of_several_seeds_per_setup_pairs_the_setups_seed_by_seed(browser, tmp_path: Path) -> None:
    runs = []
    for setup, extra in (("search", []), ("greedy", ["--set", "selection.strategy=greedy"])):
        for seed in (0, 1):
            runs.append(tmp_path / f"{setup}-s{seed}")
            run_cli(runs[-1], "circle_packing", 6, "--set", f"seed={seed}", *extra).close()
    cli("report", *map(str, runs), "-o", str(tmp_path / "cmp.html"), check=True)
    assert errors(open_page(browser, (tmp_path / "cmp.html").as_uri(), texts=False)) == []
    assert not browser.execute_script("return document.getElementById('setups').hidden")
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#setups-table tr')].map(r => [...r.cells].map(c => c.textContent))"
    )
    assert rows[0][:3] == ["setup", "seeds", "mean best@6"] and "minus search" in rows[0][3]
    assert [r[:2] for r in rows[1:]] == [["search", "2"], ["greedy", "2"]]
    best = {}
    for run in runs:
        conn = sqlite3.connect(run / "archive.sqlite")
        best[run.name] = conn.execute("SELECT max(score) FROM candidates WHERE seq <= 6 AND valid=1").fetchone()[0]
        conn.close()
    mean = sum(best[f"greedy-s{k}"] - best[f"search-s{k}"] for k in (0, 1)) / 2
    assert rows[2][3].startswith(f"{mean:+.4g}") and "over 2" in rows[2][3]


def test_serving_on_a_taken_port_is_a_clear_error_not_a_traceback(offline_run) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("serve", str(Path(offline_run.path).parent), "--port", str(port), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_a_mistyped_problem_name_gets_a_suggestion(tmp_path: Path) -> None:
    proc = cli("run", "circle_pakcing", "--budget", "2", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2 and "did you mean 'circle_packing'?" in proc.stderr


# ---------------------------------------------------------------- size


@pytest.mark.slow
def test_report_of_thousands_of_candidates_draws_them_all(browser, tmp_path: Path) -> None:
    make_run(tmp_path / "big", n=2000, islands=5).close()
    reader = RunReader.open(tmp_path / "big")
    path = write_report(tmp_path / "big")
    assert path.stat().st_size < 3_000_000
    log = open_page(browser, path.as_uri(), timeout=120)
    assert errors(log) == []
    assert len(drawn_nodes(browser)) == 2000
    target = reader.best(1)[0]
    click_node(browser, target.id)
    assert shown_code(browser, target.id) == target.text
    reader.close()
