"""Per-user profiles, updated incrementally, one event at a time.

A profile is small and bounded whatever the user does: a capped recent-items
list, time-decayed category affinities, counts per event type, first/last
seen, the current session, a capped purchase history and spend.

>>> up = ProfileUpdater(recent_items=3)
>>> p = Profile.new("u_1")
>>> up.update(p, Event("e1", "view", "u_1", 1_000, item_id="a"), ("Comedy",))
>>> p.recent_item_ids(), p.counts, round(p.affinity["Comedy"], 2)
(['a'], {'view': 1}, 1.0)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.core.history import ItemHistory
from streamrec.errors import SerdeError
from streamrec.records import Event

log = logging.getLogger(__name__)

#: How much an event says about interest (search and impressions carry none here).
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "search": 0.0,
    "impression": 0.0,
}

#: The event types whose items are left out of a user's lists for good, by default.
HISTORY_TYPES = frozenset({"view", "click", "add_to_cart", "purchase"})


@dataclass(slots=True)
class Profile:
    user: str
    first_seen: int = 0
    last_seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    #: [item_id, event_type, ts], oldest first; an item appears once (latest interaction).
    recent: list[list[Any]] = field(default_factory=list)
    #: category -> interest, decayed to `affinity_ts`.
    affinity: dict[str, float] = field(default_factory=dict)
    affinity_ts: int = 0
    session_id: str = ""
    session_start: int = 0
    session_events: int = 0
    purchased: list[str] = field(default_factory=list)
    last_query: str | None = None
    last_query_ts: int = 0
    spend: float = 0.0
    orders: int = 0
    #: The user's interest and intent vectors (`core.interest.UserVectors.to_dict`).
    vectors: dict[str, Any] | None = None
    #: Source partition -> offset of the last event applied to this profile. Stored with
    #: the state it changed, so an event replayed after a crash is applied only once.
    offsets: dict[str, int] = field(default_factory=dict)
    #: Items the user already has, left out of their lists for good (`core.history`);
    #: capped by `ProfileUpdater.history_items`. On the wire: base64 of 32-bit hashes.
    history: ItemHistory = field(default_factory=ItemHistory)
    #: 64-bit keys of the user's newest event ids, oldest first (`ProfileUpdater.event_ids`
    #: of them): a producer's retry is a duplicate even after a restart or a rebalance,
    #: where the worker's in-memory de-duplication starts empty. On the wire: base64.
    seen: list[int] = field(default_factory=list)

    @classmethod
    def new(cls, user: str) -> Profile:
        return cls(user=user)

    def has_seen(self, event_id: str) -> bool:
        """Was an event with this (pseudonymised) id applied to this profile already?"""
        return bool(self.seen) and event_key(event_id) in self.seen

    def remember(self, event_id: str, cap: int) -> None:
        self.seen.append(event_key(event_id))
        if len(self.seen) > cap:
            del self.seen[: len(self.seen) - cap]

    def applied(self, partition: int, offset: int) -> bool:
        """Was the event at (partition, offset) applied to this profile already?"""
        last = self.offsets.get(str(partition))
        return last is not None and offset <= last

    def mark_applied(self, partition: int, offset: int) -> None:
        key = str(partition)
        if offset > self.offsets.get(key, -1):
            self.offsets[key] = offset

    def recent_item_ids(self) -> list[str]:
        return [r[0] for r in self.recent]

    def session_item_ids(self, limit: int | None = None) -> list[str]:
        """Items of the current session (at most the newest `limit`), newest last."""
        out: list[str] = []
        start = self.session_start
        for r in reversed(self.recent):
            if r[2] < start or (limit is not None and len(out) >= limit):
                break
            out.append(r[0])
        out.reverse()
        return out

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    def to_bytes(self) -> bytes:
        return serde.dumps(
            {
                "user": self.user,
                "first_seen": self.first_seen,
                "last_seen": self.last_seen,
                "counts": self.counts,
                "recent": self.recent,
                "affinity": self.affinity,
                "affinity_ts": self.affinity_ts,
                "session_id": self.session_id,
                "session_start": self.session_start,
                "session_events": self.session_events,
                "purchased": self.purchased,
                "last_query": self.last_query,
                "last_query_ts": self.last_query_ts,
                "spend": self.spend,
                "orders": self.orders,
                "vectors": self.vectors,
                "offsets": self.offsets,
                "history": self.history.to_wire(),
                "seen": _keys_to_wire(self.seen),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, user: str | None = None) -> tuple[Profile, bool]:
        """(profile, repaired): a stored profile, repaired where it is not what we write.

        Stored state can be corrupt (a bug of an earlier version, a non-finite number
        that JSON stored as null, a hand-edited changelog): fields that cannot be
        read are reset, a record that cannot be read at all becomes a new profile for
        `user`. Never raises: one user's bad state must not stop the worker.
        """
        try:
            doc = serde.loads(data)
            if not isinstance(doc, dict):
                raise SerdeError(f"a profile is a JSON object, not {type(doc).__name__}")
            known = {k: v for k, v in doc.items() if k in _FIELDS}
            dropped = sum(k in _DROPPED for k in doc)
            history = known.pop("history", "")
            seen = known.pop("seen", "")
            profile = cls(**known)
        except (SerdeError, TypeError) as exc:
            log.warning("unreadable stored profile of %s reset: %s", user, exc)
            return cls.new(user or ""), True
        try:
            profile.history = ItemHistory.from_wire(history if isinstance(history, str) else "?")
            bad_history = False
        except ValueError:
            bad_history = True  # reset below (`_repair` keeps the empty default)
        try:
            profile.seen = _keys_from_wire(seen)
        except ValueError:
            bad_history = True  # the keys are dropped: a retry may pass once, nothing else
        extra = ("history" in doc) + ("seen" in doc)
        repaired = bad_history or len(known) + extra + dropped != len(doc)
        repaired = repaired or not profile._is_sound()
        if repaired:
            profile._repair(user)
        return profile, repaired

    def _is_sound(self) -> bool:
        """The cheap check on every read: types and finiteness of what arithmetic touches."""
        return (
            type(self.user) is str
            and _finite_number(self.spend)
            and type(self.orders) is int
            and type(self.first_seen) is int
            and type(self.last_seen) is int
            and type(self.affinity_ts) is int
            and type(self.counts) is dict
            and type(self.affinity) is dict
            and type(self.recent) is list
            and type(self.purchased) is list
            and type(self.offsets) is dict
            and type(self.history) is ItemHistory
            and all(map(_finite_number, self.affinity.values()))
            and all(type(v) is int and v >= 0 for v in self.counts.values())
            and all(type(r) is list and len(r) == 3 and type(r[2]) is int for r in self.recent)
        )

    def _repair(self, user: str | None) -> None:
        """Reset each field that is not what `to_bytes` writes; keep the rest."""
        log.warning("stored profile of %s repaired", user or self.user)
        default = Profile.new(user or "")
        if type(self.user) is not str:
            self.user = default.user
        if not _finite_number(self.spend):
            self.spend = 0.0
        for name in ("first_seen", "last_seen", "affinity_ts", "session_start", "orders",
                     "session_events", "last_query_ts"):  # fmt: skip
            if type(getattr(self, name)) is not int:
                setattr(self, name, 0)
        self.counts = _clean(self.counts, lambda v: type(v) is int and v >= 0)
        self.affinity = _clean(self.affinity, _finite_number)
        self.offsets = _clean(self.offsets, lambda v: type(v) is int)
        self.recent = [
            r for r in (self.recent if isinstance(self.recent, list) else [])
            if isinstance(r, list) and len(r) == 3 and isinstance(r[0], str)
            and isinstance(r[1], str) and type(r[2]) is int
        ]  # fmt: skip
        if not isinstance(self.purchased, list):
            self.purchased = []
        self.purchased = [i for i in self.purchased if isinstance(i, str)]
        if not isinstance(self.session_id, str):
            self.session_id = ""
        if not isinstance(self.history, ItemHistory):
            self.history = ItemHistory()
        if self.last_query is not None and not isinstance(self.last_query, str):
            self.last_query = None
        if self.vectors is not None and not isinstance(self.vectors, dict):
            self.vectors = None


_FIELDS = frozenset(f.name for f in fields(Profile))
#: Fields profiles once stored and no longer do, read without counting a repair:
#: "value" depended on when the value model learned other users' purchases; a list
#: now carries the estimate, made when the list is (`ValueModel.user_value`).
_DROPPED = frozenset({"value"})
_KEY = np.dtype("<u8")


def event_key(event_id: str) -> int:
    """A 64-bit key of an event id: the leading bits of the keyed hash ingest gives it."""
    if len(event_id) == 34 and event_id.startswith("e_"):
        try:
            return int(event_id[2:18], 16)
        except ValueError:
            pass
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def _keys_to_wire(keys: list[int]) -> str:
    return base64.b64encode(np.array(keys, dtype=_KEY).tobytes()).decode() if keys else ""


def _keys_from_wire(data: object) -> list[int]:
    if not data:
        return []
    if not isinstance(data, str):
        raise ValueError("event keys are a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc
    if len(raw) % 8:
        raise ValueError("event keys are 8 bytes each")
    return np.frombuffer(raw, dtype=_KEY).tolist()


def _finite_number(v: Any) -> bool:
    return type(v) in (float, int) and math.isfinite(v)


def _clean(d: Any, keep: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        return {}
    return {k: v for k, v in d.items() if isinstance(k, str) and keep(v)}


class ProfileUpdater:
    """Applies one event to one profile. Hyper-parameters here, no I/O."""

    def __init__(
        self,
        *,
        recent_items: int = 50,
        purchased_items: int = 500,
        affinity_half_life_s: float = 7 * 86_400.0,
        session_gap_s: float = 1_800.0,
        max_categories: int = 64,
        history_items: int = 1_000,
        history_types: frozenset[str] = HISTORY_TYPES,
        event_ids: int = 16,
    ) -> None:
        self.recent_items = recent_items
        #: Newest event ids kept per profile for de-duplication across restarts (0: none).
        self.event_ids = event_ids
        self.history_items = history_items
        self.history_types = history_types
        self.purchased_items = purchased_items
        self.affinity_half_life_ms = affinity_half_life_s * 1000.0
        self.session_gap_ms = session_gap_s * 1000.0
        self.max_categories = max_categories

    def update(self, p: Profile, e: Event, categories: tuple[str, ...] = ()) -> None:
        ts = e.ts
        if p.first_seen == 0 or ts < p.first_seen:
            p.first_seen = ts
        self._session(p, e)
        if ts > p.last_seen:
            p.last_seen = ts
        p.counts[e.type] = p.counts.get(e.type, 0) + 1
        if self.event_ids:
            p.remember(e.event_id, self.event_ids)

        if e.type == "search":
            p.last_query, p.last_query_ts = e.query, ts
        item = e.item_id
        if item is None:
            return
        recent = p.recent
        for i, r in enumerate(recent):
            if r[0] == item:
                del recent[i]
                break
        recent.append([item, e.type, ts])
        if len(recent) > self.recent_items:
            del recent[: len(recent) - self.recent_items]
        if self.history_items and e.type in self.history_types:
            p.history.add(item, self.history_items)

        if e.type == "purchase":
            p.orders += 1
            p.spend += (e.price or 0.0) * e.quantity
            if item not in p.purchased:
                p.purchased.append(item)
                if len(p.purchased) > self.purchased_items:
                    del p.purchased[0]

        weight = EVENT_WEIGHTS.get(e.type, 0.0)
        if weight and categories:
            self._decay_affinity(p, ts)
            share = weight / len(categories)
            aff = p.affinity
            for cat in categories:
                aff[cat] = aff.get(cat, 0.0) + share
            if len(aff) > self.max_categories:
                for cat, _ in sorted(aff.items(), key=lambda kv: kv[1])[: len(aff) // 4]:
                    del aff[cat]

    def is_new_session(self, p: Profile, e: Event) -> bool:
        """Does `e` start a new session: a new session id, or (without ids) a long gap?"""
        if e.session_id is not None:
            return e.session_id != p.session_id
        return not p.session_id or e.ts - p.last_seen > self.session_gap_ms

    def _session(self, p: Profile, e: Event) -> None:
        if self.is_new_session(p, e):
            sid = e.session_id if e.session_id is not None else f"auto-{e.ts}"
            p.session_id, p.session_start, p.session_events = sid, e.ts, 0
        p.session_events += 1

    def _decay_affinity(self, p: Profile, ts: int) -> None:
        # Out-of-order events are not decayed backwards: they add at the current reference.
        if ts > p.affinity_ts:
            if p.affinity and p.affinity_ts:
                factor = 0.5 ** ((ts - p.affinity_ts) / self.affinity_half_life_ms)
                for cat in p.affinity:
                    p.affinity[cat] *= factor
            p.affinity_ts = ts
