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
from collections.abc import Callable, Sequence
from typing import Protocol

from streamrec import serde
from streamrec.core.engine import DictProfileStore, Engine, QueryVectors
from streamrec.core.ingest import RawMessage
from streamrec.records import CatalogItem, RawEvent
from streamrec.settings import Settings


class EvaluatedModel(Protocol):
    name: str

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        """The user's list after each event; None where the model published nothing."""
        ...

    def recommend(self, user: str, k: int) -> list[str]:
        """The user's list now, without a new event (leave-last-out)."""
        ...


class StreamrecModel:
    name = "streamrec"

    def __init__(
        self,
        settings: Settings,
        items: Sequence[CatalogItem] = (),
        encoder: object | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        # One partition of everything: the in-process run is one worker owning all.
        self.settings = settings.with_overrides(partitions=1)
        self.engine = Engine.from_settings(self.settings)
        self.store = DictProfileStore()
        self.now_ms = int(time.time() * 1000)
        self._offset = 0
        self._last_ts = 0
        for item in items:
            self.engine.upsert_item(item)
        self._embed: Callable[[list[str], str | None], QueryVectors | None] | None = None
        if encoder is not None:
            self._load_vectors(encoder, items, progress)

    def _load_vectors(
        self, embedder: object, items: Sequence[CatalogItem], progress: Callable[[str], None] | None
    ) -> None:
        from streamrec.scorer.embedder import BatchStats, Embedder

        assert isinstance(embedder, Embedder)
        version = embedder.current
        if progress:
            progress(f"embedding {len(items):,} catalog items with {version}")
        for start in range(0, len(items), 256):
            chunk = items[start : start + 256]
            got = [(it.item_id, v) for it, v, _err in embedder.embed_items(chunk, version)]
            ids = [i for i, v in got if v is not None]
            if ids:
                import numpy as np

                self.engine.item_vectors.add_many(
                    ids, version, np.stack([v for _i, v in got if v is not None])
                )
        vectors = self.engine.item_vectors
        for p in range(vectors.partitions):
            vectors.mark_complete(version, p, ts=1)

        def embed(texts: list[str], wanted: str | None) -> QueryVectors | None:
            answer = embedder.answer([(texts, "query", wanted)], BatchStats())[0]
            if answer.error:
                return None
            return QueryVectors(answer.version, texts, answer.vectors, answer.valid)

        self._embed = embed

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
        lists = {r.event_id: [i.item_id for i in r.items[:k]] for r in out.recommendations}
        return [lists.get(ev.event_id) for ev in events]

    def recommend(self, user: str, k: int) -> list[str]:
        return self.recommend_many([user], k)[user]

    def recommend_many(self, users: Sequence[str], k: int) -> dict[str, list[str]]:
        pseudonyms = {u: self.engine.ingestor.pseudonymize(u) for u in users}
        lists = self.engine.recommend_for(list(pseudonyms.values()), self.store, self._last_ts)
        return {u: [i.item_id for i in lists[p][:k]] for u, p in pseudonyms.items()}
