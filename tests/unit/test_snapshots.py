"""The worker's snapshot files: every piece of learned state and the item vectors round-trip,
an old pickled snapshot is migrated once, a bad file is refused with a reason."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core import snapshot
from streamrec.core.engine import DictProfileStore, Engine
from streamrec.core.ingest import RawMessage
from streamrec.core.profile import Profile
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.settings import Settings
from streamrec.tools.rank_bench import synthetic_vectors
from streamrec.worker.snapshots import Snapshots

NOW = int(time.time() * 1000)


def settings(tmp_path: Path) -> Settings:
    # Transitions, factors and the regression on and refreshed, so that they are in the
    # snapshots these tests write.
    return Settings.from_env(
        {}, data_dir=tmp_path, partitions=1, scorer_enabled=False, sequence_anchors=2,
        factors_dim=8, factors_every=200, regression_items=256, regression_every=300,
    )  # fmt: skip


def engine_with_vectors(s: Settings, shop: SyntheticShop) -> Engine:
    e = build_engine(s)
    for item in shop.catalog:
        e.upsert_item(item)
    ids = [it.item_id for it in shop.catalog]
    e.item_vectors.add_many(ids, "enc@1", synthetic_vectors(len(ids), dim=16))
    e.item_vectors.mark_complete("enc@1", 0, ts=1)
    return e


def messages(shop: SyntheticShop, n: int, first: int) -> list[RawMessage]:
    events = shop.events(n, start_ts=NOW - 10 * n, step_ms=10)
    return [
        RawMessage(serde.dumps(ev.to_dict()), ev.user_id.encode(), 0, first + i, NOW)
        for i, ev in enumerate(events)
    ]


def test_a_restored_engine_serves_the_same_lists_as_the_one_that_learned(tmp_path):
    s = settings(tmp_path)
    shop = SyntheticShop(users=80, items=400, seed=4)
    learned, profiles = engine_with_vectors(s, shop), DictProfileStore()
    learned.process_batch(messages(shop, 1_500, 0), profiles, NOW)
    Snapshots(s).write(learned, {0: 1_234})

    restored = build_engine(s)
    snaps = Snapshots(s)
    assert snaps.load_learned(restored)
    assert snaps.load_vectors(restored) == {0: 1_234}
    for item in shop.catalog:  # the catalog follower re-reads catalog.items
        restored.upsert_item(item)
    assert restored.item_vectors.active_version == "enc@1" and len(restored.item_vectors) == 400
    later = messages(shop, 300, 1_500)
    copy = DictProfileStore({u: Profile.from_bytes(p.to_bytes())[0] for u, p in profiles.items()})
    a = learned.process_batch(later, profiles, NOW).recommendations
    b = restored.process_batch(later, copy, NOW).recommendations
    assert [r.items for r in a] == [r.items for r in b]


def test_every_learned_piece_round_trips(tmp_path):
    s = settings(tmp_path)
    shop = SyntheticShop(users=50, items=200, seed=5)
    e = engine_with_vectors(s, shop)
    e.process_batch(messages(shop, 800, 0), DictProfileStore(), NOW)
    header, arrays = snapshot.from_bytes(snapshot.to_bytes(*snapshot.capture(e.recommender)))
    back = build_engine(s)
    snapshot.restore(back.recommender, header, arrays)
    a, b = e.recommender, back.recommender
    assert a.ranker is not None and b.ranker is not None
    rows = a.items.rows(a.items.ids)
    assert np.allclose(a.trending.scores(rows), b.trending.scores(b.items.rows(a.items.ids)))
    assert np.allclose(a.trending_long.scores(rows), b.trending_long.scores(rows))
    assert len(a.transitions) > 0
    for r in rows.tolist()[:50]:
        assert a.covisit.weights(r) == b.covisit.weights(r)
        assert a.transitions.weights(r) == b.transitions.weights(r)
    assert b.transitions.directed and not b.covisit.directed
    for graph in ("covisit", "transitions"):
        ga, gb = getattr(a, graph), getattr(b, graph)
        linked = ga.linked_rows()
        assert np.allclose(ga.mass[linked], gb.mass[linked]) and ga.mass[linked].min() > 0
    ra, rb = a.ranker, b.ranker
    assert ra.impressions_seen == rb.impressions_seen
    offers_a, offers_b = ra.open_offers(), rb.open_offers()
    assert len(offers_a) == len(offers_b) > 0
    for (user_a, a_), (user_b, b_) in zip(offers_a, offers_b, strict=True):
        assert (user_a, a_.ts, a_.rate, list(a_.open)) == (user_b, b_.ts, b_.rate, list(b_.open))
        assert np.array_equal(a_.x[list(a_.open.values())], b_.x[list(b_.open.values())])
    assert list(ra._expiry) == list(rb._expiry)
    assert a.value.purchases == b.value.purchases and a.value.max_target == b.value.max_target
    assert (a.ranker.positives, a.ranker.negatives) == (b.ranker.positives, b.ranker.negatives)
    assert a.factors.refreshes > 0 and a.factors.q.shape[1] == 8
    assert np.allclose(a.factors.q[rows], b.factors.q[rows])
    assert (a.factors.learned, a.factors.refreshes) == (b.factors.learned, b.factors.refreshes)
    ea, eb = a.regression, b.regression
    assert ea.refreshes > 0 and (ea.learned, ea.refreshes) == (eb.learned, eb.refreshes)
    n = len(rows)
    assert ea.gram[:n, :n].sum() > 0 and np.array_equal(ea.gram[:n, :n], eb.gram[:n, :n])
    assert np.array_equal(ea.b, eb.b[: len(ea.b), : len(ea.b)])


def test_a_snapshot_from_before_transitions_restores_with_none_learned(tmp_path):
    s = settings(tmp_path)
    shop = SyntheticShop(users=50, items=200, seed=5)
    e = engine_with_vectors(s, shop)
    e.process_batch(messages(shop, 400, 0), DictProfileStore(), NOW)
    header, arrays = snapshot.capture(e.recommender)
    # What the previous version wrote: no transitions, masses, offers or impressions flag.
    old_header = {k: v for k, v in header.items() if k not in ("transitions", "factors")}
    old_header["ranker"] = {k: v for k, v in header["ranker"].items()
                            if k not in ("impressions_seen", "features")}  # fmt: skip
    old = ("transitions.", "ranker.offers", "ranker.expiry", "factors.")
    old_arrays = {k: v for k, v in arrays.items()
                  if not k.startswith(old) and k != "covisit.mass"}  # fmt: skip
    back = build_engine(s)
    snapshot.restore(back.recommender, old_header, old_arrays)
    rec = back.recommender
    assert len(rec.transitions) == 0 and len(rec.covisit) > 0
    linked = rec.covisit.linked_rows()
    assert rec.covisit.mass[linked].min() > 0  # rebuilt from the pairs
    assert rec.ranker is not None and rec.ranker.learns_from_lists and not rec.ranker._pending
    assert len(rec.factors.q) == 0 and rec.factors.learned == 0  # built at the next refresh


def test_an_old_pickled_snapshot_is_migrated_once(tmp_path):
    s = settings(tmp_path)
    legacy = Path(__file__).parent / "data" / "recommender-cf580d8.pkl"
    snaps = Snapshots(s)
    snaps.legacy_path.write_bytes(legacy.read_bytes())
    e = build_engine(s)
    assert snaps.load_learned(e)
    assert len(e.recommender.trending) == 60 and len(e.recommender.covisit) == 60
    assert snaps.learned_path.is_file() and not snaps.legacy_path.exists()
    assert snaps.legacy_path.with_suffix(".pkl.migrated").is_file()
    again = build_engine(s)
    assert Snapshots(s).load_learned(again)  # from the new file from now on
    assert len(again.recommender.trending) == 60


def test_bad_or_foreign_snapshot_files_are_refused_with_a_reason(tmp_path):
    with pytest.raises(snapshot.SnapshotError, match="not a readable snapshot"):
        snapshot.from_bytes(b"\x00garbage")
    header, arrays = snapshot.capture(build_engine(settings(tmp_path)).recommender)
    with pytest.raises(snapshot.SnapshotError, match="version 99"):
        snapshot.restore(build_engine(settings(tmp_path)).recommender,
                         header | {"version": 99}, arrays)  # fmt: skip
    s = settings(tmp_path)
    Snapshots(s).learned_path.write_bytes(b"not a snapshot")
    assert not Snapshots(s).load_learned(build_engine(s))  # ignored, relearned


def test_online_quality_keeps_counting_across_a_restart(tmp_path):
    s = settings(tmp_path).with_overrides(monitoring=True)
    shop = SyntheticShop(users=60, items=300, seed=6)
    learned, profiles = build_engine(s), DictProfileStore()
    msgs = messages(shop, 1_200, 0)
    for i in range(20):  # impressions still open when the snapshot is written
        doc = {"event_id": f"imp-{i}", "type": "impression", "user_id": f"user-{i}",
               "ts": NOW - 5, "shown": [f"sku-{j}" for j in range(i, i + 5)]}  # fmt: skip
        msgs.append(RawMessage(serde.dumps(doc), doc["user_id"].encode(), 0, 2_000 + i, NOW))
    learned.process_batch(msgs, profiles, NOW)
    q = learned.monitor.quality
    assert q._last and len(q._impressions) == 20
    learned.monitor.reset()
    Snapshots(s).write(learned, None)

    restored = build_engine(s)
    assert Snapshots(s).load_learned(restored)
    r = restored.monitor.quality
    assert r._last == {u: items[: q.k] for u, items in q._last.items()}
    assert list(r._last) == list(q._last)  # the eviction order too
    assert {u: (i.ts, i.shown, i.variant, i.clicked) for u, i in r._impressions.items()} == {
        u: (i.ts, i.shown, i.variant, i.clicked) for u, i in q._impressions.items()
    }
    later = messages(shop, 400, 1_200)
    copy = DictProfileStore({u: Profile.from_bytes(p.to_bytes())[0] for u, p in profiles.items()})
    learned.process_batch(later, profiles, NOW)
    restored.process_batch(later, copy, NOW)
    a, b = learned.monitor.reset().quality, restored.monitor.reset().quality
    assert {v: x.to_dict() for v, x in a.items()} == {v: x.to_dict() for v, x in b.items()}
    assert sum(x.trials for x in a.values()) > 0


def test_the_shared_state_ledger_and_offsets_round_trip(tmp_path):
    s = settings(tmp_path)
    shop = SyntheticShop(users=30, items=100, seed=8)
    learned = build_engine(s)
    share = learned.share("w1")
    learned.process_batch(messages(shop, 300, 10), DictProfileStore(), NOW)
    snaps = Snapshots(s)
    snaps.shared_offsets.update({0: 17, 1: 4})
    snaps.write(learned, None)

    restored = build_engine(s)
    restored.share("w2")
    again = Snapshots(s)
    assert again.load_learned(restored)
    assert restored.sharing.ledger == share.ledger and share.ledger.state() == {"0": [[10, 309]]}
    assert again.shared_offsets == {0: 17, 1: 4}
