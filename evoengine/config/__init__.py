"""Typed, validated run configuration: the sections (`sections.py`) and how a config is
built from defaults, presets and overrides (`loading.py`). Every key is documented in
`sections.py`, does something, and a typo is an error that names the key's path and the
nearest valid key."""

from __future__ import annotations

from .loading import explain, find_preset, load_config, parse_override, repo_root
from .sections import (
    Bandit,
    Budget,
    Concurrency,
    Config,
    Elites,
    Evaluation,
    Islands,
    Model,
    Novelty,
    Operators,
    Ray,
    Section,
    Selection,
)  # fmt: skip

__all__ = [
    "Bandit", "Budget", "Concurrency", "Config", "Elites", "Evaluation", "Islands", "Model", "Novelty", "Operators",
    "Ray", "Section", "Selection", "explain", "find_preset", "load_config", "parse_override", "repo_root",
]  # fmt: skip
