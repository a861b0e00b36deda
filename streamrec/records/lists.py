"""The recommendation topic's records: a published list and its items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from streamrec.records.base import _finite


class RecItem(NamedTuple):
    """One item of a list. A named tuple, not a frozen dataclass: twenty are built
    per event on the hot path, and a tuple is built in half the time."""

    item_id: str
    score: float
    reason: str
    #: Candidate sources that proposed it (`core.ranking.features.SOURCES`): query,
    #: interest, covisit, covisit_idf, sequence, category, trending.
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
    #: The user's earlier events of the same micro-batch that this list answers too,
    #: oldest first: a batch publishes one list per user, after the user's last event.
    covers: tuple[str, ...] = ()

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
        if self.covers:
            d["covers"] = list(self.covers)
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
            covers=tuple(d.get("covers", ())),
        )

    def answers(self, event_id: str) -> bool:
        """Whether this list answers event `event_id`: its own, or one it covers."""
        return event_id == self.event_id or event_id in self.covers

    @property
    def event_ids(self) -> tuple[str, ...]:
        """Every event this list answers, oldest first (the newest is `event_id`)."""
        return (*self.covers, self.event_id)

    @property
    def item_ids(self) -> list[str]:
        return [i.item_id for i in self.items]
