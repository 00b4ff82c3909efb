"""The `Candidate` record: one evaluated text with its lineage, scores and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """An admitted candidate. `parents[0]` is the main parent; crossover adds a second.

    `change` is what made it from its parent: the model's patch, or the offline
    operator's description. `origin` marks candidates imported from another run.
    """

    id: int
    text: str
    parents: tuple[int, ...] = ()
    island: int = 0
    generation: int = 0
    operator: str = "seed"
    model: str | None = None
    score: float | None = None
    valid: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    feedback: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)
    instances: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    change: str = ""
    origin: str | None = None
    created: float = 0.0

    @property
    def parent(self) -> int | None:
        return self.parents[0] if self.parents else None

    def fitness(self) -> float:
        """Score for ranking: invalid candidates rank below every valid one."""
        return self.score if self.valid and self.score is not None else float("-inf")

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parents": list(self.parents),
            "island": self.island,
            "generation": self.generation,
            "operator": self.operator,
            "model": self.model,
            "score": self.score,
            "valid": self.valid,
        }
