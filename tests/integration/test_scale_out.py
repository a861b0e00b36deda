"""N workers learn as one: item state shared over shared.state, through the embedded broker."""

import time
from pathlib import Path

import numpy as np
import pytest

from streamrec import serde
from streamrec.build import build_engine, build_recommender
from streamrec.client import EventProducer, RecommendationReader, read_all, tail
from streamrec.contracts import CATALOG_ITEMS, EVENTS_DLQ, METRICS, STOREFRONT_EVENTS
from streamrec.core import snapshot
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.datasets import movielens
from streamrec.records import CatalogItem, DeadLetter, MetricsWindow
from streamrec.settings import Settings

pytestmark = pytest.mark.integration

#: Unbounded neighbours: pruning to the strongest is the one part of learning that
#: depends on the order in which workers fold each other's pairs.
UNBOUNDED = {"covisit_max_neighbours": 100_000}


def learned_trending(s: Settings) -> dict[str, float]:
    """Trending scores by item from the worker's snapshot (written at its shutdown)."""
    rec = build_recommender(s)
    path = Path(s.data_dir) / f"{s.app_id}-learned.npz"
    snapshot.restore(rec, *snapshot.from_bytes(path.read_bytes()))
    return by_item(rec)


def by_item(rec) -> dict[str, float]:
    scores = rec.trending.scores(np.arange(len(rec.items)))
    return {i: x for i, x in zip(rec.items.ids, scores.tolist(), strict=True) if x}


def in_process_trending(s: Settings, events) -> dict[str, float]:
    engine = build_engine(s)
    now = int(time.time() * 1000)
    msgs = [
        RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, now)
        for i, e in enumerate(events)
    ]
    engine.process_batch(msgs, DictProfileStore(), now)
    return by_item(engine.recommender)


def assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    keys = sorted(want)
    np.testing.assert_allclose([got[k] for k in keys], [want[k] for k in keys], rtol=1e-9)


def wait_all_folded(s: Settings, workers: int, timeout_s: float = 60) -> dict[str, dict]:
    """Per worker, its summed shared_* counts, once each has seen every published delta."""
    consumer = tail(s, METRICS)
    per: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for r in read_all(consumer):
                w = MetricsWindow.from_dict(serde.loads(r.value))
                mine = per.setdefault(w.worker, {})
                for k, v in w.counts.items():
                    if k.startswith("shared_"):
                        mine[k] = mine.get(k, 0) + v
            published = sum(c.get("shared_published", 0) for c in per.values())
            seen = [c.get("shared_folded", 0) + c.get("shared_known", 0) for c in per.values()]
            if len(per) == workers and published and all(n == published for n in seen):
                return per
            time.sleep(0.2)
    finally:
        consumer.close()
    raise AssertionError(f"workers did not fold every delta: {per}")


def test_three_workers_learn_what_one_worker_learns(make_stack):
    stack = make_stack(workers=3, partitions=3, **UNBOUNDED)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=3000)
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        for e in ml.events:
            p.send_event(e)
    want = {reader.event_ref(e.event_id) for e in ml.events}
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    while not want <= seen and time.monotonic() < deadline:
        seen.update(r.event_id for r in reader.poll(0.5))
    reader.close()
    assert want - seen == set()
    counts = wait_all_folded(s, workers=3)
    assert all(c.get("shared_overlap", 0) == 0 and c.get("shared_bad", 0) == 0
               for c in counts.values()), counts  # fmt: skip
    stack.stop()  # every worker writes its snapshot; they share the data dir, any one will do
    assert_same(learned_trending(s), in_process_trending(s, ml.events))


def test_a_crashed_worker_relearns_nothing_twice_and_loses_nothing(make_stack):
    """SIGKILL mid-stream, restart: the item statistics equal an uninterrupted run's."""
    stack = make_stack(workers=1, snapshot_interval_s=2.0, **UNBOUNDED)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=4000)
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        for e in ml.events:
            p.send_event(e)
    seen: set[str] = set()
    while len(seen) < 2000:
        seen.update(r.event_id for r in reader.poll(0.2))
    stack.workers[0].kill()  # SIGKILL: its last snapshot is behind what it learned
    stack.workers[0].wait()
    restarted = stack.start_worker()
    want = {reader.event_ref(e.event_id) for e in ml.events}
    deadline = time.monotonic() + 120
    while not want <= seen and time.monotonic() < deadline and restarted.poll() is None:
        seen.update(r.event_id for r in reader.poll(0.5))
    reader.close()
    log = (stack.log_dir / "worker-1.log").read_text()
    missing = want - seen
    assert not missing, where_are(s, ml.events, missing, reader.event_ref) + log[-2000:]
    stack.stop()
    assert "shared state in sync" in log, log[-2000:]
    assert_same(learned_trending(s), in_process_trending(s, ml.events))


def where_are(s: Settings, events, refs: set[str], ref) -> str:
    """For a failure: where the events without a list are on storefront.events, if at all."""
    ids = [e.event_id.encode() for e in events if ref(e.event_id) in refs]
    consumer = tail(s, STOREFRONT_EVENTS)
    found = [f"{i.decode()} at p{r.partition}@{r.offset}"
             for r in read_all(consumer, 2.0) for i in ids if i in r.value]  # fmt: skip
    consumer.close()
    return f"{len(refs)} events without a list; on the topic: {found or 'none of them'}\n"


def catalog_counts(consumer, per: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    for r in read_all(consumer):
        w = MetricsWindow.from_dict(serde.loads(r.value))
        mine = per.setdefault(w.worker, {})
        for k in ("catalog_invalid", "catalog_dead_lettered"):
            mine[k] = mine.get(k, 0) + w.counts.get(k, 0)
    return per


def test_a_bad_catalog_record_is_dead_lettered_once_by_three_workers_and_a_restart(make_stack):
    stack = make_stack(workers=3, partitions=3)
    s = stack.settings
    bad = [f"bad-{i}".encode() for i in range(6)]  # over all three partitions
    with EventProducer(s) as p:
        p.publish_item(CatalogItem("hat", "Hat", ("Clothes",)))
        for key in bad:
            p._producer.send(s.topic(CATALOG_ITEMS), key=key, value=b'{"item_id": "x"}')
        p.flush()
    metrics = tail(s, METRICS)
    per: dict[str, dict[str, int]] = {}

    def every_worker_read_them(n_workers: int) -> bool:
        catalog_counts(metrics, per)
        read = [c["catalog_invalid"] for c in per.values()]
        return len(read) >= n_workers and all(n >= len(bad) for n in read[-n_workers:])

    wait_until(lambda: every_worker_read_them(3), state=lambda: f"counts {per}")
    wait_until(lambda: len(dead_letters(s)) >= len(bad), state=lambda: f"counts {per}")
    first = dead_letters(s)
    assert len(first) == len(bad) and {d.reason for d in first} == {"schema"}
    assert len({(d.partition, d.offset) for d in first}) == len(bad)  # one each

    # A worker killed and restarted reads the catalog again: nothing is dead-lettered twice.
    stack.workers[0].kill()
    stack.workers[0].wait()
    stack.start_worker()
    # the new one read them all too
    wait_until(lambda: every_worker_read_them(4), state=lambda: f"counts {per}")
    metrics.close()
    assert len(dead_letters(s)) == len(bad)


def dead_letters(s: Settings) -> list[DeadLetter]:
    consumer = tail(s, EVENTS_DLQ)
    out = [DeadLetter.from_dict(serde.loads(r.value)) for r in read_all(consumer, idle_s=1.0)]
    consumer.close()
    return out


def wait_until(condition, timeout_s: float = 90.0, state=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out; {state()}"
        time.sleep(0.2)
