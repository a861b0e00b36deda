"""What a compacted Kafka topic keeps: the newest value per key, a tombstone deleting it.

>>> latest_per_key([(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"b", None), (None, b"x")])
{b'a': b'3'}
"""

from __future__ import annotations

from collections.abc import Iterable


def latest_per_key(
    records: Iterable[tuple[bytes | None, bytes | None]],
    into: dict[bytes, bytes] | None = None,
) -> dict[bytes, bytes]:
    """Fold `(key, value)` records, oldest first, into `into` (a new dict by default).

    A `None` value is a tombstone and removes its key; a record without a key
    cannot be compacted and is skipped.
    """
    latest: dict[bytes, bytes] = {} if into is None else into
    for key, value in records:
        if key is None:
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest
