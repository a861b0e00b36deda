"""The worker's micro-batches in its log (`STREAMREC_LOG_BATCHES`), written and read back.

Lists depend on batch boundaries (one list per user per micro-batch), so replaying
a pipeline's events in process gives its lists only in the batches the worker
took; this is how `streamrec evaluate --through-kafka` and the tests learn them.

>>> line = describe({0: (10, 57), 2: (3, 9)})
>>> line
'micro-batch 0:10-57 2:3-9'
>>> parse(f"12:00:01 INFO {line}\\nother\\n")
[{0: (10, 57), 2: (3, 9)}]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_LINE = re.compile(r"micro-batch ((?:\d+:\d+-\d+ ?)+)")

#: partition -> (first offset, last offset) of one batch.
Ranges = dict[int, tuple[int, int]]


def ranges_of(events: Iterable[Any]) -> Ranges:
    """The source offsets of a batch of Faust events, per partition."""
    out: Ranges = {}
    for ev in events:
        p, o = ev.message.partition, ev.message.offset
        lo, hi = out.get(p, (o, o))
        out[p] = (min(lo, o), max(hi, o))
    return out


def describe(ranges: Ranges) -> str:
    return "micro-batch " + " ".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(ranges.items()))


def parse(text: str) -> list[Ranges]:
    """Every batch a log names, in order."""
    out = []
    for m in _LINE.finditer(text):
        ranges: Ranges = {}
        for part in m.group(1).split():
            p, span = part.split(":")
            lo, hi = span.split("-")
            ranges[int(p)] = (int(lo), int(hi))
        out.append(ranges)
    return out


def read(log: Path) -> list[Ranges]:
    return parse(log.read_text(errors="replace")) if log.exists() else []


def next_offset(log: Path, partition: int = 0) -> int:
    """The offset after every batch logged so far on `partition` (the next event's, on a
    topic only this worker reads)."""
    return max((r[partition][1] + 1 for r in read(log) if partition in r), default=0)


def index_batches(log: Path, base: int, n: int, partition: int = 0) -> list[tuple[int, int]]:
    """The batches of `n` events sent to `partition` from offset `base` on, as (lo, hi)
    index ranges into them (hi exclusive), in the order the worker took them."""
    out = []
    for r in read(log):
        if partition not in r:
            continue
        lo, hi = r[partition]
        lo, hi = max(lo, base) - base, min(hi, base + n - 1) - base + 1
        if lo < hi:
            out.append((lo, hi))
    return out
