"""Size and speed of the HTML report for large runs, measured in headless Chromium.

A store of N proposals is written with the store's own writer (no real run): programs of
about 90 lines whose children change one to three lines, each made by a model call whose
prompt holds the system text, the parent and two inspirations and whose reply is a
SEARCH/REPLACE edit; one in ten proposals fails after a repair call, one in twenty is
rejected as a copy; five islands, crossovers, two descriptors. Then, for each size:

- the report's size and how long writing it took;
- in Chromium: the time until the page has drawn (tree, table, charts and the first
  candidate) and until every text is opened;
- every long task (PerformanceObserver "longtask") from the start, and the longest after
  the page has drawn while a user filters by island and status, searches the code, sorts
  the table, shows a candidate and zooms the tree.

    python benchmarks/report_size.py --sizes 2000 10000 --out benchmarks/results-report.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

from evoengine.records import Candidate, ModelCall
from evoengine.report import write_report
from evoengine.store import RunStore

SYSTEM = "You improve programs by evolution. " * 40
LINES = [f"    value_{k} = compute_{k}(state, {k} * 0.{k:03d})  # step {k}" for k in range(90)]


def program(rng: random.Random, parent: list[str]) -> list[str]:
    child = list(parent)
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(child))
        child[k] = f"    value_{k} = compute_{k}(state, {rng.random():.6f})  # tuned"
    return child


def build(run_dir: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    store = RunStore.create(
        run_dir,
        {
            "problem": "bench",
            "features": [
                {"name": "a", "low": 0, "high": 1, "bins": 10},
                {"name": "b", "low": 0, "high": 1, "bins": 10},
            ],
        },
    )
    first = store.start_proposal(0)
    text = ["def solve(state):", *LINES, "    return state"]
    store.admit(Candidate(id=first, text="\n".join(text), score=1.0, valid=True, operator="seed"), reward=None)
    admitted = [(first, text, 1.0, 0, 0)]
    while len(admitted) < n:
        pid, ptext, pscore, pisland, pgen = rng.choice(admitted[-400:] if rng.random() < 0.7 else admitted)
        island = pisland if rng.random() < 0.9 else rng.randrange(5)
        proposal = store.start_proposal(island)
        child = program(rng, ptext)
        inspirations = [rng.choice(admitted)[1] for _ in range(2)]
        user = (
            "Improve the program.\n```python\n"
            + "\n".join(ptext)
            + "\n```\n"
            + "".join("Inspiration:\n```python\n" + "\n".join(t) + "\n```\n" for t in inspirations)
        )
        reply = "".join(
            f"<<<<<<< SEARCH\n{a}\n=======\n{b}\n>>>>>>> REPLACE\n" for a, b in zip(ptext, child, strict=True) if a != b
        )
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        roll = rng.random()
        calls = 2 if roll < 0.15 else 1
        for k in range(calls):
            store.record_call(
                proposal,
                ModelCall(
                    "bench-model",
                    f"h{proposal}.{k}",
                    messages,
                    "I am not sure." if k < calls - 1 or roll < 0.1 else reply,
                    tokens_in=len(user) // 4,
                    tokens_out=len(reply) // 4,
                    cost=0.001,
                    latency_s=0.5,
                ),
            )
        if roll < 0.1 or roll > 0.95:  # a reply that stayed unusable after its repair, or a copy
            unusable = "model bench-model: diff reply unusable after 2 attempts: no edit"
            copy = "novelty: the same program as an already evaluated candidate"
            store.fail(
                proposal,
                reason=unusable if roll < 0.1 else copy,
                operator="diff",
                model="bench-model",
                parents=(pid,),
                cost=0.001 * calls,
                reward=0.0,
                island=island,
            )
            continue
        parents = (pid, rng.choice(admitted)[0]) if rng.random() < 0.1 else (pid,)
        valid = rng.random() > 0.1
        score = pscore + rng.gauss(0.0, 0.05) if valid else None
        store.admit(
            Candidate(
                id=proposal,
                text="\n".join(child),
                parents=parents,
                island=island,
                generation=pgen + 1,
                operator="crossover" if len(parents) > 1 else "diff",
                model="bench-model",
                score=score,
                valid=valid,
                metrics={"score": score or 0.0},
                features={"a": rng.random(), "b": rng.random()},
                feedback="" if valid else "IndexError: list index out of range",
                cost=0.001 * calls,
            ),
            reward=0.0,
        )
        admitted.append((proposal, child, score if valid else pscore, island, pgen + 1))
    store.close()


INSTALL_OBSERVER = """
window.__long = [];
new PerformanceObserver(list => list.getEntries().forEach(e => window.__long.push([e.startTime, e.duration])))
  .observe({ type: "longtask", buffered: true });
"""


def measure(path: Path) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    profile = tempfile.mkdtemp(prefix="evo-bench-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": INSTALL_OBSERVER})
        driver.get(path.as_uri())
        t0 = time.monotonic()
        while not driver.execute_script("return !!(window.evoReport && window.evoReport.ready)"):
            time.sleep(0.02)
        drawn_at = driver.execute_script("return performance.now()")
        while not driver.execute_script("return window.evoReport.detailsReady"):
            time.sleep(0.05)
        opened_at = driver.execute_script("return performance.now()")
        wall = time.monotonic() - t0
        after = driver.execute_script("return performance.now()")
        actions = []

        def act(name, fn):
            start = time.monotonic()
            fn()
            driver.execute_script("return new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
            actions.append([name, round(time.monotonic() - start, 3)])

        act("filter island", lambda: Select(driver.find_element("id", "f-island")).select_by_value("2"))
        act("filter status", lambda: Select(driver.find_element("id", "f-status")).select_by_value("valid"))
        act(
            "clear filters",
            lambda: (
                Select(driver.find_element("id", "f-island")).select_by_value(""),
                Select(driver.find_element("id", "f-status")).select_by_value(""),
            ),
        )
        search = driver.find_element("id", "search")
        act("search code", lambda: (search.send_keys("tuned"), time.sleep(0.3)))
        act("search more", lambda: (search.send_keys(Keys.BACKSPACE * 5 + "0.1234"), time.sleep(0.3)))
        act("clear search", lambda: (search.send_keys(Keys.BACKSPACE * 6), time.sleep(0.3)))
        act(
            "sort by score",
            lambda: driver.find_element("css selector", '#cand-table .vhead span[data-key="score"]').click(),
        )
        act("show best path", lambda: driver.find_element("id", "best-path").click())
        act("all again", lambda: driver.find_element("id", "best-path").click())
        act(
            "show a candidate",
            lambda: driver.execute_script("return window.evoReport.select(window.evoReport.data().rows.id[7])"),
        )
        act(
            "scroll the table",
            lambda: driver.execute_script("document.querySelector('#cand-table .vbody').scrollTop = 50000"),
        )
        time.sleep(0.5)
        tasks = driver.execute_script("return window.__long")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    load = [d for s, d in tasks if s < drawn_at]
    later = [d for s, d in tasks if s >= after]
    opening = [d for s, d in tasks if drawn_at <= s < after]
    return {
        "drawn_s": round(drawn_at / 1000, 3),
        "texts_opened_s": round(opened_at / 1000, 3),
        "wall_until_texts_s": round(wall, 3),
        "longest_task_while_loading_ms": round(max(load, default=0), 1),
        "longest_task_while_opening_texts_ms": round(max(opening, default=0), 1),
        "longest_task_after_load_ms": round(max(later, default=0), 1),
        "long_tasks_after_load": len(later),
        "actions_s": actions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for n in args.sizes:
        tmp = Path(tempfile.mkdtemp(prefix="evo-report-"))
        t0 = time.monotonic()
        build(tmp / "run", n)
        built = time.monotonic() - t0
        t0 = time.monotonic()
        path = write_report(tmp / "run")
        wrote = time.monotonic() - t0
        result = {
            "admitted": n,
            "build_store_s": round(built, 2),
            "write_report_s": round(wrote, 2),
            "bytes": path.stat().st_size,
            **measure(path),
        }
        print(json.dumps(result), flush=True)
        results.append(result)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        args.out.write_text(
            json.dumps(
                {"machine": platform.platform(), "when": time.strftime("%Y-%m-%d"), "results": results}, indent=1
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
