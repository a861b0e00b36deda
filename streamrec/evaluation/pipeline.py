"""`--through-kafka`: the deployed pipeline's own lists, read back from `recommendations`.

Starts the embedded broker, the topics, one worker or more (and the BERT scorer when
vectors are on), publishes the catalog, replays the events and collects every
recommendation by event id. The evaluator then scores those lists with the
same protocol and metrics as the in-process run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from streamrec import batch_log
from streamrec.client import EventProducer, RecommendationReader
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.errors import StreamrecError
from streamrec.evaluation.models import COVERED
from streamrec.records import CatalogItem, RawEvent
from streamrec.settings import Settings
from streamrec.tools.stack import PROBE_USER, LocalStack

#: Seconds without a new list, once the replay is sent, before the rest count as lost.
IDLE_S = 60.0


@dataclass
class PipelineLists:
    """The pipeline's list for each answered event (`COVERED` for an event a list of a
    later one answers), and its event -> list latency."""

    lists: dict[str, list[str]]
    freshness: LogHistogram
    seconds: float
    #: The worker's micro-batches as (lo, hi) index ranges into the events, when one
    #: worker on one partition took them (its log): an in-process run in the same
    #: batches publishes the same lists.
    batches: list[tuple[int, int]] | None = None

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        return [
            got if (got := self.lists.get(ev.event_id)) is None or got is COVERED else got[:k]
            for ev in events
        ]


class RecordedModel:
    """Lists recorded from the pipeline, replayed into the evaluator as a model."""

    def __init__(self, name: str, recorded: PipelineLists) -> None:
        self.name = name
        self.recorded = recorded

    def process(self, events: Sequence[RawEvent], k: int) -> list[list[str] | None]:
        return self.recorded.process(events, k)

    def recommend(self, user: str, k: int) -> list[str]:
        raise StreamrecError("the pipeline publishes lists after events only: no leave-last-out")


def run_pipeline(
    events: Sequence[RawEvent],
    items: Sequence[CatalogItem],
    settings: Settings,
    *,
    log_dir: Path,
    scorer: bool = False,
    progress: bool = True,
    stack: LocalStack | None = None,
    workers: int = 1,
    rate: float = 0.0,
) -> PipelineLists:
    """Replay `events` into a pipeline (a fresh local one unless `stack`) and collect its lists.

    `rate`: events per second, as live traffic comes (0: as fast as the producer goes,
    a backlog, in which each worker runs at its own point in event time).
    """
    if stack is not None:
        return _collect(events, items, stack.settings, scorer, progress, rate, _batch_log(stack))
    tag = uuid.uuid4().hex[:8]
    s = settings.with_overrides(
        app_id=f"streamrec-eval-{tag}", data_dir=log_dir / "data", log_batches=True
    )
    with LocalStack(s, workers=workers, scorers=int(scorer), log_dir=log_dir) as started:
        started.wait_ready(timeout_s=120)
        return _collect(
            events, items, started.settings, scorer, progress, rate, _batch_log(started)
        )


def _batch_log(stack: LocalStack) -> Path | None:
    """The log that names the worker's batches, if they can be replayed in process."""
    s = stack.settings
    one = len(stack.workers) == 1 and s.partitions == 1 and s.log_batches
    return stack.log_dir / "worker-0.log" if one else None


def _collect(
    events: Sequence[RawEvent],
    items: Sequence[CatalogItem],
    s: Settings,
    scorer: bool,
    progress: bool,
    rate: float = 0.0,
    log: Path | None = None,
) -> PipelineLists:
    reader = RecommendationReader(s, from_beginning=False)
    t0 = time.monotonic()
    try:
        with EventProducer(s) as producer:
            for item in items:
                producer.publish_item(item)
            producer.flush()
            if scorer and items:
                _wait_for_item_vectors(producer, reader)
            else:
                time.sleep(2.0)  # the worker's catalog follower reads the catalog first
            base = batch_log.next_offset(log) if log is not None else 0
            start = time.monotonic()
            for i, ev in enumerate(tqdm(events, desc="replay", unit="ev", disable=not progress)):
                if rate > 0 and (ahead := start + i / rate - time.monotonic()) > 0:
                    time.sleep(ahead)
                producer.send_event(ev)
            producer.flush()
        wanted = {reader.event_ref(ev.event_id): ev.event_id for ev in events}
        lists: dict[str, list[str]] = {}
        freshness = LogHistogram()
        bar = tqdm(total=len(wanted), desc="lists", unit="list", disable=not progress)
        idle_until = time.monotonic() + IDLE_S
        while len(lists) < len(wanted) and time.monotonic() < idle_until:
            for rec in reader.poll(0.5):
                raw = wanted.get(rec.event_id)
                if raw is None or raw in lists:
                    continue
                lists[raw] = list(rec.item_ids)
                for ref in rec.covers:  # answered by this list, published after the newest
                    if (covered := wanted.get(ref)) is not None and covered not in lists:
                        lists[covered] = COVERED
                        bar.update(1)
                freshness.record(max(0, rec.produced_ts - rec.ingest_ts))
                bar.update(1)
                idle_until = time.monotonic() + IDLE_S
        bar.close()
    finally:
        reader.close()
    batches = batch_log.index_batches(log, base, len(events)) if log is not None else None
    return PipelineLists(lists, freshness, time.monotonic() - t0, batches)


def _wait_for_item_vectors(
    producer: EventProducer, reader: RecommendationReader, timeout_s: float = 600.0
) -> None:
    """Probe searches until the worker answers with vectors: the catalog is embedded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = uuid.uuid4().hex
        producer.track("search", PROBE_USER, query="probe", event_id=probe)
        producer.flush()
        rec = reader.wait_for(PROBE_USER, timeout_s=10, until=reader.answers(probe))
        if rec is not None and rec.encoder_version is not None:
            return
        time.sleep(2.0)
    raise StreamrecError(f"the catalog was not embedded within {timeout_s:.0f} s; see scorer-0.log")
