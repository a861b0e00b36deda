"""The retrieval stage of a micro-batch: query vectors, user vectors, vector search.

Per batch: the search texts the local cache lacks (asked of the scorer once),
every event's user vector as it is after that event (replayed from the user's
own events, so batching does not change it), and one vector search for all
user vectors and one for all query vectors. `Engine` is built on this class;
its state (item vectors, the query cache, the interest model) lives on the
engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from streamrec.core.batch import Ingested, ProfileStore, QueryVectors
from streamrec.core.profile import EVENT_WEIGHTS, Profile
from streamrec.core.ranking.recommender import NO_HITS, RankContext, Recommender
from streamrec.core.retrieval.index import Hits
from streamrec.core.retrieval.interest import InterestModel, UserVectors
from streamrec.core.retrieval.vectors import ItemVectors
from streamrec.records import Event, RecItem

if TYPE_CHECKING:
    from streamrec.core.lru import LRUCache
    from streamrec.core.ranking.variants import Experiment


class Retrieval:
    """Query and user vectors and their searches, for the engine's batches."""

    item_vectors: ItemVectors
    #: text -> (encoder version, unit vector); only the active version is used.
    query_vectors: LRUCache[tuple[str, np.ndarray]]
    query_candidates: int
    interest: InterestModel
    interest_candidates: int
    recommender: Recommender
    experiment: Experiment

    def missing_queries(self, ingested: Ingested) -> list[str]:
        """The batch's distinct search texts without a usable cached vector, in order."""
        out: dict[str, None] = {}
        for _msg, event in ingested.accepted:
            q = event.query
            if event.type != "search" or not q or q in out:
                continue
            if q.strip() and self._query_entry(q, count=False) is None:
                out[q] = None
        return list(out)

    def add_query_vectors(self, qv: QueryVectors) -> None:
        """Cache the scorer's vectors (ignored if in another version than the items')."""
        active = self.item_vectors.active_version
        if active is not None and qv.version != active:
            return
        for i, text in enumerate(qv.texts):
            if qv.valid[i]:
                self.query_vectors.put(text, (qv.version, qv.vectors[i]))

    def _query_entry(self, text: str | None, count: bool = True) -> tuple[str, np.ndarray] | None:
        """(version, vector) for `text` if cached in the version the items are searched in."""
        if not text or not text.strip():
            return None
        entry = self.query_vectors.get(text) if count else self.query_vectors.peek(text)
        if entry is None:
            return None
        active = self.item_vectors.active_version
        if active is not None and entry[0] != active:
            return None  # from before a model switch: another vector space
        return entry

    def _profile(
        self,
        user: str,
        partition: int,
        store: ProfileStore,
        profiles: dict[str, tuple[Profile, int]],
    ) -> Profile:
        cached = profiles.get(user)
        if cached is not None:
            return cached[0]
        profile = store.get(user, partition) or Profile.new(user)
        profiles[user] = (profile, partition)
        return profile

    def _interest_pass(
        self,
        ingested: Ingested,
        store: ProfileStore,
        profiles: dict[str, tuple[Profile, int]],
        replayed: Sequence[bool],
        listed: Sequence[bool],
    ) -> tuple[list[np.ndarray | None], list[Hits], dict[str, UserVectors]]:
        """The user vector (as after the event) of each event that gets a list or is an
        impression, and the FAISS hits of those that get a list: one search.

        Only the user's own events move their vectors, so working them out ahead
        of the main pass gives the same vectors as one event at a time, however
        the events are batched.
        """
        n = len(ingested.accepted)
        vectors: list[np.ndarray | None] = [None] * n
        hits: list[Hits] = [NO_HITS] * n
        version = self.item_vectors.active_version
        if version is None or not len(self.item_vectors):
            return vectors, hits, {}
        states: dict[str, UserVectors] = {}
        rows: list[int] = []
        queries: list[np.ndarray] = []
        for j, (msg, event) in enumerate(ingested.accepted):
            state = states.get(event.user)
            if state is None:
                profile = self._profile(event.user, msg.partition, store, profiles)
                state = states[event.user] = UserVectors.from_dict(profile.vectors)
            if not replayed[j]:
                self._move_vectors(state, event, version)
            if not listed[j] and event.type != "impression":
                continue  # neither ranks nor learns what was shown: no vector needed
            vec = vectors[j] = self.interest.user_vector(state, event.ts, version)
            if vec is not None and listed[j]:
                rows.append(j)
                queries.append(vec)
        if rows:
            # The ranker scores at most rank_pool candidates: more hits would be cut anyway.
            found = self.item_vectors.search_rows(
                np.stack(queries), self._hits_wanted(self.interest_candidates)
            )
            for j, f in zip(rows, found, strict=True):
                hits[j] = f
        return vectors, hits, states

    def recommend_for(
        self, users: Sequence[str], store: ProfileStore, ts: int
    ) -> dict[str, list[RecItem]]:
        """Each user's list as of event time `ts`, without an event (offline evaluation).

        The same ranking as after an event, minus what the event itself adds
        (no on-screen item, no query): one vector search for all users.
        """
        profiles = {u: store.get(u, 0) or Profile.new(u) for u in users}
        vectors: dict[str, np.ndarray] = {}
        version = self.item_vectors.active_version
        if version is not None and len(self.item_vectors):
            for user, profile in profiles.items():
                state = UserVectors.from_dict(profile.vectors)
                vec = self.interest.user_vector(state, ts, version)
                if vec is not None:
                    vectors[user] = vec
        hits: dict[str, Hits] = {}
        if vectors:
            found = self.item_vectors.search_rows(
                np.stack(list(vectors.values())), self._hits_wanted(self.interest_candidates)
            )
            hits = dict(zip(vectors, found, strict=True))
        return {
            user: self.recommender.recommend(
                profile,
                None,
                ctx=self._rank_context(vectors.get(user), hits.get(user, NO_HITS)),
                variant=self.experiment.assign(user),
            )
            for user, profile in profiles.items()
        }

    def _rank_context(self, user_vector: np.ndarray | None, interest_hits: Hits) -> RankContext:
        return RankContext(
            similarities=self.item_vectors.similarities,
            user_vector=user_vector,
            interest_hits=interest_hits,
        )

    def _move_vectors(self, state: UserVectors, event: Event, version: str) -> None:
        if event.item_id is not None and EVENT_WEIGHTS.get(event.type, 0.0) > 0:
            vec = self.item_vectors.get(event.item_id)
            if vec is not None:
                self.interest.add_item(state, vec, event.type, event.ts, version)
        elif event.type == "search":
            entry = self._query_entry(event.query, count=False)
            if entry is not None and entry[0] == version:
                self.interest.add_query(state, entry[1], event.ts, version)

    def _hits_wanted(self, k: int) -> int:
        """FAISS hits worth fetching: the ranker scores at most `rank_pool` candidates."""
        pool = self.recommender.rank_pool
        variant_pool = self.experiment.max_rank_pool
        if pool and variant_pool is not None:
            pool = 0 if variant_pool == 0 else max(pool, variant_pool)
        return min(k, pool) if pool else k

    def _search_queries(self, ingested: Ingested, listed: Sequence[bool]) -> dict[str, Hits]:
        """Item hits for every distinct query with a vector of a search that gets a list:
        one search."""
        texts: dict[str, np.ndarray] = {}
        for (_msg, event), wanted in zip(ingested.accepted, listed, strict=True):
            if wanted and event.type == "search" and event.query and event.query not in texts:
                entry = self._query_entry(event.query, count=False)
                if entry is not None:
                    texts[event.query] = entry[1]
        if not texts:
            return {}
        found = self.item_vectors.search_rows(
            np.stack(list(texts.values())), self._hits_wanted(self.query_candidates)
        )
        return dict(zip(texts, found, strict=True))
