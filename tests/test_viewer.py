"""The live viewer: read-only, loopback, serves while a run writes, and never gets in the
writer's way; its page refreshes and shows model-written text literally (in Chromium)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_lineage import make_run
from test_report_browser import (  # noqa: F401 (browser is a fixture)
    HOSTILE,
    browser,
    click_node,
    drawn_nodes,
    errors,
    hostile_run,
    open_page,
    shown_code,
    text_of,
    wait_for,
)

from evoengine.records import Candidate
from evoengine.report import start_viewer
from evoengine.store import RunReader, RunStore


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def admit_child(store: RunStore, k: int) -> int:
    parent = store.best(1)[0]
    pid = store.start_proposal(0)
    store.admit(
        Candidate(
            id=pid,
            text=parent.text + f"# child {k}\n",
            parents=(parent.id,),
            generation=parent.generation + 1,
            score=parent.score,
            valid=True,
            operator="diff",
            model="gpt-small",
        ),
        reward=0.0,
    )
    return pid


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("viewer") / "run"
    store, hostile_id = hostile_run(run_dir)
    with start_viewer(run_dir) as viewer:
        yield viewer, store, hostile_id
    store.close()


def test_viewer_binds_loopback_and_serves_the_page_and_its_data(live) -> None:
    viewer, store, _ = live
    assert viewer.server.server_address[0] == "127.0.0.1" and viewer.url.startswith("http://127.0.0.1:")
    status, headers, body = get(viewer.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b"evo-data" in body
    status, _, body = get(viewer.url + "api/summary")
    summary = json.loads(body)
    assert status == 200 and summary["live"] is True
    assert sum(y is not None for y in summary["rows"]["y"]) == store.evaluated_count()
    status, _, body = get(viewer.url + "api/details")
    details = json.loads(body)
    assert status == 200 and sum(len(c["ids"]) for c in details["chunks"]) == len(summary["rows"]["id"])
    later = json.loads(get(viewer.url + f"api/details?after={details['until']}")[2])
    assert later["chunks"] == [], "nothing finished since"
    status, _, body = get(viewer.url + f"api/summary?since={summary['version']}")
    assert json.loads(body) == {"unchanged": True, "version": summary["version"]}
    store.put_state({"elapsed_s": 12345.0})  # the engine's final state write, with no admission
    assert "rows" in json.loads(get(viewer.url + f"api/summary?since={summary['version']}")[2])
    assert get(viewer.url + "api/candidate/999999")[0] == 404
    assert get(viewer.url + "nothing/here")[0] == 404


def test_viewer_sends_model_written_text_as_escaped_json(live) -> None:
    viewer, _, hostile_id = live
    status, headers, body = get(viewer.url + f"api/candidate/{hostile_id}")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"<" not in body and b">" not in body
    detail = json.loads(body)
    assert detail["text"] == detail["feedback"] == HOSTILE
    assert detail["outcome"] == "valid" and detail["parents"] and detail["calls"] is not None


def test_viewer_answers_only_loopback_names_and_only_reads(live) -> None:
    viewer, _, _ = live
    port = viewer.server.server_address[1]
    # A page on another site that rebinds its name to 127.0.0.1 still sends its own Host.
    assert get(viewer.url + "api/summary", {"Host": f"attacker.example:{port}"})[0] == 403
    assert get(viewer.url + "api/summary", {"Host": f"localhost:{port}"})[0] == 200
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(viewer.url + "api/summary", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 501


WRITER = textwrap.dedent("""
    import json, sys, time
    from evoengine.store import RunStore
    from evoengine.records import Candidate
    store = RunStore.open(sys.argv[1])
    # Any lock held against this writer for more than 250 ms makes the write fail, loudly.
    store.conn.execute("PRAGMA busy_timeout=250")
    parent = store.best(1)[0]
    print("ready", flush=True)
    sys.stdin.readline()
    durations, failures = [], []
    for k in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        try:
            pid = store.start_proposal(k % 3)
            store.admit(Candidate(id=pid, text=parent.text + f"# writer {k}\\n", parents=(parent.id,),
                                  island=k % 3, generation=parent.generation + 1, score=parent.score + k * 1e-3,
                                  valid=True, operator="diff", model="gpt-small"),
                        reward=0.0, events=[("elite", {"id": pid})], state={"elapsed_s": k})
        except Exception as exc:
            failures.append(repr(exc))
        durations.append(time.perf_counter() - t0)
        time.sleep(0.01)
    print(json.dumps({"durations": durations, "failures": failures}), flush=True)
""")


def test_viewer_serves_while_a_run_writes_and_the_writer_is_never_held_up(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    store, _ = hostile_run(run_dir, n=120)
    before = store.evaluated_count()
    store.close()
    writes = 150
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run_dir), str(writes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "ready"
    seen: list[list[int]] = [[], []]  # admitted counts each reader saw, in order
    statuses: list[int] = []
    with start_viewer(run_dir) as viewer:

        def read(mine: list[int]) -> None:
            while writer.poll() is None:
                status, _, body = get(viewer.url + "api/summary")
                statuses.append(status)
                if status == 200:
                    rows = json.loads(body)["rows"]
                    mine.append(sum(y is not None for y in rows["y"]))
                    statuses.append(get(viewer.url + f"api/candidate/{rows['id'][-1]}")[0])

        readers = [threading.Thread(target=read, args=(mine,)) for mine in seen]
        for r in readers:
            r.start()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        out, _ = writer.communicate(timeout=120)
        for r in readers:
            r.join(timeout=60)
        final = json.loads(get(viewer.url + "api/summary")[2])
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failures"] == [], "every write succeeded (none waited 250 ms on a lock)"
    assert max(result["durations"]) < 1.0, f"slowest write took {max(result['durations']):.3f} s"
    assert set(statuses) == {200} and len(statuses) >= 10
    for mine in seen:
        assert len(set(mine)) > 2, "the readers saw the run grow while it was being written"
        assert mine == sorted(mine), "and never saw it shrink (consistent snapshots)"
    assert sum(y is not None for y in final["rows"]["y"]) == before + writes


def test_viewer_can_run_as_a_subprocess_that_prints_its_url(tmp_path: Path) -> None:
    make_run(tmp_path / "run", n=5).close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evoengine.report.server", str(tmp_path / "run"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = json.loads(proc.stdout.readline())["url"]
        assert url.startswith("http://127.0.0.1:")
        assert len(json.loads(get(url + "api/summary")[2])["rows"]["id"]) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_viewer_page_refreshes_while_the_run_goes_on_and_shows_text_literally(browser, live) -> None:  # noqa: F811
    viewer, store, hostile_id = live
    log = open_page(browser, viewer.url)
    assert errors(log) == []
    count = store.evaluated_count()
    assert len(drawn_nodes(browser)) == count
    click_node(browser, hostile_id)
    assert shown_code(browser, hostile_id) == HOSTILE
    assert HOSTILE in text_of(browser, "detail-feedback")
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    new = admit_child(store, 1)
    assert wait_for(browser, "return document.getElementById('stat-admitted').textContent", str(count + 1), 20) == str(
        count + 1
    )
    assert new in drawn_nodes(browser)
    click_node(browser, new)
    reader = RunReader.open(Path(store.path).parent)
    text = reader.get(new).text
    reader.close()
    assert shown_code(browser, new) == text
    assert "live" in browser.find_element("id", "status").text
    assert errors(browser.get_log("browser")) == []
