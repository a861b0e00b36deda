"""What a batch taught about items, as its events' learning records (shared-state format 2).

Every event that teaches items something is one record: its source partition
and offset, the item, the event type and time, the rows of the user's session
before it (co-visitation and transitions), the user's newest rows before it
(the regression, when on) and, for a purchase, the value model's example (the
buyer's history features, no user id). `learn` is the one function that turns
a record into learned state. A worker applies its own records with it as it
makes them, and folds every other worker's, and its own after a restart, with
it too, in the order they were made. Folding therefore equals learning, to the
bit, including what depends on the order and the count of learned events:
co-visitation's pruning to the strongest neighbours, the factors' and the
regression's refresh points, the value model's SGD steps.

A log (`ItemLog`) holds one batch of one worker, every source partition it
read, with the offset range per partition that the batch covers (events that
taught nothing included), so the ledger can record them (`core/deltas.py`).

>>> from streamrec.core.ranking.recommender import Recommender
>>> a, b = Recommender(), Recommender()
>>> log = LogBuilder()
>>> for offset, item in enumerate(["x", "y"]):
...     row = a.items.row(item)
...     session = [a.items.row("x")] if item == "y" else []
...     _ = log.learn(a, 0, offset, row, "view", 1_000 + offset, session)
>>> wire = log.take("w1", a.items.ids).to_bytes()
>>> for _i, *record in ItemLog.from_bytes(wire).records(b.items):
...     _ = learn(b, *record)
>>> [rec.covisit.neighbours(rec.items.row("y"))[1].tolist() for rec in (a, b)]
[[1.0], [1.0]]
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec import serde
from streamrec.core.ranking.value import FEATURES as VALUE_FEATURES
from streamrec.errors import DeltaError

if TYPE_CHECKING:
    from streamrec.core.items import ItemStore
    from streamrec.core.ranking.recommender import Recommender

#: The format of an item log on the shared-state topic (1: summed deltas, still read).
LOG_VERSION = 2
#: A value-model example: its features in `VALUE_FEATURES` order, and log(1 + order value).
ValueExample = tuple[list[float], float]
#: One record read back: index, row (None: no item), event type, time, session rows,
#: recent rows, value example, the blend tuner's evidence.
Record = tuple[
    int, int | None, str, int, list[int], list[int], ValueExample | None, np.ndarray | None
]


def learn(
    rec: Recommender,
    row: int | None,
    event_type: str,
    ts: int,
    session_rows: Sequence[int],
    recent_rows: Sequence[int],
    value_example: ValueExample | None,
    evidence: np.ndarray | None = None,
) -> float:
    """What one record teaches: the value model's example, the item's statistics
    (`Recommender.learn_item`), the blend tuner's evidence. The weight counted (0: none)."""
    if value_example is not None:
        x, y = value_example
        rec.value.learn_example(dict(zip(VALUE_FEATURES, x, strict=True)), y)
    weight = (
        rec.learn_item(row, event_type, ts, session_rows, recent_rows) if row is not None else 0.0
    )
    if evidence is not None:
        rec.learn_evidence(evidence)
    return weight


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _unb64(s: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).copy()


@dataclass(frozen=True, eq=False)
class ItemLog:
    """One worker's batch of learning records (see the module's docstring)."""

    by: str
    #: (source partition, first offset, last offset) the batch covers.
    ranges: tuple[tuple[int, int, int], ...]
    #: Item ids the records point into (rows are per process).
    items: tuple[str, ...]
    types: tuple[str, ...]
    part: np.ndarray  # int32 per record
    offset: np.ndarray  # int64
    item: np.ndarray  # int32 index into items, -1: no item
    etype: np.ndarray  # uint8 index into types
    ts: np.ndarray  # int64
    #: Session rows (indices into items), records' runs one after another; `session_ends`
    #: per record. The same for the user's recent rows (the regression).
    session: np.ndarray
    session_ends: np.ndarray
    recent: np.ndarray
    recent_ends: np.ndarray
    #: The value model's examples: the record each belongs to, its features, its target.
    value_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    value_x: np.ndarray = field(default_factory=lambda: np.zeros((0, len(VALUE_FEATURES))))
    value_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: The blend tuner's evidence: the record each vector belongs to, where each ends
    #: in `evidence` (one NDCG per candidate weighting, `core/ranking/tuner.py`).
    evidence_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    evidence_ends: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    evidence: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def key(self) -> bytes:
        """Record key: one worker's logs on one shared partition, in the order it made them."""
        return f"items/{self.by}".encode()

    def records(self, store: ItemStore) -> Iterator[Record]:
        """The records in order, items as rows of `store` (added to it when new)."""
        rows = store.rows(list(self.items)).tolist()
        session, recent = self.session.tolist(), self.recent.tolist()
        s_end, r_end = self.session_ends.tolist(), self.recent_ends.tolist()
        values = {int(i): n for n, i in enumerate(self.value_at.tolist())}
        vx, vy = self.value_x.tolist(), self.value_y.tolist()
        found = {int(i): n for n, i in enumerate(self.evidence_at.tolist())}
        e_end = self.evidence_ends.tolist()
        s0 = r0 = 0
        for i, (item, code, ts) in enumerate(
            zip(self.item.tolist(), self.etype.tolist(), self.ts.tolist(), strict=True)
        ):
            v, e = values.get(i), found.get(i)
            yield (
                i,
                rows[item] if item >= 0 else None,
                self.types[code],
                ts,
                [rows[j] for j in session[s0 : s_end[i]]],
                [rows[j] for j in recent[r0 : r_end[i]]],
                (vx[v], vy[v]) if v is not None else None,
                self.evidence[(e_end[e - 1] if e else 0) : e_end[e]] if e is not None else None,
            )
            s0, r0 = s_end[i], r_end[i]

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "v": LOG_VERSION,
            "kind": "items",
            "by": self.by,
            "ranges": [list(r) for r in self.ranges],
            "items": list(self.items),
            "types": list(self.types),
            "part": _b64(self.part, "<i4"),
            "offset": _b64(self.offset, "<i8"),
            "item": _b64(self.item, "<i4"),
            "etype": _b64(self.etype, "u1"),
            "ts": _b64(self.ts, "<i8"),
            "session": _b64(self.session, "<i4"),
            "session_ends": _b64(self.session_ends, "<i4"),
        }
        if len(self.recent):  # only where the regression is on
            doc["recent"] = _b64(self.recent, "<i4")
            doc["recent_ends"] = _b64(self.recent_ends, "<i4")
        if len(self.evidence_at):  # only from the users the blend tuner samples
            doc["evidence_at"] = _b64(self.evidence_at, "<i4")
            doc["evidence_ends"] = _b64(self.evidence_ends, "<i4")
            doc["evidence"] = _b64(self.evidence, "<f8")
        if len(self.value_y):  # purchases are rare: most logs carry none
            doc["value_features"] = list(VALUE_FEATURES)
            doc["value_at"] = _b64(self.value_at, "<i4")
            doc["value_x"] = _b64(self.value_x, "<f8")
            doc["value_y"] = _b64(self.value_y, "<f8")
        return serde.dumps(doc)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ItemLog:
        try:
            n_types = len(d["types"])
            log = cls(
                by=str(d["by"]),
                ranges=tuple((int(p), int(a), int(b)) for p, a, b in d["ranges"]),
                items=tuple(str(i) for i in d["items"]),
                types=tuple(str(t) for t in d["types"]),
                part=_unb64(d["part"], "<i4"),
                offset=_unb64(d["offset"], "<i8"),
                item=_unb64(d["item"], "<i4"),
                etype=_unb64(d["etype"], "u1"),
                ts=_unb64(d["ts"], "<i8"),
                session=_unb64(d["session"], "<i4"),
                session_ends=_unb64(d["session_ends"], "<i4"),
                recent=_unb64(d.get("recent", ""), "<i4"),
                recent_ends=(
                    _unb64(d["recent_ends"], "<i4")
                    if "recent_ends" in d
                    else np.zeros(len(_unb64(d["ts"], "<i8")), np.int32)
                ),
                **_value_examples(d),
                **_evidence(d),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeltaError(f"malformed shared item log: {exc!r}") from exc
        log._check(n_types)
        return log

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemLog:
        return cls.from_dict(serde.loads(data))

    def _check(self, n_types: int) -> None:
        n, n_items = len(self.ts), len(self.items)
        columns = (self.part, self.offset, self.item, self.etype, self.session_ends,
                   self.recent_ends)  # fmt: skip
        if any(len(c) != n for c in columns):
            raise DeltaError("malformed shared item log: its columns differ in length")
        for refs, ends in ((self.session, self.session_ends), (self.recent, self.recent_ends)):
            if n and (np.any(np.diff(ends) < 0) or ends[0] < 0 or ends[-1] != len(refs)):
                raise DeltaError("malformed shared item log: runs do not match their rows")
            if len(refs) and (refs.min() < 0 or refs.max() >= n_items):
                raise DeltaError("malformed shared item log: rows point outside its items")
        if n and (self.item.min() < -1 or self.item.max() >= n_items):
            raise DeltaError("malformed shared item log: items point outside its items")
        if n and self.etype.max() >= n_types:
            raise DeltaError("malformed shared item log: an event type it does not name")
        if any(a > b for _p, a, b in self.ranges):
            raise DeltaError("malformed shared item log: a range's first offset after its last")
        k = len(self.value_y)
        if self.value_x.shape != (k, len(VALUE_FEATURES)) or len(self.value_at) != k:
            raise DeltaError("malformed shared item log: value examples do not match")
        if k and (self.value_at.min() < 0 or self.value_at.max() >= n):
            raise DeltaError("malformed shared item log: a value example of no record")
        if not (np.isfinite(self.value_x).all() and np.isfinite(self.value_y).all()):
            raise DeltaError("malformed shared item log: a value example that is not finite")
        ends = self.evidence_ends
        if len(ends) != len(self.evidence_at) or (len(ends) and (
            np.any(np.diff(ends) < 0) or ends[0] < 0 or ends[-1] != len(self.evidence)
            or self.evidence_at.min() < 0 or self.evidence_at.max() >= n
            or not np.isfinite(self.evidence).all()
        )):  # fmt: skip
            raise DeltaError("malformed shared item log: tuner evidence does not match")


def _value_examples(d: dict[str, Any]) -> dict[str, Any]:
    """The optional value-model examples, columns mapped by name onto this version's."""
    if "value_y" not in d:
        return {}
    names = [str(f) for f in d["value_features"]]
    y = _unb64(d["value_y"], "<f8")
    x = _unb64(d["value_x"], "<f8")
    if len(x) != len(y) * len(names):
        raise ValueError("value_x does not hold one row of value_features per example")
    x = x.reshape(len(y), len(names))
    ours = np.zeros((len(y), len(VALUE_FEATURES)))
    for j, name in enumerate(names):
        if name in VALUE_FEATURES:
            ours[:, VALUE_FEATURES.index(name)] = x[:, j]
    return {"value_at": _unb64(d["value_at"], "<i4"), "value_x": ours, "value_y": y}


def _evidence(d: dict[str, Any]) -> dict[str, Any]:
    """The optional blend tuner's evidence (absent: none)."""
    if "evidence_at" not in d:
        return {}
    return {"evidence_at": _unb64(d["evidence_at"], "<i4"),
            "evidence_ends": _unb64(d["evidence_ends"], "<i4"),
            "evidence": _unb64(d["evidence"], "<f8")}  # fmt: skip


class LogBuilder:
    """The records of the batch in the making, and the offsets it covers."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self._ranges: dict[int, list[int]] = {}
        self._items: dict[int, int] = {}  # row -> index into items
        self._types: dict[str, int] = {}
        self._cols: tuple[list[int], ...] = ([], [], [], [], [])  # part, offset, item, type, ts
        self._session: list[int] = []
        self._session_ends: list[int] = []
        self._recent: list[int] = []
        self._recent_ends: list[int] = []
        self._value_at: list[int] = []
        self._value_x: list[list[float]] = []
        self._value_y: list[float] = []
        self._evidence_at: list[int] = []
        self._evidence: list[np.ndarray] = []

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def learn(
        self,
        rec: Recommender,
        partition: int,
        offset: int,
        row: int | None,
        event_type: str,
        ts: int,
        session_rows: Sequence[int],
        recent_rows: Sequence[int] = (),
        value_example: ValueExample | None = None,
        evidence: np.ndarray | None = None,
    ) -> float:
        """Learn one event (`learn`) and keep its record; the offset counts as covered
        whether or not the event taught anything."""
        span = self._ranges.get(partition)
        if span is None:
            self._ranges[partition] = [offset, offset]
        else:
            span[0], span[1] = min(span[0], offset), max(span[1], offset)
        weight = learn(rec, row, event_type, ts, session_rows, recent_rows, value_example,
                       evidence)  # fmt: skip
        if weight <= 0 and value_example is None and evidence is None:
            return weight  # nothing learned: nothing to record
        part, offsets, items, types, times = self._cols
        part.append(partition)
        offsets.append(offset)
        items.append(self._index(row) if row is not None and weight > 0 else -1)
        types.append(self._types.setdefault(event_type, len(self._types)))
        times.append(ts)
        if weight > 0:
            self._session += [self._index(r) for r in session_rows]
            self._recent += [self._index(r) for r in recent_rows]
        self._session_ends.append(len(self._session))
        self._recent_ends.append(len(self._recent))
        if value_example is not None:
            self._value_at.append(len(times) - 1)
            self._value_x.append(list(value_example[0]))
            self._value_y.append(value_example[1])
        if evidence is not None:
            self._evidence_at.append(len(times) - 1)
            self._evidence.append(evidence)
        return weight

    def _index(self, row: int) -> int:
        return self._items.setdefault(row, len(self._items))

    def take(self, by: str, ids: Sequence[str]) -> ItemLog:
        """The batch's log (item ids from the store's `ids`), and a fresh builder."""
        part, offsets, items, types, times = self._cols
        log = ItemLog(
            by=by,
            ranges=tuple((p, a, b) for p, (a, b) in sorted(self._ranges.items())),
            items=tuple(ids[r] for r in self._items),
            types=tuple(self._types),
            part=np.array(part, dtype=np.int32),
            offset=np.array(offsets, dtype=np.int64),
            item=np.array(items, dtype=np.int32),
            etype=np.array(types, dtype=np.uint8),
            ts=np.array(times, dtype=np.int64),
            session=np.array(self._session, dtype=np.int32),
            session_ends=np.array(self._session_ends, dtype=np.int32),
            recent=np.array(self._recent, dtype=np.int32),
            recent_ends=np.array(self._recent_ends, dtype=np.int32),
            value_at=np.array(self._value_at, dtype=np.int32),
            value_x=np.array(self._value_x, dtype=np.float64).reshape(
                len(self._value_y), len(VALUE_FEATURES)
            ),
            value_y=np.array(self._value_y, dtype=np.float64),
            evidence_at=np.array(self._evidence_at, dtype=np.int32),
            evidence_ends=np.cumsum([len(e) for e in self._evidence], dtype=np.int64).astype(
                np.int32
            ),
            evidence=(
                np.concatenate(self._evidence) if self._evidence else np.zeros(0, np.float64)
            ),
        )
        self._clear()
        return log
