"""Pseudonyms and sealed bytes: what lets nothing identifying get past ingest.

* `Pseudonymizer`: user ids, event ids and session ids -> keyed HMACs. The
  same key gives the same pseudonym everywhere (worker, client reader, tools),
  so consumer apps look users up, and match a list to the event they sent,
  without the raw ids ever being on the wire past `storefront.events`.
  Whoever holds the key can check a pseudonym (hash the raw id again);
  nobody can reverse one.
* `Sealer`: AES-256-GCM for the original bytes of a dead letter, so the DLQ
  keeps no readable identity at rest while an operator with the key can still
  read and replay what was rejected (`streamrec dlq`).

>>> p = Pseudonymizer(b"secret")
>>> p("alice") == p("alice"), p("alice") == p("bob"), len(p("alice"))
(True, False, 34)
>>> p.event_id("ord-alice-1")[:2], p.event_id("x") == p("x"), len(p.session_id("s1"))
('e_', False, 34)
>>> s = Sealer(b"k" * 32)
>>> s.open(s.seal(b"alice's event", b"topic/0/7"), b"topic/0/7")
b"alice's event"
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from streamrec.errors import SealError


def _derive(secret: bytes, purpose: bytes) -> bytes:
    """A key for one purpose from a secret (HMAC-SHA256 as a KDF: keys never mix)."""
    return hmac.new(secret, purpose, hashlib.sha256).digest()


def key_fingerprint(secret: bytes) -> str:
    """A short, non-secret name for a key (which key sealed a dead letter)."""
    return hashlib.sha256(_derive(secret, b"streamrec/fingerprint")).hexdigest()[:8]


class _Hasher:
    __slots__ = ("_base", "_prefix")

    def __init__(self, key: bytes, prefix: str) -> None:
        self._base = hmac.new(key, digestmod=hashlib.sha256)
        self._prefix = prefix

    def __call__(self, raw: str) -> str:
        h = self._base.copy()  # copying the keyed state skips re-hashing the key per call
        h.update(raw.encode("utf-8", "surrogatepass"))
        return self._prefix + h.hexdigest()[:32]


class Pseudonymizer:
    """ids -> prefix + 128 bits of HMAC-SHA256, hex. Irreversible without the key.

    User ids use the key itself (pseudonyms stay what they were before event
    ids were hashed too); event and session ids use keys derived from it, so an
    event id never collides with a user's pseudonym.
    """

    __slots__ = ("_user", "event_id", "message_key", "session_id")

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("pseudonymisation key must not be empty")
        self._user = _Hasher(key, "u_")
        #: The storefront's event id -> the id every later topic carries.
        self.event_id = _Hasher(_derive(key, b"streamrec/event-id"), "e_")
        self.session_id = _Hasher(_derive(key, b"streamrec/session-id"), "s_")
        #: Message keys that are not user ids (dead letters from side topics).
        self.message_key = _Hasher(_derive(key, b"streamrec/message-key"), "k_")

    def __call__(self, user_id: str) -> str:
        return self._user(user_id)


_NO_KEY = 0xFFFFFFFF


class Sealer:
    """AES-256-GCM with a key derived from a secret; a random 96-bit nonce per seal.

    `aad` (associated data: where the message came from) is authenticated, not
    encrypted, so sealed bytes moved to another record do not open.
    """

    def __init__(self, secret: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not secret:
            raise ValueError("the dead-letter key must not be empty")
        self._aead = AESGCM(_derive(secret, b"streamrec/dlq/v1"))
        self.key_id = key_fingerprint(secret)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(self._aead.decrypt(sealed[:12], sealed[12:], aad))
        except (InvalidTag, ValueError) as exc:
            raise SealError(
                "cannot open a sealed dead letter: it was sealed with another key "
                "(STREAMREC_DLQ_KEY / STREAMREC_PSEUDONYM_KEY) or altered"
            ) from exc

    def seal_message(self, key: bytes | None, value: bytes, aad: bytes) -> bytes:
        """A Kafka message (key and value) as one sealed blob."""
        head = struct.pack(">I", _NO_KEY if key is None else len(key))
        return self.seal(head + (key or b"") + value, aad)

    def open_message(self, sealed: bytes, aad: bytes) -> tuple[bytes | None, bytes]:
        plain = self.open(sealed, aad)
        (n,) = struct.unpack(">I", plain[:4])
        if n == _NO_KEY:
            return None, plain[4:]
        return plain[4 : 4 + n], plain[4 + n :]
