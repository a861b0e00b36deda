"""The two protocols: prequential (test-then-learn) and time-ordered leave-last-out.

**Prequential.** Events go to a model in time order, in the micro-batches a
worker would take (cut by event time, `micro_batches`). When a user interacts
with an item they had not touched before, the list that counts is the one the
model published for that user after their previous event; then the model
learns the interaction and publishes the next list. A user's first event has no
list before it and is not scored (the next one is, in `cold_1`). Nor is an
event whose previous event has no list of its own: streamrec publishes one list
per user per micro-batch, so both are in one batch, answered by one list, and
no list came between them.

**Leave-last-out.** Each user's last new-item interaction is held out, and so
is everything of theirs after it. The model learns every other event in time
order, then ranks for each user; the held-out item is the target. This is
RecBole's time-ordered leave-one-out with full ranking (the user's history is
never recommended), so its numbers can be set beside published tables.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.evaluation.baselines import interacts
from streamrec.evaluation.metrics import (
    KS,
    SEGMENTS,
    MetricSums,
    popularity_ranks,
    rank_of,
    segments_of,
)
from streamrec.evaluation.models import COVERED, EvaluatedModel
from streamrec.records import RawEvent

#: Events per call into a model at most: the streamrec core works in micro-batches, as
#: in a worker.
CHUNK = 200

ModelFactory = Callable[[], EvaluatedModel]
Progress = Callable[[int], None]


@dataclass
class Target:
    index: int
    item: str
    events_before: int
    segments: tuple[str, ...]


@dataclass
class ModelRun:
    """One model under one protocol: metrics per segment and what the plots need."""

    name: str
    segments: dict[str, dict[str, float]]
    #: Per scored target, in stream order: position in the event stream, the user's
    #: earlier events, and the target's rank in the list (0: not in the top max(KS)).
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    events_before: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rank: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: Per scored target, its user (a stable code, `user_code`): the unit a bootstrap
    #: resamples (`uncertainty.py`), as one user's targets are not independent.
    user: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: Events without a list from the model (rejected by its ingest, for streamrec).
    unanswered: int = 0


def prequential_targets(
    events: Sequence[RawEvent], repeats: bool = False, scored_from: int = 0
) -> list[Target | None]:
    """Which events are scored, and in which segments (the same for every model).

    Events before index `scored_from` teach the models but are not scored.
    """
    count: dict[str, int] = {}
    last_type: dict[str, str] = {}
    seen: dict[str, set[str]] = {}
    out: list[Target | None] = []
    for i, ev in enumerate(events):
        user = ev.user_id
        before = count.get(user, 0)
        target = None
        if interacts(ev) and before > 0 and i >= scored_from:
            assert ev.item_id is not None
            if repeats or ev.item_id not in seen.get(user, ()):
                after_search = last_type.get(user) == "search"
                target = Target(i, ev.item_id, before, segments_of(before, after_search))
        out.append(target)
        count[user] = before + 1
        last_type[user] = ev.type
        if ev.item_id is not None:
            seen.setdefault(user, set()).add(ev.item_id)
    return out


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def micro_batches(
    events: Sequence[RawEvent], window_ms: int, size: int = CHUNK
) -> Iterator[tuple[int, int]]:
    """(lo, hi) of the micro-batches a worker would take if the events came at their
    event times: a batch closes `window_ms` after its first event, at `size` events,
    or before a second event of one user.

    A person's two actions are further apart than a batch window (milliseconds), but
    logs often time them in whole seconds; such ties keep their order and are taken as
    the separate moments they were, each answered by its own list.
    """
    n = len(events)
    lo = 0
    while lo < n:
        until = events[lo].ts + window_ms
        users = {events[lo].user_id}
        hi = lo + 1
        while hi < n and hi - lo < size and events[hi].ts < until:
            if events[hi].user_id in users:
                break
            users.add(events[hi].user_id)
            hi += 1
        yield lo, hi
        lo = hi


def _result(
    name: str,
    sums: Mapping[str, MetricSums],
    catalog_size: int,
    latency: tuple[float, LogHistogram] | None,
    scored: list[tuple[int, int, int, int]],
    unanswered: int,
) -> ModelRun:
    segments = {seg: s.result(catalog_size) for seg, s in sums.items() if s.n}
    if latency is not None and latency[1].count and "all" in segments:
        total_ms, hist = latency
        segments["all"]["latency_ms_mean"] = total_ms / hist.count
        segments["all"]["latency_ms_p99"] = hist.percentile(99)
    arr = np.array(scored, dtype=np.int64).reshape(-1, 4)
    return ModelRun(name, segments, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], unanswered)


def user_code(user: str) -> int:
    """A user's code, the same in every run and process (CRC-32 of the id)."""
    return zlib.crc32(user.encode())


def prequential(
    events: Sequence[RawEvent],
    model: EvaluatedModel,
    *,
    catalog_size: int,
    popularity: Mapping[str, int] | None = None,
    targets: Sequence[Target | None] | None = None,
    progress: Progress | None = None,
    window_ms: int = 0,
    batches: Sequence[tuple[int, int]] | None = None,
) -> ModelRun:
    """Test-then-learn over `events`; latency is per event, amortised over micro-batches.

    The micro-batches are cut by event time (`micro_batches`, `window_ms`), or given
    as (lo, hi) index ranges (`batches`: a pipeline's own). An event that a later list
    of its batch answers (`COVERED`) leaves the user's last list as it was, and the
    user's next event, in the same batch, is not scored: no list came between them.
    """
    depth = max(KS)
    targets = targets if targets is not None else prequential_targets(events)
    popularity = popularity if popularity is not None else _popularity(events)
    sums = {seg: MetricSums() for seg in SEGMENTS}
    latency = LogHistogram()
    last: dict[str, list[str]] = {}
    #: Users whose previous event a later list of its batch answered: no list came
    #: between that event and their next one (in the same batch).
    covered: set[str] = set()
    scored: list[tuple[int, int, int, int]] = []
    unanswered = 0
    total_ms = 0.0
    for lo, hi in batches if batches is not None else micro_batches(events, window_ms):
        chunk = events[lo:hi]
        t0 = time.perf_counter()
        lists = model.process(chunk, depth)
        chunk_ms = (time.perf_counter() - t0) * 1000
        total_ms += chunk_ms
        per_event_ms = chunk_ms / len(chunk)
        for j, (ev, after) in enumerate(zip(chunk, lists, strict=True)):
            latency.record(per_event_ms)
            target = targets[lo + j]
            if target is not None and ev.user_id not in covered:
                # No list yet (a list lost on its way): a miss.
                before = last.get(ev.user_id, COVERED)
                rank = rank_of(target.item, before, depth)
                for seg in target.segments:
                    sums[seg].add(before, target.item, popularity, rank, found=True)
                scored.append(
                    (target.index, target.events_before, rank or 0, user_code(ev.user_id))
                )
            if after is COVERED:
                covered.add(ev.user_id)
                continue
            covered.discard(ev.user_id)
            if after is None:
                unanswered += 1
            else:
                last[ev.user_id] = after
        if progress:
            progress(hi - lo)
    return _result(model.name, sums, catalog_size, (total_ms, latency), scored, unanswered)


def leave_last_out_split(
    events: Sequence[RawEvent], scored_from: int = 0
) -> tuple[list[RawEvent], dict[str, tuple[str, int]]]:
    """(training events in time order, user -> (held-out item, the user's training events)).

    Only users whose held-out event is at index `scored_from` or later are held out
    (a reported part that starts there); everyone else's events all train.
    """
    seen: dict[str, set[str]] = {}
    last: dict[str, int] = {}
    for i, ev in enumerate(events):
        if interacts(ev):
            assert ev.item_id is not None
            items = seen.setdefault(ev.user_id, set())
            if ev.item_id not in items:
                last[ev.user_id] = i
            items.add(ev.item_id)
    last = {user: i for user, i in last.items() if i >= scored_from}
    train: list[RawEvent] = []
    history: dict[str, int] = {}
    for i, ev in enumerate(events):
        cut = last.get(ev.user_id)
        if cut is not None and i >= cut:
            continue
        train.append(ev)
        history[ev.user_id] = history.get(ev.user_id, 0) + 1
    held = {
        user: (events[i].item_id or "", history.get(user, 0)) for user, i in sorted(last.items())
    }
    return train, held


def leave_last_out(
    events: Sequence[RawEvent],
    model: EvaluatedModel,
    *,
    catalog_size: int,
    popularity: Mapping[str, int] | None = None,
    split: tuple[list[RawEvent], dict[str, tuple[str, int]]] | None = None,
    progress: Progress | None = None,
    window_ms: int = 0,
) -> ModelRun:
    """Learn the training events (in micro-batches, as `prequential`), then one
    full-ranking list per user for their last item."""
    depth = max(KS)
    train, held = split if split is not None else leave_last_out_split(events)
    popularity = popularity if popularity is not None else _popularity(events)
    for lo, hi in micro_batches(train, window_ms):
        model.process(train[lo:hi], depth)
        if progress:
            progress(hi - lo)
    users = list(held)
    many = getattr(model, "recommend_many", None)
    lists: dict[str, list[str]] = {}
    for lo, hi in _chunks(len(users), CHUNK):
        part = users[lo:hi]
        if many is not None:
            lists.update(many(part, depth))
        else:
            lists.update((u, model.recommend(u, depth)) for u in part)
        if progress:
            progress(hi - lo)
    sums = {seg: MetricSums() for seg in SEGMENTS if "search" not in seg}
    scored: list[tuple[int, int, int, int]] = []
    for n, user in enumerate(users):
        item, history = held[user]
        items = lists[user]
        rank = rank_of(item, items, depth)
        for seg in segments_of(history, False)[:-1]:  # no search segments here
            sums[seg].add(items, item, popularity, rank, found=True)
        scored.append((n, history, rank or 0, user_code(user)))
    return _result(model.name, sums, catalog_size, None, scored, 0)


def _popularity(events: Sequence[RawEvent]) -> dict[str, int]:
    return popularity_ranks([ev.item_id for ev in events if interacts(ev) and ev.item_id])
