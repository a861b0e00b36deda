"""Client library for storefront backends and consumer apps.

* `EventProducer` (kafka-python, synchronous): storefront backends call
  `.track(...)`; events are keyed by the raw user id so one user's events stay
  on one partition, in order.
* `RecommendationReader`: follows the compacted `recommendations` topic and
  answers "latest list for this raw user id", applying the same keyed HMAC as
  the worker, so apps never handle pseudonyms themselves.

    with EventProducer(Settings.from_env()) as events:
        events.track("search", "alice", query="running shoes")
        events.track("view", "alice", item_id="sku-123")
    reader = RecommendationReader(Settings.from_env())
    rec = reader.wait_for("alice", timeout_s=5)
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

import fastjsonschema
from kafka import KafkaConsumer, TopicPartition

from streamrec import clients, serde
from streamrec.compaction import latest_per_key
from streamrec.contracts import (
    CATALOG_EMBEDDINGS,
    CATALOG_ITEMS,
    RECOMMENDATIONS,
    STOREFRONT_EVENTS,
    load_contract,
)
from streamrec.core.filters import Filters
from streamrec.core.privacy import Pseudonymizer
from streamrec.errors import BrokerError, InvalidEvent
from streamrec.http_client import RecommendationClient, ServeError
from streamrec.offsets import EndReader
from streamrec.records import AuditRecord, CatalogItem, RawEvent, Recommendation
from streamrec.settings import Settings

__all__ = [
    "EventProducer",
    "InvalidEvent",
    "RecommendationClient",
    "RecommendationReader",
    "ServeError",
    "filter_items",
    "read_all",
    "read_table",
    "tail",
]


def tail(settings: Settings, topic: str, *, from_beginning: bool = True) -> KafkaConsumer:
    """A consumer assigned every partition of contract topic `topic` (no group)."""
    name = settings.topic(topic)
    consumer = clients.consumer(
        settings, enable_auto_commit=False, fetch_max_wait_ms=settings.fetch_max_wait_ms
    )
    tps = [TopicPartition(name, p) for p in _wait_partitions(consumer, name)]
    consumer.assign(tps)
    if from_beginning:
        consumer.seek_to_beginning(*tps)
    else:
        consumer.seek_to_end(*tps)
        # kafka-python resolves "end" lazily at the first poll; resolve it now, or
        # everything produced between here and that poll would be skipped.
        for tp in tps:
            consumer.position(tp)
    return consumer


def read_all(consumer: KafkaConsumer, idle_s: float = 0.5, max_s: float | None = None) -> list[Any]:
    """Every record the consumer can get until nothing arrives for `idle_s`.

    On a topic that several writers keep feeding (metrics windows from N
    workers), a quiet `idle_s` may never come: `max_s` bounds the call, and
    the next call goes on from where this one stopped.
    """
    out: list[Any] = []
    deadline = None if max_s is None else time.monotonic() + max_s
    while deadline is None or time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=int(idle_s * 1000))
        if not batch:
            return out
        for records in batch.values():
            out.extend(records)
    return out


def read_table(
    settings: Settings, table: str = "profiles", idle_s: float = 2.0
) -> dict[bytes, bytes]:
    """A worker table as its changelog holds it now: the latest value per key.

    The profile table's changelog is `<app id>-profiles-changelog`; values are
    `Profile.to_bytes()`. For operators and tests: it reads the whole topic.
    """
    return latest_per_key((r.key, r.value) for r in _changelog(settings, table, idle_s))


def changelog_written(
    settings: Settings, table: str = "profiles", idle_s: float = 2.0
) -> tuple[int, int]:
    """(records, value bytes) a worker table's changelog holds: everything written to it
    (the embedded broker keeps every record; a compacted topic elsewhere, fewer)."""
    sizes = [len(r.value or b"") for r in _changelog(settings, table, idle_s)]
    return len(sizes), sum(sizes)


def _changelog(settings: Settings, table: str, idle_s: float) -> list[Any]:
    topic = f"{settings.app_id}-{table}-changelog"
    consumer = clients.consumer(settings, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in _wait_partitions(consumer, topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return read_all(consumer, idle_s=idle_s)
    finally:
        consumer.close()


class EventProducer:
    """Publishes storefront events and catalog items."""

    def __init__(self, settings: Settings, *, linger_ms: int = 5, **kafka_kwargs: Any) -> None:
        self.settings = settings
        self._topic = settings.topic(STOREFRONT_EVENTS)
        self._catalog_topic = settings.topic(CATALOG_ITEMS)
        self._validate = load_contract(STOREFRONT_EVENTS).validator
        self._validate_item = load_contract(CATALOG_ITEMS).validator
        try:
            self._producer = clients.producer(
                settings,
                # Idempotent producer (kafka-python's default with acks="all"): a retried
                # send is neither duplicated nor reordered, so per-user order holds.
                acks="all",
                linger_ms=linger_ms,
                batch_size=256 * 1024,
                **kafka_kwargs,
            )
        except Exception as exc:
            raise BrokerError(
                f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}. Is the broker "
                "running (`streamrec broker`)? Is STREAMREC_KAFKA_BOOTSTRAP right?"
            ) from exc

    def track(
        self,
        type: str,
        user_id: str,
        *,
        item_id: str | None = None,
        query: str | None = None,
        price: float | None = None,
        quantity: int | None = None,
        shown: list[str] | None = None,
        session_id: str | None = None,
        context: dict[str, str] | None = None,
        event_id: str | None = None,
        ts: int | None = None,
    ) -> RawEvent:
        """Validate and send one event; returns it (with its generated id and ts)."""
        event = RawEvent(
            event_id=event_id or uuid.uuid4().hex,
            type=type,
            user_id=user_id,
            ts=ts if ts is not None else int(time.time() * 1000),
            session_id=session_id,
            item_id=item_id,
            query=query,
            price=price,
            quantity=quantity,
            shown=shown,
            context=context,
        )
        self.send_event(event)
        return event

    def send_event(self, event: RawEvent) -> None:
        what = f"event {event.event_id}"
        self._send_valid(self._validate, self._topic, event.user_id, event.to_dict(), what)

    def send_raw(
        self, value: bytes | None, key: bytes | None = None, *, topic: str | None = None
    ) -> None:
        """Send bytes as they are (replays of logs and dead letters; tests), to
        storefront.events or the physical `topic`."""
        self._producer.send(topic or self._topic, key=key, value=value)

    def forget(self, user_id: str, *, timeout_s: float = 30.0) -> AuditRecord:
        """Erase `user_id` everywhere streamrec keeps them; returns once a worker has
        done it (its `privacy.audit` record). See `streamrec.erasure`."""
        from streamrec.erasure import forget_user

        self.flush()  # the user's earlier events first: the erasure follows them
        return forget_user(self.settings, user_id, timeout_s=timeout_s)

    def publish_item(self, item: CatalogItem) -> None:
        doc, what = item.to_dict(), f"catalog item {item.item_id}"
        self._send_valid(self._validate_item, self._catalog_topic, item.item_id, doc, what)

    def publish_vectors(
        self, vectors: dict[str, Any], version: str, partitions: int, ts: int | None = None
    ) -> None:
        """Item vectors straight onto catalog.embeddings, each partition marked complete.

        What the scorer does from catalog.items; for vectors computed elsewhere
        (another embedding pipeline) and for benchmarks with synthetic vectors.
        Items go to the partition their catalog record would use (murmur2 of the
        item id), so they sit with it, as the scorer places them.
        """
        from kafka.partitioner.default import murmur2

        from streamrec.core.retrieval.vectors import encode_vectors
        from streamrec.records import CatalogEmbedding

        ts = ts or int(time.time() * 1000)
        topic = self.settings.topic(CATALOG_EMBEDDINGS)
        counts = [0] * partitions
        for item_id, vec in vectors.items():
            key = item_id.encode()
            part = (murmur2(key) & 0x7FFFFFFF) % partitions
            rec = CatalogEmbedding("item", version, ts, item_id, len(vec), encode_vectors(vec), "")
            self._producer.send(topic, key=key, value=serde.dumps(rec.to_dict()), partition=part)
            counts[part] += 1
        self._producer.flush()
        for part in range(partitions):
            marker = CatalogEmbedding("complete", version, ts, partition=part, items=counts[part])
            self._producer.send(
                topic, key=marker.key.encode(), value=serde.dumps(marker.to_dict()), partition=part
            )
        self._producer.flush()

    def _send_valid(
        self, validate: Callable[[Any], Any], topic: str, key: str, doc: dict[str, Any], what: str
    ) -> None:
        """Refuse here what the worker would dead-letter: the caller learns at once."""
        try:
            validate(doc)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidEvent(f"{what}: {exc.message}") from exc
        self._producer.send(topic, key=key.encode(), value=serde.dumps(doc))

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecommendationReader:
    """Keeps the newest recommendation list per user from the `recommendations` topic.

    Reads every partition from the beginning (the topic is compacted, so this is
    the latest list per user), then follows new messages on each `poll()`.
    """

    def __init__(self, settings: Settings, *, from_beginning: bool = True) -> None:
        self.settings = settings
        self._pseudonym = Pseudonymizer(settings.resolved_pseudonym_key())
        self._topic = settings.topic(RECOMMENDATIONS)
        self._latest: dict[str, Recommendation] = {}
        self.received = 0
        self._consumer = tail(settings, RECOMMENDATIONS, from_beginning=from_beginning)
        #: Where the topic's partitions end (`lag`), made on first use.
        self._ends: EndReader | None = None

    def pseudonym(self, user_id: str) -> str:
        return self._pseudonym(user_id)

    def event_ref(self, event_id: str) -> str:
        """The id a list carries for the event `event_id` you sent (its keyed hash):
        past ingest no topic holds a storefront's own event ids."""
        return self._pseudonym.event_id(event_id)

    def answers(self, event_id: str) -> Callable[[Recommendation], bool]:
        """A `wait_for(until=...)` test: the list that answers event `event_id` (made
        after it, or after a later event of the same user in its micro-batch)."""
        ref = self.event_ref(event_id)
        return lambda rec: rec.answers(ref)

    def poll(self, timeout_s: float = 0.2) -> list[Recommendation]:
        """Fetch what has arrived; returns the lists read, in partition order."""
        got: list[Recommendation] = []
        for records in self._consumer.poll(timeout_ms=int(timeout_s * 1000)).values():
            for r in records:
                if r.value is None:  # a tombstone: the user was erased (`streamrec forget`)
                    if r.key is not None:
                        self._latest.pop(r.key.decode(), None)
                    continue
                rec = Recommendation.from_dict(serde.loads(r.value))
                self._latest[rec.user] = rec
                got.append(rec)
        self.received += len(got)
        return got

    def lag(self) -> int:
        """Lists published but not yet read by this reader (offsets only: nothing is
        read into this reader; the partitions' ends come from an `EndReader`)."""
        tps = list(self._consumer.assignment())
        if self._ends is None:
            self._ends = EndReader(self.settings)
        ends = self._ends.ends(tps)
        return sum(max(0, ends[tp] - self._consumer.position(tp)) for tp in tps)

    def wait_quiet(self, timeout_s: float, settle_polls: int = 3, interval_s: float = 0.5) -> int:
        """Block until the published count stops growing; returns the unread lag.

        Lets a backlog drain without reading it (reading competes for CPU with the
        workers on a small machine). "Still" rather than "equal to N": the caller
        need not know how many lists a backlog makes.
        """
        deadline = time.monotonic() + timeout_s
        last, still = -1, 0
        while time.monotonic() < deadline and still < settle_polls:
            time.sleep(interval_s)
            lag = self.lag()
            still = still + 1 if lag == last and lag > 0 else 0
            last = lag
        return last

    def latest(
        self,
        user_id: str,
        *,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
    ) -> Recommendation | None:
        """The newest list read so far for raw `user_id` (call `poll` to catch up).

        Per-request filters keep only items of a (leaf) `category` and/or within a
        price range; items without a known price fail a price filter. The list
        keeps its order; it can be shorter than the published top-K.
        """
        rec = self._latest.get(self._pseudonym(user_id))
        if rec is None or (category is None and min_price is None and max_price is None):
            return rec
        return filter_items(rec, category=category, min_price=min_price, max_price=max_price)

    def wait_for(
        self,
        user_id: str,
        timeout_s: float = 10.0,
        until: Callable[[Recommendation], bool] | None = None,
    ) -> Recommendation | None:
        """Poll until `user_id` has a list (satisfying `until`, if given), or time out.

        Every list read meanwhile is tested, not only the newest: a list that a newer
        one replaced within the same poll still counts.
        """
        deadline = time.monotonic() + timeout_s
        rec = self.latest(user_id)
        if rec is not None and (until is None or until(rec)):
            return rec
        user = self._pseudonym(user_id)
        while time.monotonic() <= deadline:
            for rec in self.poll(0.1):
                if rec.user == user and (until is None or until(rec)):
                    return rec
        return None

    def close(self) -> None:
        self._consumer.close()
        if self._ends is not None:
            self._ends.close()


def filter_items(
    rec: Recommendation,
    *,
    category: str | None = None,
    min_price: float | None = None,
    max_price: float | None = None,
) -> Recommendation:
    """`rec` with only the items that pass the filters, in their order.

    >>> from streamrec.records import RecItem
    >>> r = Recommendation("u", (RecItem("a", 1.0, "x", category="Shoes", price=50.0),
    ...                          RecItem("b", 0.9, "x", category="Books", price=9.0)),
    ...                    "m", "e", "view", 0, 0, 0)
    >>> [i.item_id for i in filter_items(r, max_price=20).items]
    ['b']
    """

    keep = Filters(category, min_price, max_price).keep
    return dataclasses.replace(
        rec, items=tuple(i for i in rec.items if keep(i.item_id, i.category, i.price))
    )


def _wait_partitions(consumer: KafkaConsumer, topic: str, timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise BrokerError(
                f"topic {topic} does not exist on {consumer.config['bootstrap_servers']}; "
                "run `streamrec topics create`"
            )
        consumer.topics()  # refreshes metadata
        time.sleep(0.2)
