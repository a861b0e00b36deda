"""What one serving replica knows and answers from; no Kafka, no HTTP.

* lists: the `ListStore` (the `recommendations` topic on disk);
* items: the catalog and item vectors in the workers' own structures
  (`ItemStore`, `Catalog`, `ItemVectors` with its FAISS index), fed by the
  same record functions the workers use;
* popularity: the workers' `Trending` over the recent `storefront.events`
  (item, type and time only: nothing about the user is read or kept), for
  `fallback=popular` and `/v1/popular`;
* health: the `MonitorView` of `streamrec monitor` over `metrics`,
  `drift.stats` and `alerts`, plus a time series of it for the page's charts.

The follower (`serve/follow.py`) feeds it; the HTTP layer (`serve/api.py`)
asks it. Filters and item descriptions are plain functions of it, tested
without a broker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.core.catalog import Catalog
from streamrec.core.filters import Filters
from streamrec.core.items import ItemStore
from streamrec.core.monitoring.view import MonitorView
from streamrec.core.monitoring.windows import merge_windows
from streamrec.core.privacy import Pseudonymizer
from streamrec.core.profile import EVENT_WEIGHTS
from streamrec.core.ranking.popularity import CategoryTop, Trending
from streamrec.core.retrieval.vectors import ItemVectors
from streamrec.errors import SerdeError
from streamrec.records import CatalogItem
from streamrec.serve.store import ListStore


class ServingState:
    def __init__(
        self,
        store: ListStore,
        pseudonymize: Pseudonymizer,
        *,
        embedding_partitions: int,
        hnsw_above: int,
        trending_half_life_s: float,
        health_span_s: float = 3_600.0,
        control: str | None = None,
    ) -> None:
        self.lists = store
        self.pseudonymize = pseudonymize
        self.items = ItemStore()
        self.catalog = Catalog(self.items)
        self.vectors = ItemVectors(embedding_partitions, store=self.items, hnsw_above=hnsw_above)
        self.trending = Trending(trending_half_life_s, pool=500, store=self.items)
        self.category_top = CategoryTop(self.trending, self.items, n=200)
        self.health = MonitorView(since_s=health_span_s, control=control)
        self.events_counted = 0

    # -- feeds ----------------------------------------------------------------

    def upsert_item(self, item: CatalogItem) -> None:
        """As the workers do: attributes in the store, availability in the index too."""
        self.catalog.upsert(item)
        self.vectors.set_available(item.item_id, item.available)

    def count_events(self, values: Iterable[bytes | None]) -> int:
        """Storefront events into popularity: item, type and time; the rest is not read
        into anything that lives (bad events are the workers' to dead-letter)."""
        n = 0
        for value in values:
            if value is None:
                continue
            try:
                doc = serde.loads(value)
            except SerdeError:
                continue
            if not isinstance(doc, dict):
                continue
            item, ts = doc.get("item_id"), doc.get("ts")
            weight = EVENT_WEIGHTS.get(doc.get("type"), 0.0)  # type: ignore[arg-type]
            if weight and isinstance(item, str) and isinstance(ts, int):
                self.trending.add(self.items.row(item), weight, ts)
                n += 1
        self.events_counted += n
        return n

    # -- answers --------------------------------------------------------------

    def user_list(
        self, user_id: str, k: int, filters: Filters, now_ms: int
    ) -> dict[str, Any] | None:
        """The latest list of raw `user_id`, filtered and cut to `k`; None: no list."""
        raw = self.lists.get(self.pseudonymize(user_id))
        if raw is None:
            return None
        doc = serde.loads(raw)
        items = []
        for it in doc["items"]:
            if filters.keep(it["item_id"], it.get("category"), it.get("price")):
                items.append(self._titled(it))
                if len(items) == k:
                    break
        # The list as published (hashed ids only), filtered, with titles and its age.
        doc["items"] = items
        doc["source"] = "list"
        doc["age_ms"] = max(0, now_ms - int(doc["produced_ts"]))
        return doc

    def popular(self, k: int, filters: Filters) -> dict[str, Any]:
        """The most popular available items now (time-decayed), filtered."""
        if filters.category is not None:
            cid = self.items.category_ids.get(filters.category)
            rows, scores = self.category_top.top(cid) if cid is not None else _NONE
        else:
            rows, scores = self.trending.top()
        return {"source": "popular", "items": self._described(rows, scores, k, filters)}

    def similar(self, item_id: str, k: int, filters: Filters) -> list[dict[str, Any]] | None:
        """Items nearest to `item_id` in the active item vectors; None: it has none."""
        vec = self.vectors.get(item_id)
        if vec is None:
            return None
        me = self.items.find(item_id)
        # Ask for a few more: the item itself and filtered ones are dropped after.
        ask = k + 1 + len(filters.exclude) + (4 * k if _narrowing(filters) else 0)
        rows, scores = self.vectors.search_rows(vec[None, :], ask)[0]
        keep = rows != me
        return self._described(rows[keep], scores[keep], k, filters)

    def search(self, vector: np.ndarray, k: int) -> list[dict[str, Any]]:
        rows, scores = self.vectors.search_rows(vector[None, :], k)[0]
        return self._described(rows, scores, k, Filters())

    # -- descriptions ---------------------------------------------------------

    def describe(self, row: int, score: float) -> dict[str, Any]:
        item = self.items.items[row]
        leaf = self.items.category_name(int(self.items.leaf[row]))
        price = float(self.items.price[row])
        out: dict[str, Any] = {"item_id": self.items.ids[row], "score": round(score, 6)}
        if item is not None:
            out["title"] = item.title
        if leaf is not None:
            out["category"] = leaf
        if not math.isnan(price):
            out["price"] = price
        return out

    def _described(
        self, rows: np.ndarray, scores: np.ndarray, k: int, filters: Filters
    ) -> list[dict[str, Any]]:
        rows = np.asarray(rows, dtype=np.int64)
        avail = self.items.available[rows] if len(rows) else np.zeros(0, bool)
        out = []
        for row, score in zip(
            rows[avail].tolist(), np.asarray(scores)[avail].tolist(), strict=True
        ):
            d = self.describe(row, score)
            if filters.keep(d["item_id"], d.get("category"), d.get("price")):
                out.append(d)
                if len(out) == k:
                    break
        return out

    def _titled(self, it: dict[str, Any]) -> dict[str, Any]:
        row = self.items.find(it["item_id"])
        item = self.items.items[row] if row is not None else None
        if item is not None:
            it["title"] = item.title
        return it

    # -- health ---------------------------------------------------------------

    def health_view(self, now_ms: int | None = None) -> dict[str, Any]:
        """`streamrec monitor --json`'s snapshot plus a series per metrics window."""
        now_ms = now_ms or int(time.time() * 1000)
        snap = self.health.snapshot(now_ms)
        snap["series"] = health_series(self.health.windows)
        return snap


_NONE: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))


def _narrowing(f: Filters) -> bool:
    return f.category is not None or f.min_price is not None or f.max_price is not None


def health_series(windows: Sequence[Any], max_points: int = 120) -> list[dict[str, Any]]:
    """One point per window end (workers' windows of the same moment added up):
    throughput, latency percentiles, DLQ share and online HR@K per variant."""
    if not windows:
        return []
    spans = sorted(w.window_end - w.window_start for w in windows if w.role != "scorer")
    step = max(1_000, spans[len(spans) // 2] if spans else 10_000)
    buckets: dict[int, list[Any]] = {}
    for w in windows:
        if w.role != "scorer":
            buckets.setdefault(w.window_end // step, []).append(w)
    points = []
    for b in sorted(buckets)[-max_points:]:
        s = merge_windows(buckets[b]).summary()
        points.append(
            {
                "t": b * step,
                "events_per_s": s["events_per_s"],
                "latency_p50_ms": s["latency_p50_ms"],
                "latency_p95_ms": s["latency_p95_ms"],
                "latency_p99_ms": s["latency_p99_ms"],
                "dlq_share": s["dlq_share"],
                "hit_rate": {v: r.get("hit_rate") for v, r in s["variants"].items()},
            }
        )
    return points
