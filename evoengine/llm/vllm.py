"""In-process vLLM (`backend: vllm`): the model's weights loaded into this process.

Optional: `pip install "evoengine[vllm]"` (Linux with a CUDA GPU). Without vLLM the
backend refuses at once with a `ModelError` saying what to do; everything else about a
call (retries, deadline, usage, cost, hash) is `ModelClient`'s. vLLM's `LLM` is
synchronous, so calls run one at a time in a worker thread (vLLM batches inside a call).
For several proposals in flight, `vllm serve` plus `backend: openai` batches better.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from ..config import Model
from ..errors import ModelError
from .backends import Backend, Completion, MalformedReply

log = logging.getLogger(__name__)


class VLLMBackend(Backend):
    """One `vllm.LLM` per model, loaded on first use or at pre-flight."""

    def __init__(self, model: Model):
        try:
            self._vllm = importlib.import_module("vllm")
        except ImportError as exc:
            raise ModelError(
                f"model {model.name!r}: backend vllm needs the vllm package, which is not installed ({exc}); "
                f'install it with `pip install "evoengine[vllm]"` (Linux, CUDA GPU), or run `vllm serve <model>` '
                f"and use `backend: openai` with `base_url: http://127.0.0.1:8000/v1` (see configs/vllm.yaml)"
            ) from None
        self.model = model
        self.where = f"vllm in process ({model.model_id})"
        self._llm: Any = None
        self._lock = asyncio.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            log.info("loading %s into vLLM", self.model.model_id)
            self._llm = self._vllm.LLM(model=self.model.model_id)
        return self._llm

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, timeout_s: float, digest: str
    ) -> Completion:
        params = self._vllm.SamplingParams(temperature=temperature, max_tokens=max_tokens)
        async with self._lock:
            outputs = await asyncio.to_thread(lambda: self._load().chat(messages, params, use_tqdm=False))
        if not outputs or not outputs[0].outputs:
            raise MalformedReply("vLLM returned no output")
        out = outputs[0]
        text = out.outputs[0].text
        return Completion(text, len(out.prompt_token_ids or ()), len(out.outputs[0].token_ids or ()))

    async def check(self) -> str | None:
        try:
            async with self._lock:
                await asyncio.to_thread(self._load)
        except Exception as exc:  # noqa: BLE001 - reported as the pre-flight problem
            return f"model {self.model.name!r}: vLLM could not load {self.model.model_id!r}: {exc}"
        return None

    async def aclose(self) -> None:
        self._llm = None
