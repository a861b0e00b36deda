"""The serving follower's record logic and where it starts reading, without a broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from aiokafka import TopicPartition

from streamrec import serde
from streamrec.core.filters import Filters
from streamrec.core.privacy import Pseudonymizer
from streamrec.core.retrieval.vectors import encode_vectors
from streamrec.keys import DEV_PSEUDONYM_KEY
from streamrec.records import CatalogEmbedding, CatalogItem, MetricsWindow
from streamrec.serve.follow import EVENTS_TAIL, Follower
from streamrec.serve.state import ServingState
from streamrec.serve.store import ListStore
from streamrec.settings import Settings
from tests.unit.test_catalog_follower import Record


class FakeConsumer:
    def __init__(self) -> None:
        self.seeks: dict[TopicPartition, int] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def offsets_for_times(self, wanted: dict[TopicPartition, int]) -> dict:
        return dict.fromkeys(wanted)  # nothing that recent: start at the end


def _follower(tmp_path: Path) -> Follower:
    s = Settings.from_env({})
    state = ServingState(
        ListStore(tmp_path),
        Pseudonymizer(DEV_PSEUDONYM_KEY.encode()),
        embedding_partitions=1,
        hnsw_above=50_000,
        trending_half_life_s=3600,
    )
    return Follower(s, state)


def test_records_of_every_topic_land_in_the_state(tmp_path: Path) -> None:
    f = _follower(tmp_path)
    t, st = f.t, f.state
    recs = TopicPartition(t["recommendations"], 2)
    f.apply(recs, [Record(b'{"a": 1}', b"u_1", offset=7), Record(b'{"b": 2}', b"u_2", offset=8)])
    f.apply(recs, [Record(None, b"u_1", offset=9)])  # erased
    assert st.lists.get("u_1") is None and st.lists.get("u_2") == b'{"b": 2}'
    assert st.lists.offsets(t["recommendations"]) == {2: 10}

    items = TopicPartition(t["catalog.items"], 0)
    hat = CatalogItem("hat", "Wool hat", ("Clothes",), price=20.0)
    f.apply(items, [Record(serde.dumps(hat.to_dict()), b"hat"), Record(b"{bad", b"x")])
    assert st.catalog.get("hat") == hat
    emb = TopicPartition(t["catalog.embeddings"], 0)
    vec = encode_vectors(np.array([1.0, 0.0], dtype=np.float32))
    rows = [
        CatalogEmbedding("item", "v1", 1, "hat", 2, vec, ""),
        CatalogEmbedding("complete", "v1", 2, partition=0, items=1),
    ]
    f.apply(emb, [Record(serde.dumps(r.to_dict()), r.key.encode()) for r in rows])
    assert st.vectors.active_version == "v1" and st.vectors.get("hat") is not None
    f.apply(items, [Record(None, b"hat")])  # deleted from the catalog: never offered
    assert st.similar("hat", 5, Filters()) == []

    events = TopicPartition(t["storefront.events"], 1)
    views = [serde.dumps({"type": "purchase", "user_id": "raw", "item_id": "cap", "ts": 5})]
    f.apply(events, [Record(v, b"raw") for v in views])
    assert st.popular(5, Filters())["items"][0]["item_id"] == "cap"
    metrics = TopicPartition(t["metrics"], 0)
    w = MetricsWindow("w", 0, 10_000, {"in": 5, "valid": 5, "dlq": 0, "duplicates": 0}, {})
    f.apply(metrics, [Record(serde.dumps(w.to_dict()), b"w")])
    assert len(st.health.windows) == 1


def test_a_store_that_does_not_fit_the_topic_is_rebuilt_from_its_start(tmp_path: Path) -> None:
    f = _follower(tmp_path)
    recs = [TopicPartition(f.t["recommendations"], p) for p in (0, 1)]
    events = TopicPartition(f.t["storefront.events"], 0)
    metrics = TopicPartition(f.t["metrics"], 0)
    tps = [*recs, events, metrics]
    begins = dict.fromkeys(tps, 0)
    ends = {recs[0]: 40, recs[1]: 50, events: EVENTS_TAIL + 123, metrics: 9}

    f.state.lists.apply([(b"u_1", b"{}")], f.t["recommendations"], {0: 30, 1: 45})
    consumer = FakeConsumer()
    asyncio.run(f._seek(consumer, tps, begins, ends))  # type: ignore[arg-type]
    assert consumer.seeks[recs[0]] == 30 and consumer.seeks[recs[1]] == 45  # resumes
    assert consumer.seeks[events] == 123  # only the recent tail, for popularity
    assert consumer.seeks[metrics] == 9  # nothing in the health span
    assert f.state.lists.get("u_1") == b"{}"

    ends[recs[1]] = 20  # the topic was recreated (an in-memory broker restarted)
    consumer = FakeConsumer()
    asyncio.run(f._seek(consumer, tps, begins, ends))  # type: ignore[arg-type]
    assert consumer.seeks[recs[0]] == 0 and consumer.seeks[recs[1]] == 0
    assert (
        f.state.lists.get("u_1") is None and f.state.lists.offsets(f.t["recommendations"]) is None
    )
