"""Experiment trackers: every admission's score, validity, metrics, best-so-far and spend,
logged to the trackers a run's config names (`trackers: [mlflow, wandb, tensorboard]`).

- mlflow: its file store in `RUN/mlruns` (offline; `mlflow ui --backend-store-uri RUN/mlruns`),
  or the server in MLFLOW_TRACKING_URI. A resumed run continues the same MLflow run.
- wandb: offline mode in `RUN/wandb` (`wandb sync` uploads it later) unless WANDB_MODE says
  otherwise; the project is WANDB_PROJECT or "evoengine".
- tensorboard: an event file in `RUN/tensorboard` (`tensorboard --logdir RUN/tensorboard`).

The engine calls `open_trackers(config, run_dir, meta)` once, `admitted(...)` after each
admission and `close(summary)` at the end. Each tracker is an optional extra: one configured
but not installed is a ConfigError naming its pip command. A tracker that fails mid-run is
dropped with a warning; the search goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConfigError
from .records import Candidate

log = logging.getLogger("evoengine.trackers")


def open_trackers(config: Config, run_dir: Path, meta: Mapping[str, Any]) -> Trackers:
    """The trackers `config.trackers` names, opened for the run in `run_dir`."""
    sinks = {}
    for name in config.trackers:
        try:
            sinks[name] = SINKS[name](config, Path(run_dir), dict(meta))
        except ImportError as exc:
            raise ConfigError(
                f"trackers: {name} is configured but {exc.name or 'its package'} is not installed: "
                f"pip install 'evoengine[{name}]'"
            ) from exc
    return Trackers(sinks)


class Trackers:
    """The open trackers of one run."""

    def __init__(self, sinks: dict[str, Any]) -> None:
        self.sinks = sinks

    def admitted(self, candidate: Candidate, best: Candidate | None, spend: float, admitted_count: int) -> None:
        """Log one admission at step `admitted_count` (the run's admissions so far, seeds included)."""
        values = {"valid": float(candidate.valid), "spend_usd": float(spend)}
        if candidate.score is not None:
            values["score"] = float(candidate.score)
        if best is not None and best.score is not None:
            values["best_score"] = float(best.score)
        values.update({f"metrics/{k}": float(v) for k, v in candidate.metrics.items()})
        self._each("log", admitted_count, values)

    def close(self, summary: Mapping[str, Any]) -> None:
        """End every tracker with the run's summary (e.g. stopped, admitted, best_score, spend_usd)."""
        self._each("close", dict(summary))
        self.sinks = {}

    def _each(self, method: str, *args: Any) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # a tracker's own failure (a full disk, a lost server) must not stop the search
                log.warning(
                    "tracker %s failed (%s: %s); it is dropped for the rest of the run", name, type(exc).__name__, exc
                )
                del self.sinks[name]


def flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config sections as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.update(flat(value, path + ".") if isinstance(value, Mapping) and value else {path: value})
    return out


class MLflowSink:
    def __init__(self, config: Config, run_dir: Path, meta: dict[str, Any]) -> None:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self.metric = Metric
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        name = f"evoengine-{meta.get('problem', 'runs')}"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tag = str(run_dir.resolve())
        earlier = self.client.search_runs([experiment_id], f"tags.`evoengine.run_dir` = '{tag}'", max_results=1)
        if earlier:  # a resumed run goes on in the same MLflow run
            self.run_id = earlier[0].info.run_id
            return
        tags = {"evoengine.run_dir": tag, **{f"evoengine.{k}": str(v) for k, v in meta.items()}}
        self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags).info.run_id
        params = [Param(k, (v if isinstance(v, str) else json.dumps(v))[:6000]) for k, v in flat(config.dump()).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log(self, step: int, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self.metric(k, v, now, step) for k, v in values.items()])

    def close(self, summary: dict[str, Any]) -> None:
        for key, value in summary.items():
            self.client.set_tag(self.run_id, f"evoengine.summary.{key}", str(value))
        self.client.set_terminated(self.run_id)


class WandbSink:
    def __init__(self, config: Config, run_dir: Path, meta: dict[str, Any]) -> None:
        import wandb

        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True, save_code=False)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "evoengine"),
            name=run_dir.name,
            id=hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16],  # a resumed run continues it
            resume="allow",
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            config=config.dump(),
            tags=[str(meta["problem"])] if meta.get("problem") else None,
            settings=settings,
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self, summary: dict[str, Any]) -> None:
        import wandb

        self.run.summary.update(summary)
        self.run.finish()
        if wandb.run is None:  # finish() returns before wandb's service has written the run file; this waits
            wandb.teardown()


class TensorBoardSink:
    def __init__(self, config: Config, run_dir: Path, meta: dict[str, Any]) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(run_dir / "tensorboard"), flush_secs=10)
        self.writer.add_text("config", json.dumps({"meta": meta, "config": config.dump()}, indent=1, default=str))

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def close(self, summary: dict[str, Any]) -> None:
        self.writer.add_text("summary", json.dumps(summary, default=str))
        self.writer.close()


SINKS = {"mlflow": MLflowSink, "wandb": WandbSink, "tensorboard": TensorBoardSink}
