"""Shared learned item state: N workers that fold each other's deltas learn what one would."""

import base64
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore, Engine
from streamrec.core.ingest import RawMessage
from streamrec.core.ranking.value import FEATURES as VALUE_FEATURES
from streamrec.core.sharing import DeltaError, ItemDelta, Ledger, RankerDelta, decode
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.settings import Settings
from streamrec.worker.snapshots import Snapshots

NOW = 1_800_000_000_000
PARTITIONS = 3


def shop_messages(n=1_500, seed=5):
    """A synthetic shop's events keyed by user, on 3 partitions with per-partition offsets."""
    shop = SyntheticShop(users=40, items=120, seed=seed)
    next_offset = [0] * PARTITIONS
    msgs = []
    for e in shop.events(n, start_ts=NOW - 60_000 * n, step_ms=60_000):
        p = zlib.crc32(e.user_id.encode()) % PARTITIONS
        msgs.append(RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), p,
                               next_offset[p], NOW))  # fmt: skip
        next_offset[p] += 1
    return msgs


def engine(**overrides):
    # Unbounded neighbours: pruning to the strongest is the one thing that depends on order.
    # The regression on (it is off by default), so that its counts are shared too.
    s = Settings.from_env({}, covisit_max_neighbours=100_000, monitoring=False,
                          regression_items=256, **overrides)  # fmt: skip
    return build_engine(s)


def item_state(e: Engine):
    """Trending scores and co-visitation weights, by item id (rows differ per process)."""
    rec = e.recommender
    ids = rec.items.ids
    rows = np.arange(len(ids))
    trend = dict(zip(ids, rec.trending.scores(rows).tolist(), strict=True))
    trend_long = dict(zip(ids, rec.trending_long.scores(rows).tolist(), strict=True))
    pairs = {}
    for row, item in enumerate(ids):
        nbr, w = rec.covisit.neighbours(row)
        pairs.update({(item, ids[b]): x for b, x in zip(nbr.tolist(), w.tolist(), strict=True)})
    g = rec.regression.gram
    gram = {(ids[a], ids[b]): float(g[a, b]) for a, b in zip(*np.nonzero(g), strict=True)}
    return trend, trend_long, pairs, gram


def assert_same_items(a: Engine, b: Engine):
    for x, y in zip(item_state(a), item_state(b), strict=True):
        # Scores decayed below 1e-12 of the best are 0 (one side may have underflowed).
        tiny = 1e-12 * max([*x.values(), *y.values(), 0.0])
        x = {k: v for k, v in x.items() if v > tiny}
        y = {k: v for k, v in y.items() if v > tiny}
        assert x.keys() == y.keys()
        keys = sorted(x)
        np.testing.assert_allclose([x[k] for k in keys], [y[k] for k in keys], rtol=1e-9)


def run_workers(msgs, workers, batch=40, drop=lambda d: False, ranker="off"):
    """Each worker takes the partitions p % workers; after every round all fold all deltas."""
    engines = [engine() for _ in range(workers)]
    shares = [e.share(f"w{i}", ranker) for i, e in enumerate(engines)]
    stores = [DictProfileStore() for _ in engines]
    published = []
    for start in range(0, len(msgs), batch):
        chunk = msgs[start : start + batch]
        deltas = []
        for i, e in enumerate(engines):
            mine = [m for m in chunk if m.partition % workers == i]
            if mine:
                deltas += e.process_batch(mine, stores[i], NOW).deltas
        deltas = [d for d in deltas if not drop(d)]
        published += deltas
        for d in deltas:
            wire = decode(d.to_bytes())
            for s in shares:
                s.fold(wire)
    return engines, shares, published


def test_three_workers_that_share_learn_what_one_worker_learns():
    msgs = shop_messages()
    one = engine()
    one.process_batch(msgs, DictProfileStore(), NOW)
    engines, shares, published = run_workers(msgs, PARTITIONS)
    assert one.recommender.regression.gram.sum() > 0
    for e in engines:
        assert_same_items(e, one)
    # Each worker's own deltas came back as known, the others' were folded once.
    for s in shares:
        assert s.counts["overlap"] == 0
        assert s.counts["known"] + s.counts["folded"] == len(published)
        assert s.ledger == shares[0].ledger
    assert shares[0].ledger.state() == {
        str(p): [[0, sum(m.partition == p for m in msgs) - 1]] for p in range(PARTITIONS)
    }


def test_folded_events_count_towards_the_factors_refresh_as_own_events_do():
    """Each of N workers refreshed its co-visitation factors N times less often than
    one worker (only its own events counted), and ranked on staler factors; the
    regression's refresh counts the same way."""
    msgs = shop_messages()
    one = engine(factors_every=100, regression_every=100)
    one.process_batch(msgs, DictProfileStore(), NOW)
    engines = [engine(factors_every=100, regression_every=100) for _ in range(PARTITIONS)]
    shares = [e.share(f"w{i}", "off") for i, e in enumerate(engines)]
    stores = [DictProfileStore() for _ in engines]
    for start in range(0, len(msgs), 40):
        chunk, deltas = msgs[start : start + 40], []
        for i, e in enumerate(engines):
            mine = [m for m in chunk if m.partition % PARTITIONS == i]
            deltas += e.process_batch(mine, stores[i], NOW).deltas if mine else []
        for d in deltas:
            for share in shares:
                share.fold(decode(d.to_bytes()))
    for model in ("factors", "regression"):
        want = getattr(one.recommender, model)
        assert want.refreshes >= 5
        for e in engines:
            got = getattr(e.recommender, model)
            assert got.learned == want.learned
            assert got.refreshes >= want.refreshes - 1  # a fold can pass two multiples at once


def test_without_sharing_each_worker_learns_only_its_own_partitions():
    msgs = shop_messages(600)
    alone = [engine() for _ in range(PARTITIONS)]
    for i, e in enumerate(alone):
        e.process_batch([m for m in msgs if m.partition == i], DictProfileStore(), NOW)
    one = engine()
    one.process_batch(msgs, DictProfileStore(), NOW)
    with pytest.raises(AssertionError):  # the gap sharing closes
        assert_same_items(alone[0], one)


@pytest.fixture(scope="module")
def deltas():
    return run_workers(shop_messages(400), PARTITIONS, batch=25)[2]


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_folding_is_commutative_and_idempotent(deltas, data):
    """Any order and any duplication of the deltas gives the same state."""
    order = data.draw(st.permutations(range(len(deltas))))
    again = data.draw(st.lists(st.integers(0, len(deltas) - 1), max_size=20))
    reference, shuffled = engine(), engine()
    ref_share, shuffled_share = reference.share("r", "off"), shuffled.share("s", "off")
    for d in deltas:
        assert ref_share.fold(d) == "applied"
    sequence = [deltas[i] for i in order]
    for j in again:  # duplicates anywhere in the stream
        sequence.insert(data.draw(st.integers(0, len(sequence))), deltas[j])
    results = [shuffled_share.fold(d) for d in sequence]
    assert results.count("applied") == len(deltas)
    assert results.count("known") == len(again)
    assert_same_items(shuffled, reference)
    assert shuffled_share.ledger == ref_share.ledger


def test_a_worker_taking_over_a_partition_does_not_count_its_events_twice():
    """After a crash, a new owner folds what was published and skips those events;
    a profile that has an event whose delta was lost still teaches trending once."""
    msgs = [m for m in shop_messages(800) if m.partition == 0]
    uninterrupted = engine()
    uninterrupted.process_batch(msgs, DictProfileStore(), NOW)

    first, profiles = engine(), DictProfileStore()
    first_share = first.share("first", "off")
    deltas = []
    for start in range(0, 200, 20):
        deltas += first.process_batch(msgs[start : start + 20], profiles, NOW).deltas
    lost = deltas.pop()  # its batch's profiles were written, its delta never arrived
    assert first_share.ledger.covers(0, lost.last)

    second = engine()
    share = second.share("second", "off")
    for d in deltas:
        share.fold(d)
    # The commit was at 150: 150..199 come again, then the rest.
    second.process_batch(msgs[150:], profiles, NOW)
    trend, trend_long, *_ = item_state(second)
    want, want_long, *_ = item_state(uninterrupted)
    keys = sorted(want)
    np.testing.assert_allclose([trend.get(k, 0.0) for k in keys], [want[k] for k in keys],
                               rtol=1e-9)  # fmt: skip
    np.testing.assert_allclose([trend_long.get(k, 0.0) for k in keys],
                               [want_long[k] for k in keys], rtol=1e-9)  # fmt: skip
    assert share.ledger.state() == {"0": [[0, len(msgs) - 1]]}


def test_a_delta_survives_the_wire_exactly():
    deltas = run_workers(shop_messages(200), 1, batch=50)[2]
    assert deltas and any(len(d.pair_w) for d in deltas) and any(len(d.gram_w) for d in deltas)
    for d in deltas:
        back = decode(d.to_bytes())
        assert back.to_dict() == d.to_dict()
        assert back.key == str(d.partition).encode()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: {**d, "v": 99}, "format 99"),
        (lambda d: {**d, "first": d["last"] + 1}, "first offset after last"),
        (lambda d: {**d, "items": []}, "do not match its items"),
        (lambda d: {k: v for k, v in d.items() if k != "adds"}, "malformed"),
        (lambda d: {**d, "trend": "***"}, "malformed"),
    ],
)
def test_a_bad_delta_is_refused_with_what_is_wrong(mutate, message):
    d = run_workers(shop_messages(100), 1, batch=100)[2][0]
    with pytest.raises(DeltaError, match=message):
        decode(serde.dumps(mutate(d.to_dict())))
    with pytest.raises(DeltaError, match="not JSON"):
        decode(b"\xff{")


def test_pairs_pointing_outside_the_items_are_refused():
    d = run_workers(shop_messages(100), 1, batch=100)[2][0].to_dict()
    n = len(d["items"])
    outside = {"pair_later": b64(np.array([n], "<i4")), "pair_earlier": b64(np.array([0], "<i4")),
               "pair_w": b64(np.array([1.0], "<f8"))}  # fmt: skip
    with pytest.raises(DeltaError, match="pairs point outside its items"):
        ItemDelta.from_dict({**d, **outside})
    gram = {"gram_a": b64(np.array([0], "<i4")), "gram_b": b64(np.array([-1], "<i4")),
            "gram_w": b64(np.array([1.0], "<f8"))}  # fmt: skip
    with pytest.raises(DeltaError, match="pairs point outside its items"):
        ItemDelta.from_dict({**d, **gram})
    older = {k: v for k, v in d.items() if not k.startswith("gram_")}  # a worker before it
    assert len(ItemDelta.from_dict(older).gram_w) == 0


def b64(a):
    return base64.b64encode(a.tobytes()).decode()


def test_a_ledger_stays_bounded_and_closes_its_oldest_gaps():
    led = Ledger()
    for i in range(100):
        led.add(0, 10 * i, 10 * i + 5)  # a gap of 4 after each
    intervals = led.state()["0"]
    assert len(intervals) == Ledger.MAX_INTERVALS
    assert intervals[-1] == [990, 995] and led.covers(0, 7) and not led.covers(0, 987)
    assert Ledger.from_state(led.state()) == led and led.high(0) == 995


def test_sharing_off_changes_nothing():
    msgs = shop_messages(300)
    plain, shared = engine(), engine()
    shared.share("w", "off")
    a = plain.process_batch(msgs, DictProfileStore(), NOW)
    b = shared.process_batch(msgs, DictProfileStore(), NOW)
    assert [r.to_dict() for r in a.recommendations] == [r.to_dict() for r in b.recommendations]
    assert not a.deltas and len(b.deltas) == PARTITIONS


def spread(engines) -> float:
    """How far the workers' rankers are apart: the largest distance to the first one."""
    w = [e.recommender.ranker.weights() for e in engines]
    return max(float(np.linalg.norm(x - w[0])) for x in w[1:])


@pytest.mark.parametrize("mode", ["sum", "average"])
def test_workers_that_share_the_ranker_learn_one_ranker(mode):
    msgs = shop_messages(1_500)
    engines, _shares, published = run_workers(msgs, PARTITIONS, ranker=mode)
    models = [d for d in published if isinstance(d, RankerDelta)]
    assert models and {d.by for d in models} == {"w0", "w1", "w2"}
    assert all(e.recommender.ranker.updates > 0 for e in engines)
    alone = spread(run_workers(msgs, PARTITIONS, ranker="off")[0])
    if mode == "sum":  # every worker took every worker's steps: one set of weights
        assert spread(engines) < 1e-9 * max(1.0, alone)
    else:  # each averages what it has when a record comes: close, not equal
        assert spread(engines) < alone / 2


def test_a_ranker_record_is_applied_once_and_a_bad_one_refused():
    msgs = shop_messages(600)
    published = run_workers(msgs, 1, ranker="sum")[2]
    record = next(d for d in published if isinstance(d, RankerDelta))
    other = engine().share("other", "sum")
    before = other.rec.ranker.weights().copy()
    assert other.fold(decode(record.to_bytes())) == "applied"
    after = other.rec.ranker.weights().copy()
    assert other.fold(decode(record.to_bytes())) == "known"  # a redelivery
    np.testing.assert_allclose(other.rec.ranker.weights(), after)
    np.testing.assert_allclose(after - before, record.params[:-1])
    bad = {**record.to_dict(), "params": b64(np.array([1.0], "<f8"))}
    with pytest.raises(DeltaError, match="do not match features"):
        decode(serde.dumps(bad))


def test_every_record_matches_the_topic_contract():
    from streamrec.contracts import load_contract

    validate = load_contract("shared.state").validator
    published = run_workers(shop_messages(600), PARTITIONS, ranker="sum")[2]
    assert {type(d) for d in published} == {ItemDelta, RankerDelta}
    for d in published:
        validate(d.to_dict())


def test_a_batch_spanning_years_of_event_time_still_makes_an_exact_delta():
    one, folder = engine(), engine()
    share = one.share("w", "off")
    other = folder.share("f", "off")
    years = 3 * 365 * 86_400_000
    for i, ts in enumerate((NOW - years, NOW - years // 2, NOW)):
        share.learn(0, i, one.items.row(f"sku-{i}"), "view", ts, [])
    for d in share.take():
        other.fold(d)
    assert_same_items(folder, one)


def value_examples(deltas):
    rows = [(tuple(x), y) for d in deltas if isinstance(d, ItemDelta)
            for x, y in zip(d.value_x.tolist(), d.value_y.tolist(), strict=True)]  # fmt: skip
    return sorted(rows)


def guesses(e: Engine, examples) -> np.ndarray:
    """The value model's raw guesses (log order value) for the histories of `examples`."""
    model = e.recommender.value.model
    return np.array([model.predict_one(dict(zip(VALUE_FEATURES, x, strict=True)))
                     for x, _y in examples])  # fmt: skip


def test_every_worker_learns_the_value_model_from_every_purchase():
    msgs = shop_messages()
    solo = engine()
    solo.share("solo", "off")
    solo_examples = value_examples(solo.process_batch(msgs, DictProfileStore(), NOW).deltas)
    total = solo.recommender.value.purchases
    assert total > 20 and len(solo_examples) == total
    engines, _shares, published = run_workers(msgs, PARTITIONS)
    # The buyer's worker computes each example once; every worker learns all of them.
    assert value_examples(published) == solo_examples
    assert [e.recommender.value.purchases for e in engines] == [total] * PARTITIONS
    assert {e.recommender.value.max_target for e in engines} == {solo.recommender.value.max_target}
    # SGD in another order is not the same model, but far nearer than one learned alone.
    alone = [engine() for _ in range(PARTITIONS)]
    for i, e in enumerate(alone):
        e.process_batch([m for m in msgs if m.partition == i], DictProfileStore(), NOW)
        assert e.recommender.value.purchases < total
    base = guesses(solo, solo_examples)
    shared_gap = max(np.abs(guesses(e, solo_examples) - base).mean() for e in engines)
    alone_gap = min(np.abs(guesses(e, solo_examples) - base).mean() for e in alone)
    assert shared_gap < alone_gap


def test_a_delta_with_bad_value_examples_is_refused():
    deltas = run_workers(shop_messages(), 1, batch=2_000)[2]
    d = next(d for d in deltas if len(d.value_y)).to_dict()
    assert decode(serde.dumps(d)).value_x.shape[1] == 4
    with pytest.raises(DeltaError, match="value"):
        decode(serde.dumps({**d, "value_y": b64(np.array([1.0], "<f8"))}))


def test_a_restored_worker_neither_republishes_nor_reapplies_the_ranker_it_restored(tmp_path):
    msgs = shop_messages(1_500)
    s = Settings.from_env({}, data_dir=str(tmp_path), monitoring=False)
    a, b = build_engine(s), build_engine(s)
    share_a, share_b = a.share("a", "sum"), b.share("b", "sum")
    log = []  # shared.state, in order
    for start in range(0, 1_000, 50):
        for e, p in ((a, 0), (b, 1)):
            chunk = [m for m in msgs[start : start + 50] if m.partition == p]
            log += e.process_batch(chunk, DictProfileStore(), NOW).deltas
        for d in log[-4:]:
            for share in (share_a, share_b):
                share.fold(decode(d.to_bytes()))
    # b's snapshot, taken while b's latest records are on the topic but not read back
    # by b: in the state, in the ledger, and marked applied.
    Snapshots(s).write(b, None)
    restored = build_engine(s)
    share_r = restored.share("b-restarted", "sum")
    assert Snapshots(s).load_learned(restored)
    weights = restored.recommender.ranker.weights().copy()
    np.testing.assert_allclose(weights, b.recommender.ranker.weights())
    assert [d for d in share_r.take() if isinstance(d, RankerDelta)] == []  # nothing its own
    for d in log:  # refolding the whole topic changes nothing: all of it is in the snapshot
        share_r.fold(decode(d.to_bytes()))
    np.testing.assert_allclose(restored.recommender.ranker.weights(), weights)
    assert share_r.ledger == share_b.ledger


def test_a_worker_restarted_from_an_older_snapshot_gets_its_later_ranker_learning_back(tmp_path):
    msgs = shop_messages(1_500)
    s = Settings.from_env({}, data_dir=str(tmp_path), monitoring=False)
    a, b = build_engine(s), build_engine(s)
    shares = [a.share("a", "sum"), b.share("b", "sum")]
    log = []
    for round_, start in enumerate(range(0, 1_500, 50)):
        if round_ == 12:
            Snapshots(s).write(b, None)  # then b learns on, and crashes at the end
        new = []
        for e, p in ((a, 0), (b, 1)):
            new += e.process_batch([m for m in msgs[start : start + 50] if m.partition == p],
                                   DictProfileStore(), NOW).deltas  # fmt: skip
        log += new
        for d in new:
            for share in shares:
                share.fold(decode(d.to_bytes()))
    restored = build_engine(s)
    share_r = restored.share("b-restarted", "sum")
    assert Snapshots(s).load_learned(restored)
    assert not np.allclose(restored.recommender.ranker.weights(), b.recommender.ranker.weights())
    for d in log:  # its own records after the snapshot come back, nothing counts twice
        share_r.fold(decode(d.to_bytes()))
    np.testing.assert_allclose(restored.recommender.ranker.weights(),
                               b.recommender.ranker.weights(), rtol=1e-9)  # fmt: skip
    assert restored.recommender.value.purchases == b.recommender.value.purchases
