"""Lists of ids as numpy arrays: how snapshots store item ids and pseudonyms.

>>> data, ends = pack_ids(["a", "bc", ""])
>>> unpack_ids(data, ends)
['a', 'bc', '']
"""

from __future__ import annotations

import numpy as np


def pack_ids(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Item ids as one UTF-8 byte array and the end offset of each."""
    encoded = [i.encode() for i in ids]
    ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), ends


def unpack_ids(data: np.ndarray, ends: np.ndarray) -> list[str]:
    if not len(ends):
        return []
    raw = data.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [raw[a:b].decode() for a, b in zip(starts, ends.tolist(), strict=True)]
