"""Retrieval and ranking through the real pipeline: cold-start items, same lists as in process."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from streamrec import serde
from streamrec.build import build_engine
from streamrec.client import EventProducer, RecommendationReader, read_all, tail
from streamrec.contracts import METRICS
from streamrec.core.ingest import RawMessage
from streamrec.core.retrieval.vectors import decode_vectors, encode_vectors
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.records import MetricsWindow, RawEvent
from streamrec.settings import Settings

from .same_batches import collect, in_process, logged_batches, next_offset, same_lists

pytestmark = pytest.mark.integration

DIM = 16
VERSION = "synthetic@1"


def unit_vectors(ids: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    v = np.random.default_rng(seed).normal(size=(len(ids), DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    # what the wire keeps: float16
    return {i: decode_vectors(encode_vectors(row), DIM)[0] for i, row in zip(ids, v, strict=True)}


def wait_item_vectors(settings: Settings, n: int, timeout_s: float = 60) -> None:
    consumer = tail(settings, METRICS)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for r in read_all(consumer, max_s=5):
                w = MetricsWindow.from_dict(serde.loads(r.value))
                if w.role == "worker" and w.scorer.get("item_vectors", 0) >= n:
                    return
        raise AssertionError(f"the worker did not load {n} item vectors in {timeout_s} s")
    finally:
        consumer.close()


def test_a_new_item_is_recommended_as_soon_as_its_vector_arrives(make_stack):
    stack = make_stack(workers=1, partitions=1, scorer_enabled=False)
    s = stack.settings
    shop = SyntheticShop(users=5, items=60, seed=2)
    vectors = unit_vectors([it.item_id for it in shop.catalog])
    with EventProducer(s) as p:
        for it in shop.catalog:
            p.publish_item(it)
        p.publish_vectors(vectors, VERSION, partitions=1)
    wait_item_vectors(s, 60)

    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        for _ in range(3):  # the user likes sku-7
            p.track("click", "fan", item_id="sku-7")
        from streamrec.records import CatalogItem

        # A brand-new item nobody has touched, pointing where the user's taste points.
        p.publish_item(CatalogItem("fresh-1", "Brand new thing", ("Audio",), price=20.0))
        p.publish_vectors({"fresh-1": vectors["sku-7"]}, VERSION, partitions=1)
        time.sleep(1.0)
        ev = p.track("view", "fan", item_id="sku-3")
    rec = reader.wait_for("fan", timeout_s=30, until=reader.answers(ev.event_id))
    reader.close()
    assert rec is not None
    fresh = [i for i in rec.items if i.item_id == "fresh-1"]
    assert fresh and "interest" in fresh[0].sources, [(i.item_id, i.sources) for i in rec.items]
    assert rec.encoder_version == VERSION


def synthetic_stream(shop: SyntheticShop, n: int, start_ts: int, seed: int = 5) -> list[RawEvent]:
    """Views, clicks, purchases and impressions (no searches: they need a scorer)."""
    rng = random.Random(seed)
    out: list[RawEvent] = []
    for ev in shop.events(n, start_ts=start_ts, step_ms=1_000):
        if ev.type == "search":
            continue
        if ev.type == "view" and rng.random() < 0.3:
            shown = [f"sku-{rng.randrange(len(shop.catalog))}" for _ in range(8)]
            out.append(RawEvent(f"imp-{ev.event_id}", "impression", ev.user_id, ev.ts, shown=shown))
        out.append(ev)
    return out


def test_in_process_core_and_the_pipeline_rank_the_same_with_vectors_and_learning(make_stack):
    overrides = {"partitions": 1, "scorer_enabled": False, "ranker_min_updates": 40,
                 "log_batches": True}  # fmt: skip
    stack = make_stack(workers=1, **overrides)
    s = stack.settings
    shop = SyntheticShop(users=40, items=120, seed=4)
    vectors = unit_vectors([it.item_id for it in shop.catalog], seed=1)
    with EventProducer(s) as p:
        for it in shop.catalog:
            p.publish_item(it)
        p.publish_vectors(vectors, VERSION, partitions=1)
    wait_item_vectors(s, 120)

    now = int(time.time() * 1000)
    events = synthetic_stream(shop, 1_500, start_ts=now - 2_000_000)
    engine = build_engine(s)
    for it in shop.catalog:
        engine.upsert_item(it)
    for item, vec in vectors.items():
        engine.item_vectors.upsert(item, VERSION, vec)
    engine.item_vectors.mark_complete(VERSION, 0, ts=1)
    msgs = [
        RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, now)
        for i, e in enumerate(events)
    ]
    log = stack.log_dir / "worker-0.log"
    base = next_offset(log)
    reader = RecommendationReader(s, from_beginning=False)
    with EventProducer(s) as p:
        for e in events:
            p.send_event(e)
    online = collect(reader, len(events), timeout_s=120)
    reader.close()

    offline = in_process(engine, msgs, logged_batches(log), base, now)
    assert engine.recommender.ranker is not None and engine.recommender.ranker.updates > 40
    assert any("interest" in i.sources for r in offline.values() for i in r.items)
    same_lists(offline, online)
