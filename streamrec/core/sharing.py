"""Learned item state shared by every worker: deltas of what each one learned, folded by all.

With N workers in one consumer group, each learns from 1/N of the shop.
Trending, popularity by category and co-visitation are *item* statistics
with no user in them, so they can be shared: each worker publishes, per
micro-batch and source partition, an `ItemDelta` of what it learned (trending
sums at one reference time, co-visitation pair weights), and every worker
folds in everyone's deltas (`fold`). All workers then converge on the
statistics one worker would have learned from the whole shop.

**Exactly once, by source offsets.** A delta names the source partition and
the offsets it covers. A `Ledger` keeps, per source partition, the offsets
whose item learning this state holds (its own and folded), so:

* a delta already in the ledger (a redelivery, or the worker's own coming
  back) is skipped, whatever order deltas arrive in: folding is commutative
  (sums) and idempotent (the ledger);
* an event whose offset is in the ledger teaches its items nothing again: a
  worker that takes over a partition after a rebalance or a crash does not
  count what the previous owner published, and a restarted worker refolds its
  own deltas published after its snapshot instead of losing them.

The value model's examples ride along: a purchase's (features, log order
value), computed by the worker that holds the buyer's profile, is learned by
every worker once (the same ledger). Per-user state (profiles) stays in the
co-partitioned profile table; the online ranker is shared by its own records
(`core/ranker_sharing.py`).

>>> from streamrec.core.ranking.recommender import Recommender
>>> a, b = Recommender(), Recommender()
>>> share_a, share_b = Sharing(a, "w1"), Sharing(b, "w2")
>>> row = a.items.row("42")
>>> share_a.learn(0, 7, row, "view", 1_000, [])
>>> [d.items for d in share_a.take()]  # published by w1 ...
[('42',)]
>>> share_b.fold(decode(share_a.last[0].to_bytes()))  # ... folded by w2
'applied'
>>> round(b.trending.score(b.items.row("42")), 3), share_b.ledger.covers(0, 7)
(1.0, True)
"""

from __future__ import annotations

import base64
import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.core.ranker_sharing import DELTA_VERSION, RankerDelta, RankerSharing
from streamrec.core.ranking.recommender import Recommender
from streamrec.core.ranking.value import FEATURES as VALUE_FEATURES
from streamrec.errors import DeltaError

__all__ = ["DELTA_VERSION", "DeltaError", "ItemDelta", "Ledger", "RankerDelta", "Sharing", "decode"]


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
                f"{DELTA_VERSION}: upgrade every worker to the same version"
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
                **_value_examples(d),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeltaError(f"malformed shared-state delta: {exc!r}") from exc
        n, pairs = len(delta.items), len(delta.pair_w)
        if len(delta.trend) != n or len(delta.trend_long) != n:
            raise DeltaError("malformed shared-state delta: trending sums do not match its items")
        ends = (len(delta.pair_later), len(delta.pair_earlier))
        if ends != (pairs, pairs) or (pairs and (
            min(delta.pair_later.min(), delta.pair_earlier.min()) < 0
            or max(delta.pair_later.max(), delta.pair_earlier.max()) >= n
        )):  # fmt: skip
            raise DeltaError("malformed shared-state delta: pairs point outside its items")
        if delta.first > delta.last:
            raise DeltaError("malformed shared-state delta: first offset after last")
        if delta.value_x.shape != (len(delta.value_y), len(delta.value_features)):
            raise DeltaError("malformed shared-state delta: value examples do not match")
        return delta


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


def decode(data: bytes) -> ItemDelta | RankerDelta:
    """A record of the shared-state topic: an item delta, or a ranker record."""
    try:
        doc = serde.loads(data)
    except Exception as exc:
        raise DeltaError(f"shared-state record is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise DeltaError("shared-state record is not a JSON object")
    if doc.get("kind") == "ranker":
        return RankerDelta.from_dict(doc)
    return ItemDelta.from_dict(doc)


@dataclass
class _Pending:
    """One source partition's learning since the last `take`."""

    first: int
    last: int
    ref_ts: int = -1
    now_ts: int = 0
    adds: int = 0
    trend: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    trend_long: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    pairs: defaultdict[tuple[int, int], float] = field(default_factory=lambda: defaultdict(float))
    value_x: list[list[float]] = field(default_factory=list)
    value_y: list[float] = field(default_factory=list)


class Sharing:
    """One worker's side of the shared item state: what it learns, and what it folds in."""

    def __init__(self, rec: Recommender, by: str, ranker: str = "sum") -> None:
        self.rec = rec
        self.by = by
        #: The online ranker's share (`core/ranker_sharing.py`); None without a ranker.
        self.ranker = (
            RankerSharing(rec.ranker, by, ranker)
            if rec.ranker is not None and ranker != "off"
            else None
        )
        self.ledger = Ledger()
        self._pending: dict[int, _Pending] = {}
        #: The deltas of the latest `take` (tests and the doctest read them).
        self.last: list[ItemDelta | RankerDelta] = []
        #: Deltas published, folded, skipped as known, skipped as overlapping, refused.
        self.counts = {"published": 0, "folded": 0, "known": 0, "overlap": 0, "bad": 0}
        self._reported = dict(self.counts)

    def state(self) -> dict[str, Any]:
        """What a snapshot of the learned state keeps of its sharing (a JSON header)."""
        return {
            "ledger": self.ledger.state(),
            "ranker": self.ranker.state() if self.ranker is not None else None,
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """After the learned state was restored from a snapshot that kept `state`
        (None: a snapshot without sharing, which holds no source offsets)."""
        self.ledger = Ledger.from_state(state["ledger"]) if state else Ledger()
        if self.ranker is not None:  # restored parameters are not this worker's to publish
            self.ranker.restore(state.get("ranker") if state else None)
        self._pending.clear()

    def take_window(self) -> dict[str, int]:
        """The counts since the last call (a metrics window's `shared_*` counts)."""
        out = {k: v - self._reported[k] for k, v in self.counts.items()}
        self._reported = dict(self.counts)
        return out

    # -- learning ---------------------------------------------------------------

    def knows(self, partition: int, offset: int) -> bool:
        """True if the items of the event at (partition, offset) are learned already."""
        return self.ledger.covers(partition, offset)

    def learn(
        self,
        partition: int,
        offset: int,
        row: int | None,
        event_type: str,
        ts: int,
        session_rows: Sequence[int],
        value_example: tuple[list[float], float] | None = None,
    ) -> None:
        """Learn one event's items locally, and keep it for the next delta (with the
        value model's example, which the caller learned from the buyer's profile)."""
        pend = self._pending.get(partition)
        if pend is None:
            pend = self._pending[partition] = _Pending(offset, offset)
        pend.first, pend.last = min(pend.first, offset), max(pend.last, offset)
        if value_example is not None:
            pend.value_x.append(value_example[0])
            pend.value_y.append(value_example[1])
        if row is None:
            return
        rec = self.rec
        weight = rec.learn_item(row, event_type, ts, session_rows)
        if weight <= 0:
            return
        if pend.ref_ts < 0:
            pend.ref_ts = ts
        elif (ts - pend.ref_ts) / rec.trending.half_life_ms > 400:
            self._rebase(pend, ts)  # a batch spanning years of event time: no float overflow
        pend.now_ts = max(pend.now_ts, ts)
        pend.adds += 1
        age = ts - pend.ref_ts
        pend.trend[row] += weight * 2.0 ** (age / rec.trending.half_life_ms)
        pend.trend_long[row] += weight * 2.0 ** (age / rec.trending_long.half_life_ms)
        for other, w in rec.covisit.pairs(row, session_rows, weight):
            pend.pairs[(row, other)] += w

    def _rebase(self, pend: _Pending, ts: int) -> None:
        """Move a pending delta's reference time to `ts` (its sums scaled to match)."""
        for sums, trending in ((pend.trend, self.rec.trending),
                               (pend.trend_long, self.rec.trending_long)):  # fmt: skip
            factor = 2.0 ** (-(ts - pend.ref_ts) / trending.half_life_ms)
            for row in sums:
                sums[row] *= factor
        pend.ref_ts = ts

    def take(self) -> list[ItemDelta | RankerDelta]:
        """The deltas learned since the last call, one per source partition (now in the
        ledger), and what the ranker learned since (if it did)."""
        ids = self.rec.items.ids
        out: list[ItemDelta | RankerDelta] = []
        for p, pend in sorted(self._pending.items()):
            self.ledger.add(p, pend.first, pend.last)
            rows = sorted(set(pend.trend) | {r for pair in pend.pairs for r in pair})
            index = {r: i for i, r in enumerate(rows)}
            pairs = list(pend.pairs.items())
            out.append(ItemDelta(
                partition=p, first=pend.first, last=pend.last, by=self.by,
                ref_ts=max(pend.ref_ts, 0), now_ts=pend.now_ts, adds=pend.adds,
                items=tuple(ids[r] for r in rows),
                trend=np.array([pend.trend.get(r, 0.0) for r in rows]),
                trend_long=np.array([pend.trend_long.get(r, 0.0) for r in rows]),
                pair_later=np.array([index[a] for (a, _b), _w in pairs], dtype=np.int32),
                pair_earlier=np.array([index[b] for (_a, b), _w in pairs], dtype=np.int32),
                pair_w=np.array([w for _k, w in pairs], dtype=np.float64),
                value_x=np.array(pend.value_x, dtype=np.float64).reshape(
                    len(pend.value_y), len(VALUE_FEATURES)),
                value_y=np.array(pend.value_y, dtype=np.float64),
            ))  # fmt: skip
        self._pending.clear()
        if self.ranker is not None and (model := self.ranker.take()) is not None:
            out.append(model)
        self.counts["published"] += len(out)
        self.last = out
        return out

    # -- folding ----------------------------------------------------------------

    def fold(self, delta: ItemDelta | RankerDelta) -> str:
        """Fold another worker's delta in: 'applied', or skipped as 'known' / 'overlap'.

        A delta whose offsets the ledger holds in part ('overlap') can only come
        from two owners of one partition at once (a rebalance while a delta was in
        flight); it is skipped and counted, never applied in half.
        """
        if isinstance(delta, RankerDelta):
            kind = self.ranker.fold(delta) if self.ranker is not None else "known"
            self.counts["folded" if kind == "applied" else "known"] += 1
            return kind
        p = delta.partition
        if self.ledger.overlaps(p, delta.first, delta.last):
            whole = all(self.ledger.covers(p, o) for o in (delta.first, delta.last))
            kind = "known" if whole else "overlap"
            self.counts[kind] += 1
            return kind
        rec = self.rec
        if delta.adds:
            rows = rec.items.rows(list(delta.items))
            nz = delta.trend != 0
            rec.trending.merge(rows[nz], delta.trend[nz], delta.ref_ts, delta.now_ts, delta.adds)
            rec.trending_long.merge(
                rows[nz], delta.trend_long[nz], delta.ref_ts, delta.now_ts, delta.adds
            )
            graphs = [rec.covisit, rec.transitions] if rec.sequence_anchors else [rec.covisit]
            later, earlier = rows[delta.pair_later].tolist(), rows[delta.pair_earlier].tolist()
            for graph in graphs:
                for a, b, w in zip(later, earlier, delta.pair_w.tolist(), strict=True):
                    graph.add_pair(a, b, w)
        known = set(VALUE_FEATURES)
        for x, y in zip(delta.value_x.tolist(), delta.value_y.tolist(), strict=True):
            features = {f: v for f, v in zip(delta.value_features, x, strict=True) if f in known}
            rec.value.learn_example(dict.fromkeys(VALUE_FEATURES, 0.0) | features, y)
        self.ledger.add(p, delta.first, delta.last)
        self.counts["folded"] += 1
        return "applied"
