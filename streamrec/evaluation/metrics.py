"""Ranking metrics, one implementation for every protocol, model and mode.

A *target* is an interaction the evaluation asks a list to have predicted: the
item the user went to. For one target and a list, with `rank` the item's
1-based position (None when absent):

    HR@k   = 1                  if rank <= k else 0
    NDCG@k = 1 / log2(rank + 1) if rank <= k else 0   (one relevant item: IDCG = 1)
    MRR@k  = 1 / rank           if rank <= k else 0

`MetricSums` adds them up per segment; coverage counts the distinct items in
the evaluated top-10 lists against the catalog, novelty the mean popularity
rank of those items (1 is the most popular item of the log).

>>> sums = MetricSums(ks=(10,))
>>> sums.add(["a", "b", "c"], "b", popularity_rank={"a": 1, "b": 2, "c": 3})
>>> sums.add(["a"], "z", popularity_rank={"a": 1, "z": 9})
>>> r = sums.result(catalog_size=10)
>>> r["hr@10"], round(r["ndcg@10"], 4), r["mrr@10"], r["n"]
(0.5, 0.3155, 0.25, 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Cut-offs every protocol reports; lists are evaluated at their first max(KS) items.
KS = (10, 20)
#: The list depth coverage and novelty look at (what a storefront widget shows).
DISPLAY_K = 10

#: Segments, by how many of the user's events the list could know of.
SEGMENTS = ("all", "cold_1", "cold_2_5", "cold_1_5", "warm", "after_search", "no_search")
SEGMENT_HELP = {
    "all": "every evaluated interaction",
    "cold_1": "the list was made after the user's first event",
    "cold_2_5": "after the user's 2nd to 5th event",
    "cold_1_5": "cold_1 and cold_2_5 together (a user's first five events)",
    "warm": "after the user's 6th or later event",
    "after_search": "the user's previous event was a search",
    "no_search": "the user's previous event was not a search",
}

_LOG2 = [0.0] + [1.0 / math.log2(r + 1) for r in range(1, 1001)]


def segments_of(events_before: int, after_search: bool) -> tuple[str, ...]:
    """The segments an interaction counts in; `events_before`: the user's earlier events."""
    if events_before <= 1:
        cold: tuple[str, ...] = ("cold_1", "cold_1_5")
    elif events_before <= 5:
        cold = ("cold_2_5", "cold_1_5")
    else:
        cold = ("warm",)
    return ("all", *cold, "after_search" if after_search else "no_search")


def rank_of(item: str, items: Sequence[str], depth: int) -> int | None:
    """1-based position of `item` among the first `depth` of `items`."""
    for pos, candidate in enumerate(items[:depth], 1):
        if candidate == item:
            return pos
    return None


@dataclass
class MetricSums:
    """Sums of per-target metrics for one model and segment."""

    ks: tuple[int, ...] = KS
    n: int = 0
    hits: dict[int, float] = field(default_factory=dict)
    ndcg: dict[int, float] = field(default_factory=dict)
    rr: dict[int, float] = field(default_factory=dict)
    shown: set[str] = field(default_factory=set)
    novelty_sum: float = 0.0
    novelty_n: int = 0

    def add(
        self,
        items: Sequence[str],
        target: str,
        popularity_rank: Mapping[str, int],
        rank: int | None = None,
        found: bool = False,
    ) -> None:
        """One target against one list; pass `rank` (with found=True) if already known."""
        if not found:
            rank = rank_of(target, items, max(self.ks))
        self.n += 1
        for k in self.ks:
            if rank is not None and rank <= k:
                self.hits[k] = self.hits.get(k, 0.0) + 1.0
                self.ndcg[k] = self.ndcg.get(k, 0.0) + _LOG2[rank]
                self.rr[k] = self.rr.get(k, 0.0) + 1.0 / rank
        top = items[:DISPLAY_K]
        self.shown.update(top)
        worst = len(popularity_rank) + 1
        for item in top:
            self.novelty_sum += popularity_rank.get(item, worst)
        self.novelty_n += len(top)

    def result(self, catalog_size: int) -> dict[str, float]:
        out: dict[str, float] = {"n": self.n}
        for k in self.ks:
            d = max(self.n, 1)
            out[f"hr@{k}"] = self.hits.get(k, 0.0) / d
            out[f"ndcg@{k}"] = self.ndcg.get(k, 0.0) / d
            out[f"mrr@{k}"] = self.rr.get(k, 0.0) / d
        out[f"coverage@{DISPLAY_K}"] = len(self.shown) / catalog_size if catalog_size else 0.0
        out["novelty"] = self.novelty_sum / self.novelty_n if self.novelty_n else 0.0
        return out


def popularity_ranks(items: Sequence[str]) -> dict[str, int]:
    """Item -> popularity rank in a sequence of interacted items (1: most frequent)."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    order = sorted(counts, key=lambda i: (-counts[i], i))
    return {item: r for r, item in enumerate(order, 1)}
