"""The MAP-Elites maps a report draws, as plain data.

A grid archive of at most two descriptors becomes one heat map of its cells, empty cells
included; each cell also says whether its elite lies outside the declared range (the engine
bins such values into the edge cells). A CVT archive, or more descriptors, becomes scatter
maps of the elites by each pair of descriptors, placed by their real values, with axes
widened to hold every value. Without the engine's archive, the admitted candidates'
features are binned the same way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Axis:
    """One MAP-Elites descriptor: its range, bins and scale (as the engine declares it)."""

    name: str
    low: float
    high: float
    bins: int
    scale: str = "linear"  # or "log"

    def bin(self, value: float) -> int:
        if self.scale == "log":
            lo, hi, v = math.log2(self.low), math.log2(self.high), math.log2(max(value, 1e-300))
        else:
            lo, hi, v = self.low, self.high, value
        t = (v - lo) / (hi - lo)
        return min(max(int(math.floor(t * self.bins)), 0), self.bins - 1)

    def outside(self, value: float) -> bool:
        return value < self.low or value > self.high

    def value(self, unit: float) -> float:
        """The descriptor value at `unit` in [0, 1] of its range (as the archive normalises it)."""
        if self.scale == "log":
            return 2 ** (math.log2(self.low) + unit * (math.log2(self.high) - math.log2(self.low)))
        return self.low + unit * (self.high - self.low)


def _axes(raw: Any) -> list[Axis]:
    """Axes from a list of {name, low, high, bins, scale}; malformed entries are skipped."""
    axes = []
    for item in raw if isinstance(raw, list) else []:
        try:
            scale = "log" if item.get("scale") == "log" else "linear"
            axis = Axis(str(item["name"]), float(item["low"]), float(item["high"]), int(item.get("bins", 10)), scale)
        except (KeyError, TypeError, ValueError):
            continue
        if axis.high > axis.low and axis.bins >= 1 and (axis.scale == "linear" or axis.low > 0):
            axes.append(axis)
    return axes


def _pairs(axes: list[Axis]) -> list[tuple[Axis, Axis | None]]:
    return ([(a, b) for i, a in enumerate(axes) for b in axes[i + 1 :]] or [(a, None) for a in axes])[:6]


def _seen(values: Iterable[float]) -> list[float] | None:
    values = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return [min(values), max(values)] if values else None


@dataclass(frozen=True)
class Elite:
    """One cell's occupant: candidate id, score, real feature values, and its grid cell if known."""

    id: int
    score: float
    features: dict[str, float]
    cell: tuple[int, int] | None = None


def grid_map(fx: Axis, fy: Axis | None, elites: Iterable[Elite]) -> dict[str, Any]:
    """A heat map of the best score per cell (rows y, columns x) and how many elites each held;
    `outside[j][i]` marks a cell whose best elite lies beyond the declared range."""
    ny = fy.bins if fy else 1
    best: list[list[float | None]] = [[None] * fx.bins for _ in range(ny)]
    best_id: list[list[int | None]] = [[None] * fx.bins for _ in range(ny)]
    count = [[0] * fx.bins for _ in range(ny)]
    outside = [[False] * fx.bins for _ in range(ny)]
    elites = list(elites)
    for e in elites:
        x, y = e.features.get(fx.name), e.features.get(fy.name) if fy else None
        i, j = e.cell if e.cell is not None else (fx.bin(x), fy.bin(y) if fy else 0)
        count[j][i] += 1
        if best[j][i] is None or e.score > best[j][i]:
            best[j][i], best_id[j][i] = e.score, e.id
            outside[j][i] = (x is not None and fx.outside(x)) or (fy is not None and y is not None and fy.outside(y))
    seen = {"seen_x": _seen(e.features.get(fx.name) for e in elites)}
    seen["seen_y"] = _seen(e.features.get(fy.name) for e in elites) if fy else None
    axes = {"x": asdict(fx), "y": asdict(fy) if fy else None}
    return {"type": "heatmap", **axes, "best": best, "best_id": best_id, "count": count, "outside": outside, **seen}


def scatter_map(
    fx: Axis, fy: Axis | None, elites: Iterable[Elite], centres: list[list[float]] | None = None
) -> dict[str, Any]:
    """Elites placed by their real values of two descriptors (or one and the score), over the
    archive's cell centres (`centres`: one [x, y] per cell, in real values) if it has them."""
    shown = [e for e in elites if fx.name in e.features and (fy is None or fy.name in e.features)]
    return {
        "centres": centres if fy is not None else None,
        "type": "scatter",
        "x": asdict(fx),
        "y": asdict(fy) if fy else None,
        "px": [e.features[fx.name] for e in shown],
        "py": [e.features[fy.name] if fy else e.score for e in shown],
        "score": [e.score for e in shown],
        "id": [e.id for e in shown],
    }


def elites_from_engine(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Maps of the engine's own MAP-Elites archive (state key `elites`)."""
    axes = _axes(state.get("dimensions"))
    filled = [e for e in state.get("filled") or [] if isinstance(e, dict) and e.get("score") is not None]
    if not axes:
        return []
    grid = state.get("kind") == "grid" and len(axes) <= 2 and all(len(e.get("grid") or []) == len(axes) for e in filled)
    cell = (lambda e: (e["grid"][0], e["grid"][1] if len(axes) > 1 else 0)) if grid else (lambda e: None)
    elites = [Elite(e["id"], e["score"], e.get("features") or {}, cell(e)) for e in filled]
    if grid:
        return [grid_map(axes[0], axes[1] if len(axes) > 1 else None, elites)]
    centroids = [c for c in state.get("centroids") or [] if isinstance(c, list) and len(c) == len(axes)]
    position = {a.name: k for k, a in enumerate(axes)}

    def centres(fx: Axis, fy: Axis | None) -> list[list[float]] | None:
        if not centroids or fy is None:
            return None
        i, j = position[fx.name], position[fy.name]
        return [[round(fx.value(c[i]), 6), round(fy.value(c[j]), 6)] for c in centroids]

    return [scatter_map(fx, fy, elites, centres(fx, fy)) for fx, fy in _pairs(axes)]


def elites_from_candidates(
    ids: Sequence[int],
    scores: Sequence[float | None],
    valid: Sequence[bool],
    features: Sequence[dict[str, float]],
    declared: Any = None,
) -> list[dict[str, Any]]:
    """Without the engine's archive: bin the valid candidates' features into grids, by the
    declared axes if given, else by each feature's observed range in 10 bins."""
    axes = _axes(declared)
    if not axes:
        seen: dict[str, list[float]] = defaultdict(list)
        for f in features:
            for name, value in f.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    seen[name].append(float(value))
        axes = [Axis(n, min(v), max(v) if max(v) > min(v) else min(v) + 1.0, 10) for n, v in sorted(seen.items())]
    maps = []
    for fx, fy in _pairs(axes):
        elites = [
            Elite(cid, score, f)
            for cid, score, ok, f in zip(ids, scores, valid, features, strict=True)
            if ok and score is not None and fx.name in f and (fy is None or fy.name in f)
        ]
        maps.append(grid_map(fx, fy, elites))
    return maps
