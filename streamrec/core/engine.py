"""The engine: one micro-batch of raw events in, recommendations and dead letters out.

This is everything the main Faust agent does between decode and send, as a
plain class: the agent, offline evaluation and tests all call it. Profiles are
read and written through a `ProfileStore` (a dict in-process, a Faust table in
the worker), once per user per batch.

A batch goes through three steps, so the streaming shell can ask the scorer
for query vectors in between without the core knowing about Kafka:
`ingest_batch` (validate, pseudonymise, de-duplicate), `missing_queries` /
`add_query_vectors` (the batch's search texts the local cache lacks), and
`apply_batch` (profiles, recommendations). The order of these steps is
defined once, in `core/plan.py`: the worker drives that plan with Kafka,
`process_batch` drives it in process with an optional synchronous `embed`.

>>> from streamrec.build import build_engine
>>> from streamrec.settings import Settings
>>> engine = build_engine(Settings())
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

import numpy as np

from streamrec.core.batch import (
    BatchOutput,
    DictProfileStore,
    EmbedFn,
    Ingested,
    ProfileStore,
    QueryVectors,
)
from streamrec.core.batch_edges import BatchEdges
from streamrec.core.catalog import Catalog
from streamrec.core.deadletters import DeadLetterWriter
from streamrec.core.erasure import Erasure
from streamrec.core.ingest import (
    Duplicate,
    Ingestor,
    RawMessage,
    Rejection,
)
from streamrec.core.learning import Learning
from streamrec.core.lru import LRUCache
from streamrec.core.monitoring.counters import Counters
from streamrec.core.monitoring.monitor import Monitor
from streamrec.core.profile import Profile, ProfileUpdater
from streamrec.core.ranking.recommender import NO_HITS, RankContext, Recommender
from streamrec.core.ranking.variants import Experiment
from streamrec.core.retrieval.index import Hits
from streamrec.core.retrieval.interest import InterestModel
from streamrec.core.retrieval.vectors import ItemVectors
from streamrec.core.retrieval_stage import Retrieval
from streamrec.core.sharing import ItemLog, RankerDelta, Sharing
from streamrec.records import CatalogItem, Event, Recommendation

__all__ = [
    "BatchOutput",
    "DictProfileStore",
    "EmbedFn",
    "Engine",
    "Ingested",
    "ProfileStore",
    "QueryVectors",
]

log = logging.getLogger(__name__)


class Engine(BatchEdges, Retrieval, Erasure, Learning):
    """Ingest -> profile -> recommend, for micro-batches of raw events."""

    def __init__(
        self,
        ingestor: Ingestor,
        updater: ProfileUpdater,
        recommender: Recommender,
        catalog: Catalog | None = None,
        *,
        dead_letters: DeadLetterWriter,
        item_vectors: ItemVectors | None = None,
        query_cache_size: int = 100_000,
        query_candidates: int = 100,
        interest: InterestModel | None = None,
        interest_candidates: int = 200,
        experiment: Experiment | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.updater = updater
        self.recommender = recommender
        #: One item store for everything keyed by item: catalog, vectors, learned state.
        self.items = recommender.items
        self.catalog = catalog or Catalog(self.items)
        self.item_vectors = (
            item_vectors
            if item_vectors is not None  # an empty store is falsy (it has a length)
            else ItemVectors(1, store=self.items)
        )
        if self.catalog.store is not self.items or self.item_vectors.store is not self.items:
            raise ValueError("the catalog and the item vectors must share the recommender's store")
        #: text -> (encoder version, unit vector); only the active version is used.
        self.query_vectors: LRUCache[tuple[str, np.ndarray]] = LRUCache(query_cache_size)
        self.query_candidates = query_candidates
        self.interest = interest or InterestModel()
        self.interest_candidates = interest_candidates
        self.experiment = experiment or Experiment([])
        #: Online quality and drift (None: monitoring off).
        self.monitor = monitor
        #: Dead letters keyed by pseudonym, their bytes sealed (`core/deadletters.py`).
        self.dead_letters = dead_letters
        #: The current metrics window: whole batches, added by `count` (the shell
        #: calls it once a batch's output reached Kafka; `process_batch` at once).
        self.counters = Counters()
        #: Item learning shared with other workers (`core/sharing.py`); None: on its own.
        self.sharing: Sharing | None = None

    def share(self, by: str, ranker: str = "sum") -> Sharing:
        """Share learned item state (and the ranker: `ranker` "sum", "average" or "off")
        from now on, as worker `by` (the streaming shell's call)."""
        self.sharing = Sharing(self.recommender, by, ranker)
        return self.sharing

    def upsert_item(self, item: CatalogItem) -> None:
        """A catalog record: attributes for ranking, availability for the item index too."""
        self.catalog.upsert(item)
        self.item_vectors.set_available(item.item_id, item.available)

    def process_batch(
        self,
        batch: Sequence[RawMessage],
        store: ProfileStore,
        now_ms: int,
        embed: EmbedFn | None = None,
    ) -> BatchOutput:
        """Process events in order; each profile is read and written once per batch.

        The worker's steps (`core/plan.py`), driven in process: `embed` stands in
        for the scorer. A batch's counts go into the window at once (`count`).
        """
        from streamrec.core.plan import batch_plan, run_plan  # plan builds on the engine

        out = BatchOutput()
        plan = batch_plan(self, batch, store, lambda: now_ms, can_embed=embed is not None)
        for part in run_plan(plan, embed):
            out.extend(part)
        self.count(out.counters)
        return out

    def count(self, batch: Counters) -> None:
        """Add a batch's counts to the current window (once its output is delivered)."""
        self.counters.merge(batch)

    def apply_batch(self, ingested: Ingested, store: ProfileStore, now_ms: int) -> BatchOutput:
        """Update profiles and recommend, event by event, in order. Never raises.

        A failure of the batch-wide steps (one vector search for the batch) falls
        back to the events one at a time, so a poison event costs itself only.
        """
        if any(e.type == "forget" for _m, e in ingested.accepted):
            return self.apply_runs(ingested, store, now_ms)
        return self._apply_or_isolate(ingested, store, now_ms)

    def _apply_or_isolate(
        self, ingested: Ingested, store: ProfileStore, now_ms: int
    ) -> BatchOutput:
        try:
            return self._apply_batch(ingested, store, now_ms)
        except Exception:
            log.exception("batch of %d events failed; one at a time", len(ingested.accepted))
        out = BatchOutput(dead_letters=list(ingested.dead_letters), counters=ingested.counters)
        for msg, event in ingested.accepted:
            try:
                out.extend(self._apply_batch(Ingested([(msg, event)]), store, now_ms))
            except Exception as exc:
                self._reject(out, msg, event, "processing_error", exc, now_ms)
        return out

    def _apply_batch(self, ingested: Ingested, store: ProfileStore, now_ms: int) -> BatchOutput:
        out = BatchOutput(dead_letters=list(ingested.dead_letters), counters=ingested.counters)
        counters = out.counters
        profiles: dict[str, tuple[Profile, int]] = {}
        # Judged against each profile as stored before this batch: an event it has
        # applied already (a replay after a crash) is answered but not learned twice.
        replayed = [
            self._profile(e.user, m.partition, store, profiles).applied(m.partition, m.offset)
            for m, e in ingested.accepted
        ]
        query_hits = self._search_queries(ingested)
        user_vectors, interest_hits, states = self._interest_pass(
            ingested, store, profiles, replayed
        )
        erased: set[str] = set()
        for j, (msg, event) in enumerate(ingested.accepted):
            if event.type == "forget":  # the last event of its run (`apply_batch`)
                self.forget(event, now_ms, out, ingested.keep_ids)
                erased.add(event.user)
                continue
            try:
                ctx = self._rank_context(user_vectors[j], interest_hits[j])
                rec = self._apply(event, msg, profiles, now_ms, query_hits, ctx, replayed[j], out)
            except Exception as exc:  # a bug must cost one event, never the worker
                self._reject(out, msg, event, "processing_error", exc, now_ms)
                continue
            if isinstance(rec, Rejection):
                self._reject(out, msg, event, rec.reason, rec.detail, now_ms)
                continue
            if isinstance(rec, Duplicate):  # a retry the in-memory window had forgotten
                counters.counts["duplicates"] += 1
                counters.rejected_by_type[(event.type, "duplicates")] += 1
                continue
            counters.counts["valid"] += 1
            counters.by_type[event.type] += 1
            if event.ingest_ts > 0:
                counters.freshness.record(now_ms - event.ingest_ts)
            out.events.append(event)
            out.recommendations.append(rec)
            out.sources.append(msg)
        counters.counts["recommendations"] += len(out.recommendations)
        if self.monitor is not None and self.monitor.detections:
            out.drift = self.monitor.take_detections()
        for user, state in states.items():
            if user not in erased:
                profiles[user][0].vectors = state.to_dict()
        for user, (profile, partition) in profiles.items():
            if user in erased:
                store.delete(user, partition)  # the table and a changelog tombstone
            else:
                store.put(user, profile, partition)
        out.tombstones += erased  # and the latest list
        return out

    def take_deltas(self) -> list[ItemLog | RankerDelta]:
        """What the batch taught, to publish with it (`core/sharing.py`); once per batch,
        at its end: a batch applied in parts (users waiting for the scorer, runs cut by
        erasures) is one log, and its offsets join the ledger together."""
        return self.sharing.take() if self.sharing is not None else []

    def _vectors_for(
        self, event: Event, query_hits: dict[str, Hits], counts: Counter[str]
    ) -> tuple[tuple[str, ...], Hits, str | None, tuple[str, np.ndarray] | None]:
        """A search's query vector and hits, or the flag saying the event has no vector:
        (flags, hits, encoder version, query cache entry)."""
        if event.type == "search":
            entry = self._query_entry(event.query)
            if entry is None:
                counts["no_query_vector"] += 1
                return ("no_query_vector",), NO_HITS, None, None
            counts["query_vector"] += 1
            return (), query_hits.get(event.query or "", NO_HITS), entry[0], entry
        if (
            event.item_id is not None
            and self.item_vectors.active_version is not None
            and self.item_vectors.get(event.item_id) is None
        ):
            counts["no_item_vector"] += 1
            return ("no_item_vector",), NO_HITS, None, None
        return (), NO_HITS, None, None

    def _apply(
        self,
        event: Event,
        msg: RawMessage,
        profiles: dict[str, tuple[Profile, int]],
        now_ms: int,
        query_hits: dict[str, Hits],
        ctx: RankContext,
        replayed: bool,
        out: BatchOutput,
    ) -> Recommendation | Rejection | Duplicate:
        profile = profiles[event.user][0]
        if not replayed and profile.has_seen(event.event_id):
            # Another offset with an event id this profile has applied: a producer's
            # retry (a replay has the same offset, and is answered again).
            return Duplicate(event.type)
        row = self.items.row(event.item_id) if event.item_id is not None else None
        categories = self.items.categories(row) if row is not None else ()
        counts = out.counters.counts
        sharing = self.sharing
        # Its learning is in the state already (the previous owner of the partition, or
        # this worker before a crash, delivered it): the profile may still need it, the
        # models and the ranker's inputs do not (a restarted worker replays those).
        known = sharing is not None and sharing.knows(msg.partition, msg.offset)
        fresh = not (replayed or known)
        if replayed:
            counts["replayed"] += 1
            if sharing is not None and not sharing.knows(msg.partition, msg.offset):
                # Its profile has it, the shared item state does not. The worker writes a
                # profile only once the batch's log is on the topic, so only a profile
                # store that does not keep to that gets here: items only, the session is
                # gone by now (trending learns it exactly, co-visitation not). Counted.
                counts["replayed_unlogged"] += 1
                sharing.learn(msg.partition, msg.offset, row, event.type, event.ts, ())
        else:
            rejected = self._learn(event, msg, row, profile, categories, known)
            if rejected is not None:
                return rejected
            profile.mark_applied(msg.partition, msg.offset)
        flags, hits, encoder_version, entry = self._vectors_for(event, query_hits, counts)
        if event.type == "impression" and fresh:
            self.recommender.observe_impression(event, profile, ctx)
        if ctx.user_vector is not None:
            encoder_version = encoder_version or self.item_vectors.active_version
        variant = self.experiment.assign(event.user)
        items = self.recommender.recommend(
            profile,
            row,
            query_hits=hits,
            ctx=ctx,
            variant=variant,
            offered_ts=event.ts if fresh else None,
        )
        rec = Recommendation(
            user=event.user,
            items=tuple(items),
            model_version=self.recommender.model_for(variant).version,
            event_id=event.event_id,
            event_type=event.type,
            event_ts=event.ts,
            ingest_ts=event.ingest_ts,
            produced_ts=now_ms,
            encoder_version=encoder_version,
            flags=flags,
            user_value=self.recommender.value.user_value(profile, event.ts),
            variant=variant.name,
        )
        if self.monitor is not None and not replayed:
            self.monitor.observe(event, variant.name, rec, categories, entry)
        return rec
