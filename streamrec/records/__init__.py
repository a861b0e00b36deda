"""Typed records for every topic payload. No anonymous dicts cross a topic boundary.

Each record has `to_dict()` (what goes on the wire, via `streamrec.serde`) and
`from_dict()` (what comes off it). The JSON Schemas in topics/ are the contract;
these classes are its Python face.

>>> e = Event(event_id="e1", type="view", user="p", ts=1, item_id="42")
>>> Event.from_dict(e.to_dict()) == e
True
"""

from __future__ import annotations

from streamrec.records.base import BEHAVIOUR_TYPES, EVENT_TYPES
from streamrec.records.events import AuditRecord, CatalogItem, DeadLetter, Event, RawEvent
from streamrec.records.lists import RecItem, Recommendation
from streamrec.records.monitoring import Alert, DriftStat, MetricsWindow
from streamrec.records.scorer import CatalogEmbedding, ScorerControl, ScorerReply, ScorerRequest

__all__ = [
    "BEHAVIOUR_TYPES",
    "EVENT_TYPES",
    "Alert",
    "AuditRecord",
    "CatalogEmbedding",
    "CatalogItem",
    "DeadLetter",
    "DriftStat",
    "Event",
    "MetricsWindow",
    "RawEvent",
    "RecItem",
    "Recommendation",
    "ScorerControl",
    "ScorerReply",
    "ScorerRequest",
]
