"""After kill -9s, a worker's profiles and learned models equal an uninterrupted run's.

The reference is the in-process engine fed the very records the worker read
(read back from storefront.events, restarts' probe events included), after the
same catalog, in the batches whose learning the worker delivered: with one
partition there is one order, so every model that depends on the order of
events (co-visitation's pruning, the factors' refresh points, the value model's
and the ranker's SGD) has one right answer, and the batches decide which lists
were offered.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from streamrec.build import build_engine
from streamrec.client import EventProducer, RecommendationReader, read_all, read_table, tail
from streamrec.contracts import STOREFRONT_EVENTS
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.core.profile import Profile
from streamrec.datasets import movielens
from streamrec.records import CatalogItem
from streamrec.tools.replay import replay

from .learned import assert_close, learned_models, worker_models
from .same_batches import learned_batches

pytestmark = pytest.mark.integration


def answered(reader: RecommendationReader, want: set[str], seen: set[str], until: int) -> None:
    """Poll lists into `seen` until `until` of `want` are answered (or 120 s pass)."""
    deadline = time.monotonic() + 120
    while len(seen & want) < until and time.monotonic() < deadline:
        seen.update(ref for r in reader.poll(0.2) for ref in r.event_ids)


def kill_and_restart(stack) -> None:
    worker = stack.workers.pop()
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(30)
    stack.start_worker()


def stored_profiles(s) -> dict[str, bytes]:
    return {k.decode(): v for k, v in read_table(s).items()}


def reference(s, items: list[CatalogItem]):
    """The in-process engine after the catalog and every record of storefront.events."""
    consumer = tail(s, STOREFRONT_EVENTS)
    records = read_all(consumer, idle_s=2.0)
    consumer.close()
    engine, store = build_engine(s), DictProfileStore()
    for item in items:
        engine.upsert_item(item)
    now = int(time.time() * 1000)
    msgs = [RawMessage(r.value, r.key, r.partition, r.offset, r.timestamp) for r in records]
    # The worker's batches: which lists were offered (what the ranker learns) depends
    # on them, one list per user per batch.
    for batch in learned_batches(s, msgs):
        engine.process_batch(batch, store, now)
    return engine, store


def test_kill_9s_leave_every_profile_and_every_learned_model_as_an_uninterrupted_run(make_stack):
    stack = make_stack(workers=1, partitions=1, snapshot_interval_s=2.0, store="rocksdb")
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=4000)
    reader = RecommendationReader(s, from_beginning=False)
    want = {reader.event_ref(e.event_id) for e in ml.events}
    with EventProducer(s) as producer:
        replay(producer, ml.events, items=ml.items, progress=False)
    seen: set[str] = set()
    for mark in (1200, 2600):  # mid-stream, each time after a snapshot or two
        answered(reader, want, seen, mark)
        kill_and_restart(stack)
    answered(reader, want, seen, len(want))
    reader.close()
    assert want <= seen, f"{len(want - seen)} events without a list"
    stack.stop()  # SIGTERM: the last snapshot holds everything learned

    engine, profiles = reference(s, ml.items)
    stored = stored_profiles(s)
    assert stored.keys() == profiles.keys()
    differing = [u for u in profiles if Profile.from_bytes(stored[u])[0] != profiles[u]]
    fields = sorted(
        {
            f
            for u in differing
            for f in Profile.__dataclass_fields__
            if getattr(Profile.from_bytes(stored[u])[0], f) != getattr(profiles[u], f)
        }
    )
    assert differing == [], f"{len(differing)} of {len(profiles)} profiles differ in {fields}"
    assert sum(bool(p.affinity) for p in profiles.values()) > 0.9 * len(profiles)

    got, want_models = learned_models(worker_models(s)), learned_models(engine.recommender)
    assert got[1]["ids"].tobytes() == want_models[1]["ids"].tobytes()  # rows in one order
    assert engine.recommender.factors.refreshes > 0 and engine.recommender.value.purchases > 0
    assert_close(got[0], want_models[0], "header")
    assert_close(got[1], want_models[1], "arrays")


def padded_catalog(n: int, categories: int) -> list[CatalogItem]:
    """`n` items; category of item i: f"c{i % categories}" (one per user below)."""
    return [CatalogItem(item_id=f"p-{i}", title=f"Item {i}", category=(f"c{i % categories}",),
                        price=9.99) for i in range(n)]  # fmt: skip


def test_a_restarted_worker_applies_no_event_before_its_catalog_is_read_back(make_stack):
    """A catalog that takes seconds to read back, and events waiting for the worker when
    it restarts: every one of them is learned with its item's category."""
    stack = make_stack(workers=1, store="rocksdb")
    s = stack.settings
    catalog = padded_catalog(60_000, categories=50)
    with EventProducer(s) as producer:
        replay(producer, [], items=catalog, progress=False)
    stack.stop_worker(stack.workers.pop())
    # While it is down: each user views items of one category only, at the catalog's end.
    start = int(time.time() * 1000) - 60_000
    with EventProducer(s) as producer:
        sent = [
            producer.track("view", f"user-{c}", item_id=catalog[-50 + c].item_id,
                           ts=start + c).event_id
            for c in range(50)
        ]  # fmt: skip
    reader = RecommendationReader(s, from_beginning=False)
    stack.start_worker()
    want = {reader.event_ref(e) for e in sent}
    seen: set[str] = set()
    answered(reader, want, seen, len(want))
    reader.close()
    assert want <= seen
    log = (stack.log_dir / "worker-0.log").read_text()  # both runs, appended
    read_back = [line for line in log.splitlines() if "catalog read back:" in line][-1]
    assert "60000 items" in read_back, read_back
    stored = {u: Profile.from_bytes(v)[0] for u, v in stored_profiles(s).items()}
    interests = sorted({tuple(p.affinity) for p in stored.values() if p.counts.get("view")})
    assert interests == sorted((f"c{(60_000 - 50 + c) % 50}",) for c in range(50))
