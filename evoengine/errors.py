"""User-facing errors: each says what went wrong, where, and what to do.

The CLI catches `EvoError` once and prints the message without a traceback
(unless `--debug`). Library callers can catch the specific subclasses.
"""

from __future__ import annotations


class EvoError(Exception):
    """Base class of every error evoengine reports to a user."""


class ConfigError(EvoError):
    """A config file, preset or `--set` override is invalid."""


class ProblemError(EvoError):
    """A problem file cannot be loaded or its seed is unusable."""


class StoreError(EvoError):
    """A run directory or its archive cannot be opened or written."""


class ModelError(EvoError):
    """A model endpoint is unreachable, misconfigured or keeps failing."""


class KeyRefused(ModelError):
    """An endpoint refused its key mid-run (HTTP 401): the run stops, keeping what it made."""
