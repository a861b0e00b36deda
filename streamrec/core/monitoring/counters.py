"""What a batch did, counted: the numbers behind every `metrics` window.

Each batch counts into its own `Counters`; the shell adds a batch's counts to
the window only once everything the batch produced has reached Kafka (in
process: at once). So a window holds whole batches, in = valid + dlq +
duplicates holds for every window on its own, and nothing is counted that did
not reach a topic.

>>> window, batch = Counters(), Counters()
>>> batch.counts["in"] += 2; batch.counts["valid"] += 1; batch.counts["dlq"] += 1
>>> window.merge(batch); window.snapshot()["in"], window.snapshot()["dlq"]
(2, 1)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from streamrec.core.monitoring.histogram import LogHistogram

#: Counts of vector use: search events with / without a query vector, item events
#: whose item has no vector in the active encoder version.
VECTOR_COUNTS = ("query_vector", "no_query_vector", "no_item_vector")
#: Counts of recovery work: events already applied to their profile before a restart
#: (not learned twice), stored profiles that could not be read as they were, and
#: partitions that stalled with events waiting and were sought back to them.
RECOVERY_COUNTS = ("replayed", "profiles_repaired", "partitions_sought")
#: Users erased (`forget` events; valid events without a list), and their events of
#: the same batch before the erasure (valid, never listed).
PRIVACY_COUNTS = ("erasures", "erased_unlisted")
MAIN_COUNTS = ("in", "valid", "dlq", "duplicates", "recommendations")
#: Valid events answered by a list made after a later event of their user in the same
#: batch (one list per user per batch): valid = recommendations + covered + erasures
#: + erased_unlisted.
LIST_COUNTS = ("covered",)
#: Invalid catalog records this worker read, and those it dead-lettered as their owner.
CATALOG_COUNTS = ("catalog_invalid", "catalog_dead_lettered")
#: Shared learned item state (`core/sharing.py`): deltas this worker published,
#: folded in, skipped as already held / as overlapping, and refused as unreadable.
SHARED_COUNTS = tuple(f"shared_{k}" for k in ("published", "folded", "known", "overlap", "bad"))


@dataclass
class Counters:
    """Counts since the last `reset`; in = valid + dlq + duplicates for whole batches."""

    counts: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    #: Event -> recommendation latency (now - the event's Kafka timestamp), ms.
    freshness: LogHistogram = field(default_factory=LogHistogram)
    #: (event type or "unknown", outcome) -> count; outcome in dlq / duplicates.
    rejected_by_type: Counter[tuple[str, str]] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, int]:
        return {k: self.counts.get(k, 0) for k in MAIN_COUNTS} | {
            k: self.counts[k]
            for k in LIST_COUNTS
            + VECTOR_COUNTS
            + RECOVERY_COUNTS
            + PRIVACY_COUNTS
            + SHARED_COUNTS
            + CATALOG_COUNTS
            if k in self.counts
        }

    def per_type(self) -> dict[str, dict[str, int]]:
        """{type: {in, valid, dlq, duplicates}}; in = valid + dlq + duplicates per type."""
        out: dict[str, dict[str, int]] = {}
        for t, n in self.by_type.items():
            out[t] = {"in": n, "valid": n, "dlq": 0, "duplicates": 0}
        for (t, outcome), n in self.rejected_by_type.items():
            row = out.setdefault(t, {"in": 0, "valid": 0, "dlq": 0, "duplicates": 0})
            row[outcome] += n
            row["in"] += n
        return out

    def dead_letter(self, reason: str, event_type: str | None) -> None:
        """One message dead-lettered (it was counted in before)."""
        self.counts["dlq"] += 1
        self.dlq_reasons[reason] += 1
        self.rejected_by_type[(event_type or "unknown", "dlq")] += 1

    def unpublish(self, reason: str, *event_types: str) -> None:
        """A list that could not be encoded or published: the events it answers (counted
        valid, one type each) become dead letters."""
        self.counts["recommendations"] -= 1
        if len(event_types) > 1:
            self.counts["covered"] -= len(event_types) - 1
        for event_type in event_types:
            self.retract(reason, event_type)

    def retract(self, reason: str, event_type: str) -> None:
        """An event counted valid becomes a dead letter after all."""
        self.counts["valid"] -= 1
        self.by_type[event_type] -= 1
        if not self.by_type[event_type]:
            del self.by_type[event_type]
        self.dead_letter(reason, event_type)

    def merge(self, other: Counters) -> None:
        self.counts.update(other.counts)
        self.by_type.update(other.by_type)
        self.dlq_reasons.update(other.dlq_reasons)
        self.freshness.merge(other.freshness)
        self.rejected_by_type.update(other.rejected_by_type)

    def reset(self) -> Counters:
        """Return the current window and start a new one."""
        window = Counters(
            self.counts, self.by_type, self.dlq_reasons, self.freshness, self.rejected_by_type
        )
        self.counts, self.by_type, self.dlq_reasons = Counter(), Counter(), Counter()
        self.freshness = LogHistogram()
        self.rejected_by_type = Counter()
        return window
