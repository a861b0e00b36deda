"""What the co-visitation graph costs: memory, restoring it, learning and reading it.

    python scripts/covisit_cost.py                  # after 30,000 synthetic events
    python scripts/covisit_cost.py --events 60000

Learns the synthetic shop's events through the engine (as `rank_in_process.py`
does, without item vectors), then measures on its co-visitation graph:

- bytes held (tracemalloc) after restoring it from its snapshot state, and after
  learning 3,000 more events' pairs on top;
- restoring (`CoVisitation.from_state`) and flattening (`pair_arrays`: every
  factors refresh and snapshot does it), best of 5;
- learning one event's pairs (`add`) and reading 20 anchors' neighbours
  (`candidates`), per call, best of 5 passes over the same calls.

Only the graph's public methods are called, so the script measures any
version of it the same way.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from streamrec.build import build_engine
from streamrec.core.engine import DictProfileStore
from streamrec.core.ranking.covisit import CoVisitation
from streamrec.datasets.synthetic import SyntheticShop
from streamrec.settings import Settings
from streamrec.tools.rank_bench import shop_messages


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=30_000)
    args = ap.parse_args()
    engine = build_engine(Settings.from_env().with_overrides(partitions=1))
    shop = SyntheticShop(seed=1)
    for item in shop.catalog:
        engine.catalog.upsert(item)
    now = int(time.time() * 1000)
    msgs = shop_messages(shop, args.events, now)
    store = DictProfileStore()
    for i in range(0, len(msgs), 200):
        engine.process_batch(msgs[i : i + 200], store, now)
    state = engine.recommender.covisit.state()
    src = np.asarray(state["src"])
    rows = np.unique(src)
    print(f"{len(src):,} pairs over {len(rows):,} rows after {args.events:,} events")

    tracemalloc.start()
    graph = CoVisitation.from_state(state)
    restored = tracemalloc.get_traced_memory()[0]
    rng = np.random.default_rng(0)
    adds = [(int(rng.choice(rows)), rng.choice(rows, 9).tolist()) for _ in range(3_000)]
    for row, previous in adds:
        graph.add(row, previous, 1.0)
    learned = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"bytes held: {restored / 1e6:.1f} MB restored ({restored / len(rows):,.0f} per row), "
          f"{learned / 1e6:.1f} MB after 3,000 more events")  # fmt: skip

    restore_s = _best(lambda: CoVisitation.from_state(state))
    flatten_s = _best(graph.pair_arrays)
    print(f"from_state {restore_s * 1e3:.1f} ms, pair_arrays {flatten_s * 1e3:.1f} ms")

    copy = CoVisitation.from_state(state)

    def learn() -> None:
        for row, previous in adds:
            copy.add(row, previous, 1.0)

    add_s = _best(learn) / len(adds)
    recents = [rng.choice(rows, 20) for _ in range(3_000)]
    read_s = _best(lambda: [graph.candidates(r, 20, True) for r in recents]) / len(recents)
    print(f"add {add_s * 1e6:.1f} us per event, candidates {read_s * 1e6:.1f} us per list "
          "(20 anchors, cosine)")  # fmt: skip


if __name__ == "__main__":
    main()
