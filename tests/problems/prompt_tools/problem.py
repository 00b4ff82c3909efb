"""A test problem whose candidate is a folder: a prompt (prompt.txt) and its tool definitions
(tools.json). The score counts wanted lines in the prompt and wanted tools in a JSON that parses."""

import json
from pathlib import Path

from evoengine import EvalResult, Problem

problem = Problem(
    name="prompt_tools",
    description="A support agent's prompt and its tool definitions: the prompt should say when to use "
    "each tool, and tools.json should define the tools the prompt names.",
    initial="seed",
    language="text",
    kind="prompt",
    vocabulary="vocabulary.txt",
    timeout_s=10,
    memory_mb=512,
)

WANTED = ("lookup_order before", "refund_order only after")


def evaluate(path: str) -> EvalResult:
    folder = Path(path)
    prompt = (folder / "prompt.txt").read_text()
    try:
        tools = {t["name"] for t in json.loads((folder / "tools.json").read_text())["tools"]}
    except (ValueError, KeyError, TypeError) as exc:
        return EvalResult.invalid(f"tools.json: {exc}")
    hits = [w for w in WANTED if w in prompt] + sorted(tools & {"lookup_order", "refund_order"})
    return EvalResult(score=float(len(hits)), feedback="has: " + ", ".join(hits))
