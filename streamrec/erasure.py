"""Erasure of a user: `streamrec forget USER_ID`, and the same for apps (`forget_user`).

The request is a `forget` event on `storefront.events`, keyed by the raw user
id like every event of that user: it lands on the user's partition and the
worker that owns it applies it *in order* with the user's events. Everything
before it is erased with the profile, anything after it starts a new one. The
worker deletes the profile (table and a changelog tombstone), the latest list
(a tombstone on `recommendations`), the user's de-duplication ids, pending
ranker feedback and online-quality state, then writes what it did to
`privacy.audit` by pseudonym. `forget_user` returns that audit record, so when
it returns the erasure is done and on record.

Dead letters cannot be deleted from a delete-policy topic one by one: their
bytes are sealed (unreadable without the DLQ key), `streamrec dlq` never shows
or replays a dead letter of an erased user, and retention removes them with
the input topic's own copies (7 days). See README, "Privacy and erasure".
"""

from __future__ import annotations

import time
import uuid

from streamrec import serde
from streamrec.client import EventProducer, read_all, tail
from streamrec.contracts import PRIVACY_AUDIT
from streamrec.core.privacy import Pseudonymizer
from streamrec.errors import ErasureTimeout
from streamrec.records import AuditRecord
from streamrec.settings import Settings


def forget_user(settings: Settings, user_id: str, *, timeout_s: float = 30.0) -> AuditRecord:
    """Erase raw `user_id` everywhere streamrec keeps them; the worker's audit record.

    Raises `ErasureTimeout` if no worker confirms within `timeout_s`: the request
    is on the topic and is applied as soon as a worker runs.
    """
    pseudonymize = Pseudonymizer(settings.resolved_pseudonym_key())
    request = f"forget-{uuid.uuid4().hex}"
    ref = pseudonymize.event_id(request)
    audit = tail(settings, PRIVACY_AUDIT, from_beginning=False)  # before the request
    try:
        with EventProducer(settings) as producer:
            producer.track("forget", user_id, event_id=request)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in audit.poll(timeout_ms=200).values():
                for r in records:
                    if r.value is None:
                        continue
                    record = AuditRecord.from_dict(serde.loads(r.value))
                    if record.event_id == ref:
                        return record
    finally:
        audit.close()
    raise ErasureTimeout(
        f"no worker confirmed the erasure of {pseudonymize(user_id)} within {timeout_s:.0f} s. "
        f"The request ({request}) is on {settings.topic('storefront.events')} and a worker "
        "applies it in order with the user's events once one runs: is `streamrec worker` up?"
    )


def read_audit(settings: Settings, idle_s: float = 1.0) -> list[AuditRecord]:
    """Every record on `privacy.audit` (operators; `streamrec dlq` reads erasures here)."""
    consumer = tail(settings, PRIVACY_AUDIT)
    try:
        return [
            AuditRecord.from_dict(serde.loads(r.value))
            for r in read_all(consumer, idle_s=idle_s)
            if r.value is not None
        ]
    finally:
        consumer.close()
