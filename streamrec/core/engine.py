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
from streamrec.core.retrieval.interest import InterestModel, UserVectors
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

#: An event's vectors: (flags, query hits, encoder version, query cache entry).
EventVectors = tuple[tuple[str, ...], Hits, str | None, tuple[str, np.ndarray] | None]


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
        accepted = ingested.accepted
        profiles: dict[str, tuple[Profile, int]] = {}
        # Judged against each profile as stored before this batch: an event it has
        # applied already (a replay after a crash) is answered but not learned twice.
        replayed = [
            self._profile(e.user, m.partition, store, profiles).applied(m.partition, m.offset)
            for m, e in accepted
        ]
        # One list per user: after the user's last event here, answering all of them.
        last_of = {e.user: j for j, (_m, e) in enumerate(accepted)}
        listed = [last_of[e.user] == j for j, (_m, e) in enumerate(accepted)]
        query_hits = self._search_queries(ingested, listed)
        user_vectors, interest_hits, states = self._interest_pass(
            ingested, store, profiles, replayed, listed
        )
        erased: set[str] = set()
        #: Valid events no list answers yet, per user (they wait for the user's last one).
        unanswered: dict[str, list[tuple[RawMessage, Event, int]]] = {}
        for j, (msg, event) in enumerate(accepted):
            if event.type == "forget":  # the last event of its run (`apply_runs`)
                self.forget(event, now_ms, out, ingested.keep_ids)
                erased.add(event.user)
                # No list for an erased user: their earlier events here end with the erasure.
                if unlisted := unanswered.pop(event.user, ()):
                    counters.counts["erased_unlisted"] += len(unlisted)
                continue
            try:
                ctx = self._rank_context(user_vectors[j], interest_hits[j])
                waiting = unanswered.get(event.user, ())
                covers = tuple(e.event_id for _m, e, _j in waiting) if listed[j] else None
                rec = self._apply(
                    event, msg, profiles, now_ms, query_hits, ctx, replayed[j], out, covers,
                    follows=bool(waiting),
                )  # fmt: skip
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
            if rec is None:
                unanswered.setdefault(event.user, []).append((msg, event, j))
                continue
            out.recommendations.append(rec)
            answered = unanswered.pop(event.user, ())
            out.sources.append((*((m, e) for m, e, _j in answered), (msg, event)))
        # A user whose last event failed: the newest valid one answers for the rest.
        for waiting in unanswered.values():
            self._answer_late(waiting, profiles, states, now_ms, out)
        counters.counts["recommendations"] += len(out.recommendations)
        if covered := sum(len(r.covers) for r in out.recommendations):
            counters.counts["covered"] += covered
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

    def _answer_late(
        self,
        waiting: list[tuple[RawMessage, Event, int]],
        profiles: dict[str, tuple[Profile, int]],
        states: dict[str, UserVectors],
        now_ms: int,
        out: BatchOutput,
    ) -> None:
        """The list for a user's valid events whose last event of the batch failed: made
        for the newest valid one, which was not searched for with the batch."""
        _msg, event, _j = waiting[-1]
        state = states.get(event.user)
        version = self.item_vectors.active_version
        vector = None
        if state is not None and version is not None:
            vector = self.interest.user_vector(state, event.ts, version)
        hits = NO_HITS
        if vector is not None:
            wanted = self._hits_wanted(self.interest_candidates)
            hits = self.item_vectors.search_rows(vector[None, :], wanted)[0]
        covers = tuple(e.event_id for _m, e, _j in waiting[:-1])
        try:
            vectors = self._vectors_for(event, {}, Counter())  # counted with the event
            rec = self._list(
                event, profiles[event.user][0], now_ms, vectors, self._rank_context(vector, hits),
                covers, fresh=False,
            )  # fmt: skip
        except Exception as exc:  # counted valid, yet no list answers them: dead letters
            log.exception("list for event %s failed", event.event_id)
            detail = f"{type(exc).__name__}: {exc}"
            for m, e, _j in waiting:
                rejection = Rejection("processing_error", detail, e.event_id, e.type)
                out.dead_letters.append(self.dead_letter(m, rejection, now_ms))
                out.counters.retract("processing_error", e.type)
            return
        if self.monitor is not None:
            self.monitor.listed(rec.variant, rec)
        out.recommendations.append(rec)
        out.sources.append(tuple((m, e) for m, e, _j in waiting))

    def take_deltas(self) -> list[ItemLog | RankerDelta]:
        """What the batch taught, to publish with it (`core/sharing.py`); once per batch,
        at its end: a batch applied in parts (users waiting for the scorer, runs cut by
        erasures) is one log, and its offsets join the ledger together."""
        return self.sharing.take() if self.sharing is not None else []

    def _vectors_for(
        self, event: Event, query_hits: dict[str, Hits], counts: Counter[str]
    ) -> EventVectors:
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
        covers: tuple[str, ...] | None,
        follows: bool = False,
    ) -> Recommendation | Rejection | Duplicate | None:
        """Learn one event; its list if it is the user's last of the batch (`covers`: the
        earlier events the list answers too), else None. `follows`: the user's previous
        event is in this batch."""
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
        vectors = self._vectors_for(event, query_hits, counts)
        if event.type == "impression" and fresh:
            self.recommender.observe_impression(event, profile, ctx)
        rec = None if covers is None else self._list(event, profile, now_ms, vectors, ctx,
                                                     covers, fresh)  # fmt: skip
        if self.monitor is not None and not replayed:
            variant = rec.variant if rec is not None else self.experiment.assign(event.user).name
            self.monitor.observe(event, variant, rec, categories, vectors[3], follows)
        return rec

    def _list(
        self,
        event: Event,
        profile: Profile,
        now_ms: int,
        vectors: EventVectors,
        ctx: RankContext,
        covers: tuple[str, ...],
        fresh: bool,
    ) -> Recommendation:
        """The user's list after `event` (their newest of the batch)."""
        flags, hits, encoder_version, _entry = vectors
        if ctx.user_vector is not None:
            encoder_version = encoder_version or self.item_vectors.active_version
        variant = self.experiment.assign(event.user)
        items = self.recommender.recommend(
            profile,
            self.items.row(event.item_id) if event.item_id is not None else None,
            query_hits=hits,
            ctx=ctx,
            variant=variant,
            offered_ts=event.ts if fresh else None,
        )
        return Recommendation(
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
            covers=covers,
        )
