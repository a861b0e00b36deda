"""The cycle collector, told which objects are there for the life of the process.

A worker imports Faust, aiokafka, river, numba and FAISS and builds its engine
before the first event: ~225,000 container objects that live as long as the
process. CPython's full collection walks every one of them each time, ~110 ms
here, and it runs whenever the objects that survived since the last one pass a
quarter of that heap: in the core's loop, several times a minute (ranking
allocates per event). Measured with `scripts/rank_in_process.py` (10,000
events): full collections took 0.85 s of the run before, 0.17 s with the
start-up heap frozen; docs/benchmarks.md has the figures.

`gc.freeze()` moves everything alive now to a generation the collector never
walks. What is frozen is only freed by reference counting, so call this once
the long-lived state is built, not in a loop: a cycle that is garbage at the
time stays in memory.

The youngest generation is collected every 700 allocations by default. A batch
keeps ~20,000 young objects alive until it is published (twenty explained items
per event), so those collections walked the same live objects again and again:
0.16-0.21 s of young collections per 10,000 events with the start-up heap
frozen, against 0.02-0.03 s with the threshold at 50,000 (`gc.callbacks`
timing around `scripts/rank_in_process.py`).
Almost everything the core allocates is freed by reference counting, which
CPython subtracts from the count, so a higher threshold holds no more memory
unless objects form cycles, and those are still collected, later.
"""

from __future__ import annotations

import gc

#: Allocations (net of frees) between collections of the youngest generation.
YOUNG_THRESHOLD = 50_000


def freeze_startup(young_threshold: int = YOUNG_THRESHOLD) -> int:
    """Collect once, exempt every object alive now from later collections, and
    collect the youngest generation every `young_threshold` allocations; the
    number of objects frozen."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    return gc.get_freeze_count()
