"""The core stage in process: per-event latency at a catalog size, and the self-tuning blend's cost.

No Kafka: the synthetic shop's events go through `Engine.process_batch` one at
a time after a warm-up, as `streamrec bench --rank-items` reports them.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.heap import freeze_startup
from streamrec.settings import Settings


def shop_messages(shop: SyntheticShop, n: int, now: int, step_ms: int = 1) -> list[RawMessage]:
    """`n` of the shop's events ending at `now`, `step_ms` apart, as the worker receives
    them (the in-process benches' input)."""
    events = shop.events(n, start_ts=now - n * step_ms, step_ms=step_ms)
    return [
        RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, now)
        for i, e in enumerate(events)
    ]


def synthetic_vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def measure_rank_latency(
    settings: Settings, n_items: int, events: int = 3_000, dim: int = 384
) -> dict[str, Any]:
    """Per-event latency of the core stage (ingest, profile, retrieval, ranking), in process.

    A synthetic shop with `n_items` items and random unit vectors (HNSW above
    STREAMREC_INDEX_HNSW_ABOVE); the first half of the events warms profiles,
    trending and co-visitation, the second half is timed one event at a time.
    """
    s = settings.with_overrides(partitions=1)
    if s.rank_threads > 0:  # as in the worker process (numpy's own pool is fixed at import)
        import faiss

        faiss.omp_set_num_threads(s.rank_threads)
    import faiss  # loaded before the baseline: a library, not per-item memory

    faiss.IndexFlatIP(dim)
    rss0 = _rss_bytes()
    engine = build_engine(s)
    shop = SyntheticShop(users=5_000, items=n_items, seed=1)
    for item in shop.catalog:
        engine.catalog.upsert(item)
    vectors = synthetic_vectors(n_items, dim)  # freed below, before the second reading
    t0 = time.perf_counter()
    engine.item_vectors.add_many([it.item_id for it in shop.catalog], "synthetic@1", vectors)
    engine.item_vectors.mark_complete("synthetic@1", 0, ts=1)
    build_s = time.perf_counter() - t0
    del vectors
    per_item = (_rss_bytes() - rss0) / n_items - dim * 4
    now = int(time.time() * 1000)
    msgs = shop_messages(shop, events, now, step_ms=50)
    store = DictProfileStore()
    freeze_startup()  # as a worker does before its first event (`streamrec.heap`)
    half = events // 2
    for i in range(0, half, 200):
        engine.process_batch(msgs[i : i + 200], store, now)
    hist = LogHistogram()
    t_all = time.perf_counter()
    for m in msgs[half:]:
        t = time.perf_counter()
        engine.process_batch([m], store, now)
        hist.record((time.perf_counter() - t) * 1000)
    mean_ms = (time.perf_counter() - t_all) * 1000 / max(1, len(msgs) - half)
    return {
        "items": n_items,
        "index": "hnsw" if n_items > s.index_hnsw_above else "flat",
        "index_build_s": round(build_s, 1),
        # Catalog record, item-store columns, index structures: what an item costs
        # on top of its float32 vector (RSS growth while loading, per item).
        "bytes_per_item_beyond_vector": round(per_item),
        "mean": round(mean_ms, 3),
    } | hist.summary((50, 95, 99))


def tuning_cost(tuned: dict[str, Any], untuned: dict[str, Any], sample: float) -> dict[str, Any]:
    """What the self-tuning blend adds to the rank stage: two runs, with and without it."""
    return {
        "sample": sample,
        "mean_ms_without": untuned["mean"],
        "p50_ms_without": untuned["p50"],
        # Share of the core the tuner costs; its budget is 15%.
        "share_of_core": round(tuned["mean"] / untuned["mean"] - 1.0, 3)
        if untuned["mean"]
        else None,
    }


def _rss_bytes() -> int:
    """Resident set size of this process now (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0
