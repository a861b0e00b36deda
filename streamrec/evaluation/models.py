"""streamrec itself as an evaluated model: the functional core the workers run, in process.

`StreamrecModel` feeds events through `Engine.process_batch` exactly as the
worker does (encoded messages, micro-batches, a pseudonymising ingest) and
returns the list published after each event. With an encoder, catalog items
get vectors first (as the scorer would publish them) and searches get query
vectors, so the run includes retrieval by vector; without, ranking runs on
co-visitation, popularity and category affinity alone.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from tqdm import tqdm

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore, QueryVectors
from streamrec.core.ingest import RawMessage
from streamrec.records import CatalogItem, RawEvent
from streamrec.settings import Settings

if TYPE_CHECKING:
    from streamrec.scorer.embedder import Embedder


#: What a model answers for an event whose list a later event of the same micro-batch
#: publishes (streamrec publishes one list per user per micro-batch): no list of its own.
COVERED: list[str] = []


class EvaluatedModel(Protocol):
    name: str

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        """The user's list after each event; None where the model published nothing,
        `COVERED` where a later event of the same call publishes the list for it."""
        ...

    def recommend(self, user: str, k: int) -> list[str]:
        """The user's list now, without a new event (leave-last-out)."""
        ...


@dataclass(frozen=True)
class CatalogVectors:
    """Catalog item vectors in one encoder version, and the query embedder of that version."""

    version: str
    item_ids: list[str]
    vectors: np.ndarray
    embed: Callable[[list[str], str | None], QueryVectors | None]


def embed_catalog(
    embedder: Embedder, items: Sequence[CatalogItem], progress: bool = True
) -> CatalogVectors:
    """Vectors for `items`, as the scorer would publish them, computed once per evaluation."""
    from streamrec.scorer.embedder import BatchStats

    version = embedder.current
    ids: list[str] = []
    rows: list[np.ndarray] = []
    chunks = range(0, len(items), 256)
    for start in tqdm(chunks, desc="embedding the catalog", unit="batch", disable=not progress):
        for it, vec, _err in embedder.embed_items(items[start : start + 256], version):
            if vec is not None:
                ids.append(it.item_id)
                rows.append(vec)

    def embed(texts: list[str], wanted: str | None) -> QueryVectors | None:
        answer = embedder.answer([(texts, "query", wanted)], BatchStats())[0]
        if answer.error:
            return None
        return QueryVectors(answer.version, texts, answer.vectors, answer.valid)

    matrix = np.stack(rows) if rows else np.zeros((0, embedder.dim), dtype=np.float32)
    return CatalogVectors(version, ids, matrix, embed)


class StreamrecModel:
    name = "streamrec"

    def __init__(
        self,
        settings: Settings,
        items: Sequence[CatalogItem] = (),
        vectors: CatalogVectors | None = None,
    ) -> None:
        # One partition of everything: the in-process run is one worker owning all.
        self.settings = settings.with_overrides(partitions=1)
        self.engine = build_engine(self.settings)
        self.store = DictProfileStore()
        self.now_ms = int(time.time() * 1000)
        self._offset = 0
        self._last_ts = 0
        #: Lists published per ranking model ("blend-1", "river-logreg-1"): whether the
        #: online ranker took over, and for how much of the run.
        self.lists_by_model: Counter[str] = Counter()
        for item in items:
            self.engine.upsert_item(item)
        self._embed: Callable[[list[str], str | None], QueryVectors | None] | None = None
        if vectors is not None:
            store = self.engine.item_vectors
            if vectors.item_ids:
                store.add_many(vectors.item_ids, vectors.version, vectors.vectors)
            for p in range(store.partitions):
                store.mark_complete(vectors.version, p, ts=1)
            self._embed = vectors.embed

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        msgs = []
        for ev in events:
            msgs.append(
                RawMessage(
                    serde.dumps(ev.to_dict()), ev.user_id.encode(), 0, self._offset, self.now_ms
                )
            )
            self._offset += 1
            self._last_ts = max(self._last_ts, ev.ts)
        out = self.engine.process_batch(msgs, self.store, self.now_ms, embed=self._embed)
        self.lists_by_model.update(r.model_version.split("@")[0] for r in out.recommendations)
        lists: dict[str, list[str]] = {}
        for r in out.recommendations:
            lists[r.event_id] = [i.item_id for i in r.items[:k]]
            lists.update(dict.fromkeys(r.covers, COVERED))
        ref = self.engine.ingestor.pseudonymize.event_id  # lists carry hashed event ids
        return [lists.get(ref(ev.event_id)) for ev in events]

    def recommend(self, user: str, k: int) -> list[str]:
        return self.recommend_many([user], k)[user]

    def recommend_many(self, users: Sequence[str], k: int) -> dict[str, list[str]]:
        pseudonyms = {u: self.engine.ingestor.pseudonymize(u) for u in users}
        lists = self.engine.recommend_for(list(pseudonyms.values()), self.store, self._last_ts)
        return {u: [i.item_id for i in lists[p][:k]] for u, p in pseudonyms.items()}
