"""The start-up heap is frozen; what is allocated afterwards is still collected."""

from __future__ import annotations

import gc
import weakref

from streamrec.heap import freeze_startup


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_start_up_objects_are_skipped_and_later_garbage_is_still_collected() -> None:
    thresholds = gc.get_threshold()
    try:
        kept = _Node()
        frozen = freeze_startup(young_threshold=1_000)
        assert frozen > 0 and gc.get_freeze_count() == frozen
        assert gc.get_threshold() == (1_000, *thresholds[1:])
        later = _Node()
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None  # a cycle made after the freeze is freed as before
        assert all(o is not kept for o in gc.get_objects())  # not walked any more
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
