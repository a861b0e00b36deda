"""The co-visitation graph's factors: what they learn, when they refresh, that lists do
not depend on batching, and what they cost nobody who turns them off."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.ranking.covisit import CoVisitation
from streamrec.core.ranking.factors import GraphFactors
from streamrec.core.ranking.models import FEATURES
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from tests.unit.test_engine import NOW, raw_batch


def two_shops(n: int = 40) -> CoVisitation:
    """Items 0..n-1 and n..2n-1: two groups that are never visited together."""
    g = CoVisitation(window=3, max_neighbours=50)
    rng = np.random.default_rng(1)
    for _ in range(4_000):
        base = 0 if rng.random() < 0.5 else n
        a, b = rng.integers(0, n, 2)
        if a != b:
            g.add(int(base + b), [int(base + a)], 1.0)
    return g


def test_items_of_the_users_part_of_the_graph_score_higher():
    g = two_shops()
    f = GraphFactors(dim=2, every=1)
    f.refresh(g, 80)
    # The user had items 0 and 1: 39 is in their part of the graph, 79 in the other.
    s = f.scores(np.array([39, 79]), np.array([0, 1]))
    assert s[0] > 0.5 and abs(s[1]) < 0.05, s
    assert f.scores(np.array([39]), np.zeros(0, dtype=np.int64)).tolist() == [0.0]  # no history


def test_refreshes_come_every_n_learned_events_and_follow_the_graph():
    g = two_shops()
    f = GraphFactors(dim=4, every=3)
    assert [f.on_learned(g, 80) for _ in range(7)] == [False, False, True] * 2 + [False]
    assert f.refreshes == 2 and f.q.shape == (80, 4)
    assert np.allclose(f.q.T @ f.q, np.eye(4), atol=1e-8)  # an orthonormal basis
    off = GraphFactors(dim=0)
    assert not any(off.on_learned(g, 80) for _ in range(10)) and len(off.q) == 0
    folded = GraphFactors(dim=4, every=3)  # another worker's 4 events, then 1 more, then 1
    assert [folded.on_learned(g, 80, n) for n in (4, 1, 1)] == [True, False, True]
    assert folded.learned == 6 and folded.refreshes == 2
    tiny = GraphFactors(dim=32, every=1)
    tiny.refresh(g, 40)  # fewer than 2 x dim items: nothing to factor yet
    assert len(tiny.q) == 0
    capped = GraphFactors(dim=4, every=1, max_pairs=10)  # a graph too large to refresh inline
    capped.refresh(g, 80)
    assert len(capped.q) == 0 and capped.stats()["skipped"] == 1


def test_a_snapshot_with_factors_of_another_dim_is_dropped_not_misread():
    g = two_shops()
    f = GraphFactors(dim=4, every=1)
    f.refresh(g, 80)
    back = GraphFactors(dim=8)
    back.restore(f.state(), f.q, np.arange(80))
    assert len(back.q) == 0 and back.refreshes == 0 and back.learned == f.learned
    same = GraphFactors(dim=4)
    same.restore(f.state(), f.q, np.arange(80)[::-1])  # rows are mapped, not assumed
    assert np.allclose(same.q[::-1], f.q)


def test_factors_refresh_and_lists_do_not_depend_on_the_batch_size():
    msgs = raw_batch(n=400, bad=0)
    s = Settings.from_env({}, factors_dim=4, factors_every=50)
    one, many = build_engine(s), build_engine(s)
    a, b, store1, store = [], [], DictProfileStore(), DictProfileStore()
    for msg in msgs:
        a += one.process_batch([msg], store1, NOW).recommendations
    for i in range(0, len(msgs), 7):
        b += many.process_batch(msgs[i : i + 7], store, NOW).recommendations
    assert one.recommender.factors.refreshes >= 4
    assert np.array_equal(one.recommender.factors.q, many.recommender.factors.q)
    # Each batch's list for a user is the one after their last event in it.
    after = {r.event_id: r.items for r in a}
    assert [r.items for r in b] == [after[r.event_id] for r in b]
    # Features are appended: older snapshots' columns keep their places.
    assert FEATURES[-2:] == ("factors", "regression")


def test_bad_factor_settings_say_what_to_fix():
    with pytest.raises(ConfigError, match="FACTORS_DIM"):
        Settings.from_env({"STREAMREC_FACTORS_DIM": "-1"})
    with pytest.raises(ConfigError, match="FACTORS_EVERY"):
        Settings.from_env({"STREAMREC_FACTORS_EVERY": "0"})


def test_the_graphs_pair_arrays_are_its_pairs():
    g = two_shops(10)

    def pairs() -> dict[tuple[int, int], float]:
        src, dst, w = g.pair_arrays()
        return dict(zip(zip(src.tolist(), dst.tolist(), strict=True), w.tolist(), strict=True))

    state = g.state()
    expected = zip(zip(state["src"].tolist(), state["dst"].tolist(), strict=True),
                   state["w"].tolist(), strict=True)  # fmt: skip
    before = pairs()
    assert before == dict(expected)
    g.add(3, [4], 1.0)  # a changed row is read again, not taken from the cache
    after = pairs()
    assert after[(3, 4)] == before.get((3, 4), 0.0) + 1.0
    assert after[(4, 3)] == before.get((4, 3), 0.0) + 1.0
    assert len(CoVisitation().pair_arrays()[0]) == 0
