"""The run's clocks: its time (this session, and over all its sessions), the wall-time budget,
and the silence stop — no model has answered for `budget.silence_s` while proposals waited
on one (an endpoint that accepts connections and never replies)."""

from __future__ import annotations

import time

from ..config import Config


class Clocks:
    def __init__(self, config: Config, before: float):
        self.config = config
        self.before = before  # the run's time in earlier sessions
        self.started = self.heard_at = time.monotonic()
        models = config.models if not config.replay else []
        given = config.budget.silence_s
        self.silence = given if given is not None or not models else 3 * max(m.timeout_s for m in models)

    def session(self) -> float:
        return time.monotonic() - self.started

    def elapsed(self) -> float:
        return self.before + self.session()

    def heard(self) -> None:
        """A model answered (or nothing waits on one): the silence clock starts again."""
        self.heard_at = time.monotonic()

    def check(self, waiting: bool) -> tuple[str, str] | None:
        """(stop reason, message) once a clock has run out; `waiting`: proposals wait on models."""
        wall = self.config.budget.wall_time_s
        if wall is not None and self.elapsed() >= wall:
            return "wall time", ""
        if self.silence is not None and waiting and time.monotonic() - self.heard_at >= self.silence:
            where = ", ".join(m.base_url or m.name for m in self.config.models)
            return "no reply", (
                f"no model has answered for {self.silence:g} s while proposals waited (budget.silence_s); "
                f"check the endpoints ({where}), then resume"
            )
        return None

    def wake_in(self, waiting: bool) -> float | None:
        """Seconds until a clock may run out (None: no clock is running)."""
        wall = self.config.budget.wall_time_s
        waits = [wall - self.elapsed()] if wall is not None else []
        if self.silence is not None and waiting:
            waits.append(self.heard_at + self.silence - time.monotonic())
        return max(0.05, min(waits)) if waits else None
