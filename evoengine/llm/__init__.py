"""Model access for the search: clients with retries, usage and cost (`client`), bandits
that pick which model to ask (`bandit`), record and replay of calls (`replay`), and the
optional in-process vLLM backend (`vllm`, imported only when a model uses it).
"""

from __future__ import annotations

from .bandit import ModelBandit, make_bandit
from .client import ModelClient, ModelPool, preflight
from .replay import ReplayBook, request_hash

__all__ = [
    "ModelBandit",
    "ModelClient",
    "ModelPool",
    "ReplayBook",
    "make_bandit",
    "preflight",
    "request_hash",
]
