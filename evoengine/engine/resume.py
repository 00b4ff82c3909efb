"""The resume snapshot: the ledger's derived state (archive, novelty memory, what the proposer
learnt, the prompts' recent failures) written to the store every `SNAPSHOT_EVERY` closings and
at a clean stop, so that a resumed run restores it and replays only the closings after it.

A snapshot names candidates by id (the store holds their texts), so it stays small however
long the run: a few thousand ids, whatever the number of candidates. It is trusted only when
the store still agrees with it (`RunStore.resume_point`: the admission it follows is the last
among the closings it covers) and it was taken under the same derived-state settings
(`fingerprint`: seed, islands, elites, novelty, bandit, operators, the problem's features, the
proposer's arms, the evoengine version); otherwise the run replays every closing, as before.
Restoring and replaying give the same state (tests/test_resume.py compares them).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from ..archive import Archive
from ..novelty import Novelty

if TYPE_CHECKING:
    from .ledger import Ledger

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 200  # closings between two snapshots: a resume replays at most this many
FORMAT = 1  # bumped when what a snapshot holds changes


def fingerprint(ledger: Ledger, arms: list[str]) -> str:
    """What the derived state depends on besides the closings themselves."""
    from .. import __version__

    config, problem = ledger.config, ledger.problem
    parts = {
        "format": FORMAT,
        "version": __version__,
        "seed": config.seed,
        "sections": {name: getattr(config, name).dump() for name in _SECTIONS},
        "features": [[f.name, f.low, f.high, f.bins] for f in problem.features],
        "language": problem.language,
        "arms": arms,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


_SECTIONS = ("islands", "elites", "novelty", "bandit", "operators")


def capture(ledger: Ledger, learner: Any) -> str:
    """The ledger's derived state as JSON (`learner` is the proposer, with `state()`)."""
    return json.dumps(
        {
            "closed": ledger.closed,
            "ledger": {
                "seed_score": ledger.seed_score,
                "start_score": ledger.start_score,
                "failures": [[island, list(lines)] for island, lines in ledger.failures.items() if lines],
                "kinds": dict(ledger.kinds),
                "rechecks": ledger.rechecks,
            },
            "archive": ledger.archive.state(),
            "novelty": ledger.novelty.state() if ledger.novelty is not None else None,
            "proposer": learner.state(),
        },
        separators=(",", ":"),
    )


def restore(ledger: Ledger, learner: Any, data: str) -> int | None:
    """Set the ledger's derived state from a snapshot; the number of closings it covers, or
    None (nothing changed) if it does not fit this run."""
    snap = json.loads(data)
    if (snap["novelty"] is None) != (ledger.novelty is None):
        return None
    ids = Archive.referenced(snap["archive"])
    if snap["novelty"] is not None:
        ids |= Novelty.referenced(snap["novelty"])
    by_id = ledger.store.candidates_by_id(ids)
    if len(by_id) != len(ids):
        log.warning("the resume snapshot names candidates the store does not hold; replaying every closing")
        return None
    ledger.archive.restore(snap["archive"], by_id)
    if ledger.novelty is not None:
        ledger.novelty.restore(snap["novelty"], by_id)
    learner.restore(snap["proposer"])
    own = snap["ledger"]
    ledger.closed = snap["closed"]
    ledger.seed_score, ledger.start_score = own["seed_score"], own["start_score"]
    for island, lines in own["failures"]:
        ledger.failures[island].extend(lines)
    ledger.kinds.update(own["kinds"])
    ledger.rechecks = own.get("rechecks", 0)  # snapshots written before rechecks had none
    ledger.behaviours.restore()
    return ledger.closed
