"""Records of what comes in: storefront events, catalog items, dead letters, audit."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from typing import Any

from streamrec.records.base import _drop_none


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
