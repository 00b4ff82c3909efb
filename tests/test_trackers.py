"""Experiment trackers, offline: the records of a real small run are fed through the interface
the engine calls, and what each tracker wrote is read back from its own files."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest
from conftest import TEST_PROBLEMS, cli

import evoengine
from evoengine.config import load_config
from evoengine.errors import ConfigError
from evoengine.trackers import open_trackers


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, list]:
    """A real 12-candidate run and its admitted candidates, in admission order."""
    run_dir = tmp_path_factory.mktemp("trackers") / "run"
    run = evoengine.run(TEST_PROBLEMS / "quadratic", budget=12, run_dir=run_dir)
    return run_dir, run.candidates()


def _feed(tracker: str, run_dir: Path, candidates: list) -> list[float]:
    """Log every admission to `tracker` as the engine does; returns the best-so-far scores."""
    trackers = open_trackers(load_config(None, [f"trackers=[{tracker}]"]), run_dir, {"problem": "quadratic"})
    best, bests, spend = None, [], 0.0
    for count, candidate in enumerate(candidates, 1):
        if candidate.valid and (best is None or candidate.score > best.score):
            best = candidate
        spend += candidate.cost
        trackers.admitted(candidate, best, spend, count)
        bests.append(best.score)
    trackers.close({"stopped": "budget", "admitted": len(candidates), "best_score": best.score})
    return bests


@pytest.mark.skipif(not _installed("mlflow"), reason="needs mlflow: pip install 'evoengine[mlflow]'")
def test_mlflow_keeps_each_admission_in_its_file_store(small_run, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bests = _feed("mlflow", tmp_path, small_run[1])
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run = client.search_runs([client.get_experiment_by_name("evoengine-quadratic").experiment_id])[0]
    history = sorted(client.get_metric_history(run.info.run_id, "best_score"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == list(enumerate(bests, 1))
    assert run.data.params["budget.candidates"] == "200" and run.data.params["islands.topology"] == "ring"
    assert run.info.status == "FINISHED" and run.data.tags["evoengine.summary.stopped"] == "budget"
    _feed("mlflow", tmp_path, small_run[1][:2])  # the same run directory again: a resume goes on in the same run
    assert len(client.search_runs([run.info.experiment_id])) == 1


def _wandb_records(path: Path):
    """The records of a W&B run file (LevelDB's log format, 32 KiB blocks, after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending, pos = pending + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@pytest.mark.skipif(not _installed("wandb"), reason="needs wandb: pip install 'evoengine[wandb]'")
def test_wandb_writes_an_offline_run_with_every_admission(small_run, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    bests = _feed("wandb", tmp_path, small_run[1])
    (path,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    history, summary = [], {}
    for record in _wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif record.WhichOneof("record_type") == "summary":
            summary.update({_key(item): json.loads(item.value_json) for item in record.summary.update})
    assert [(row["_step"], row["best_score"]) for row in history] == list(enumerate(bests, 1))
    assert all("spend_usd" in row and "metrics/error" in row for row in history if row["valid"])
    assert summary["stopped"] == "budget" and summary["admitted"] == len(bests)


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of TensorBoard event files (TFRecords: length, its CRC, an Event, its CRC)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 16 + length
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.mark.skipif(not _installed("tensorboardX"), reason="needs tensorboardX: pip install 'evoengine[tensorboard]'")
def test_tensorboard_gets_an_event_file_with_the_best_so_far(small_run, tmp_path):
    bests = _feed("tensorboard", tmp_path, small_run[1])
    scalars = _tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars["best_score"] == [(step, pytest.approx(b)) for step, b in enumerate(bests, 1)]
    valid = [c for c in small_run[1] if c.valid]
    assert [v for _, v in scalars["metrics/error"]] == pytest.approx([c.metrics["error"] for c in valid])


def test_a_tracker_that_is_not_installed_is_a_config_error_naming_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if it were not installed
    with pytest.raises(
        ConfigError,
        match=r"tensorboard is configured but tensorboardX is not installed: pip install 'evoengine\[tensorboard\]'",
    ):
        open_trackers(load_config(None, ["trackers=[tensorboard]"]), tmp_path, {})


def test_an_unknown_tracker_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="trackers.0"):
        load_config(None, ["trackers=[neptune]"])


@pytest.mark.skipif(not _installed("tensorboardX"), reason="needs tensorboardX: pip install 'evoengine[tensorboard]'")
def test_a_run_logs_every_admission_to_its_trackers(tmp_path):
    run_dir = tmp_path / "run"
    cli(
        "run",
        str(TEST_PROBLEMS / "quadratic"),
        "--budget",
        "15",
        "--set",
        "trackers=[tensorboard]",
        "--run-dir",
        str(run_dir),
        "-q",
        check=True,
    )
    assert [step for step, _ in _tensorboard_scalars(run_dir / "tensorboard")["best_score"]] == list(range(1, 16))
