"""The item-to-item regression (EASE): what it learns, when it refits, that lists do not
depend on batching, that it stays within its cap, and that bad settings say what to fix."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.ranking.regression import ItemRegression
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from tests.unit.test_engine import NOW, raw_batch


def learned(r: ItemRegression, histories: list[list[int]]) -> ItemRegression:
    for items in histories:
        for i, row in enumerate(items):
            r.add(row, r.pairs(row, items[:i]))
    return r


def test_it_matches_ease_on_the_users_co_occurrence():
    rng = np.random.default_rng(3)
    histories = [rng.choice(30, size=6, replace=False).tolist() for _ in range(200)]
    r = learned(ItemRegression(items=64, l2=10.0, window=50), histories)
    r.refresh(30)
    x = np.zeros((200, 30))
    for u, items in enumerate(histories):
        x[u, items] = 1
    p = np.linalg.inv(x.T @ x + 10.0 * np.eye(30))
    want = p / -np.diag(p)
    np.fill_diagonal(want, 0.0)
    assert np.array_equal(r.gram[:30, :30], x.T @ x)
    np.testing.assert_allclose(r.b, want, rtol=1e-5, atol=1e-6)


def test_an_item_explained_by_another_outranks_one_that_goes_with_everything():
    # 0 -> 1 is a real pair; 9 is had by every user whatever else they had.
    histories = [[0, 1, 9]] * 30 + [[2, 9], [3, 9], [4, 9], [5, 9]] * 10 + [[0, 9]] * 5
    r = learned(ItemRegression(items=16, l2=1.0), histories)
    r.refresh(16)
    s = r.scores(np.array([1, 2]), np.array([0]))
    assert s[0] == 1.0 and s[1] <= 0
    assert r.scores(np.array([1]), np.zeros(0, dtype=np.int64)).tolist() == [0.0]


def test_refits_come_every_n_learned_events_folded_ones_included():
    r = learned(ItemRegression(items=16, every=3), [[0, 1, 2, 3]])
    assert [r.on_learned(16) for _ in range(7)] == [False, False, True] * 2 + [False]
    assert r.refreshes == 2
    folded = ItemRegression(items=16, every=3)
    folded.add(1, folded.pairs(1, [0]))
    assert [folded.on_learned(16, n) for n in (4, 1, 1)] == [True, False, True]
    off = ItemRegression(items=0)
    assert off.pairs(1, [0]) == [] and not any(off.on_learned(16) for _ in range(5))


def test_rows_past_the_cap_are_not_modelled_and_memory_stays_bounded():
    r = ItemRegression(items=100, window=5)
    for row in range(0, 5_000, 7):
        r.add(row, r.pairs(row, [row - 7, row - 14]))
    assert r.gram.shape == (100, 100)
    assert r.pairs(150, [1, 2]) == [] and r.pairs(3, [1, 150]) == [1, 3]
    r.add_pair(150, 3, 1.0)  # a folded pair past the cap is dropped
    r.refresh(5_000)
    assert r.b.shape == (100, 100)
    s = r.scores(np.array([7, 4_000]), np.array([0]))
    assert s[1] == 0.0


def test_the_window_is_the_users_newest_items():
    r = ItemRegression(items=64, window=2)
    assert r.pairs(9, [1, 2, 3, 9]) == [3, 9]  # newest two, the item itself on the diagonal
    r.add(9, r.pairs(9, [1, 2, 3]))
    assert r.gram[9, 9] == 1 and r.gram[9, 3] == r.gram[3, 9] == r.gram[2, 9] == 1
    assert r.gram[1, 9] == 0


def test_a_restore_maps_rows_and_an_older_snapshot_learns_from_empty():
    rng = np.random.default_rng(4)
    histories = [rng.choice(20, size=5, replace=False).tolist() for _ in range(50)]
    r = learned(ItemRegression(items=32, every=1), histories)
    r.on_learned(20)
    arrays = r.arrays(20)
    back = ItemRegression(items=32)
    perm = np.arange(20)[::-1]
    back.restore(r.state(), arrays["gram"], arrays["b"], perm)
    assert np.array_equal(back.gram[np.ix_(perm, perm)], r.gram[:20, :20])
    assert np.array_equal(back.b[np.ix_(perm, perm)], r.b[:20, :20])
    assert back.refreshes == r.refreshes and back.learned == r.learned
    fresh = ItemRegression(items=32)
    fresh.restore({}, None, None, perm)
    assert fresh.refreshes == 0 and len(fresh.b) == 0


def test_lists_with_the_regression_do_not_depend_on_the_batch_size():
    msgs = raw_batch(n=400, bad=0)
    s = Settings.from_env({}, regression_items=2_048, regression_every=50)
    one, many = build_engine(s), build_engine(s)
    a, b, store1, store = [], [], DictProfileStore(), DictProfileStore()
    for msg in msgs:
        a += one.process_batch([msg], store1, NOW).recommendations
    for i in range(0, len(msgs), 7):
        b += many.process_batch(msgs[i : i + 7], store, NOW).recommendations
    ra, rb = one.recommender.regression, many.recommender.regression
    assert ra.refreshes >= 4 and ra.gram.sum() > 0
    assert np.array_equal(ra.b, rb.b)
    # Each batch's list for a user is the one after their last event in it.
    after = {r.event_id: r.items for r in a}
    assert [r.items for r in b] == [after[r.event_id] for r in b]


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"STREAMREC_REGRESSION_ITEMS": "-1"}, "REGRESSION_ITEMS"),
        ({"STREAMREC_REGRESSION_L2": "0"}, "REGRESSION_L2"),
        ({"STREAMREC_REGRESSION_EVERY": "0"}, "EVERY"),
    ],
)
def test_bad_regression_settings_say_what_to_fix(env, word):
    with pytest.raises(ConfigError, match=word):
        Settings.from_env(env)


def test_off_by_default_it_learns_nothing_and_scores_nothing():
    e = build_engine(Settings.from_env({}))
    e.process_batch(raw_batch(n=200, bad=0), DictProfileStore(), NOW)
    r = e.recommender.regression
    assert not r.on and r.gram.size == 0 and r.refreshes == 0
