"""Model access for the search: clients with retries, usage and cost (`client`), bandits
that pick which model to ask (`bandit`), record and replay of calls (`replay`), and the
optional in-process vLLM backend (`vllm`, imported only when a model uses it).

The names below are loaded on first use: importing `evoengine.llm.bandit` (the engine does,
at start) must not import the HTTP client, which is only needed once a model is configured
(the engine builds the clients in a thread, beside other start-up).
"""

from __future__ import annotations

from ..lazy import lazy_names

_WHERE = {
    "ModelBandit": "bandit",
    "make_bandit": "bandit",
    "ModelClient": "client",
    "ModelPool": "client",
    "preflight": "client",
    "ReplayBook": "replay",
    "request_hash": "replay",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
