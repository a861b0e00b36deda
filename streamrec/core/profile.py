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

from dataclasses import dataclass, field
from typing import Any

from streamrec import serde
from streamrec.records import Event

#: How much an event says about interest (search and impressions carry none here).
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "search": 0.0,
    "impression": 0.0,
}


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
    #: Long-term value estimate (`core.value.ValueModel`), in the shop's currency.
    value: float = 0.0

    @classmethod
    def new(cls, user: str) -> Profile:
        return cls(user=user)

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
                "value": self.value,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        return cls(**serde.loads(data))


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
    ) -> None:
        self.recent_items = recent_items
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
