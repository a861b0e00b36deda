"""Pseudonymisation of user ids with a keyed HMAC.

The same key gives the same pseudonym everywhere (worker, client reader), so
consumer apps look users up without ever handling the raw id on the wire.

>>> p = Pseudonymizer(b"secret")
>>> p("alice") == p("alice"), p("alice") == p("bob"), len(p("alice"))
(True, False, 34)
"""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    """user id -> "u_" + 128 bits of HMAC-SHA256, hex. Irreversible without the key."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("pseudonymisation key must not be empty")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, user_id: str) -> str:
        h = self._base.copy()  # copying the keyed state skips re-hashing the key per call
        h.update(user_id.encode("utf-8"))
        return "u_" + h.hexdigest()[:32]
