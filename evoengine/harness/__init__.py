"""The harness: how each proposal is planned and how its prompt is written.

One replaceable module. The built-in one is `evoengine/harness/default.py`; `config.harness`
may name another Python file with the same API, and `config.templates` a folder whose
`.txt` files override the built-in templates of the same name (others fall back).

The API a harness module provides is one class, `Harness(config, templates)`, with

- `plan(ctx, arm) -> Plan`: the operator (diff, full or crossover), how many of
  `ctx.inspirations` to show, and the temperature (None: the model's own);
- `messages(ctx, plan) -> list[dict]`: the chat messages for the model;
- `repair(ctx, plan, messages, reply, error) -> list[dict]`: the messages for one more try
  after `reply` could not be parsed or applied (`error` says why);
- optionally `offline(ctx) -> OfflinePlan`: the offline operators' edit-family weights and
  step size for one proposal (used when the offline operators run, alone or as an arm).

Self-evolution evolves such a file as a candidate of kind `harness`.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError
from ..problem import import_file

if TYPE_CHECKING:
    from ..config import Config
    from ..records import ProposalContext

OPERATORS = ("diff", "full", "crossover")
BUILTIN_TEMPLATES = Path(__file__).resolve().parent / "templates"
_TOKEN = re.compile(r"\x00(\d+)\x00")


@dataclass(frozen=True)
class Plan:
    """What one proposal will do. For crossover, `ctx.inspirations[0]` is the second parent."""

    operator: str
    inspirations: int
    temperature: float | None = None
    block: str | None = None  # for a candidate of several named texts: the one to change
    file: str | None = None  # for a candidate of several files: the one a rewrite or crossover returns

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"plan operator must be one of {OPERATORS} (got {self.operator!r})")


@dataclass(frozen=True)
class OfflinePlan:
    """A harness's say over one offline proposal: operator-family weights (None: the
    proposer's own) and a multiplier on the size of constant perturbations."""

    weights: dict[str, float] | None = None
    step: float = 1.0


class Harness(Protocol):
    def plan(self, ctx: ProposalContext, arm: str) -> Plan: ...

    def messages(self, ctx: ProposalContext, plan: Plan) -> list[dict[str, str]]: ...

    def repair(
        self, ctx: ProposalContext, plan: Plan, messages: list[dict[str, str]], reply: str, error: str
    ) -> list[dict[str, str]]: ...


class Templates:
    """Prompt templates (`$name` placeholders): the built-in ones, overridden by a folder's."""

    def __init__(self, override: str | Path | None = None, builtin: Path = BUILTIN_TEMPLATES):
        self.files = {p.stem: p for p in sorted(builtin.glob("*.txt"))}
        if override is not None:
            folder = Path(override)
            if not folder.is_dir():
                raise ConfigError(f"templates: {folder} is not a folder of .txt templates")
            for path in sorted(folder.glob("*.txt")):
                if path.stem not in self.files:
                    raise ConfigError(
                        f"templates: {path} does not override any template; "
                        f"known names: {', '.join(f'{n}.txt' for n in self.files)}"
                    )
                self.files[path.stem] = path
        self._cache: dict[str, string.Template] = {}

    def text(self, name: str) -> str:
        if name not in self.files:
            raise ConfigError(f"no prompt template named {name!r}; known: {', '.join(self.files)}")
        return self.files[name].read_text()

    def render(self, name: str, /, **values: Any) -> str:
        """Fill template `name`; a line holding only a placeholder whose value is empty is dropped."""
        if name not in self._cache:
            self._cache[name] = string.Template(self.text(name))
        keys = list(values)
        texts = [str(values[k]) for k in keys]
        try:
            skeleton = self._cache[name].substitute({k: f"\x00{i}\x00" for i, k in enumerate(keys)})
        except KeyError as exc:
            raise ConfigError(
                f"template {self.files[name]} uses ${exc.args[0]}, which is not one of {', '.join(sorted(values))}"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"template {self.files[name]}: {exc} (write $$ for a literal $)") from None
        empty = {f"\x00{i}\x00" for i, t in enumerate(texts) if not t.strip()}
        lines = [line for line in skeleton.split("\n") if line.strip() not in empty]
        skeleton = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
        return _TOKEN.sub(lambda m: texts[int(m.group(1))], skeleton)


def load_harness(config: Config) -> Harness:
    """The built-in harness, or the one in the file at `config.harness`."""
    templates = Templates(config.templates)
    if config.harness is None:
        from . import default

        return default.Harness(config, templates)
    path = Path(config.harness)
    if not path.is_file():
        raise ConfigError(f"harness: {path} does not exist (give a Python file with a Harness class)")
    try:
        module = import_file(path, "evoengine_harness")
    except Exception as exc:
        raise ConfigError(f"harness: importing {path} failed with {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, "Harness", None)
    if cls is None or not all(callable(getattr(cls, m, None)) for m in ("plan", "messages", "repair")):
        raise ConfigError(f"harness: {path} must define a class Harness with plan, messages and repair")
    return cls(config, templates)
