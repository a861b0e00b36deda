"""The ranker's inputs since the last snapshot, on disk beside it, for an exact restart.

The online ranker learns from per-user feedback: what a user was offered,
then what they picked (`core/ranking/feedback.py`). A snapshot holds the
pending offers as of its writing; this journal holds every input since, one
frame per batch: `<data dir>/<app>-ranker.journal`. A batch's frame is
written before its learning log goes to the broker, so a delivered log
always has its frame.

A restarted worker first stops taking its earlier incarnations' ranker
records from `shared.state` (their learning is in the journal). Once
`shared.state` is folded (its ledger then says which batches' learning is in
the state), it replays the frames whose batches the ledger covers, in order,
from the snapshot's state; the first frame it does
not cover and everything after it are dropped (those events come again and
are learned afresh). The events the ledger covers are then skipped by the
ranker, so each input counts once: the ranker's weights, evaluation window,
random draws and pending offers equal those of a worker that never stopped.

Each snapshot starts a new generation: its header names the journal
generation that continues it, and the journal is cut to an empty one of that
generation once the snapshot is in place. A journal of another generation
(a crash between the two) holds nothing the snapshot lacks, and is ignored.

Frames: an 8-byte little-endian length, then orjson. A frame cut short by a
crash ends the journal there.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from streamrec import serde
from streamrec.core.ranking.feedback import Op, ops_from_wire, ops_to_wire

log = logging.getLogger(__name__)

FORMAT = "streamrec-ranker-journal"
VERSION = 1
_LEN = struct.Struct("<Q")


class RankerJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        #: The generation being written (set by `open`).
        self.gen = 0
        self._file: Any = None

    @property
    def opened(self) -> bool:
        return self._file is not None

    def open(
        self, gen: int, covered: Callable[[int, int, int], bool]
    ) -> list[tuple[str, list[Op]]]:
        """The frames of generation `gen` whose batches `covered(partition, first,
        last)` holds for every range, in order, as (writer, inputs); the journal goes
        on from the last of them."""
        self.gen = gen
        frames, keep = self._read(gen, covered)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep is None:  # none of this generation: start it
            self._file = open(self.path, "wb")  # noqa: SIM115 - held for the worker's life
            self._write({"format": FORMAT, "version": VERSION, "gen": gen})
        else:
            self._file = open(self.path, "r+b")  # noqa: SIM115
            self._file.truncate(keep)
            self._file.seek(keep)
        return frames

    def _read(
        self, gen: int, covered: Callable[[int, int, int], bool]
    ) -> tuple[list[tuple[str, list[Op]]], int | None]:
        """(the covered frames, where the journal is to go on); None: not this gen."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], None
        docs = list(_frames(data))
        if not docs or docs[0][0].get("format") != FORMAT or docs[0][0].get("gen") != gen:
            if docs:
                log.info("ranker journal %s is of another generation: its inputs are in the "
                         "snapshot already", self.path)  # fmt: skip
            return [], None
        out: list[tuple[str, list[Op]]] = []
        keep = docs[0][1]
        for doc, end in docs[1:]:
            if not all(covered(int(p), int(a), int(b)) for p, a, b in doc["ranges"]):
                break  # this batch's learning never reached the broker: it comes again
            out.append((str(doc["by"]), ops_from_wire(doc["ops"])))
            keep = end
        return out, keep

    def writers(self, gen: int) -> set[str]:
        """The workers whose inputs a journal of generation `gen` holds (none if it is of
        another): what they published of their ranker is in it, and must not be folded
        from shared.state as well."""
        frames, _keep = self._read(gen, lambda _p, _a, _b: True)
        return {by for by, _ops in frames}

    def append(self, by: str, ranges: Sequence[tuple[int, int, int]], ops: Sequence[Op]) -> None:
        """One batch's inputs, before its learning log goes out (to the OS: a killed
        process loses nothing it wrote; a crashed machine loses the host anyway)."""
        if self._file is None or not ops:
            return
        self._write({"by": by, "ranges": [list(r) for r in ranges], "ops": ops_to_wire(ops)})

    def rotate(self, gen: int) -> None:
        """A snapshot holding everything so far is in place: an empty journal of `gen`."""
        if self._file is None:
            return
        self._file.close()
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        self._file = open(tmp, "wb")  # noqa: SIM115
        self.gen = gen
        self._write({"format": FORMAT, "version": VERSION, "gen": gen})
        os.replace(tmp, self.path)

    def _write(self, doc: dict[str, Any]) -> None:
        payload = serde.dumps(doc)
        self._file.write(_LEN.pack(len(payload)) + payload)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _frames(data: bytes) -> Any:
    """(document, offset just past it) of every whole frame; a torn last one ends it."""
    at = 0
    while at + _LEN.size <= len(data):
        (n,) = _LEN.unpack_from(data, at)
        end = at + _LEN.size + n
        if end > len(data):
            return
        try:
            doc = serde.loads(data[at + _LEN.size : end])
        except Exception:
            return
        yield doc, end
        at = end
