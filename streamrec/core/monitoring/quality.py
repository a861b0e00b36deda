"""Online quality, measured prequentially on the live stream.

When a user clicks, carts or buys an item, the question is whether that item
was in the last list we published for them, and where: HR@K, NDCG@K and MRR@K
(MRR counts only ranks within K, as offline). The list is the one published
*before* the event, so a model is never scored on what it learned from the
event itself. CTR comes from impressions: an impression is clicked when a
click, cart or purchase on one of its shown items follows within the feedback
window.

Everything is kept as sums per variant in `QualitySums`, so windows from
several workers add up to the right totals (rates are computed by readers).

>>> q = OnlineQuality(k=2)
>>> q.published("u", ("a", "b", "c"), "v")
>>> q.observe_positive("u", "b", ts=1, variant="v")
1
>>> s = q.window["v"]; (s.trials, s.hits, round(s.ndcg, 4), s.rr)
(1, 1, 0.6309, 0.5)
>>> s.lists
1
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from streamrec.core.packing import pack_ids, unpack_ids


@dataclass
class QualitySums:
    """Additive counts behind the online quality rates of one variant."""

    lists: int = 0  # recommendations published
    trials: int = 0  # positives of users who had a list
    hits: int = 0  # ... whose item was in its top K
    ndcg: float = 0.0  # sum of 1 / log2(rank + 2) over hits
    rr: float = 0.0  # sum of 1 / (rank + 1) over hits
    impressions: int = 0
    clicks: int = 0  # impressions clicked within the feedback window

    def add(self, other: QualitySums) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def rates(self) -> dict[str, float | None]:
        """hit_rate, ndcg, mrr and ctr (None where nothing was measured)."""
        t, i = self.trials, self.impressions
        return {
            "hit_rate": self.hits / t if t else None,
            "ndcg": self.ndcg / t if t else None,
            "mrr": self.rr / t if t else None,
            "ctr": self.clicks / i if i else None,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ndcg"] = round(self.ndcg, 6)
        d["rr"] = round(self.rr, 6)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualitySums:
        return cls(**{f.name: d.get(f.name, 0) for f in fields(cls)})


class _Impression:
    __slots__ = ("clicked", "shown", "ts", "variant")

    def __init__(self, ts: int, shown: frozenset[str], variant: str) -> None:
        self.ts = ts
        self.shown = shown
        self.variant = variant
        self.clicked = False


class OnlineQuality:
    """Last list and last impression per user (bounded); sums per variant since `reset`."""

    def __init__(self, k: int = 10, window_s: float = 1_800.0, max_users: int = 200_000) -> None:
        self.k = k
        self.window_ms = int(window_s * 1000)
        self.max_users = max_users
        self._last: dict[str, tuple[str, ...]] = {}
        self._impressions: dict[str, _Impression] = {}
        self._expiry: deque[tuple[int, str, _Impression]] = deque()
        self.window: dict[str, QualitySums] = {}
        #: CTR outcomes (1 clicked, 0 not) resolved since the last `take_ctr_outcomes`.
        self.ctr_outcomes: list[int] = []
        self._discount = [1.0 / math.log2(r + 2) for r in range(k)]

    def sums(self, variant: str) -> QualitySums:
        s = self.window.get(variant)
        if s is None:
            s = self.window[variant] = QualitySums()
        return s

    def published(self, user: str, items: tuple[str, ...], variant: str) -> None:
        self.sums(variant).lists += 1
        last = self._last
        last.pop(user, None)  # re-insert: the dict's order is least recently published first
        last[user] = items
        if len(last) > self.max_users:
            del last[next(iter(last))]

    def observe_positive(
        self, user: str, item: str, ts: int, variant: str, scored: bool = True
    ) -> int | None:
        """Score a click / cart / purchase against the user's last list: 1 hit, 0 miss, None.

        `scored` False: no list can have been shown since the user's previous event (both
        are in one micro-batch, answered by one list), so it is no trial; a click on an
        impression still counts."""
        imp = self._impressions.get(user)
        if (
            imp is not None
            and not imp.clicked
            and item in imp.shown
            and ts - imp.ts <= self.window_ms
        ):
            imp.clicked = True
            self.sums(imp.variant).clicks += 1
            self.ctr_outcomes.append(1)
        items = self._last.get(user)
        if items is None or not scored:
            return None
        s = self.sums(variant)
        s.trials += 1
        try:
            rank = items.index(item, 0, self.k)
        except ValueError:
            return 0
        s.hits += 1
        s.ndcg += self._discount[rank]
        s.rr += 1.0 / (rank + 1)
        return 1

    def observe_impression(self, user: str, shown: tuple[str, ...], ts: int, variant: str) -> None:
        self.expire(ts)
        prev = self._impressions.pop(user, None)
        if prev is not None and not prev.clicked:
            self.ctr_outcomes.append(0)  # superseded by the next impression: not clicked
        imp = _Impression(ts, frozenset(shown), variant)
        self._impressions[user] = imp
        self._expiry.append((ts + self.window_ms, user, imp))
        self.sums(variant).impressions += 1
        if len(self._impressions) > self.max_users:
            del self._impressions[next(iter(self._impressions))]

    def forget(self, user: str) -> int:
        """Erasure: drop the user's last list and impression; how many entries there were."""
        return (self._last.pop(user, None) is not None) + (
            self._impressions.pop(user, None) is not None
        )

    def expire(self, now: int) -> None:
        """Impressions past the feedback window without a click resolve as not clicked."""
        q = self._expiry
        while q and q[0][0] < now:
            _at, user, imp = q.popleft()
            if self._impressions.get(user) is imp:
                del self._impressions[user]
                if not imp.clicked:
                    self.ctr_outcomes.append(0)

    def reset(self) -> dict[str, QualitySums]:
        window, self.window = self.window, {}
        return window

    # -- state ----------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(header, arrays): each user's last list (its top K: all that HR/NDCG@K read)
        and open impression, so online quality keeps counting across a restart."""
        last = list(self._last.items())  # least recently published first: the eviction order
        tops = [items[: self.k] for _u, items in last]
        imps = list(self._impressions.items())
        variants = sorted({imp.variant for _u, imp in imps})
        arrays: dict[str, np.ndarray] = {
            "last.sizes": np.array([len(t) for t in tops], dtype=np.int64),
            "imp.ts": np.array([imp.ts for _u, imp in imps], dtype=np.int64),
            "imp.variant": np.array([variants.index(i.variant) for _u, i in imps], np.int64),
            "imp.clicked": np.array([imp.clicked for _u, imp in imps], dtype=bool),
            "imp.sizes": np.array([len(imp.shown) for _u, imp in imps], dtype=np.int64),
        }
        for name, ids in (
            ("last.users", [u for u, _t in last]),
            ("last.items", [i for t in tops for i in t]),
            ("imp.users", [u for u, _i in imps]),
            ("imp.shown", [s for _u, imp in imps for s in sorted(imp.shown)]),
        ):
            arrays[name], arrays[f"{name}.ends"] = pack_ids(ids)
        return {"k": self.k, "variants": variants}, arrays

    def restore(self, header: dict[str, Any], a: dict[str, np.ndarray]) -> None:
        """Put back what `state` captured (users' last lists and open impressions)."""
        self._last = dict(zip(
            unpack_ids(a["last.users"], a["last.users.ends"]),
            _split(unpack_ids(a["last.items"], a["last.items.ends"]), a["last.sizes"]),
            strict=True,
        ))  # fmt: skip
        users = unpack_ids(a["imp.users"], a["imp.users.ends"])
        shown = _split(unpack_ids(a["imp.shown"], a["imp.shown.ends"]), a["imp.sizes"])
        variants = header["variants"]
        self._impressions = {}
        for user, ts, v, clicked, items in zip(
            users, a["imp.ts"].tolist(), a["imp.variant"].tolist(), a["imp.clicked"].tolist(),
            shown, strict=True,
        ):  # fmt: skip
            imp = self._impressions[user] = _Impression(ts, frozenset(items), variants[v])
            imp.clicked = bool(clicked)
        self._expiry = deque(sorted(
            ((imp.ts + self.window_ms, u, imp) for u, imp in self._impressions.items()),
            key=lambda t: t[0],
        ))  # fmt: skip


def _split(ids: list[str], sizes: np.ndarray) -> list[tuple[str, ...]]:
    ends = np.cumsum(sizes).tolist()
    starts = [0, *ends[:-1]] if ends else []
    return [tuple(ids[a:b]) for a, b in zip(starts, ends, strict=True)]
