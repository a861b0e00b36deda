"""The one place streamrec reaches into Faust's internals, each for a measured reason.

1. Fetch max wait: Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``.
   The embedded broker does not wake a waiting fetch when data arrives, so a
   caught-up consumer sees new data only after ~half of that (0.4-0.8 s per
   hop). We make it a setting (STREAMREC_FETCH_MAX_WAIT_MS, ~100 ms on the
   embedded profile). Real Kafka answers at once, so any value works there.
2. Current event for table access: Faust tables pick the store partition and
   the changelog partition from the *current event* of the stream. In a
   micro-batch (``take_events``) that is the batch's last event, which is the
   wrong partition for every other user in the batch. `as_current_event`
   points it at an event of the right partition around each table access.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka

_fetch_max_wait_ms = 1500
_patched = False


def set_fetch_max_wait_ms(value: int) -> None:
    """Make every Faust consumer created from now on use `value` as fetch max wait."""
    global _fetch_max_wait_ms, _patched
    _fetch_max_wait_ms = int(value)
    if _patched:
        return
    original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _patched = True


@contextmanager
def as_current_event(event: Any) -> Iterator[None]:
    """Within the block, Faust's `current_event()` is `event`."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
