"""Main-thread time at a factors refresh point, inline against on a thread.

    python scripts/factors_refresh_cost.py     # ml-100k's whole co-visitation graph

Builds the co-visitation graph of all of MovieLens-100k (the settings'
window and neighbours), then times `GraphFactors.on_learned` at ten refresh
points each way, with 0.2 s of "events" between points, as a worker sees it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

import numpy as np

from streamrec.core.ranking.factors import GraphFactors
from streamrec.core.ranking.recommender import Recommender
from streamrec.datasets import movielens
from streamrec.settings import Settings


def main() -> None:
    s = Settings.from_env()
    data = movielens.load(movielens.fetch(s.cache_dir, quiet=True))
    rec = Recommender(
        covisit_window=s.covisit_window, covisit_max_neighbours=s.covisit_max_neighbours
    )
    session: dict[str, list[int]] = {}
    for e in data.events:
        if e.item_id is None:
            continue
        row = rec.items.row(e.item_id)
        prev = session.setdefault(e.user_id, [])
        rec.covisit.add(row, prev[-s.covisit_window :], 1.0)
        prev.append(row)
    graph, rows = rec.covisit, len(rec.items)
    print(f"{len(graph.pair_arrays()[2]):,} pairs over {rows:,} items, {s.factors_dim} factors")
    for background in (False, True):
        f = GraphFactors(dim=s.factors_dim, every=1, background=background)
        f.on_learned(graph, rows)
        f.on_learned(graph, rows)  # the cold start out of the way
        spent = []
        for _ in range(10):
            graph.add(1, [2], 1.0)  # a changed row, as between two points
            t = time.perf_counter()
            f.on_learned(graph, rows)
            spent.append(time.perf_counter() - t)
            time.sleep(0.2)  # the events between two refresh points
        how = "on a thread" if background else "inline"
        print(f"{how}: {np.median(spent) * 1e3:.1f} ms of the main thread per point (median of 10)")


if __name__ == "__main__":
    main()
