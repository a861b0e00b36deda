"""One definition of a micro-batch's steps, driven by the worker and by the in-process path.

A batch is: ingest (validate, pseudonymise, de-duplicate) -> the search texts
without a cached query vector -> if the scorer can be asked: the events of the
users who wait for one of those texts are set aside, the rest are applied
(profiles, candidates, ranking) while the scorer works, the vectors are
cached, then the waiting events are applied -> every output is published, the
last with what the batch taught (its learning records, for the other workers
and for recovery).

`batch_plan` is a generator that *yields effects* and never does I/O itself
(the "sans-IO" shape): `Embed` (start a scorer request, answer a handle),
`Await` (the vectors for a handle, or None) and `Publish` (an output to send).
The streaming shell drives it with asyncio and Kafka (`worker/app.py`),
`run_plan` drives it synchronously with an in-process embed function
(offline evaluation, benchmarks, tests). Both therefore take the same steps
in the same order, and cannot drift apart.

>>> from streamrec.build import build_engine
>>> from streamrec.core.engine import DictProfileStore
>>> from streamrec.core.ingest import RawMessage
>>> from streamrec.settings import Settings
>>> engine = build_engine(Settings())
>>> msg = RawMessage(b'{"event_id":"e1","type":"view","user_id":"alice",'
...                  b'"ts":1700000000000,"item_id":"42"}', b"alice", 0, 0, 1700000000000)
>>> outs = run_plan(batch_plan(engine, [msg], DictProfileStore(), lambda: 1700000000001))
>>> [len(o.recommendations) for o in outs]
[1]
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from streamrec.core.engine import BatchOutput, EmbedFn, Engine, ProfileStore, QueryVectors
from streamrec.core.ingest import RawMessage


@dataclass(frozen=True)
class Embed:
    """Start a scorer request for `texts` in encoder `version`; the answer is a handle."""

    texts: list[str]
    version: str | None


@dataclass(frozen=True)
class Await:
    """The vectors of a started request (`handle`), or None (timeout, scorer down)."""

    handle: Any


@dataclass(frozen=True)
class Publish:
    """Send this output (lists, dead letters, drift) on; it is counted once delivered."""

    out: BatchOutput


Effect = Embed | Await | Publish
#: What the plan yields, what the driver sends back (a handle, vectors, or None).
Plan = Generator[Effect, Any, None]


def batch_plan(
    engine: Engine,
    batch: Sequence[RawMessage],
    store: ProfileStore,
    clock: Callable[[], int],
    *,
    can_embed: bool = True,
) -> Plan:
    """The steps of one micro-batch. `clock()` is read at each step (produced_ts)."""
    ingested = engine.ingest_batch(batch, clock())
    texts = engine.missing_queries(ingested)
    if not texts or not can_embed:
        last = engine.apply_batch(ingested, store, clock())
    else:
        # One request per batch. Only the users who typed one of these texts wait for
        # it; everyone else's events are applied while the scorer works, so a scorer
        # round trip never delays the whole batch (and per-user order holds).
        ready, waiting = engine.split_waiting(ingested, texts)
        handle = yield Embed(texts, engine.item_vectors.active_version)
        yield Publish(engine.apply_batch(ready, store, clock()))
        vectors: QueryVectors | None = yield Await(handle)
        if vectors is not None:
            engine.add_query_vectors(vectors)
        last = engine.apply_batch(waiting, store, clock())
    # What the whole batch taught goes out with its last output: one log, its offsets
    # in the ledger only once every part of the batch has learned.
    last.deltas = engine.take_deltas()
    yield Publish(last)


def run_plan(plan: Plan, embed: EmbedFn | None = None) -> list[BatchOutput]:
    """Drive a plan in process; the outputs, in order.

    `embed` runs when the plan awaits the request (after the ready events are
    applied), where the worker's request would be answered.
    """
    outputs: list[BatchOutput] = []
    answer: Any = None
    try:
        while True:
            effect = plan.send(answer)
            answer = None
            if isinstance(effect, Embed):
                answer = effect
            elif isinstance(effect, Await):
                request = effect.handle
                answer = embed(request.texts, request.version) if embed is not None else None
            else:
                outputs.append(effect.out)
    except StopIteration:
        return outputs
