"""The HTML report: one offline file, every candidate drawn, a click shows the code, and
model-written text stays text — checked in a real headless Chromium.

The `browser` fixture is shared with tests/test_viewer.py (one session per module).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from test_lineage import make_run

from evoengine.records import Candidate
from evoengine.report import write_report
from evoengine.report.data import (
    arm_shares,
    elites_from_candidates,
    elites_from_engine,
    run_summary,
    tree_layout,
)
from evoengine.report.html import script_json
from evoengine.store import RunStore

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
        "--enable-unsafe-swiftshader",
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


def open_page(driver, url: str, timeout: float = 60) -> list[dict]:
    """Load `url`, wait until the report has drawn everything; returns the console log."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    deadline = time.monotonic() + timeout
    while not driver.execute_script("return !!(window.evoReport && window.evoReport.ready)"):
        if time.monotonic() > deadline:
            raise AssertionError(f"the report did not finish drawing in {timeout} s: {driver.get_log('browser')}")
        time.sleep(0.1)
    return driver.get_log("browser")


def errors(log: list[dict]) -> list[str]:
    return [e["message"] for e in log if e["level"] == "SEVERE"]


def drawn_nodes(driver) -> list[int]:
    """Candidate ids of every node marker plotly actually holds in the lineage plot."""
    return driver.execute_script("""
        const gd = document.getElementById('lineage');
        return gd._fullData.filter(t => t.meta === 'nodes').flatMap(t => Array.from(t.customdata || []));
    """)


def click_node(driver, candidate_id: int) -> None:
    """Move the mouse onto the candidate's marker in the lineage plot and click it."""
    from selenium.webdriver.common.action_chains import ActionChains

    x, y, w, h = driver.execute_script(
        """
        const id = arguments[0], S = window.evoReport.data(), i = S.nodes.id.indexOf(id);
        const gd = document.getElementById('lineage'), L = gd._fullLayout;
        const gx = document.getElementById('x-by').value === 'seq' ? S.nodes.seq[i] : S.nodes.generation[i];
        gd.scrollIntoView();
        const r = gd.getBoundingClientRect();
        return [L.xaxis._offset + L.xaxis.l2p(gx), L.yaxis._offset + L.yaxis.l2p(S.nodes.y[i]), r.width, r.height];
    """,
        candidate_id,
    )
    lineage = driver.find_element("id", "lineage")
    ActionChains(driver).move_to_element_with_offset(lineage, int(x - w / 2), int(y - h / 2)).pause(
        0.3
    ).click().perform()


def wait_for(driver, script: str, expected, timeout: float = 15, *args):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


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
def report(tmp_path_factory) -> tuple[Path, RunStore, int]:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    store, hostile_id = hostile_run(run_dir)
    path = write_report(run_dir)
    yield path, store, hostile_id
    store.close()


# ---------------------------------------------------------------- without a browser


def test_report_is_one_file_that_loads_nothing_from_anywhere(report) -> None:
    path, store, _ = report
    assert path == path.parent / "report.html" and path.is_file()
    page = path.read_text()
    assert not re.search(r"<(script|img|iframe|link)\b[^>]*\b(src|href)\s*=", page, re.I), "no external resources"
    assert "@import" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src &#x27;none&#x27;" in csp and "connect-src &#x27;none&#x27;" in csp
    assert len(page) > 3_000_000, "plotly.js is inlined"


def test_report_path_can_be_chosen(report, tmp_path: Path) -> None:
    _, store, _ = report
    out = write_report(Path(store.path).parent, tmp_path / "elsewhere" / "r.html")
    assert out == tmp_path / "elsewhere" / "r.html" and out.stat().st_size > 1_000_000


def test_model_written_text_cannot_end_the_data_block(report) -> None:
    path, _, hostile_id = report
    page = path.read_text()
    assert page.lower().count("</script") == 3, "data, plotly and the page's script: nothing else closes a block"
    assert "window.__pwned" in page and "<script>window.__pwned" not in page
    assert "<img src=x" not in page
    data = re.search(r'<script type="application/json" id="evo-data">(.*?)</script>', page, re.S).group(1)
    parsed = json.loads(data)
    assert parsed["details"][str(hostile_id)]["text"] == HOSTILE
    assert parsed["details"][str(hostile_id)]["feedback"] == HOSTILE


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


def test_elite_maps_come_from_the_engine_archive_or_from_candidate_features() -> None:
    grid = elites_from_engine(
        {
            "kind": "grid",
            "cells": 12,
            "dimensions": [
                {"name": "a", "low": 0, "high": 1, "bins": 4},
                {"name": "n", "low": 10, "high": 1000, "bins": 3, "scale": "log"},
            ],
            "filled": [{"index": 5, "id": 7, "score": 2.5, "grid": [1, 2], "features": {"a": 0.3, "n": 900}}],
        }
    )
    assert len(grid) == 1 and grid[0]["type"] == "heatmap"
    assert grid[0]["best"][2][1] == 2.5 and grid[0]["best_id"][2][1] == 7
    assert sum(v is not None for row in grid[0]["best"] for v in row) == 1
    assert grid[0]["y_centres"][1] == pytest.approx(100.0)  # log-scaled bins
    cvt = elites_from_engine(
        {
            "kind": "cvt",
            "cells": 64,
            "dimensions": [{"name": d, "low": 0, "high": 1, "bins": 10} for d in "abc"],
            "filled": [{"index": 1, "id": 3, "score": 1.0, "features": {"a": 0.1, "b": 0.2, "c": 0.3}}],
        }
    )
    assert [m["type"] for m in cvt] == ["scatter"] * 3 and cvt[0]["px"] == [0.1] and cvt[0]["id"] == [3]
    binned = elites_from_candidates(
        [1, 2, 3], [1.0, 3.0, 2.0], [True, True, False], [{"a": 0.0}, {"a": 0.05}, {"a": 1.0}]
    )
    assert len(binned) == 1 and binned[0]["best"][0][0] == 3.0 and binned[0]["best_id"][0][0] == 2
    assert binned[0]["count"][0][0] == 2 and binned[0]["best"][0][9] is None, "invalid candidates hold no cell"


def test_bandit_choices_are_summarised_as_recent_shares_per_arm() -> None:
    shares = arm_shares(["a"] * 300 + ["b"] * 300, points=60)
    assert len(shares["x"]) == 60 and shares["x"][-1] == 600 and shares["window"] == 20
    assert shares["share"]["a"][0] == 1.0 and shares["share"]["b"][-1] == 1.0
    assert all(abs(a + b - 1) < 1e-9 for a, b in zip(shares["share"]["a"], shares["share"]["b"], strict=True))


def test_summary_counts_and_best_match_the_store(report) -> None:
    _, store, _ = report
    summary = run_summary(store, Path(store.path).parent)
    assert len(summary["nodes"]["id"]) == store.counts()["evaluated"] == 40
    assert summary["run"]["best"]["id"] == store.best(1)[0].id
    assert summary["nodes"]["best_so_far"][-1] == pytest.approx(store.best(1)[0].score)
    arms = {a["arm"]: a for a in summary["models"]["arms"]}
    made = sum(store.counts()[k] for k in ("evaluated", "failed")) - 1  # the seed was made by no arm
    assert sum(a["proposals"] for a in arms.values()) == made == summary["models"]["picks"]["total"]
    assert set(arms) == {"gpt-small", "gpt-large", "offline"}
    assert summary["models"]["bandit"]["offline"]["calls"] > 0


# ---------------------------------------------------------------- in the browser


def test_report_loads_without_console_errors_and_draws_every_admitted_candidate(browser, report) -> None:
    path, store, _ = report
    log = open_page(browser, path.as_uri())
    assert errors(log) == []
    admitted = sorted(c.id for c in store.candidates())
    assert sorted(drawn_nodes(browser)) == admitted
    assert browser.find_element("id", "stat-admitted").text == str(len(admitted))
    assert not browser.find_elements("css selector", ".no-webgl"), "plotly drew its traces"
    best = store.best(1)[0]
    assert browser.find_element("id", "detail-code").get_attribute("textContent") == best.text, (
        "the best candidate is shown first"
    )


def test_clicking_a_node_shows_that_candidates_code_and_diff(browser, report) -> None:
    path, store, _ = report
    open_page(browser, path.as_uri())
    target = [c for c in store.candidates() if c.generation >= 2 and c.text != HOSTILE][-1]
    click_node(browser, target.id)
    code = wait_for(browser, "return document.getElementById('detail-code').textContent", target.text)
    assert code == target.text
    assert browser.find_element("id", "detail-title").text == f"Candidate #{target.id}"
    diff = browser.find_element("id", "detail-diff").get_attribute("textContent")
    added = [line for line in target.text.splitlines() if line not in store.get(target.parent).text.splitlines()]
    assert f"+{added[0]}" in diff and f"against #{target.parent}" in diff
    assert errors(browser.get_log("browser")) == []


def test_model_written_text_is_shown_literally_and_runs_nothing_in_the_report(browser, report) -> None:
    path, _, hostile_id = report
    log = open_page(browser, path.as_uri())
    click_node(browser, hostile_id)
    code = wait_for(browser, "return document.getElementById('detail-code').textContent", HOSTILE)
    assert code == HOSTILE
    for pane in ("detail-feedback", "detail-change"):
        assert browser.find_element("id", pane).get_attribute("textContent") == HOSTILE
    assert HOSTILE in browser.find_element("id", "detail-artifacts").get_attribute("textContent")
    assert HOSTILE[:40] in browser.find_element("id", "failures-table").get_attribute("textContent")
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.scripts.length") == 3
    assert errors(log + browser.get_log("browser")) == []


@pytest.mark.slow
def test_report_of_thousands_of_candidates_draws_them_all_with_webgl(browser, tmp_path: Path) -> None:
    store = make_run(tmp_path / "big", n=2000, islands=5)
    path = write_report(tmp_path / "big")
    log = open_page(browser, path.as_uri(), timeout=120)
    assert errors(log) == []
    assert len(drawn_nodes(browser)) == 2000
    kinds = browser.execute_script(
        "return document.getElementById('lineage')._fullData.filter(t => t.meta === 'nodes').map(t => t.type)"
    )
    assert set(kinds) == {"scattergl"}
    target = store.best(1)[0]
    browser.execute_script("window.evoReport.select(arguments[0])", 1)
    # 2000 nodes are ~1 px apart: zoom in around the target first, as a user would.
    browser.execute_script(
        """
        const S = window.evoReport.data(), i = S.nodes.id.indexOf(arguments[0]);
        const x = S.nodes.generation[i], y = S.nodes.y[i];
        return Plotly.relayout('lineage', {'xaxis.range': [x - 2, x + 2], 'yaxis.range': [y - 15, y + 15]});
    """,
        target.id,
    )
    click_node(browser, target.id)
    assert (
        wait_for(browser, "return document.getElementById('detail-title').textContent", f"Candidate #{target.id}")
        == f"Candidate #{target.id}"
    )
    store.close()


def test_invalid_candidates_and_a_run_without_features_still_make_a_report(browser, tmp_path: Path) -> None:
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
    assert "No MAP-Elites descriptors" in browser.find_element("id", "elites-note").text


@pytest.mark.slow
def test_report_of_a_real_circle_packing_run(browser, tmp_path: Path) -> None:
    """End to end: `evoengine run`, then the lineage, its exports and the report in Chromium."""
    import subprocess
    import sys

    import networkx as nx

    from evoengine.lineage import build_lineage, export_lineage, render_ancestry

    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evoengine.cli",
            "run",
            "circle_packing",
            "--budget",
            "30",
            "--run-dir",
            str(run_dir),
            "-q",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    store = RunStore.open(run_dir, readonly=True)
    admitted = sorted(c.id for c in store.candidates())
    graph = build_lineage(store)
    assert sorted(graph.nodes) == admitted and not any(d["missing"] for _, d in graph.nodes(data=True))
    assert f"#{store.best(1)[0].id} [" in render_ancestry(store)
    back = nx.read_graphml(export_lineage(store, "graphml", tmp_path / "l.graphml"))
    assert back.number_of_nodes() == len(admitted)
    log = open_page(browser, write_report(run_dir).as_uri())
    assert errors(log) == []
    assert sorted(drawn_nodes(browser)) == admitted
    target = max(store.candidates(), key=lambda c: (c.generation, c.id))
    click_node(browser, target.id)
    assert wait_for(browser, "return document.getElementById('detail-code').textContent", target.text) == target.text
    assert browser.execute_script("return document.getElementById('elites')._fullData.length") == 1
    store.close()
