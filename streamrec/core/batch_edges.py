"""The edges of a batch (a part of `Engine`): what comes in and what goes out.

Ingest (validate, pseudonymise, de-duplicate) at one end; at the other, the lists
encoded for the wire and the dead letters of whatever could not be processed, so
a bad message or a bug in one list costs that event alone, never the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from streamrec import serde
from streamrec.core.batch import BatchOutput, Ingested
from streamrec.core.deadletters import DeadLetterWriter
from streamrec.core.ingest import Duplicate, Ingestor, RawMessage, Rejection
from streamrec.records import DeadLetter, Event

log = logging.getLogger(__name__)


class BatchEdges:
    """Ingest, dead letters and wire encoding of a micro-batch (a part of `Engine`)."""

    ingestor: Ingestor
    dead_letters: DeadLetterWriter

    def dead_letter(
        self, msg: RawMessage, rejection: Rejection, now_ms: int
    ) -> tuple[bytes | None, DeadLetter]:
        """(record key, dead letter) for a message that cannot be processed."""
        return self.dead_letters.write(rejection, msg, now_ms)

    def encode(self, out: BatchOutput, now_ms: int) -> list[tuple[bytes, bytes, int]]:
        """(key, value, source index) of each list on the wire; a list that cannot be
        encoded dead-letters its event instead (`encode_error`), alone."""
        wire = []
        for i, rec in enumerate(out.recommendations):
            try:
                value = serde.dumps(rec.to_dict())
                if b"null" in value:  # a NaN or infinity became null: write 0.0 instead
                    value = serde.dumps(rec.to_dict(finite=True))
                wire.append((rec.user.encode(), value, i))
            except Exception as exc:  # a bug in one list must cost that event only
                log.exception("list for event %s not encodable", rec.event_id)
                self.unpublish(out, i, "encode_error", f"{type(exc).__name__}: {exc}", now_ms)
        return wire

    def unpublish(self, out: BatchOutput, i: int, reason: str, detail: str, now_ms: int) -> None:
        """The list `i` of `out` did not get out: every event it answers goes to the
        dead letters."""
        answered = out.sources[i]
        for msg, event in answered:
            rejection = Rejection(reason, detail, event.event_id, event.type)
            out.dead_letters.append(self.dead_letter(msg, rejection, now_ms))
        out.counters.unpublish(reason, *(event.type for _m, event in answered))

    def ingest_batch(self, batch: Sequence[RawMessage], now_ms: int) -> Ingested:
        """Validate, pseudonymise and de-duplicate; nothing is learned yet."""
        out = Ingested()
        counters = out.counters
        counts = counters.counts
        for msg in batch:
            counts["in"] += 1
            try:
                result = self.ingestor.ingest(msg, now_ms)
            except Exception as exc:  # a bug in ingest must cost one message, never the worker
                log.exception("ingest error at partition %s offset %s", msg.partition, msg.offset)
                result = Rejection("processing_error", f"{type(exc).__name__}: {exc}")
            if isinstance(result, Rejection):
                counters.dead_letter(result.reason, result.event_type)
                out.dead_letters.append(self.dead_letter(msg, result, now_ms))
            elif isinstance(result, Duplicate):
                counts["duplicates"] += 1
                counters.rejected_by_type[(result.event_type or "unknown", "duplicates")] += 1
            else:
                out.accepted.append((msg, result))
        return out

    def split_waiting(self, ingested: Ingested, texts: Sequence[str]) -> tuple[Ingested, Ingested]:
        """(ready, waiting): the events of users who searched one of `texts` wait for it.

        A user's events stay together and in order, so the ready part can be
        processed while the scorer works on the texts, and per-user order holds.
        Dead letters and ingest's counts go with the ready part.
        """
        wanted = set(texts)
        waiting_users = {
            e.user for _m, e in ingested.accepted if e.type == "search" and e.query in wanted
        }
        ready = Ingested(dead_letters=list(ingested.dead_letters), counters=ingested.counters)
        waiting = Ingested()
        for msg, event in ingested.accepted:
            (waiting if event.user in waiting_users else ready).accepted.append((msg, event))
        return ready, waiting

    def _reject(
        self,
        out: BatchOutput,
        msg: RawMessage,
        event: Event,
        reason: str,
        exc: Exception | str,
        now_ms: int,
    ) -> None:
        if isinstance(exc, Exception):
            log.error(
                "%s at partition %s offset %s", reason, msg.partition, msg.offset, exc_info=exc
            )
            exc = f"{type(exc).__name__}: {exc}"
        out.counters.dead_letter(reason, event.type)
        rejection = Rejection(reason, exc, event.event_id, event.type)
        out.dead_letters.append(self.dead_letter(msg, rejection, now_ms))
