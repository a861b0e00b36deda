"""The scorer worker on the embedded broker, with a tiny BERT: vectors, fallback, hot swap."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from streamrec import serde
from streamrec.client import EventProducer, RecommendationReader, read_all, tail
from streamrec.contracts import CATALOG_EMBEDDINGS, CATALOG_ITEMS, EVENTS_DLQ, SCORER_REQUESTS
from streamrec.records import CatalogItem, DeadLetter, Recommendation
from streamrec.scorer.encoder import model_version
from streamrec.scorer.hot_swap import send_control
from streamrec.settings import Settings
from streamrec.tools.stack import LocalStack
from tests.tiny_bert import SHOP_WORDS

from .conftest import metrics_totals

pytestmark = pytest.mark.integration

ITEMS = [
    CatalogItem(f"sku-{i}", f"{a} {b}", (a,))
    for i, (a, b) in enumerate(zip(SHOP_WORDS, SHOP_WORDS[3:] + SHOP_WORDS[:3], strict=True))
]


def with_scorer(make_stack, tiny_model_dir, scorers: int = 1, **overrides: object) -> LocalStack:
    return make_stack(
        workers=1, scorers=scorers, encoder_model_dir=str(tiny_model_dir), **overrides
    )


def embeddings(settings: Settings) -> list[tuple[int, str, dict | None]]:
    consumer = tail(settings, CATALOG_EMBEDDINGS)
    try:
        return [
            (r.partition, r.key.decode(), serde.loads(r.value) if r.value else None)
            for r in read_all(consumer)
        ]
    finally:
        consumer.close()


def wait_catalog_complete(settings: Settings, version: str, timeout_s: float = 60) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        records = embeddings(settings)
        marked = {d["partition"] for _, _, d in records if d and d["kind"] == "complete"
                  and d["model_version"] == version}  # fmt: skip
        if len(marked) == 4 or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def publish_catalog(settings: Settings) -> dict[str, int]:
    """Publish ITEMS; returns item_id -> the catalog.items partition it landed on."""
    with EventProducer(settings) as p:
        for item in ITEMS:
            p.publish_item(item)
    consumer = tail(settings, CATALOG_ITEMS)
    try:
        return {r.key.decode(): r.partition for r in read_all(consumer)}
    finally:
        consumer.close()


def wait_vectors_flow(stack: LocalStack, timeout_s: float = 60) -> Recommendation:
    """Search until a list comes back with a query vector (scorer joined, worker caught up)."""
    reader = RecommendationReader(stack.settings, from_beginning=False)
    deadline = time.monotonic() + timeout_s
    try:
        with EventProducer(stack.settings) as p:
            while time.monotonic() < deadline:
                user = f"warm-{uuid.uuid4().hex[:6]}"
                ev = p.track("search", user, query="wireless headphones")
                rec = reader.wait_for(user, 10, until=reader.answers(ev.event_id))
                if rec is not None and not rec.flags:
                    return rec
                time.sleep(0.5)
    finally:
        reader.close()
    raise AssertionError(f"no search got a query vector within {timeout_s} s")


def test_search_events_get_query_vectors_in_order_and_the_catalog_is_embedded(
    make_stack, tiny_model_dir
):
    stack = with_scorer(make_stack, tiny_model_dir)
    s = stack.settings
    version = model_version(tiny_model_dir)
    partition_of = publish_catalog(s)

    records = wait_catalog_complete(s, version)
    vectors = {key: (p, d) for p, key, d in records if d and d["kind"] == "item"}
    assert set(vectors) == {it.item_id for it in ITEMS}  # every item, nothing else
    for item_id, (p, d) in vectors.items():
        assert d["model_version"] == version and d["dim"] == 32
        assert p == partition_of[item_id]  # a vector sits on its item's partition
        assert len(d["vector"]) == 88  # 32 float16 = 64 bytes, base64

    assert wait_vectors_flow(stack).encoder_version == version
    # Several users, searches interleaved with views, all in one go.
    queries = ["red shoes", "kitchen sink", "tv lamp", "running", "bluetooth headset"]
    sent: dict[str, list[str]] = {}
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        for n in range(20):
            user = f"shopper-{n % 4}"
            if n % 3 == 2:
                ev = p.track("view", user, item_id=ITEMS[n % len(ITEMS)].item_id)
            else:
                ev = p.track("search", user, query=queries[n % len(queries)])
            sent.setdefault(ev.user_id, []).append(reader.event_ref(ev.event_id))
    got: dict[str, list[Recommendation]] = {}
    deadline = time.monotonic() + 60
    while sum(len(r.event_ids) for recs in got.values() for r in recs) < 20:
        assert time.monotonic() < deadline, got
        for rec in reader.poll(0.5):
            got.setdefault(rec.user, []).append(rec)
    reader.close()
    by_user = {reader.pseudonym(u): ids for u, ids in sent.items()}
    # Every event answered once, in order (a list answers its user's events of a batch).
    assert {u: [e for r in recs for e in r.event_ids] for u, recs in got.items()} == by_user
    searches = [r for recs in got.values() for r in recs if r.event_type == "search"]
    assert searches
    for rec in searches:
        assert rec.flags == () and rec.encoder_version == version
        assert any(i.reason == "matches your search" for i in rec.items)
        assert set(rec.item_ids) <= {it.item_id for it in ITEMS}

    # An undecodable request is dead-lettered; the scorer keeps answering.
    with EventProducer(s) as p:
        p._producer.send(s.topic(SCORER_REQUESTS), value=b"\xff not json", key=b"bad")
        p.flush()
    dlq = tail(s, EVENTS_DLQ)
    deadline = time.monotonic() + 30
    dead: list[DeadLetter] = []
    while not dead and time.monotonic() < deadline:
        dead = [DeadLetter.from_dict(serde.loads(r.value)) for r in read_all(dlq)]
    dlq.close()
    assert [(d.reason, d.source_topic) for d in dead] == [("not_json", s.topic(SCORER_REQUESTS))]
    assert all(proc.poll() is None for proc in stack.scorers)
    assert wait_vectors_flow(stack, timeout_s=20).encoder_version == version

    # A restarted worker starts from its item-vector snapshot, then reads on.
    stack.stop_worker(stack.workers[0])
    stack.start_worker()
    rec = wait_vectors_flow(stack, timeout_s=60)
    assert rec.encoder_version == version
    assert any(i.reason == "matches your search" for i in rec.items)
    # The lists can carry vectors (restored at start) before the catalog follower has
    # logged where it reads on from: wait for that line rather than read it at once.
    log_path = stack.log_dir / "worker-1.log"
    deadline = time.monotonic() + 30
    while "item vectors restored from snapshot" not in log_path.read_text():
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)


def test_a_stopped_scorer_makes_searches_fall_back_flagged_not_stall(make_stack, tiny_model_dir):
    stack = with_scorer(make_stack, tiny_model_dir, scorer_timeout_ms=1000)
    s = stack.settings
    publish_catalog(s)
    wait_catalog_complete(s, model_version(tiny_model_dir))
    wait_vectors_flow(stack)
    stack.stop_worker(stack.scorers[0])

    reader = RecommendationReader(s, from_beginning=False)
    t0 = time.monotonic()
    with EventProducer(s) as p:
        for n in range(30):  # new texts: the worker's cache cannot answer them
            p.track("search", f"down-{n % 5}", query=f"w{n} red")
            time.sleep(0.02)
    recs: list[Recommendation] = []
    while sum(len(r.event_ids) for r in recs) < 30 and time.monotonic() - t0 < 60:
        recs += reader.poll(0.5)
    elapsed = time.monotonic() - t0
    reader.close()
    assert sum(len(r.event_ids) for r in recs) == 30  # every search answered, once
    assert all(r.flags == ("no_query_vector",) for r in recs)
    # One timeout, then batches stop waiting for a scorer known to be down.
    assert elapsed < 15, elapsed
    totals = metrics_totals(s, expect_in=1)  # sums counts; the scorer stats are per window
    assert totals["dlq"] == 0

    # Back: the worker probes on its own until the scorer answers, so the first search
    # after that (no traffic in between) has its vector.
    logs = lambda: "".join(p.read_text() for p in stack.log_dir.glob("worker-*.log"))  # noqa: E731
    answered = logs().count("scorer answers again")
    stack.start_scorer()
    deadline = time.monotonic() + 90
    while logs().count("scorer answers again") == answered:
        assert time.monotonic() < deadline, logs()[-3000:]
        time.sleep(0.5)
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        ev = p.track("search", "back-1", query="w99 red shoes")
    rec = reader.wait_for("back-1", timeout_s=30, until=reader.answers(ev.event_id))
    reader.close()
    assert rec is not None and rec.flags == ()


def test_hot_swap_reembeds_the_catalog_then_switches_with_two_scorers(
    make_stack, tiny_model_dir, tiny_model_dir_b
):
    stack = with_scorer(make_stack, tiny_model_dir, scorers=2)
    s = stack.settings
    v1, v2 = model_version(tiny_model_dir), model_version(tiny_model_dir_b)
    publish_catalog(s)
    before = wait_catalog_complete(s, v1)
    assert {k for _, k, d in before if d and d["kind"] == "item"} == {i.item_id for i in ITEMS}
    assert wait_vectors_flow(stack).encoder_version == v1

    asyncio.run(send_control(s, str(tiny_model_dir_b)))
    records = wait_catalog_complete(s, v2)
    v2_items = {k: (p, d) for p, k, d in records if d and d["kind"] == "item"
                and d["model_version"] == v2}  # fmt: skip
    assert set(v2_items) == {i.item_id for i in ITEMS}
    markers = {d["partition"]: d for _, _, d in records if d and d["kind"] == "complete"
               and d["model_version"] == v2}  # fmt: skip
    for p, d in v2_items.values():
        assert d["ts"] <= markers[p]["ts"]  # a partition is marked only once it is complete
    # The rank worker switches once every partition is complete; searches follow.
    deadline = time.monotonic() + 60
    rec = wait_vectors_flow(stack)
    while rec.encoder_version != v2 and time.monotonic() < deadline:
        rec = wait_vectors_flow(stack)
    assert rec.encoder_version == v2 and rec.flags == ()
    # A scorer that starts now starts on the commanded model, not the configured one.
    stack.start_scorer()
    time.sleep(1)
    assert b"starting on the last commanded encoder" in _wait_log(stack, "scorer-2.log", 60)


def _wait_log(stack: LocalStack, name: str, timeout_s: float) -> bytes:
    path = stack.log_dir / name
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""
        if b"group" in data:
            return data
        time.sleep(0.5)
    return path.read_bytes() if path.exists() else b""
