"""Typed records for every topic payload. No anonymous dicts cross a topic boundary.

Each record has `to_dict()` (what goes on the wire, via `streamrec.serde`) and
`from_dict()` (what comes off it). The JSON Schemas in topics/ are the contract;
these classes are its Python face.

>>> e = Event(event_id="e1", type="view", user="p", ts=1, item_id="42")
>>> Event.from_dict(e.to_dict()) == e
True
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

EVENT_TYPES = ("view", "click", "search", "add_to_cart", "purchase", "impression", "forget")
#: Events that are behaviour (all but `forget`, an erasure request).
BEHAVIOUR_TYPES = EVENT_TYPES[:-1]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _finite(x: float | None, digits: int) -> float:
    """`x` rounded, or 0.0 when it is not a finite number (JSON would turn it into null).

    >>> _finite(float("nan"), 2), _finite(None, 2), _finite(1.23456, 2)
    (0.0, 0.0, 1.23)
    """
    return round(x, digits) if x is not None and math.isfinite(x) else 0.0


@dataclass(frozen=True, slots=True)
class RawEvent:
    """What a storefront sends to storefront.events (the client builds it)."""

    event_id: str
    type: str
    user_id: str
    ts: int
    session_id: str | None = None
    item_id: str | None = None
    query: str | None = None
    price: float | None = None
    quantity: int | None = None
    shown: list[str] | None = None
    context: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))


@dataclass(frozen=True, slots=True)
class Event:
    """A validated, pseudonymised, minimised event: what the engine works on.

    `user` is the pseudonym; the raw user id never gets past ingest. Context
    (device, page) and unknown fields are dropped: the engine does not use them.
    """

    event_id: str
    type: str
    user: str
    ts: int
    session_id: str | None = None
    item_id: str | None = None
    query: str | None = None
    price: float | None = None
    quantity: int = 1
    shown: tuple[str, ...] = ()
    ingest_ts: int = 0
    partition: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shown"] = list(self.shown)
        return _drop_none(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        d = dict(d)
        d["shown"] = tuple(d.get("shown", ()))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class CatalogItem:
    item_id: str
    title: str
    category: tuple[str, ...] = ()
    price: float | None = None
    brand: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    ts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["category"] = list(self.category)
        return _drop_none(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CatalogItem:
        return cls(
            item_id=str(d["item_id"]),
            title=str(d["title"]),
            category=tuple(d.get("category") or ()),
            price=d.get("price"),
            brand=d.get("brand"),
            attributes=dict(d.get("attributes") or {}),
            available=bool(d.get("available", True)),
            ts=d.get("ts"),
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be processed: why, where from, and its bytes sealed.

    No identity is readable at rest: the record is keyed by the user's
    pseudonym (or a keyed hash of the message key), `event_id` is the hashed
    id, and the original key and bytes are in `sealed` (AES-256-GCM, see
    `core/privacy.Sealer`; `key_id` names the key). `sealed` holds at most the
    configured number of original bytes; when the message was longer,
    `truncated` is True and `original_size` / `original_sha256` describe the
    whole, so a dead letter always fits on the topic. `original` is set only on
    records read back from before sealing (format 1).
    """

    reason: str
    detail: str
    source_topic: str
    partition: int
    offset: int
    sealed: bytes
    dlq_ts: int
    key_id: str = ""
    #: The user's pseudonym when the message named a user (also the record's key).
    user: str | None = None
    event_id: str | None = None
    truncated: bool = False
    original_size: int | None = None
    original_sha256: str | None = None
    original: bytes | None = None
    format: int = 2

    @property
    def ref(self) -> str:
        """source topic:partition:offset, the name `streamrec dlq` shows."""
        return f"{self.source_topic}:{self.partition}:{self.offset}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sealed"] = base64.b64encode(self.sealed).decode("ascii")
        d.pop("original")
        return _drop_none(d) | {"event_id": self.event_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetter:
        d = dict(d)
        if "original" in d:  # format 1: readable bytes, written before dead letters were sealed
            d["original"] = base64.b64decode(d["original"])
            d.setdefault("sealed", "")
            d["format"] = 1
        d["sealed"] = base64.b64decode(d["sealed"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One privacy action on `privacy.audit`, by pseudonym: never a raw id.

    `action` is "erase" (a worker forgot a user: `detail` says what it
    removed) or "dlq_replay" (an operator replayed the dead letter `ref`).
    """

    action: str
    ts: int
    user: str | None = None
    #: The hashed id of the `forget` event that asked for it (erasures).
    event_id: str | None = None
    requested_ts: int | None = None
    ref: str | None = None
    detail: str = ""
    by: str = ""

    @property
    def key(self) -> str:
        return f"{self.action}:{self.user or self.ref}"

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditRecord:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class RecItem:
    item_id: str
    score: float
    reason: str
    #: Candidate sources that proposed it: query, interest, covisit, trending.
    sources: tuple[str, ...] = ()
    #: The (up to 3) features that contributed most to its score, with their share.
    features: tuple[tuple[str, float], ...] = ()
    #: Item potential: popularity growth now against its longer-term level, in [0, 1].
    potential: float = 0.0
    #: Leaf category and price, for per-request filters in consumer apps.
    category: str | None = None
    price: float | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    user: str
    items: tuple[RecItem, ...]
    model_version: str
    event_id: str
    event_type: str
    event_ts: int
    ingest_ts: int
    produced_ts: int
    #: Encoder version of the vectors this list used (None: no vectors involved).
    encoder_version: str | None = None
    #: What was missing when it was made, e.g. "no_query_vector" (scorer down or slow).
    flags: tuple[str, ...] = ()
    #: The user's long-term value estimate (expected spend over a year); 0 before a purchase.
    user_value: float = 0.0
    #: The A/B variant that made this list (stable per user).
    variant: str = "default"

    def to_dict(self, finite: bool = False) -> dict[str, Any]:
        """The wire form. `finite=True` turns NaN and infinities into 0.0 (JSON has
        neither: orjson writes them as null, which no reader can take for a number).
        The default skips that check, which doubled the cost of this call; the engine
        asks for it only when a list's JSON shows a null (`Engine.encode`)."""
        num = _finite if finite else round
        d: dict[str, Any] = {
            "user": self.user,
            "items": [
                {
                    "item_id": i.item_id,
                    "score": num(i.score, 6),
                    "reason": i.reason,
                    "sources": list(i.sources),
                    "features": {k: num(v, 6) for k, v in i.features}
                    if finite
                    else dict(i.features),
                    "potential": num(i.potential, 6) if finite else i.potential,
                    **({"category": i.category} if i.category is not None else {}),
                    **({"price": i.price} if i.price is not None else {}),
                }
                for i in self.items
            ],
            "model_version": self.model_version,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "event_ts": self.event_ts,
            "ingest_ts": self.ingest_ts,
            "produced_ts": self.produced_ts,
        }
        if self.encoder_version is not None:
            d["encoder_version"] = self.encoder_version
        if self.flags:
            d["flags"] = list(self.flags)
        d["user_value"] = num(self.user_value, 2)
        d["variant"] = self.variant
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recommendation:
        return cls(
            user=d["user"],
            items=tuple(
                RecItem(
                    i["item_id"],
                    float(i["score"]),
                    i["reason"],
                    tuple(i.get("sources", ())),
                    tuple((k, float(v)) for k, v in i.get("features", {}).items()),
                    float(i.get("potential", 0.0)),
                    i.get("category"),
                    i.get("price"),
                )
                for i in d["items"]
            ),
            model_version=d["model_version"],
            event_id=d["event_id"],
            event_type=d["event_type"],
            event_ts=int(d["event_ts"]),
            ingest_ts=int(d["ingest_ts"]),
            produced_ts=int(d["produced_ts"]),
            encoder_version=d.get("encoder_version"),
            flags=tuple(d.get("flags", ())),
            user_value=float(d.get("user_value", 0.0)),
            variant=d.get("variant", "default"),
        )

    @property
    def item_ids(self) -> list[str]:
        return [i.item_id for i in self.items]


@dataclass(frozen=True, slots=True)
class MetricsWindow:
    worker: str
    window_start: int
    window_end: int
    counts: dict[str, int]
    by_type: dict[str, int]
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    freshness_ms: dict[str, float] = field(default_factory=dict)
    role: str = "worker"
    #: Scorer counters: a scorer's own window, or a rank worker's view of its scorer calls.
    scorer: dict[str, Any] = field(default_factory=dict)
    #: Event -> recommendation latency as a mergeable log histogram (`LogHistogram.to_dict`).
    latency_hist: dict[str, Any] = field(default_factory=dict)
    #: Per event type: in / valid / dlq / duplicates (in = the other three).
    per_type: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Online quality sums per A/B variant (`QualitySums`): readers add them up.
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: K of the online HR@K / NDCG@K / MRR@K in `quality`.
    quality_k: int = 10
    events_per_s: float = 0.0
    #: Publish -> fold delay of the other workers' shared-state deltas (`LogHistogram`).
    shared_lag_hist: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricsWindow:
        # Fields a newer worker adds are left out: readers keep working in a rolling upgrade.
        return cls(**{k: v for k, v in d.items() if k in _METRICS_FIELDS})


_METRICS_FIELDS = frozenset(f.name for f in fields(MetricsWindow))


@dataclass(frozen=True, slots=True)
class DriftStat:
    """One detector's state (drift.stats): per window, and at once when it fires."""

    worker: str
    ts: int
    name: str
    detector: str
    signal: str
    threshold: float
    drift: bool
    statistic: float | None = None
    #: True: sent the moment the drift was detected; False: the window's summary.
    immediate: bool = False
    detections: int = 0
    n: int = 0
    direction: str | None = None
    before: float | None = None
    after: float | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftStat:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert rule that started (firing) or stopped (resolved) holding (alerts)."""

    alert: str
    state: str  # "firing" | "resolved"
    severity: str
    message: str
    signal: str
    worker: str
    ts: int
    value: float | None = None
    threshold: float | None = None
    windows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ScorerRequest:
    """Texts a rank worker wants embedded (scorer.requests)."""

    request_id: str
    texts: list[str]
    reply_to: str
    reply_partition: int
    sent_ts: int
    deadline_ts: int
    kind: str = "query"
    model_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScorerRequest:
        return cls(
            request_id=d["request_id"],
            texts=list(d["texts"]),
            reply_to=d["reply_to"],
            reply_partition=int(d["reply_partition"]),
            sent_ts=int(d["sent_ts"]),
            deadline_ts=int(d["deadline_ts"]),
            kind=d.get("kind", "query"),
            model_version=d.get("model_version"),
        )


@dataclass(frozen=True, slots=True)
class ScorerReply:
    """The vectors for one request (scorer.replies); `vectors` is base64 float16."""

    request_id: str
    model_version: str
    dim: int
    vectors: str
    valid: list[bool]
    produced_ts: int
    error: str | None = None
    scorer: str = ""
    batch_texts: int = 0
    queue_wait_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScorerReply:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class CatalogEmbedding:
    """One record of catalog.embeddings: an item vector, or a partition's completion marker."""

    kind: str  # "item" | "complete"
    model_version: str
    ts: int
    item_id: str | None = None
    dim: int | None = None
    vector: str | None = None
    text_hash: str | None = None
    partition: int | None = None
    items: int | None = None

    @property
    def key(self) -> str:
        if self.kind == "complete":
            return f"__complete__/{self.model_version}/{self.partition}"
        return str(self.item_id)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CatalogEmbedding:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ScorerControl:
    """A command to every scorer (scorer.control)."""

    command: str
    command_id: str
    ts: int
    model_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScorerControl:
        return cls(**d)
