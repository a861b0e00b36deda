"""The rank worker's side of the scorer: one request per micro-batch, with a deadline.

`ScorerClient.embed(texts, version)` sends one `ScorerRequest` to
scorer.requests and waits for its reply on this client's own partition of
scorer.replies (chosen by a hash of the client id; replies are matched by
request id, so clients sharing a partition do not mix). It returns ``None``
instead of raising when the scorer is slow or down, and the caller carries on
without vectors (flagged and counted). The contract:

* a request waits at most `scorer_timeout_ms`;
* after a timeout the scorer counts as *down*: later batches do not wait at
  all; a probe is sent (a batch's texts, or on its own every few seconds: at
  most one in flight), and the first reply that arrives, late or probe, marks
  it up again;
* replies that arrive after their batch moved on are not wasted: they go to
  `on_late`, which puts the vectors in the worker's query cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamrec import clients, serde
from streamrec.aio import wait_partitions
from streamrec.contracts import SCORER_REPLIES, SCORER_REQUESTS, load_contract
from streamrec.core.engine import QueryVectors
from streamrec.core.ingest import Rejection, parse_document
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.core.retrieval.vectors import decode_vectors
from streamrec.records import ScorerReply, ScorerRequest
from streamrec.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    texts: list[str]
    sent: float
    deadline: float
    future: asyncio.Future[QueryVectors] | None


@dataclass
class ClientStats:
    requests: int = 0
    texts: int = 0
    replies: int = 0
    timeouts: int = 0
    skipped_down: int = 0
    late: int = 0
    errors: int = 0
    round_trip_ms: LogHistogram = field(default_factory=LogHistogram)

    def to_dict(self) -> dict[str, Any]:
        rtt = self.round_trip_ms
        return {
            "requests": self.requests,
            "texts": self.texts,
            "replies": self.replies,
            "timeouts": self.timeouts,
            "skipped_down": self.skipped_down,
            "late": self.late,
            "errors": self.errors,
            "round_trip_ms": rtt.summary() if rtt.count else {},
        }


class ScorerClient:
    def __init__(
        self,
        settings: Settings,
        client_id: str,
        on_late: Callable[[QueryVectors], None] | None = None,
    ) -> None:
        self.s = settings
        self.client_id = client_id
        self.on_late = on_late
        self.t_requests = settings.topic(SCORER_REQUESTS)
        self.t_replies = settings.topic(SCORER_REPLIES)
        self.timeout_s = settings.scorer_timeout_ms / 1000.0
        self.validate = load_contract(SCORER_REPLIES).validator
        self.up = True
        self.stats = ClientStats()
        self._waiting: dict[str, _Waiting] = {}
        self._probe: str | None = None
        self._probe_texts: list[str] = []
        self._seq = 0
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self.reply_partition = 0

    async def start(self) -> None:
        s = self.s
        self._producer = clients.aio_producer(s, linger_ms=0)
        await self._producer.start()
        self._consumer = clients.aio_consumer(
            s, enable_auto_commit=False, fetch_max_wait_ms=s.scorer_fetch_max_wait_ms
        )
        await self._consumer.start()
        parts = await wait_partitions(self._consumer, self.t_replies)
        self.reply_partition = zlib.crc32(self.client_id.encode()) % len(parts)
        tp = TopicPartition(self.t_replies, self.reply_partition)
        self._consumer.assign([tp])
        await self._consumer.seek_to_end(tp)
        await self._consumer.position(tp)  # resolve "end" now, before the first request
        self._reader = asyncio.create_task(self._read_replies(), name="scorer-replies")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def embed(self, texts: list[str], version: str | None) -> QueryVectors | None:
        """Vectors for `texts` in `version` (None: the scorer's current), or None on fallback."""
        if not texts:
            return None
        self._expire()
        try:
            if not self.up:
                self.stats.skipped_down += 1
                if self._probe is None:
                    self._probe = await self._send(texts, version, None)
                return None
            future: asyncio.Future[QueryVectors] = asyncio.get_running_loop().create_future()
            request_id = await self._send(texts, version, future)
        except Exception as exc:  # cannot even send: same contract as a silent scorer
            self.stats.errors += 1
            log.warning("scorer request not sent (%r); going on without query vectors", exc)
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            late = self._waiting.get(request_id)
            if late is not None:
                late.future = None  # a reply after this goes to on_late
            self.stats.timeouts += 1
            if self.up:
                log.warning(
                    "scorer did not answer within %d ms; carrying on without query vectors "
                    "(flagged no_query_vector) until it answers again",
                    self.s.scorer_timeout_ms,
                )
            self.up = False
            self._probe = request_id  # its late reply, if any, marks the scorer up
            self._probe_texts = texts
            return None

    async def _send(
        self, texts: list[str], version: str | None, future: asyncio.Future[QueryVectors] | None
    ) -> str:
        assert self._producer is not None
        self._seq += 1
        request_id = f"{self.client_id}:{self._seq}"
        now = time.time()
        # A waiting request keeps its reply useful for the late path a while longer.
        deadline = now + max(self.timeout_s, 5.0)
        req = ScorerRequest(
            request_id=request_id,
            texts=texts,
            reply_to=self.t_replies,
            reply_partition=self.reply_partition,
            sent_ts=int(now * 1000),
            deadline_ts=int(deadline * 1000),
            kind="query",
            model_version=version,
        )
        self._waiting[request_id] = _Waiting(texts, time.monotonic(), deadline, future)
        self.stats.requests += 1
        self.stats.texts += len(texts)
        await self._producer.send(
            self.t_requests, serde.dumps(req.to_dict()), key=request_id.encode()
        )
        return request_id

    def _expire(self) -> None:
        now = time.time()
        for rid in [r for r, w in self._waiting.items() if w.deadline < now]:
            del self._waiting[rid]
            if rid == self._probe:
                self._probe = None  # never answered: the next batch probes again

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    self._take(r)
            await self._probe_while_down()

    async def _probe_while_down(self) -> None:
        """Ask a scorer known to be down again, without waiting for traffic to do it.

        A probe that is never answered (a scorer that joined its group after the
        request was sent does not see it) expires, and the next one goes out: so
        the first search after the scorer is back gets its vector, instead of
        being the probe that finds out.
        """
        self._expire()
        if self.up or self._probe is not None or not self._probe_texts:
            return
        try:
            self._probe = await self._send(self._probe_texts, None, None)
        except Exception as exc:  # the broker is away too: try again on the next round
            log.debug("scorer probe not sent: %r", exc)

    def _take(self, r: Any) -> None:
        request_id = r.key.decode("utf-8", "replace") if r.key else ""
        waiting = self._waiting.pop(request_id, None)
        if waiting is None:
            return  # another client's reply on a shared partition, or expired
        doc = parse_document(r.value or b"", self.validate, "scorer reply")
        if isinstance(doc, Rejection):
            self.stats.errors += 1
            log.warning("ignoring an unreadable scorer reply %s: %s", request_id, doc.detail)
            return
        reply = ScorerReply.from_dict(doc)
        try:
            vectors = decode_vectors(reply.vectors, reply.dim)
        except ValueError as exc:
            self.stats.errors += 1
            log.warning("ignoring scorer reply %s: %s", request_id, exc)
            return
        if len(vectors) != len(waiting.texts) or len(reply.valid) != len(waiting.texts):
            self.stats.errors += 1
            log.warning("scorer reply %s has the wrong number of vectors", request_id)
            return
        if reply.error:
            self.stats.errors += 1
        self.stats.replies += 1
        self.stats.round_trip_ms.record((time.monotonic() - waiting.sent) * 1000)
        if not self.up:
            log.info("scorer answers again; query vectors are back")
        self.up = True
        if request_id == self._probe:
            self._probe = None
        result = QueryVectors(reply.model_version, waiting.texts, vectors, np.asarray(reply.valid))
        if waiting.future is not None and not waiting.future.done():
            waiting.future.set_result(result)
        else:
            self.stats.late += 1
            if self.on_late is not None:
                self.on_late(result)

    def window(self) -> dict[str, Any]:
        """Counters since the last call (then reset), for the worker's metrics window."""
        out = self.stats.to_dict() | {"up": self.up}
        self.stats = ClientStats()
        return out
