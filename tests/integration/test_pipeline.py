"""End to end through `streamrec worker` on the embedded broker."""

import hashlib
import time

import pytest

from streamrec import serde
from streamrec.build import build_dead_letters
from streamrec.client import EventProducer, InvalidEvent, RecommendationReader, read_all, tail
from streamrec.contracts import EVENTS_DLQ
from streamrec.core.privacy import Pseudonymizer
from streamrec.datasets import movielens
from streamrec.datasets.malformed import malformed_events
from streamrec.records import CatalogItem, DeadLetter, Recommendation
from streamrec.tools.replay import replay

from .conftest import metrics_totals

pytestmark = pytest.mark.integration


def collect_recs(reader: RecommendationReader, want: int, timeout_s: float) -> list[Recommendation]:
    """Lists until they answer `want` events (a list answers its user's events of a batch)."""
    got: list[Recommendation] = []
    answered = 0
    deadline = time.monotonic() + timeout_s
    while answered < want and time.monotonic() < deadline:
        new = reader.poll(0.5)
        got += new
        answered += sum(len(r.event_ids) for r in new)
    return got


def test_replay_2000_events_and_50_malformed(make_stack):
    stack = make_stack(workers=1)
    s = stack.settings
    ml = movielens.load(movielens.fetch(s.cache_dir, quiet=True), limit=2000)
    now = int(time.time() * 1000)
    bad = malformed_events(50, now)
    reader = RecommendationReader(s, from_beginning=False)
    rows = [*ml.events[:1000], *[(k, v, 0) for k, v, _ in bad], *ml.events[1000:], *ml.events[:20]]
    with EventProducer(s) as producer:
        stats = replay(producer, rows, items=ml.items, progress=False)  # type: ignore[arg-type]
    assert stats.events == 2070

    recs = collect_recs(reader, 2000, timeout_s=90)
    reader.close()
    pseudo = Pseudonymizer(s.resolved_pseudonym_key())
    want = {(pseudo.event_id(e.event_id), pseudo(e.user_id)) for e in ml.events}
    answered = [(ref, r.user) for r in recs for ref in r.event_ids]
    assert set(answered) == want  # every valid event answered, by a list for its user
    assert len(answered) == 2000  # ... once, and none of the 20 retried duplicates
    assert all(r.produced_ts >= r.ingest_ts > 0 for r in recs)

    dlq = tail(s, EVENTS_DLQ)
    dead = [DeadLetter.from_dict(serde.loads(r.value)) for r in read_all(dlq, idle_s=2)]
    dlq.close()
    by_value = {v: reason for _, v, reason in bad}
    by_hash = {hashlib.sha256(v).hexdigest(): v for v in by_value}
    # Each bad event once: whole, or (the oversized ones) its start, size and hash.
    opened = [build_dead_letters(s).open(d)[1] for d in dead]  # sealed at rest
    whole = [
        by_hash[d.original_sha256] if d.truncated else o for d, o in zip(dead, opened, strict=True)
    ]
    assert sorted(whole) == sorted(by_value)
    for d, original, start in zip(dead, whole, opened, strict=True):
        assert original.startswith(start) and len(start) <= s.dlq_original_max_bytes
        assert d.reason == by_value[original] and d.detail
        assert d.source_topic == s.topic("storefront.events") and d.offset >= 0

    totals = metrics_totals(s, expect_in=2070 + 1)  # + the readiness probe
    assert totals == {"in": 2071, "valid": 2001, "dlq": 50, "duplicates": 20}


def test_client_reader_cold_start_and_catalog_rules(make_stack):
    stack = make_stack(workers=1)
    s = stack.settings
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        for item, available in (("hat", True), ("scarf", True), ("gone", False)):
            p.publish_item(CatalogItem(item, item.title(), ("Clothes",), available=available))
        # A broken catalog feed line: the follower dead-letters it and carries on.
        p._producer.send(
            s.topic("catalog.items"), key=b"bad-item", value=b'{"item_id": "bad-item"}'
        )
        p.flush()
        time.sleep(1.0)  # the catalog follower reads catalog.items in the background
        last = {}
        for i in range(5):
            for item in ("hat", "scarf", "gone"):
                last[f"shopper-{i}"] = p.track("view", f"shopper-{i}", item_id=item).event_id
        p.flush()
        # Partitions are consumed independently: let every shopper's views land first.
        for user, event_id in last.items():
            assert reader.wait_for(user, timeout_s=30, until=reader.answers(event_id))
        with pytest.raises(InvalidEvent, match="item_id"):
            p.track("click", "shopper-0")  # a click needs an item: refused before sending
        p.track("search", "brand-new-user", query="warm hat")

    rec = reader.wait_for("brand-new-user", timeout_s=30)
    assert rec is not None and rec.event_type == "search"
    assert rec.user == reader.pseudonym("brand-new-user") != "brand-new-user"
    ids = rec.item_ids
    assert set(ids) == {"hat", "scarf"}  # cold start: trending, never the unavailable item
    # From popularity: now (trending) or its rise (growth), which weigh the same in the
    # blend; either may lead for a new item.
    popular = {"trending", "rising in popularity"}
    assert all(i.reason in popular and "trending" in i.sources and i.score > 0 for i in rec.items)
    reader.close()

    dlq = tail(s, EVENTS_DLQ)
    dead = [DeadLetter.from_dict(serde.loads(r.value)) for r in read_all(dlq, idle_s=2)]
    dlq.close()
    assert [(d.reason, d.source_topic) for d in dead] == [("schema", s.topic("catalog.items"))]
    assert "title" in dead[0].detail
