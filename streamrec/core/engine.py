"""The engine: one micro-batch of raw events in, recommendations and dead letters out.

This is everything the main Faust agent does between decode and send, as a
plain class: the agent, offline evaluation and tests all call
`Engine.process_batch`. Profiles are read and written through a `ProfileStore`
(a dict in-process, a Faust table in the worker), once per user per batch.

>>> engine = Engine.from_settings(Settings())
>>> msg = RawMessage(b'{"event_id":"e1","type":"view","user_id":"alice",'
...                  b'"ts":1700000000000,"item_id":"42"}', b"alice", 0, 0, 1700000000000)
>>> out = engine.process_batch([msg], DictProfileStore(), now_ms=1700000000001)
>>> len(out.recommendations), len(out.dead_letters), engine.counters.snapshot()["valid"]
(1, 0, 1)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streamrec.core.catalog import Catalog
from streamrec.core.histogram import LogHistogram
from streamrec.core.ingest import Deduplicator, Duplicate, Ingestor, RawMessage, Rejection
from streamrec.core.privacy import Pseudonymizer
from streamrec.core.profile import Profile, ProfileUpdater
from streamrec.core.recommender import Recommender
from streamrec.records import DeadLetter, Event, Recommendation
from streamrec.settings import Settings

log = logging.getLogger(__name__)


class ProfileStore(Protocol):
    """Where profiles live. `partition` is the source partition of the user's events."""

    def get(self, user: str, partition: int) -> Profile | None: ...

    def put(self, user: str, profile: Profile, partition: int) -> None: ...


class DictProfileStore(dict[str, Profile]):
    """In-process profile store (offline evaluation, tests)."""

    def get(self, user: str, partition: int = 0) -> Profile | None:  # type: ignore[override]
        return dict.get(self, user)

    def put(self, user: str, profile: Profile, partition: int = 0) -> None:
        self[user] = profile


@dataclass
class Counters:
    """Counts since the last `reset`; in = valid + dlq + duplicates holds at every moment."""

    counts: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)
    freshness: LogHistogram = field(default_factory=LogHistogram)

    def snapshot(self) -> dict[str, int]:
        return {k: self.counts.get(k, 0) for k in ("in", "valid", "dlq", "duplicates")} | {
            "recommendations": self.counts.get("recommendations", 0)
        }

    def reset(self) -> Counters:
        """Return the current window and start a new one."""
        window = Counters(self.counts, self.by_type, self.dlq_reasons, self.freshness)
        self.counts, self.by_type, self.dlq_reasons = Counter(), Counter(), Counter()
        self.freshness = LogHistogram()
        return window


@dataclass
class BatchOutput:
    recommendations: list[Recommendation] = field(default_factory=list)
    #: (original key, dead letter): the DLQ keeps the original key.
    dead_letters: list[tuple[bytes | None, DeadLetter]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Engine:
    """Ingest -> profile -> recommend, for micro-batches of raw events."""

    def __init__(
        self,
        ingestor: Ingestor,
        updater: ProfileUpdater,
        recommender: Recommender,
        catalog: Catalog | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.updater = updater
        self.recommender = recommender
        self.catalog = catalog or Catalog()
        self.counters = Counters()

    @classmethod
    def from_settings(cls, s: Settings, recommender: Recommender | None = None) -> Engine:
        ingestor = Ingestor(
            Pseudonymizer(s.resolved_pseudonym_key()),
            max_event_bytes=s.max_event_bytes,
            min_ts_ms=s.min_event_ts_ms,
            max_future_skew_ms=int(s.max_future_skew_s * 1000),
            dedup=Deduplicator(int(s.dedup_window_s * 1000), s.dedup_max_ids),
        )
        updater = ProfileUpdater(
            recent_items=s.recent_items,
            purchased_items=s.purchased_items,
            affinity_half_life_s=s.affinity_half_life_s,
            session_gap_s=s.session_gap_s,
        )
        recommender = recommender or Recommender(
            top_k=s.top_k,
            trending_half_life_s=s.trending_half_life_s,
            covisit_window=s.covisit_window,
            covisit_max_neighbours=s.covisit_max_neighbours,
            exclude_purchased=s.exclude_purchased,
            exclude_recent=s.exclude_recent,
        )
        return cls(ingestor, updater, recommender)

    def process_batch(
        self, batch: Sequence[RawMessage], store: ProfileStore, now_ms: int
    ) -> BatchOutput:
        """Process events in order; each profile is read and written once per batch."""
        out = BatchOutput()
        profiles: dict[str, tuple[Profile, int]] = {}
        counts = self.counters.counts
        for msg in batch:
            counts["in"] += 1
            result = self.ingestor.ingest(msg, now_ms)
            if isinstance(result, Rejection):
                counts["dlq"] += 1
                self.counters.dlq_reasons[result.reason] += 1
                out.dead_letters.append((msg.key, result.dead_letter(msg, now_ms)))
                continue
            if isinstance(result, Duplicate):
                counts["duplicates"] += 1
                continue
            event = result
            try:
                rec = self._apply(event, msg.partition, store, profiles, now_ms)
            except Exception as exc:  # a bug must cost one event, never the worker
                log.exception(
                    "processing error at partition %s offset %s", msg.partition, msg.offset
                )
                counts["dlq"] += 1
                self.counters.dlq_reasons["processing_error"] += 1
                rejection = Rejection(
                    "processing_error", f"{type(exc).__name__}: {exc}", event.event_id
                )
                out.dead_letters.append((msg.key, rejection.dead_letter(msg, now_ms)))
                continue
            counts["valid"] += 1
            self.counters.by_type[event.type] += 1
            if event.ingest_ts > 0:
                self.counters.freshness.record(now_ms - event.ingest_ts)
            out.events.append(event)
            out.recommendations.append(rec)
        counts["recommendations"] += len(out.recommendations)
        for user, (profile, partition) in profiles.items():
            store.put(user, profile, partition)
        return out

    def _apply(
        self,
        event: Event,
        partition: int,
        store: ProfileStore,
        profiles: dict[str, tuple[Profile, int]],
        now_ms: int,
    ) -> Recommendation:
        cached = profiles.get(event.user)
        if cached is None:
            profile = store.get(event.user, partition) or Profile.new(event.user)
            profiles[event.user] = (profile, partition)
        else:
            profile = cached[0]

        # Co-visitation learns from the session as it was *before* this event.
        session_items = (
            []
            if self.updater.is_new_session(profile, event)
            else profile.session_item_ids(self.recommender.covisit.window)
        )
        self.recommender.observe(event, session_items)
        catalog = self.catalog
        categories = catalog.categories(event.item_id) if event.item_id else ()
        self.updater.update(profile, event, categories)
        items = self.recommender.recommend(
            profile,
            event.item_id,
            categories_of=catalog.categories,
            is_available=catalog.is_available,
        )
        return Recommendation(
            user=event.user,
            items=tuple(items),
            model_version=self.recommender.model_version,
            event_id=event.event_id,
            event_type=event.type,
            event_ts=event.ts,
            ingest_ts=event.ingest_ts,
            produced_ts=now_ms,
        )
