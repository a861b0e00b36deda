"""`streamrec replay`: an event log into storefront.events, in timestamp order.

As fast as possible, or at real time x `speed`. A stable sort by event time
keeps every user's events in their original order, and the producer keys by
user id, so per-user order survives into the worker. Catalog items go first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from streamrec.client import EventProducer
from streamrec.datasets import eventlog
from streamrec.records import CatalogItem, RawEvent


@dataclass(frozen=True)
class ReplayStats:
    events: int
    items: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def load_log(path: Path) -> list[tuple[bytes | None, bytes, int]]:
    """All lines of an event log, stably sorted by event time."""
    return sorted(eventlog.read_events(path), key=lambda row: row[2])


def replay(
    producer: EventProducer,
    events: Sequence[RawEvent] | Sequence[tuple[bytes | None, bytes, int]],
    *,
    items: Iterable[CatalogItem] = (),
    speed: float | None = None,
    progress: bool = True,
) -> ReplayStats:
    """Send `items` to catalog.items, then `events` (RawEvent, or raw log rows) in order."""
    start = time.perf_counter()
    n_items = 0
    for item in items:
        producer.publish_item(item)
        n_items += 1
    producer.flush()

    first_ts: int | None = None
    t0 = time.perf_counter()
    bar = tqdm(events, desc="replay", unit="ev", disable=not progress, mininterval=0.5)
    for ev in bar:
        ts = ev.ts if isinstance(ev, RawEvent) else ev[2]
        if speed:
            if first_ts is None:
                first_ts = ts
            due = (ts - first_ts) / 1000.0 / speed
            lag = due - (time.perf_counter() - t0)
            if lag > 0:
                time.sleep(lag)
        if isinstance(ev, RawEvent):
            producer.send_event(ev)
        else:
            producer.send_raw(ev[1], ev[0])
    producer.flush()
    return ReplayStats(len(events), n_items, time.perf_counter() - start)
