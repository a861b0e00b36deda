"""Shared learned state on the wire: the ledger of source offsets, `decode`, and format 1.

A `Ledger` records which source offsets a state holds, so every event's
learning is folded once (`core/sharing.py`). `decode` reads any record of the
shared-state topic: an item log (format 2, `core/item_log.py`, what workers
write), a ranker record (`core/ranker_sharing.py`), or an `ItemDelta` of
format 1, which older workers wrote: what one worker learned from one source
partition's offsets first..last as sums (trending at one reference time,
co-visitation pairs, value examples), folded by `fold_summed`. A record it
cannot read is refused with the reason (`DeltaError`).
"""

from __future__ import annotations

import base64
import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec import serde
from streamrec.core.item_log import LOG_VERSION, ItemLog
from streamrec.core.ranker_sharing import DELTA_VERSION, RankerDelta
from streamrec.core.ranking.value import FEATURES as VALUE_FEATURES
from streamrec.errors import DeltaError

if TYPE_CHECKING:
    from streamrec.core.ranking.recommender import Recommender


class Ledger:
    """Per source partition, the offsets whose item learning a state holds (closed intervals).

    >>> led = Ledger()
    >>> led.add(0, 10, 19); led.add(0, 20, 29); led.add(0, 40, 49)
    >>> led.state()
    {'0': [[10, 29], [40, 49]]}
    >>> led.covers(0, 25), led.covers(0, 35), led.overlaps(0, 30, 39), led.overlaps(0, 45, 60)
    (True, False, False, True)
    """

    #: Intervals kept per partition; past it the oldest gap is closed (offsets that
    #: far back are below every commit, so nothing replays them).
    MAX_INTERVALS = 32

    def __init__(self) -> None:
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}

    def covers(self, partition: int, offset: int) -> bool:
        starts = self._starts.get(partition)
        if not starts:
            return False
        i = bisect.bisect_right(starts, offset) - 1
        return i >= 0 and offset <= self._ends[partition][i]

    def covers_range(self, partition: int, first: int, last: int) -> bool:
        """True if every offset first..last is held."""
        starts = self._starts.get(partition)
        if not starts:
            return False
        i = bisect.bisect_right(starts, first) - 1
        return i >= 0 and last <= self._ends[partition][i]

    def overlaps(self, partition: int, first: int, last: int) -> bool:
        starts = self._starts.get(partition)
        if not starts:
            return False
        i = bisect.bisect_right(starts, last) - 1  # the last interval starting at or before `last`
        return i >= 0 and self._ends[partition][i] >= first

    def add(self, partition: int, first: int, last: int) -> None:
        starts = self._starts.setdefault(partition, [])
        ends = self._ends.setdefault(partition, [])
        # Every interval that touches [first - 1, last + 1] merges into one.
        lo = bisect.bisect_left(ends, first - 1)
        hi = bisect.bisect_right(starts, last + 1)
        if lo < hi:
            first, last = min(first, starts[lo]), max(last, ends[hi - 1])
        starts[lo:hi], ends[lo:hi] = [first], [last]
        if len(starts) > self.MAX_INTERVALS:
            starts.pop(1)
            ends.pop(0)

    def high(self, partition: int) -> int:
        """The highest offset held for `partition` (-1: none)."""
        ends = self._ends.get(partition)
        return ends[-1] if ends else -1

    def state(self) -> dict[str, list[list[int]]]:
        return {
            str(p): [[a, b] for a, b in zip(self._starts[p], self._ends[p], strict=True)]
            for p in sorted(self._starts)
            if self._starts[p]
        }

    @classmethod
    def from_state(cls, state: dict[str, list[list[int]]]) -> Ledger:
        led = cls()
        for p, intervals in state.items():
            for a, b in intervals:
                led.add(int(p), int(a), int(b))
        return led

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ledger) and self.state() == other.state()


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def _unb64(s: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).copy()


@dataclass(frozen=True, eq=False)
class ItemDelta:
    """What one worker learned about items from source `partition`, offsets first..last.

    Trending sums are `sum(w * 2^((ts - ref_ts) / half_life))` per item, for the
    short and the long half-life; a pair (later item, earlier item, weight) is
    one co-visitation step. Item ids, not rows: rows are per process.
    """

    partition: int
    first: int
    last: int
    by: str
    ref_ts: int = 0
    now_ts: int = 0
    adds: int = 0
    items: tuple[str, ...] = ()
    trend: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trend_long: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_later: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    pair_earlier: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    pair_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: The regression's counts: (item, item, count); an item with itself is its diagonal.
    gram_a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    gram_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    gram_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: The value model's examples: one row of `value_features` per purchase, and its target.
    value_features: tuple[str, ...] = VALUE_FEATURES
    value_x: np.ndarray = field(default_factory=lambda: np.zeros((0, len(VALUE_FEATURES))))
    value_y: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def key(self) -> bytes:
        """Record key: every delta of a source partition on one shared partition, in order."""
        return str(self.partition).encode()

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "v": DELTA_VERSION,
            "partition": self.partition,
            "first": self.first,
            "last": self.last,
            "by": self.by,
            "ref_ts": self.ref_ts,
            "now_ts": self.now_ts,
            "adds": self.adds,
            "items": list(self.items),
            # Exact float64 in base64: a folded sum equals the publisher's own.
            "trend": _b64(self.trend, "<f8"),
            "trend_long": _b64(self.trend_long, "<f8"),
            "pair_later": _b64(self.pair_later, "<i4"),
            "pair_earlier": _b64(self.pair_earlier, "<i4"),
            "pair_w": _b64(self.pair_w, "<f8"),
        }
        if len(self.gram_w):  # absent where the regression is off (and from older workers)
            doc["gram_a"] = _b64(self.gram_a, "<i4")
            doc["gram_b"] = _b64(self.gram_b, "<i4")
            doc["gram_w"] = _b64(self.gram_w, "<f8")
        if len(self.value_y):  # purchases are rare: most deltas carry none
            doc["value_features"] = list(self.value_features)
            doc["value_x"] = _b64(self.value_x, "<f8")
            doc["value_y"] = _b64(self.value_y, "<f8")
        return doc

    def to_bytes(self) -> bytes:
        return serde.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ItemDelta:
        if d.get("v") != DELTA_VERSION:
            raise DeltaError(
                f"shared-state delta of format {d.get('v')!r}; this streamrec reads "
                f"{DELTA_VERSION} and {LOG_VERSION}: upgrade every worker to the same version"
            )
        try:
            delta = cls(
                partition=int(d["partition"]),
                first=int(d["first"]),
                last=int(d["last"]),
                by=str(d["by"]),
                ref_ts=int(d["ref_ts"]),
                now_ts=int(d["now_ts"]),
                adds=int(d["adds"]),
                items=tuple(str(i) for i in d["items"]),
                trend=_unb64(d["trend"], "<f8"),
                trend_long=_unb64(d["trend_long"], "<f8"),
                pair_later=_unb64(d["pair_later"], "<i4"),
                pair_earlier=_unb64(d["pair_earlier"], "<i4"),
                pair_w=_unb64(d["pair_w"], "<f8"),
                **_gram(d),
                **_value_examples(d),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeltaError(f"malformed shared-state delta: {exc!r}") from exc
        n = len(delta.items)
        if len(delta.trend) != n or len(delta.trend_long) != n:
            raise DeltaError("malformed shared-state delta: trending sums do not match its items")
        for a, b, w in ((delta.pair_later, delta.pair_earlier, delta.pair_w),
                        (delta.gram_a, delta.gram_b, delta.gram_w)):  # fmt: skip
            if (len(a), len(b)) != (len(w), len(w)) or (len(w) and (
                min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n
            )):  # fmt: skip
                raise DeltaError("malformed shared-state delta: pairs point outside its items")
        if delta.first > delta.last:
            raise DeltaError("malformed shared-state delta: first offset after last")
        if delta.value_x.shape != (len(delta.value_y), len(delta.value_features)):
            raise DeltaError("malformed shared-state delta: value examples do not match")
        return delta


def _gram(d: dict[str, Any]) -> dict[str, Any]:
    """The optional regression counts of a delta's wire form (absent: none)."""
    if "gram_w" not in d:
        return {}
    return {"gram_a": _unb64(d["gram_a"], "<i4"), "gram_b": _unb64(d["gram_b"], "<i4"),
            "gram_w": _unb64(d["gram_w"], "<f8")}  # fmt: skip


def _value_examples(d: dict[str, Any]) -> dict[str, Any]:
    """The optional value-model examples of a delta's wire form (absent: none)."""
    if "value_y" not in d:
        return {}
    features = tuple(str(f) for f in d["value_features"])
    y = _unb64(d["value_y"], "<f8")
    x = _unb64(d["value_x"], "<f8")
    if len(x) != len(y) * len(features):
        raise ValueError("value_x does not hold one row of value_features per example")
    return {"value_features": features, "value_x": x.reshape(len(y), len(features)),
            "value_y": y}  # fmt: skip


def fold_summed(rec: Recommender, delta: ItemDelta) -> None:
    """Fold a delta of the first format (sums, as older workers wrote them) into `rec`."""
    if delta.adds:
        rows = rec.items.rows(list(delta.items))
        nz = delta.trend != 0
        rec.trending.merge(rows[nz], delta.trend[nz], delta.ref_ts, delta.now_ts, delta.adds)
        rec.trending_long.merge(
            rows[nz], delta.trend_long[nz], delta.ref_ts, delta.now_ts, delta.adds
        )
        graphs = [rec.covisit, rec.transitions] if rec.sequence_anchors else [rec.covisit]
        later, earlier = rows[delta.pair_later], rows[delta.pair_earlier]
        for graph in graphs:
            graph.add_pairs(later, earlier, delta.pair_w.astype(np.float64, copy=False))
        rec.factors.on_learned(rec.covisit, len(rec.items), delta.adds, rec.items.tiebreak)
        ga, gb = rows[delta.gram_a].tolist(), rows[delta.gram_b].tolist()
        for a, b, w in zip(ga, gb, delta.gram_w.tolist(), strict=True):
            rec.regression.add_pair(a, b, w)
        rec.regression.on_learned(len(rec.items), delta.adds)
    known = set(VALUE_FEATURES)
    for x, y in zip(delta.value_x.tolist(), delta.value_y.tolist(), strict=True):
        features = {f: v for f, v in zip(delta.value_features, x, strict=True) if f in known}
        rec.value.learn_example(dict.fromkeys(VALUE_FEATURES, 0.0) | features, y)


def decode(data: bytes) -> ItemLog | ItemDelta | RankerDelta:
    """A record of the shared-state topic: an item log, a ranker record, or an item
    delta of the first format."""
    try:
        doc = serde.loads(data)
    except Exception as exc:
        raise DeltaError(f"shared-state record is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise DeltaError("shared-state record is not a JSON object")
    if doc.get("kind") == "ranker":
        return RankerDelta.from_dict(doc)
    if doc.get("v") == LOG_VERSION:
        return ItemLog.from_dict(doc)
    return ItemDelta.from_dict(doc)
