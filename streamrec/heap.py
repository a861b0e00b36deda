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
"""

from __future__ import annotations

import gc


def freeze_startup() -> int:
    """Collect once, then exempt every object alive now from later collections;
    the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
