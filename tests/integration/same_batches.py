"""The pipeline's micro-batches, replayed in process: lists depend on batch boundaries
(one per user per batch), so the in-process side takes the batches the worker took
(`STREAMREC_LOG_BATCHES` logs them)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from streamrec import batch_log
from streamrec.client import RecommendationReader, read_all, tail
from streamrec.contracts import SHARED_STATE
from streamrec.core.deltas import decode
from streamrec.core.engine import DictProfileStore, Engine
from streamrec.core.ingest import RawMessage
from streamrec.core.item_log import ItemLog
from streamrec.records import Recommendation
from streamrec.settings import Settings


def logged_batches(log: Path) -> list[tuple[int, int]]:
    """(first, last) offset of each micro-batch the worker logged, on partition 0."""
    batches = batch_log.read(log)
    assert all(set(r) == {0} for r in batches), "one partition only"
    return [r[0] for r in batches]


def next_offset(log: Path) -> int:
    """The offset the next event will get: past every batch logged so far (the probe's)."""
    return batch_log.next_offset(log)


def collect(reader: RecommendationReader, n: int, timeout_s: float) -> dict[str, Recommendation]:
    """The lists that answer `n` events (every list's own event and those it covers),
    by the newest event's ref."""
    lists: dict[str, Recommendation] = {}
    answered = 0
    deadline = time.monotonic() + timeout_s
    while answered < n and time.monotonic() < deadline:
        for rec in reader.poll(0.5):
            lists[rec.event_id] = rec
            answered += len(rec.event_ids)
    return lists


def in_process(
    engine: Engine, msgs: Sequence[RawMessage], batches: list[tuple[int, int]], base: int, now: int
) -> dict[str, Recommendation]:
    """`msgs` (offsets from 0) through `engine` in the worker's batches (offsets from
    `base`), by the newest event's ref."""
    store = DictProfileStore()
    lists: dict[str, Recommendation] = {}
    for lo, hi in batches:
        if hi < base:
            continue
        part = msgs[max(0, lo - base) : hi - base + 1]
        for rec in engine.process_batch(part, store, now).recommendations:
            lists[rec.event_id] = rec
    return lists


def same_lists(offline: dict[str, Recommendation], online: dict[str, Recommendation]) -> None:
    """Every list the same: the events it answers and its items."""
    assert online.keys() == offline.keys()
    differing = [
        k
        for k, rec in offline.items()
        if (rec.event_ids, rec.item_ids) != (online[k].event_ids, online[k].item_ids)
    ]
    assert differing == [], f"{len(differing)} of {len(offline)} lists differ"


def learned_batches(s: Settings, msgs: Sequence[RawMessage]) -> list[list[RawMessage]]:
    """`msgs` (records of storefront.events, one partition) in the batches whose
    learning the worker delivered, read from its logs on shared.state: after a kill -9,
    a batch whose log never got out was learned again in the restarted worker's
    batches. A log covers the offsets its batch learned, so the logs are disjoint; in
    offset order (each incarnation of the worker has its own key, so the topic does not
    hold them in one order), an event is in the first batch that covers it (a restarted
    worker answers replays again, learned once)."""
    consumer = tail(s, SHARED_STATE)
    records = read_all(consumer, idle_s=2.0)
    consumer.close()
    at = {(m.partition, m.offset): m for m in msgs}
    done: set[tuple[int, int]] = set()
    out = []
    logs = [log for r in records if isinstance(log := decode(r.value), ItemLog)]
    for log in sorted(logs, key=lambda log: min(first for _p, first, _last in log.ranges)):
        batch = [
            (p, o)
            for p, first, last in log.ranges
            for o in range(first, last + 1)
            if (p, o) in at and (p, o) not in done
        ]
        done.update(batch)
        if batch:
            out.append([at[k] for k in sorted(batch, key=lambda k: (k[1], k[0]))])
    missing = at.keys() - done
    assert not missing, f"{len(missing)} events in no delivered batch"
    return out
