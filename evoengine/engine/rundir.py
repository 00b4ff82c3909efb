"""A run's directory: creating it, reopening it, the lock that keeps it to one process, the
best candidate's file, and the candidates a new run imports from an old one.

`runs/<run-id>/` holds `config.yaml` (written first: a store without its config could not be
resumed), `archive.sqlite` (the truth), `best/` and `.lock`. The lock is an OS-level
`flock` held for the life of `run`/`resume` and released by the kernel when the process
dies; read-only commands (status, report, serve) do not take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from ..config import Config
from ..errors import ConfigError, StoreError
from ..files import replace_folder, split_files
from ..problem import Problem
from ..records import Candidate
from ..store import FILENAME, LOCK, RunStore, lock_holder


def new_run_dir(root: Path, problem_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{problem_name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _lock(path: Path) -> int:
    """Hold the run directory's lock, or refuse naming the process that holds it."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = lock_holder(path, wait_s=1.0) or "?"
        raise StoreError(
            f"{path} is in use by another evoengine process (pid {holder}); wait for it to end or stop it "
            f"(`kill {holder}`) — `evoengine status {path}` works meanwhile"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class RunDir:
    """One run's directory, locked by this process while it is open."""

    def __init__(self, path: Path, store: RunStore, lock: int, *, new: bool = False, made: bool = False):
        self.path = path
        self.store = store
        self._lock = lock
        self.new = new  # this process created the run (so `discard` may remove what it wrote)
        self._made = made  # ... and its directory

    @classmethod
    def create(cls, path: Path, config: Config, meta: dict[str, Any]) -> RunDir:
        made = not path.exists()
        if (path / FILENAME).exists():
            raise StoreError(
                f"{path} already holds a run: resume it with `evoengine resume {path}` or pick a new --run-dir"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = _lock(path)
        except OSError as exc:
            raise StoreError(f"cannot write to run directory {path}: {exc}; choose another with --run-dir") from exc
        try:
            write_atomic(path / "config.yaml", yaml.safe_dump(config.dump(), sort_keys=False))
            store = RunStore.create(path, meta)
        except OSError as exc:
            os.close(lock)
            raise StoreError(f"cannot write to run directory {path}: {exc}; choose another with --run-dir") from exc
        except BaseException:
            os.close(lock)
            raise
        return cls(path, store, lock, new=True, made=made)

    @staticmethod
    def saved(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """A run's store meta and saved config (as written), read without touching anything."""
        with RunStore.open(path, readonly=True) as store:  # says clearly what is wrong with a bad directory
            meta = store.meta()
        config_path = path / "config.yaml"
        try:
            return meta, yaml.safe_load(config_path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{config_path} cannot be read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc

    @classmethod
    def reopen(cls, path: Path) -> RunDir:
        """The run at `path`, locked and open for writing."""
        lock = _lock(path)
        try:
            return cls(path, RunStore.open(path), lock)
        except BaseException:
            os.close(lock)
            raise

    def save_config(self, config: Config) -> None:
        write_atomic(self.path / "config.yaml", yaml.safe_dump(config.dump(), sort_keys=False))

    def best_file(self, problem: Problem) -> Path:
        """`best/<name><suffix>`, or the folder `best/<name>/` for a candidate of several files."""
        return self.path / "best" / (problem.name if problem.folder else f"{problem.name}{problem.suffix}")

    def write_best(self, best: Candidate, problem: Problem) -> None:
        path = self.best_file(problem)
        path.parent.mkdir(exist_ok=True)
        if problem.folder:
            replace_folder(split_files(best.text), path)
        else:
            write_atomic(path, best.text)
        write_atomic(
            path.parent / "best.json",
            json.dumps({"id": best.id, "score": best.score, "metrics": best.metrics, "file": path.name}, indent=2),
        )

    @property
    def closed(self) -> bool:
        return self._lock < 0

    def close(self) -> None:
        """Close the store and let the lock go (again: nothing happens)."""
        if self._lock >= 0:
            self.store.close()
            os.close(self._lock)
            self._lock = -1

    def discard(self) -> None:
        """Remove what this process wrote for a new run that never started (say, a model failed
        its pre-flight): a rerun with the same --run-dir then starts cleanly."""
        self.close()
        if self._made:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in ("config.yaml", FILENAME, f"{FILENAME}-wal", f"{FILENAME}-shm", LOCK):
            (self.path / name).unlink(missing_ok=True)


def imports_from(run_dir: Path, n: int) -> list[Candidate]:
    """The best distinct candidates of an earlier run, to seed a new one."""
    with RunStore.open(run_dir, readonly=True) as store:
        out, seen = [], set()
        for c in store.best(n * 4):
            if c.text not in seen:
                seen.add(c.text)
                out.append(Candidate(id=c.id, text=c.text, score=c.score, origin=f"{run_dir}#{c.id}"))
            if len(out) == n:
                break
        return out


def recorded_schedule(run_dir: Path) -> dict[int, Any] | None:
    """When each proposal of an earlier run started and closed, for replaying it exactly;
    None for a run recorded before schedules were kept (its replies are replayed by request)."""
    with RunStore.open(run_dir, readonly=True) as store:
        return store.schedule()
