"""MAP-Elites: the best candidate found in each cell of a descriptor space.

The descriptors are the problem's declared features (`Problem.features`, values from
`candidate.features`) followed by the built-ins named in `config.elites.builtin`:
"length" (characters of the text) and "complexity" (distinct tokens: Halstead's
vocabulary). Built-ins are log-scaled over [x0/4, 4·x0] where x0 is the value for the
first admitted candidate (the seed), so the bins resolve the changes a search makes
around its start; values outside a range land in the edge cells. Every descriptor is
mapped to [0, 1] before it reaches the archive, so CVT distances weigh them equally.

Up to two descriptors (and `kind: grid`) make a grid of `bins` per descriptor; more than
two, or `kind: cvt`, make a centroidal Voronoi tessellation of `config.elites.cells` cells
whose centroids come from k-means over uniform samples of the unit box, seeded by the
run's seed. A better candidate replaces a cell's elite; an equal or worse one does not.

Why not pyribs: we used it first (`GridArchive` / `CVTArchive` with the candidate id as an
extra field), and per add it fit (~60 µs). But importing it cost 2 s, 3 s with PyTorch
installed (pyribs then imports it), which was most of a run's start-up: 4-6 s in
`benchmarks/engine_overhead.py`, against a target of keeping the model busy from the first
second. What we need of it is small — a cell index per candidate and a "better than the
cell's elite" test — so it is written here with numpy: a grid index is a ravelled bin
index; a CVT cell is the nearest of `cells` centroids found by seeded Lloyd iterations
(k-means) over uniform samples of the unit box. The candidates themselves stay here, one
per filled cell: memory is bounded by the number of cells, not by the length of the run.
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Elites as ElitesConfig
from ..problem import Problem
from ..records import Candidate

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\w+|[^\w\s]")
_CVT_SAMPLES_PER_CELL = 100


def text_length(text: str) -> float:
    return float(len(text))


def text_complexity(text: str) -> float:
    """Halstead's vocabulary: distinct operands (words, numbers) and operator characters.

    Language-agnostic and ~0.1 ms for 2 KB; counting Python AST nodes instead cost
    ~3 ms per candidate with `ast.walk` and mostly restated the length.
    """
    return float(len(set(_TOKEN.findall(text))))


BUILTINS = {"length": text_length, "complexity": text_complexity}


@dataclass(frozen=True)
class Dimension:
    """One descriptor axis: its range, bins and whether it is log-scaled."""

    name: str
    low: float
    high: float
    bins: int
    log: bool = False
    builtin: bool = False

    def unit(self, value: float) -> float:
        """`value` mapped to [0, 1] over this axis (clipped at the ends)."""
        if self.log:
            lo, hi, v = math.log2(self.low), math.log2(self.high), math.log2(max(value, 1e-300))
        else:
            lo, hi, v = self.low, self.high, value
        return min(max((v - lo) / (hi - lo), 0.0), 1.0)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "low": self.low,
            "high": self.high,
            "bins": self.bins,
            "scale": "log" if self.log else "linear",
            "builtin": self.builtin,
        }


@dataclass(frozen=True)
class Elite:
    cell: int
    candidate: Candidate
    values: dict[str, float]  # descriptor values in their own units


@dataclass(frozen=True)
class Placement:
    """What adding a candidate did: took an empty cell ("new") or beat its elite ("improved")."""

    cell: int
    status: str
    replaced: int | None


class _Cells:
    """How descriptor vectors in [0, 1]^d map to cells: a grid or a centroidal tessellation."""

    def __init__(self, bins: list[int] | None = None, centroids: np.ndarray | None = None):
        self.bins = bins
        self.centroids = centroids
        self.cells = int(np.prod(bins)) if bins is not None else len(centroids)

    @classmethod
    def cvt(cls, dims: int, cells: int, samples: int, seed: int, iterations: int = 25) -> _Cells:
        rng = np.random.default_rng(seed)
        points = rng.random((samples, dims))
        centroids = points[rng.choice(samples, size=cells, replace=False)].copy()
        for _ in range(iterations):
            nearest = _nearest(points, centroids)
            counts = np.bincount(nearest, minlength=cells)[:, None]
            sums = np.stack([np.bincount(nearest, weights=points[:, j], minlength=cells) for j in range(dims)], 1)
            centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        return cls(centroids=centroids)

    def index(self, measures: np.ndarray) -> int:
        if self.bins is not None:
            coords = np.clip((measures * self.bins).astype(int), 0, np.array(self.bins) - 1)
            return int(np.ravel_multi_index(tuple(coords), self.bins))
        return int(_nearest(measures[None, :], self.centroids)[0])

    def grid_index(self, cell: int) -> list[int]:
        return [int(i) for i in np.unravel_index(cell, self.bins)]


# OpenBLAS spreads a product of more than 2**18 multiply-adds over threads, which spin; on a
# busy machine that made the CVT (on the path to a run's first request) up to 6x slower. Blocks of
# rows below that stay on one thread and give the very same distances (one dot product each).
# They share one buffer: a fresh block (~0.7 MB) each time is a fresh mapping from the allocator
# in a young process, whose pages are faulted in one by one (a large part of the CVT's start-up cost).
_BLOCK = 2**18


def _nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of each point's nearest centroid: argmin |c|² - 2 p·c (|p|² is the same for all c)."""
    scaled, lengths = -2.0 * centroids.T, (centroids**2).sum(1)
    rows = max(1, _BLOCK // max(1, centroids.size))
    nearest = np.empty(len(points), dtype=np.intp)
    buffer = np.empty((min(rows, len(points)), len(centroids)))
    for start in range(0, len(points), rows):
        block = points[start : start + rows]
        d = np.matmul(block, scaled, out=buffer[: len(block)])
        d += lengths
        nearest[start : start + rows] = d.argmin(1)
    return nearest


class EliteArchive:
    """A MAP-Elites archive over the problem's features and the built-in descriptors."""

    def __init__(self, config: ElitesConfig, problem: Problem, seed: int = 0):
        self.config = config
        self.problem = problem
        self.seed = seed
        self.dimensions: list[Dimension] = []
        self.kind = "grid"
        self._cells: _Cells | None = None  # built from the first candidate (`anchor`)
        self._elites: dict[int, Elite] = {}
        self._filled: list[int] = []  # cells in the order they were first filled
        self._floor = math.inf  # lowest valid score seen (the default qd_score offset)
        self.new = 0
        self.improved = 0
        self.missing = 0

    # ------------------------------------------------------------- building

    @property
    def ready(self) -> bool:
        return self._cells is not None

    def anchor(self, text: str, centroids: list[list[float]] | None = None) -> None:
        """Fix the built-in ranges from the first candidate's text and build the archive
        (with `centroids`, a restored state's, instead of computing them again)."""
        if self.ready:
            return
        dims = [Dimension(f.name, f.low, f.high, f.bins) for f in self.problem.features]
        for name in self.config.builtin:
            x0 = max(BUILTINS[name](text), 16.0)
            dims.append(Dimension(name, x0 / 4, x0 * 4, self.config.bins, log=True, builtin=True))
        self.dimensions = dims
        if not dims:
            return
        if self.config.kind == "cvt" or len(dims) > 2:
            self.kind = "cvt"
            samples = min(50_000, _CVT_SAMPLES_PER_CELL * self.config.cells)
            if centroids is not None:
                self._cells = _Cells(centroids=np.array(centroids, dtype=np.float64))
            else:
                self._cells = _Cells.cvt(len(dims), self.config.cells, samples, self.seed)
        else:
            self._cells = _Cells(bins=[d.bins for d in dims])

    @property
    def cells(self) -> int:
        return self._cells.cells if self._cells is not None else 0

    def __len__(self) -> int:
        return len(self._elites)

    # ------------------------------------------------------------- admitting

    def values_of(self, candidate: Candidate) -> dict[str, float] | None:
        """Descriptor values in their own units; None if the evaluator left a feature out."""
        values = {}
        for d in self.dimensions:
            if d.builtin:
                values[d.name] = BUILTINS[d.name](candidate.text)
            elif d.name in candidate.features:
                values[d.name] = float(candidate.features[d.name])
            else:
                return None
        return values

    def add(self, candidate: Candidate) -> Placement | None:
        """Offer a valid candidate to its cell; returns what changed, or None."""
        self.anchor(candidate.text)
        self._floor = min(self._floor, candidate.fitness())
        if not self.ready:
            return None
        values = self.values_of(candidate)
        if values is None:
            if self.missing == 0:
                log.warning(
                    "candidate %d has no value for some of the features %s; it is kept out of the MAP-Elites archive",
                    candidate.id,
                    [d.name for d in self.dimensions if not d.builtin],
                )
            self.missing += 1
            return None
        measures = np.array([d.unit(values[d.name]) for d in self.dimensions])
        cell = self._cells.index(measures)
        old = self._elites.get(cell)
        if old is not None and not candidate.fitness() > old.candidate.fitness():
            return None
        self._elites[cell] = Elite(cell, candidate, values)
        if old is None:
            self._filled.append(cell)
            self.new += 1
            return Placement(cell, "new", None)
        self.improved += 1
        return Placement(cell, "improved", old.candidate.id)

    # --------------------------------------------------------------- resume

    def state(self) -> dict[str, Any]:
        """The filled cells as (cell, candidate id, descriptor values) in the order they were
        filled, and the counters (JSON-ready); the cells themselves come from `anchor`."""
        elites = [[c, self._elites[c].candidate.id, self._elites[c].values] for c in self._filled]
        state = {"elites": elites, "floor": self._floor, "counters": [self.new, self.improved, self.missing]}
        if self._cells is not None and self._cells.centroids is not None:
            state["centroids"] = self._cells.centroids.tolist()  # exact: k-means is not run again on resume
        return state

    def restore(self, state: dict[str, Any], by_id: dict[int, Candidate]) -> None:
        """Set the archive to a `state()` taken earlier (after `anchor` with the same seed text
        and the state's centroids)."""
        self._elites = {cell: Elite(cell, by_id[cid], values) for cell, cid, values in state["elites"]}
        self._filled = [cell for cell, _, _ in state["elites"]]
        self._floor = float(state["floor"])
        self.new, self.improved, self.missing = state["counters"]

    # -------------------------------------------------------------- reading

    def sample(self, rng: random.Random) -> Elite | None:
        """The elite of a uniformly drawn filled cell."""
        if not self._filled:
            return None
        return self._elites[self._filled[rng.randrange(len(self._filled))]]

    def elites(self) -> list[Elite]:
        return [self._elites[c] for c in self._filled]

    def qd_offset(self) -> float:
        if self.config.qd_offset is not None:
            return float(self.config.qd_offset)
        return self._floor if math.isfinite(self._floor) else 0.0

    def stats(self) -> dict[str, Any]:
        filled = len(self._elites)
        offset = self.qd_offset()
        scores = [e.candidate.fitness() for e in self._elites.values()]
        return {
            "enabled": True,
            "kind": self.kind,
            "dimensions": [d.name for d in self.dimensions],
            "cells": self.cells,
            "filled": filled,
            "coverage": filled / self.cells if self.cells else 0.0,
            "qd_score": float(sum(s - offset for s in scores)),
            "qd_offset": offset,
            "best_score": max(scores) if scores else None,
            "new_cells": self.new,
            "improvements": self.improved,
            "missing_features": self.missing,
        }

    def map(self) -> dict[str, Any]:
        """The dimensions and every filled cell, for reports."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "dimensions": [d.describe() for d in self.dimensions],
            "cells": self.cells,
            "qd_offset": self.qd_offset(),
            "filled": [],
        }
        if self.kind == "cvt" and self._cells is not None:
            out["centroids"] = np.round(self._cells.centroids, 6).tolist()
        for cell in sorted(self._elites):
            elite = self._elites[cell]
            entry = {
                "index": cell,
                "id": elite.candidate.id,
                "score": elite.candidate.score,
                "features": dict(elite.values),
            }
            if self.kind == "grid":
                entry["grid"] = self._cells.grid_index(cell)
            out["filled"].append(entry)
        return out
