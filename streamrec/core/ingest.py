"""Ingest: raw bytes -> a validated, pseudonymised, minimised `Event`, or a reason why not.

Checks, in order: size, JSON, object, the topic's JSON Schema (types, event
type, per-type required fields), timestamp sanity, then de-duplication by
event_id. Every message ends as exactly one of Accepted / Rejected / Duplicate,
which is what makes `in = valid + dlq + duplicates` hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastjsonschema

from streamrec import serde
from streamrec.contracts import STOREFRONT_EVENTS
from streamrec.core.privacy import Pseudonymizer
from streamrec.errors import SerdeError
from streamrec.records import EVENT_TYPES, Event


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed record, stripped of any Kafka client type."""

    value: bytes | None
    key: bytes | None
    partition: int
    offset: int
    timestamp_ms: int
    topic: str = STOREFRONT_EVENTS


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    event_id: str | None = None
    #: The event's type when it is a known one (for per-type counts), else None.
    event_type: str | None = None


def parse_document(value: bytes, validate: Callable[[Any], Any], what: str) -> Any:
    """JSON bytes -> the validated document, or a `Rejection` saying what is wrong.

    For side topics (catalog items, scorer requests, embeddings); events have
    their own, faster path in `Ingestor`.
    """
    try:
        return validate(serde.loads(value))
    except SerdeError as exc:
        return Rejection("not_json", f"{what}: {exc}")
    except fastjsonschema.JsonSchemaValueException as exc:
        return Rejection("schema", f"{what}: {exc.message}")


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Marker: the event id was seen inside the de-duplication window."""

    event_type: str | None = None


_DUPLICATES = {t: Duplicate(t) for t in EVENT_TYPES}


class Deduplicator:
    """Remembers each user's event ids for `window_ms` of event time, at most `max_ids`.

    Partition-local by construction (events are keyed by user, so a retried
    event lands on the same partition). Memory only: ids seen before a worker
    restart are forgotten, so a retry that straddles a restart can pass once
    (its profile effect still counts once: profiles remember applied offsets).

    Compact: two generations of 64-bit hashes of the ids, grouped by user (a
    user with one id in a generation costs one int, not a set), so erasing a
    user (`forget`) drops exactly their ids. A generation turns over when it
    spans half the window or holds half of `max_ids`. So an id is remembered
    for at least half the window (and the newest `max_ids / 2` ids always),
    forgotten once it is older than the window. A false duplicate needs a
    64-bit hash collision within one user's ids.

    >>> d = Deduplicator(window_ms=60_000, max_ids=1_000)
    >>> d.seen("u", "e1", 0), d.seen("u", "e1", 1_000), d.seen("v", "e1", 1_000)
    (False, True, False)
    >>> d.seen("u", "e2", 200_000), d.seen("u", "e1", 200_000)
    (False, False)
    >>> d.forget("u"), d.seen("u", "e2", 200_001)
    (2, False)
    """

    def __init__(self, window_ms: int, max_ids: int) -> None:
        self.window_ms = window_ms
        self.max_ids = max(2, max_ids)
        #: hash of the user -> one id hash, or a set of them (ints: a third of the memory
        #: of pseudonym strings as keys; two users sharing a 64-bit hash would only
        #: share a pool of id hashes, a false duplicate still needs an id collision)
        self._current: dict[int, int | set[int]] = {}
        self._previous: dict[int, int | set[int]] = {}
        self._current_n = 0
        self._previous_n = 0
        self._current_start = 0
        self._current_newest = 0
        self._previous_newest = 0
        self._watermark = 0

    def seen(self, user: str, event_id: str, ts: int) -> bool:
        if ts > self._watermark:
            self._watermark = ts
        if self._previous and self._watermark - self._previous_newest > self.window_ms:
            self._previous, self._previous_n = {}, 0  # every id in it is older than the window
        h = hash(event_id)
        user_key = hash(user)
        if _holds(self._current.get(user_key), h) or _holds(self._previous.get(user_key), h):
            return True
        if self._current_n and (
            self._current_n >= self.max_ids // 2
            or self._watermark - self._current_start >= self.window_ms // 2
        ):
            if self._watermark - self._current_newest <= self.window_ms:
                self._previous, self._previous_newest = self._current, self._current_newest
                self._previous_n = self._current_n
            else:
                self._previous, self._previous_n = {}, 0
            self._current, self._current_n = {}, 0
        current = self._current
        if not self._current_n:
            self._current_start = self._current_newest = ts
        elif ts > self._current_newest:
            self._current_newest = ts
        held = current.get(user_key)
        if held is None:
            current[user_key] = h
        elif isinstance(held, set):
            held.add(h)
        else:
            current[user_key] = {held, h}
        self._current_n += 1
        return False

    def forget(self, user: str, keep: frozenset[str] = frozenset()) -> int:
        """Drop every id of `user` (erasure) but those in `keep`; how many were dropped."""
        kept = {hash(i) for i in keep}
        n = -len(kept)
        user_key = hash(user)
        for gen in (self._current, self._previous):
            held = gen.pop(user_key, None)
            if held is not None:
                k = len(held) if isinstance(held, set) else 1
                n += k
                if gen is self._current:
                    self._current_n -= k
                else:
                    self._previous_n -= k
        if kept:
            self._current[user_key] = kept
            self._current_n += len(kept)
        return max(0, n)

    def __len__(self) -> int:
        return self._current_n + self._previous_n


def _holds(held: int | set[int] | None, h: int) -> bool:
    if held is None:
        return False
    return h in held if isinstance(held, set) else held == h


class Ingestor:
    """Validation, pseudonymisation, minimisation and de-duplication of raw events."""

    def __init__(
        self,
        pseudonymize: Pseudonymizer,
        *,
        validate: Callable[[Any], Any],
        max_event_bytes: int = 16_384,
        min_ts_ms: int = 631_152_000_000,
        max_future_skew_ms: int = 300_000,
        dedup: Deduplicator | None = None,
    ) -> None:
        self.pseudonymize = pseudonymize
        self.max_event_bytes = max_event_bytes
        self.min_ts_ms = min_ts_ms
        self.max_future_skew_ms = max_future_skew_ms
        self.dedup = dedup if dedup is not None else Deduplicator(86_400_000, 2_000_000)
        #: The storefront.events contract's schema check (raises on a bad event).
        self._validate = validate

    def check(self, raw: bytes | None, now_ms: int) -> tuple[dict[str, Any], str] | Rejection:
        """The contract's checks alone: (the event's document, its hashed id) or why
        not. What `streamrec serve` answers a storefront's POST with, before sending."""
        if raw is None:
            return Rejection("not_object", "empty message (null value)")
        if len(raw) > self.max_event_bytes:
            return Rejection(
                "oversized", f"{len(raw)} bytes is over the limit of {self.max_event_bytes}"
            )
        try:
            doc = serde.loads(raw)
        except SerdeError as exc:
            return Rejection("not_json", str(exc))
        if not isinstance(doc, dict):
            return Rejection("not_object", f"expected a JSON object, got {type(doc).__name__}")
        raw_id = doc.get("event_id")
        # Event ids leave ingest hashed: a storefront may put an account number in them.
        event_id = self.pseudonymize.event_id(raw_id) if isinstance(raw_id, str) else None
        etype: str = doc.get("type", "")  # a known type once the schema passes
        known = etype if etype in EVENT_TYPES else None
        try:
            self._validate(doc)
        except fastjsonschema.JsonSchemaValueException as exc:
            if exc.name == "data.ts" and exc.rule == "minimum":
                return Rejection("bad_timestamp", f"ts={doc['ts']} is negative", event_id, known)
            return Rejection("schema", _explain(exc, doc), event_id, known)
        ts = doc["ts"]
        if ts < self.min_ts_ms:
            return Rejection(
                "bad_timestamp",
                f"ts={ts} is before {self.min_ts_ms} (1990): ts must be epoch milliseconds",
                event_id,
                known,
            )
        if ts > now_ms + self.max_future_skew_ms:
            return Rejection(
                "bad_timestamp",
                f"ts={ts} is {(ts - now_ms) / 1000:.0f} s in the future "
                f"(allowed skew {self.max_future_skew_ms / 1000:.0f} s)",
                event_id,
                known,
            )
        assert event_id is not None  # the schema requires it
        return doc, event_id

    def ingest(self, msg: RawMessage, now_ms: int) -> Event | Rejection | Duplicate:
        checked = self.check(msg.value, now_ms)
        if isinstance(checked, Rejection):
            return checked
        doc, event_id = checked
        etype: str = doc["type"]
        ts = doc["ts"]
        user = self.pseudonymize(doc["user_id"])
        if self.dedup.seen(user, event_id, ts):
            return _DUPLICATES[etype]
        session = doc.get("session_id")
        # Data minimisation: only what the engine uses survives; context and
        # unknown fields stop here, and the raw user, event and session ids are
        # replaced by keyed hashes.
        return Event(
            event_id=event_id,
            type=etype,
            user=user,
            ts=ts,
            session_id=self.pseudonymize.session_id(session) if session is not None else None,
            item_id=doc.get("item_id"),
            query=doc.get("query") if etype == "search" else None,
            price=doc.get("price") if etype == "purchase" else None,
            quantity=doc.get("quantity", 1) if etype == "purchase" else 1,
            shown=tuple(doc["shown"]) if etype == "impression" else (),
            ingest_ts=msg.timestamp_ms,
            partition=msg.partition,
            offset=msg.offset,
        )


def _explain(exc: fastjsonschema.JsonSchemaValueException, doc: dict[str, Any]) -> str:
    """fastjsonschema's message, made specific for the common cases."""
    if exc.rule == "enum" and exc.name == "data.type":
        return f"unknown event type {doc.get('type')!r}; expected one of {exc.definition['enum']}"
    if exc.rule == "required" and exc.name == "data" and "type" in doc:
        return f"{exc.message} (for a {doc['type']!r} event)"
    return str(exc.message)
