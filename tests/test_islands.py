"""Island model: seeding, capped populations, migration along topologies, resets, bounded memory."""

from __future__ import annotations

import random

import pytest

from evoengine.archive import Archive
from evoengine.config import Config, load_config
from evoengine.problem import Problem
from evoengine.records import Candidate

PROBLEM = Problem(name="toy", description="toy", initial="seed.py")


def config(**islands) -> Config:
    base = {
        "count": 4,
        "population": 50,
        "topology": "ring",
        "migration_interval": 1000,
        "migration_size": 1,
        "reset_interval": None,
    }
    return Config(**{"islands": {**base, **islands}, "elites": {"enabled": False}})


def seed(score: float = 0.0) -> Candidate:
    return Candidate(0, "seed = 0\n", operator="seed", score=score, valid=True)


class Feeder:
    """Makes children with increasing ids."""

    def __init__(self, start: int = 1):
        self.next_id = start

    def child(self, island: int, score: float | None, parent: int = 0, text: str | None = None) -> Candidate:
        cid = self.next_id
        self.next_id += 1
        return Candidate(
            cid,
            text or f"x = {cid}\n",
            parents=(parent,),
            island=island,
            operator="diff",
            score=score,
            valid=score is not None,
        )


def ids(archive: Archive, island: int) -> list[int]:
    return [c.id for c in archive.members(island)]


def test_seed_goes_to_every_island_and_children_only_to_theirs():
    archive = Archive(config(), PROBLEM)
    archive.admit(seed())
    assert [ids(archive, i) for i in range(4)] == [[0], [0], [0], [0]]
    feed = Feeder()
    archive.admit(feed.child(2, 1.0))
    assert [ids(archive, i) for i in range(4)] == [[0], [0], [1, 0], [0]]
    assert archive.best().id == 1


def test_full_island_evicts_its_worst_never_its_best():
    archive = Archive(config(count=1, population=3), PROBLEM)
    archive.admit(seed(score=5.0))
    feed = Feeder()
    for score in (1.0, 3.0, 2.0):
        archive.admit(feed.child(0, score))
    # cap 3: the worst (score 1.0, id 1) went; the best (the seed) stays
    assert ids(archive, 0) == [0, 2, 3]
    archive.admit(feed.child(0, 0.5))  # worse than everyone: does not stay
    assert ids(archive, 0) == [0, 2, 3]
    archive.admit(feed.child(0, 9.0))
    assert ids(archive, 0) == [5, 0, 2]
    assert len(archive.members(0)) == 3


def test_a_best_scored_again_lower_moves_down_everywhere_and_the_best_scored_twice_takes_its_place():
    # A noisy evaluator's best that drew a lucky sample, scored again (`evaluation.rechecks`).
    archive = Archive(config(count=2, population=3), PROBLEM)
    lucky = seed(score=5.0)
    archive.admit(lucky)
    feed = Feeder()
    for island, score in ((0, 3.0), (1, 4.0), (0, 2.0), (0, 1.0)):
        archive.admit(feed.child(island, score))
    assert ids(archive, 0) == [0, 1, 3] and ids(archive, 1) == [0, 2] and archive.best() is lucky
    archive.rescore(lucky, 2.5, {"rechecks": 1.0})
    assert ids(archive, 0) == [1, 0, 3] and ids(archive, 1) == [2, 0]
    assert lucky.score == 2.5 and lucky.metrics == {"rechecks": 1.0}
    # Candidates 1 and 2 score higher on one sample each, mostly luck among many alike: the
    # best stays the one scored twice until another is.
    assert archive.best() is lucky
    archive.rescore(archive.members(1)[0], 3.5, {"rechecks": 1.0})  # candidate 2, challenged
    assert archive.best().id == 2 and archive.select(random.Random(0)).parent.id in {0, 1, 2, 3}
    archive.admit(feed.child(0, 2.7))  # lands between the two, the lucky one now last but one
    assert ids(archive, 0) == [1, 5, 0]
    archive.rescore(archive.members(0)[0], 4.5, {"rechecks": 1.0})  # a higher mean makes a best of 1
    assert archive.best().id == 1 and ids(archive, 0) == [1, 5, 0]
    # A resume snapshot taken before a rescore is restored in the order of the latest scores.
    state = archive.state()
    archive.rescore(archive.members(0)[0], 0.5, {"rechecks": 2.0})
    assert archive.best().id == 2  # the best of those scored more than once
    restored = Archive(config(count=2, population=3), PROBLEM)
    restored.restore(state, {c.id: c for i in range(2) for c in archive.members(i)})
    assert ids(restored, 0) == [5, 0, 1] == ids(archive, 0)


def test_island_of_one_keeps_the_better_candidate():
    archive = Archive(config(count=1, population=1), PROBLEM)
    archive.admit(seed(score=1.0))
    feed = Feeder()
    archive.admit(feed.child(0, 0.0))
    assert ids(archive, 0) == [0]
    archive.admit(feed.child(0, 2.0))
    assert ids(archive, 0) == [2]


def test_invalid_candidates_stay_out_of_populations_but_are_counted():
    archive = Archive(config(), PROBLEM)
    archive.admit(seed())
    feed = Feeder()
    for _ in range(12):
        archive.admit(feed.child(1, None))
    assert ids(archive, 1) == [0]
    stats = archive.stats()
    assert stats["invalid"] == 12 and stats["valid"] == 1
    assert stats["islands"][1]["invalid"] == 12 and stats["islands"][0]["invalid"] == 0


def test_migration_moves_the_best_to_ring_neighbours_only_at_the_interval():
    archive = Archive(config(topology="ring", migration_interval=10, migration_size=1), PROBLEM)
    archive.admit(seed())  # admission 1
    feed = Feeder()
    for island in range(4):  # admissions 2..5: island i's best scores 10 + i
        archive.admit(feed.child(island, 10.0 + island))
    for _ in range(4):  # admissions 6..9: filler, worse than the seed
        archive.admit(feed.child(0, -1.0))
    best = {i: archive.members(i)[0] for i in range(4)}
    assert archive.stats()["migrations"] == 0
    assert all(best[i].id not in ids(archive, j) for i in range(4) for j in range(4) if j != i)

    events = archive.admit(feed.child(0, -1.0))  # admission 10: migration
    moves = {(e.data["source"], e.data["target"]): e.data["ids"] for e in events if e.kind == "migration"}
    assert moves == {(i, j): [best[i].id] for i in range(4) for j in ((i + 1) % 4, (i - 1) % 4)}
    for i in range(4):
        neighbours = {(i + 1) % 4, (i - 1) % 4}
        for j in range(4):
            assert (best[i].id in ids(archive, j)) == (j == i or j in neighbours)
    # migrants are the same records: same id, lineage and origin island
    assert archive.members(1)[0] is best[2] and archive.members(1)[0].island == 2
    stats = archive.stats()
    assert stats["migrations"] == 1 and stats["migrants"] == 8

    for _ in range(9):  # admissions 11..19: nothing moves
        assert not [e for e in archive.admit(feed.child(0, -1.0)) if e.kind == "migration"]


def test_full_topology_sends_to_every_other_island_and_isolated_to_none():
    for topology, expect in (("full", 3), ("isolated", 0)):
        archive = Archive(config(topology=topology, migration_interval=5), PROBLEM)
        archive.admit(seed())
        feed = Feeder()
        events = []
        for island in range(4):
            events += archive.admit(feed.child(island, 10.0 + island))
        migrations = [e for e in events if e.kind == "migration"]
        assert len(migrations) == 4 * expect
        assert all(len(archive.members(i)) == 2 + expect for i in range(4))


def test_migration_size_zero_switches_migration_off():
    for size, moved in ((2, True), (0, False)):
        archive = Archive(config(topology="full", migration_interval=5, migration_size=size), PROBLEM)
        archive.admit(seed())
        feed = Feeder()
        events = [e for island in range(4) for e in archive.admit(feed.child(island, 10.0 + island))]
        assert any(e.kind == "migration" for e in events) == moved
        assert all(len(archive.members(i)) == (5 if moved else 2) for i in range(4))


def test_random_topology_sends_each_island_to_one_other_island_reproducibly():
    def run() -> list[tuple[int, int]]:
        archive = Archive(config(topology="random", migration_interval=5), PROBLEM)
        archive.admit(seed())
        feed = Feeder()
        pairs = []
        for step in range(40):
            for e in archive.admit(feed.child(step % 4, float(step))):
                if e.kind == "migration":
                    pairs.append((e.data["source"], e.data["target"]))
        return pairs

    pairs = run()
    assert pairs and all(s != t for s, t in pairs)
    assert len({t for s, t in pairs if s == 0}) > 1  # the target changes between rounds
    assert pairs == run()


def test_reset_refounds_the_weakest_half_from_a_survivors_best():
    archive = Archive(config(reset_interval=20, reset_fraction=0.5, population=10), PROBLEM)
    archive.admit(seed())
    feed = Feeder()
    strengths = {0: 1.0, 1: 5.0, 2: 2.0, 3: 7.0}  # islands 0 and 2 are the weakest
    for step in range(18):
        island = step % 4
        archive.admit(feed.child(island, strengths[island] - step * 0.01))
    before = {i: archive.members(i)[0].id for i in range(4)}
    events = archive.admit(feed.child(1, 0.0))  # admission 20: reset
    resets = [e.data for e in events if e.kind == "reset"]
    assert sorted(r["island"] for r in resets) == [0, 2]
    for r in resets:
        assert r["founder_island"] in (1, 3) and r["founder_id"] == before[r["founder_island"]]
        assert ids(archive, r["island"]) == [r["founder_id"]]
        assert r["evicted"] > 1
    assert archive.members(1)[0].id == before[1] and len(archive.members(3)) > 1
    assert archive.stats()["resets"] == 2


def test_resets_follow_admission_count_not_time():
    archive = Archive(config(reset_interval=7), PROBLEM)
    archive.admit(seed())
    feed = Feeder()
    at = []
    for n in range(2, 30):
        if any(e.kind == "reset" for e in archive.admit(feed.child(n % 4, float(n % 5)))):
            at.append(n)
    assert at == [7, 14, 21, 28]


def test_memory_stays_bounded_by_the_caps():
    cfg = config(count=3, population=20, topology="full", migration_interval=25, reset_interval=300)
    archive = Archive(cfg, PROBLEM)
    archive.admit(seed())
    feed = Feeder()
    rng = random.Random(0)
    for _ in range(3000):
        sel = archive.select(rng)
        score = rng.gauss(0, 1) if rng.random() < 0.9 else None
        archive.admit(feed.child(sel.island, score, parent=sel.parent.id))
    assert all(len(archive.members(i)) <= 20 for i in range(3))
    assert archive.islands.alive <= 60
    assert len(archive.islands._children) <= 60


@pytest.mark.parametrize("preset", ["ring", "full", "isolated", "funsearch"])
def test_island_presets_load_by_name(preset):
    cfg = load_config(overrides=[f"islands={preset}"])
    assert (
        cfg.islands.topology
        == {"ring": "ring", "full": "full", "isolated": "isolated", "funsearch": "isolated"}[preset]
    )
    if preset == "funsearch":
        assert cfg.islands.count == 10 and cfg.islands.reset_interval and cfg.islands.reset_fraction == 0.5
