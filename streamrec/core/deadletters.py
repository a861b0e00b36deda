"""Dead letters that keep no identity at rest, yet can be read and replayed with the key.

A rejected message becomes a `DeadLetter`:

* keyed by the user's pseudonym when its body names a user (`user_id`), else
  by a keyed hash of its message key (storefronts key events by the raw user
  id, so for an event that is the same pseudonym), else unkeyed;
* its original key and bytes sealed with AES-256-GCM (`Sealer`), bound to
  where it came from (topic, partition, offset), so only an operator holding
  the key reads or replays it (`streamrec dlq`);
* bounded: at most `max_original` bytes are sealed; a longer message keeps
  its size and SHA-256, so a dead letter always fits on the topic.

>>> from streamrec.core.ingest import RawMessage, Rejection
>>> w = DeadLetterWriter(Pseudonymizer(b"k"), Sealer(b"s" * 32))
>>> msg = RawMessage(b'{"user_id": "alice", "type": "nope"}', b"alice", 0, 7, 0)
>>> key, dead = w.write(Rejection("schema", "unknown type"), msg, 1)
>>> key == Pseudonymizer(b"k")("alice").encode(), b"alice" in dead.sealed
(True, False)
>>> w.open(dead) == (b"alice", msg.value)
True
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from streamrec import serde
from streamrec.contracts import STOREFRONT_EVENTS
from streamrec.core.privacy import Pseudonymizer, Sealer
from streamrec.records import DeadLetter

if TYPE_CHECKING:
    from streamrec.core.ingest import RawMessage, Rejection

#: Bytes of a dead-lettered message kept (sealed) in the dead letter.
MAX_DLQ_ORIGINAL = 16_384
#: Characters of a rejection's detail (and event id) kept in the dead letter.
MAX_DETAIL = 1_000
#: Bodies longer than this are not parsed for a user id (the key is used instead).
_MAX_PARSE = 1 << 20


class DeadLetterWriter:
    """Rejections -> (record key, `DeadLetter`), with pseudonyms and sealed bytes."""

    def __init__(
        self,
        pseudonymize: Pseudonymizer,
        sealer: Sealer,
        max_original: int = MAX_DLQ_ORIGINAL,
    ) -> None:
        self.pseudonymize = pseudonymize
        self.sealer = sealer
        self.max_original = max_original

    def user_of(self, msg: RawMessage) -> str | None:
        """The pseudonym of the user a message names (body first, then its key)."""
        value = msg.value
        if value and len(value) <= _MAX_PARSE and value.lstrip()[:1] == b"{":
            try:
                doc = serde.loads(value)
            except Exception:  # not JSON: that is why it is here
                doc = None
            if isinstance(doc, dict):
                uid = doc.get("user_id")
                if isinstance(uid, str) and uid:
                    return self.pseudonymize(uid)
        if msg.key and msg.topic.endswith(STOREFRONT_EVENTS):
            return self.pseudonymize(msg.key.decode("utf-8", "replace"))
        return None

    def write(
        self, rejection: Rejection, msg: RawMessage, now_ms: int
    ) -> tuple[bytes | None, DeadLetter]:
        original = msg.value or b""
        size = len(original)
        truncated = size > self.max_original
        kept = original[: self.max_original] if truncated else original
        user = self.user_of(msg)
        if user is not None:
            key: str | None = user
        elif msg.key:
            # Keys of side topics (item ids, request ids) are not users: another hash.
            key = self.pseudonymize.message_key(msg.key.decode("utf-8", "replace"))
        else:
            key = None
        sealed = self.sealer.seal_message(
            msg.key, kept, origin(msg.topic, msg.partition, msg.offset)
        )
        dead = DeadLetter(
            reason=rejection.reason,
            detail=rejection.detail[:MAX_DETAIL],
            source_topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            sealed=sealed,
            dlq_ts=now_ms,
            key_id=self.sealer.key_id,
            user=user,
            event_id=rejection.event_id[:MAX_DETAIL] if rejection.event_id else None,
            truncated=truncated,
            original_size=size if truncated else None,
            original_sha256=hashlib.sha256(original).hexdigest() if truncated else None,
        )
        return (key.encode() if key is not None else None), dead

    def open(self, dead: DeadLetter) -> tuple[bytes | None, bytes]:
        """(original key, original bytes) of a dead letter; `SealError` with another key."""
        if dead.format == 1:
            return None, dead.original or b""
        return self.sealer.open_message(
            dead.sealed, origin(dead.source_topic, dead.partition, dead.offset)
        )


def origin(topic: str, partition: int, offset: int) -> bytes:
    """What a seal is bound to (authenticated, not secret): where the message came from."""
    return f"{topic}/{partition}/{offset}".encode()
