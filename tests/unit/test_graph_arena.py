"""The co-visitation graph's arena keeps what a dict per row kept, through growth,
compaction, pruning and snapshots, and a list's candidates are what the per-row
arrays gave (`tests/unit/test_kernels.py` holds the sums to numpy's)."""

from __future__ import annotations

import heapq
from operator import itemgetter

import numpy as np
import pytest

from streamrec.core.ranking.covisit import CoVisitation
from tests.unit.test_kernels import reference_merge


def _learn_with_reference(graph: CoVisitation, events: int, items: int, seed: int):
    """Learn a zipf-like session stream into `graph` and into a dict per row."""
    rng = np.random.default_rng(seed)
    ref: dict[int, dict[int, float]] = {}
    mass: dict[int, float] = {}
    limit = graph.max_neighbours + graph.max_neighbours // 2
    session: list[int] = []
    for _ in range(events):
        row = int(rng.zipf(1.3) % items)
        weight = float(rng.choice([1.0, 2.0, 4.0]))
        for other, w in graph.pairs(row, session, weight):
            mass[row] = mass.get(row, 0.0) + w
            mass[other] = mass.get(other, 0.0) + w
            for a, b in ((other, row),) if graph.directed else ((row, other), (other, row)):
                nb = ref.setdefault(a, {})
                nb[b] = nb.get(b, 0.0) + w
                if len(nb) > limit:
                    ref[a] = dict(heapq.nlargest(graph.max_neighbours, nb.items(),
                                                 key=itemgetter(1)))  # fmt: skip
        graph.add(row, session, weight)
        session = ([] if rng.random() < 0.05 else [*session, row])[-8:]
    return ref, mass


def _same(graph: CoVisitation, ref: dict[int, dict[int, float]]) -> None:
    assert graph.linked_rows().tolist() == list(ref)
    for r, nb in ref.items():
        assert list(graph.weights(r).items()) == list(nb.items())
    src, dst, w = graph.pair_arrays()
    assert src.tolist() == [a for a, nb in ref.items() for _ in nb]
    assert dst.tolist() == [b for nb in ref.values() for b in nb]
    assert w.tolist() == [x for nb in ref.values() for x in nb.values()]


@pytest.mark.parametrize("directed", [False, True])
def test_growth_moves_and_compaction_keep_every_weight_in_order(directed):
    graph = CoVisitation(window=6, max_neighbours=40, directed=directed)
    ref, mass = _learn_with_reference(graph, 30_000, 2_000, seed=5)
    # Blocks moved many times and the arena was compacted: nothing was lost.
    assert len(graph._nbr) > 1024 and any(len(nb) == 40 for nb in ref.values())
    _same(graph, ref)
    rows = np.array(list(mass))
    assert np.array_equal(graph.mass[rows], np.array(list(mass.values())))


def test_a_snapshot_restores_the_same_graph_and_it_keeps_learning_the_same():
    graph = CoVisitation(window=4, max_neighbours=12)
    ref, _mass = _learn_with_reference(graph, 5_000, 400, seed=9)
    back = CoVisitation.from_state(graph.state())
    _same(back, ref)
    # Both go on learning the same stream: still the same (rows past the snapshot too).
    for g in (graph, back):
        for row, prev in [(401, [3, 5]), (3, [401]), (7, [8, 9, 401])] * 40:
            g.add(row, prev, 1.0)
    assert graph.state()["src"].tolist() == back.state()["src"].tolist()
    assert graph.state()["w"].tolist() == back.state()["w"].tolist()


def test_a_row_written_in_two_runs_takes_the_later_weights():
    state = CoVisitation(window=2, max_neighbours=10).state()
    state.update(
        src=np.array([1, 1, 2, 1, 1]),
        dst=np.array([5, 6, 7, 6, 8]),
        w=np.array([1.0, 2.0, 3.0, 9.0, 0.5]),
    )
    graph = CoVisitation.from_state(state)
    assert graph.weights(1) == {5: 1.0, 6: 9.0, 8: 0.5}
    assert graph.weights(2) == {7: 3.0}
    assert graph.linked_rows().tolist() == [1, 2]
    graph.add(1, [5], 1.0)  # the strongest is still known: 6
    rows, scores, _first, _cos = graph.candidates(np.array([1]), 1)
    assert dict(zip(rows.tolist(), scores.tolist(), strict=True)) == {5: 2 / 9, 6: 1.0, 8: 0.5 / 9}


@pytest.mark.parametrize("prior", [0.0, 3.0])
def test_candidates_are_the_sums_of_the_anchors_neighbours(prior):
    graph = CoVisitation(window=5, max_neighbours=30, prior=prior)
    _learn_with_reference(graph, 8_000, 600, seed=2)
    rng = np.random.default_rng(4)
    for _ in range(200):
        recent = rng.choice(650, int(rng.integers(1, 30)), replace=False)  # some never seen
        anchors = int(rng.integers(1, 25))
        got = graph.candidates(recent, anchors, cosine=True)
        parts_r, parts_w, ranks, maxes, used = [], [], [], [], []
        for rank, a in enumerate(recent[::-1][:anchors].tolist()):
            nbr, w = graph.neighbours(a)
            if len(nbr):
                parts_r.append(nbr), parts_w.append(w), ranks.append(rank)
                maxes.append(float(w.max()) + prior), used.append(a)
        if not parts_r:
            assert all(len(x) == 0 for x in got)
            continue
        rows, sums, first, cos = reference_merge(
            parts_r, parts_w, ranks, maxes, used, graph.mass, True
        )
        assert np.array_equal(got[0], rows) and np.array_equal(got[2], first)
        assert np.array_equal(got[1], sums / sums.max())
        assert np.array_equal(got[3], cos / cos.max())
