"""Malformed storefront events, one of each kind the worker must dead-letter.

Used by the demo (to show the DLQ at work) and the end-to-end test.
"""

from __future__ import annotations

import random

from streamrec import serde

#: (reason expected in events.dlq, builder of the raw value)
_KINDS: list[tuple[str, str]] = [
    ("not_json", "not json"),
    ("not_object", "array"),
    ("schema", "unknown type"),
    ("schema", "click without item_id"),
    ("schema", "ts is a string"),
    ("schema", "price is a string"),
    ("schema", "impression without shown"),
    ("bad_timestamp", "negative ts"),
    ("bad_timestamp", "far future ts"),
    ("bad_timestamp", "ts in seconds"),
    ("oversized", "oversized"),
]


def _value(kind: str, i: int, now_ms: int) -> bytes:
    base = {
        "event_id": f"bad-{i}",
        "type": "view",
        "user_id": f"bad-user-{i % 7}",
        "ts": now_ms,
        "item_id": "1",
    }
    if kind == "not json":
        return b'{"event_id": "bad-' + str(i).encode() + b'", "type": "view", '  # truncated
    if kind == "array":
        return serde.dumps([base])
    if kind == "unknown type":
        return serde.dumps(base | {"type": "teleport"})
    if kind == "click without item_id":
        return serde.dumps({k: v for k, v in base.items() if k != "item_id"} | {"type": "click"})
    if kind == "ts is a string":
        return serde.dumps(base | {"ts": "yesterday"})
    if kind == "price is a string":
        return serde.dumps(base | {"type": "purchase", "price": "9.99"})
    if kind == "impression without shown":
        return serde.dumps(base | {"type": "impression"})
    if kind == "negative ts":
        return serde.dumps(base | {"ts": -5})
    if kind == "far future ts":
        return serde.dumps(base | {"ts": now_ms + 30 * 86_400_000})
    if kind == "ts in seconds":
        return serde.dumps(base | {"ts": now_ms // 1000})
    if kind == "oversized":
        return serde.dumps(base | {"context": {"page": "x" * 20_000}})
    raise ValueError(kind)


def malformed_events(n: int, now_ms: int, seed: int = 7) -> list[tuple[bytes, bytes, str]]:
    """n malformed (key, value, expected reason) triples, cycling through every kind."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        reason, kind = _KINDS[i % len(_KINDS)] if i < len(_KINDS) else rng.choice(_KINDS)
        out.append((f"bad-user-{i % 7}".encode(), _value(kind, i, now_ms), reason))
    return out
