"""N workers learn as one: item state shared over shared.state, through the embedded broker."""

import time

import pytest

from streamrec import serde
from streamrec.client import EventProducer, RecommendationReader, read_all, read_table, tail
from streamrec.contracts import CATALOG_ITEMS, EVENTS_DLQ, METRICS
from streamrec.core.monitoring.windows import merge_windows
from streamrec.core.profile import Profile
from streamrec.datasets import movielens
from streamrec.records import CatalogItem, DeadLetter, MetricsWindow
from streamrec.settings import Settings
from streamrec.worker.checkpoint import read_checkpoint

from .conftest import metrics_totals
from .learned import UNBOUNDED, assert_same, in_process_trending, learned_trending

pytestmark = pytest.mark.integration


def wait_all_folded(s: Settings, workers: int, timeout_s: float = 60) -> dict[str, dict]:
    """Per worker, its summed shared_* counts, once each has seen every published delta."""
    consumer = tail(s, METRICS)
    per: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for r in read_all(consumer, max_s=5):
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
        seen.update(ref for r in reader.poll(0.5) for ref in r.event_ids)
    reader.close()
    assert want - seen == set()
    counts = wait_all_folded(s, workers=3)
    assert all(c.get("shared_overlap", 0) == 0 and c.get("shared_bad", 0) == 0
               for c in counts.values()), counts  # fmt: skip
    # How late the others' deltas were folded is measured (figures: docs/scaling.md).
    consumer = tail(s, METRICS)
    lag = merge_windows(MetricsWindow.from_dict(serde.loads(r.value))
                        for r in read_all(consumer, max_s=10)).summary()  # fmt: skip
    consumer.close()
    assert lag["shared_lag_p50_ms"] is not None and lag["shared_lag_p50_ms"] >= 0
    stack.stop()  # every worker writes its snapshot; they share the data dir, any one will do
    assert_same(learned_trending(s), in_process_trending(s, ml.events))


def catalog_counts(consumer, per: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    for r in read_all(consumer, max_s=5):
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


def test_a_retry_across_a_worker_restart_is_counted_once_as_a_duplicate(make_stack):
    stack = make_stack(workers=1)
    s = stack.settings
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        first = p.track("purchase", "buyer", item_id="sku-9", price=20.0, event_id="order-77")
        first = first.event_id
        assert reader.wait_for("buyer", timeout_s=30, until=reader.answers(first))
    stack.workers[0].terminate()  # a normal stop: its in-memory window is gone with it
    stack.workers[0].wait()
    stack.start_worker()
    with EventProducer(s) as p:
        # The storefront's retry (same event id), then a new event to know it was read.
        p.track("purchase", "buyer", item_id="sku-9", price=20.0, event_id="order-77")
        later = p.track("view", "buyer", item_id="sku-3").event_id
    assert reader.wait_for("buyer", timeout_s=60, until=reader.answers(later))
    buyer = reader.pseudonym("buyer")
    reader.close()
    # The purchase counts once in the buyer's profile, whoever saw the retry.
    profile = Profile.from_bytes(read_table(s)[buyer.encode()], buyer)[0]
    assert (profile.orders, profile.spend) == (1, 20.0)
    deadline = time.monotonic() + 30
    totals = metrics_totals(s, expect_in=3)
    while totals["duplicates"] < 1 and time.monotonic() < deadline:
        totals = metrics_totals(s, expect_in=3)
    # The retry is a duplicate. Faust may also deliver the restarted worker's first
    # events twice around its group join (`worker/faust_tuning.py`): the second copy
    # is caught by the in-memory window and counted as a duplicate too, never applied.
    assert totals["duplicates"] >= 1 and totals["dlq"] == 0
    assert totals["in"] == totals["valid"] + totals["duplicates"]


def send_and_wait_for_lists(s: Settings, events, timeout_s: float = 120) -> None:
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        for e in events:
            p.send_event(e)
    want = {reader.event_ref(e.event_id) for e in events}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while not want <= seen and time.monotonic() < deadline:
        seen.update(ref for r in reader.poll(0.5) for ref in r.event_ids)
    reader.close()
    assert want - seen == set()


def test_a_new_host_starts_from_the_shared_checkpoint(make_stack, tmp_path):
    stack = make_stack(workers=1, partitions=2, share_checkpoint_interval_s=1.0, **UNBOUNDED)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=2000)
    send_and_wait_for_lists(s, ml.events[:1500])
    after = int(time.time() * 1000)
    wait_until(lambda: (c := read_checkpoint(s)) is not None and c[1]["written_ms"] > after)
    send_and_wait_for_lists(s, ml.events[1500:])  # some of it only on shared.state
    stack.workers[0].terminate()
    stack.workers[0].wait()
    new_host = s.with_overrides(data_dir=tmp_path / "new-host")  # no snapshot of its own
    stack.start_worker(data_dir=new_host.data_dir)
    log = stack.log_dir / "worker-1.log"
    wait_until(lambda: "shared state in sync" in log.read_text(), state=log.read_text)
    assert "restored learned state from shared checkpoint" in log.read_text()
    stack.stop()  # its shutdown snapshot, in its own data dir
    assert_same(learned_trending(new_host), in_process_trending(s, ml.events))
