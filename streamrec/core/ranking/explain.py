"""Explanations: why each item of a list is there, for the items shown only.

Per item: the score, the sources that proposed it (a bit mask, one table
lookup), the top three feature contributions, and a reason a consumer app can
show: "co-visited with <item>", "matches your interest in <category>",
"matches your search", "trending", ...
"""

from __future__ import annotations

import numpy as np

from streamrec.core.items import ItemStore
from streamrec.core.kernels import explain_numbers
from streamrec.core.profile import Profile
from streamrec.core.ranking.features import FEATURE_INDEX, SOURCES
from streamrec.core.ranking.models import FEATURES, FixedBlend, OnlineRanker
from streamrec.records import RecItem

#: Bit mask -> the tuple of source names it stands for.
_SOURCE_SETS = [
    tuple(s for b, s in enumerate(SOURCES) if mask >> b & 1) for mask in range(1 << len(SOURCES))
]

_NAMES = list(FEATURES)
_GROWTH = FEATURE_INDEX["growth"]
_new_item = tuple.__new__
#: Reasons that depend on more than the feature's name (the anchor, the category).
_SLOW_REASONS = frozenset({"covisit", "covisit_idf", "sequence", "affinity"})
REASONS = {
    "similarity": "similar to what you like",
    "query_match": "matches your search",
    "popularity": "trending",
    "growth": "rising in popularity",
    "price_fit": "in your price range",
    "seen": "you looked at this before",
    "factors": "goes with what you like",
    "regression": "often had with your items",
}
#: Marks a reason that needs more than the feature's name (the anchor, the category).
_SLOW = "<slow>"
_FAST_REASONS = [_SLOW if n in _SLOW_REASONS else REASONS.get(n, "trending") for n in _NAMES]


class Explainer:
    """Builds a list's `RecItem`s (a part of `Recommender`)."""

    items: ItemStore

    def _explain(
        self,
        profile: Profile,
        cand: np.ndarray,
        per_source: np.ndarray,
        x: np.ndarray,
        scores: np.ndarray,
        chosen: list[int],
        model: FixedBlend | OnlineRanker,
        cov_rows: np.ndarray,
        cov_anchor: np.ndarray,
        seq_rows: np.ndarray,
        seq_anchor: np.ndarray,
    ) -> list[RecItem]:
        """Explanations for what is shown only: their numbers in one compiled call."""
        store = self.items
        chosen_a = np.asarray(chosen, dtype=np.int64)
        rows = cand[chosen_a]
        best3_m, top_m, n_top, masks_m, growth_m = explain_numbers(
            x, chosen_a, model.weights(), per_source, _GROWTH
        )
        best3, top_vals, n_tops = best3_m.tolist(), top_m.tolist(), n_top.tolist()
        rows_l = rows.tolist()
        ids, items = store.ids, store.items
        cats_l = [it.category if it is not None else () for it in map(items.__getitem__, rows_l)]
        top_features_l = [
            ((_NAMES[b[0]], v[0]), (_NAMES[b[1]], v[1]), (_NAMES[b[2]], v[2]))[:nt]
            for b, v, nt in zip(best3, top_vals, n_tops, strict=True)
        ]
        # The reason of each item's top feature where the name alone decides it.
        reasons = [
            _FAST_REASONS[b[0]] if nt else "trending" for b, nt in zip(best3, n_tops, strict=True)
        ]
        if _SLOW in reasons:
            # The items that led to them, for the reasons that name one (NaN: none).
            slow = self._align(cov_rows, cov_anchor.astype(np.float64), rows).tolist()
            seq = (
                self._align(seq_rows, seq_anchor.astype(np.float64), rows).tolist()
                if len(seq_rows)
                else [float("nan")] * len(slow)  # no transitions: no anchor
            )
            for n, reason in enumerate(reasons):
                if reason == _SLOW:
                    top = top_features_l[n]
                    a = seq[n] if top[0][0] == "sequence" else slow[n]
                    anchor = ids[int(a)] if a == a else None
                    reasons[n] = self._reason(top, anchor, profile, cats_l[n])
        # Built as tuples (`RecItem` is a named tuple): twenty per event.
        return [
            _new_item(RecItem, (ids[row], score, reason, _SOURCE_SETS[mask], top, growth,
                                cats[-1] if cats else None, None if price != price else price))
            for row, score, reason, mask, top, growth, cats, price in zip(
                rows_l, scores[chosen_a].tolist(), reasons, masks_m.tolist(), top_features_l,
                growth_m.tolist(), cats_l, store.price[rows].tolist(), strict=True,
            )
        ]  # fmt: skip

    def _reason(
        self,
        top: tuple[tuple[str, float], ...],
        anchor: str | None,
        profile: Profile,
        categories: tuple[str, ...],
    ) -> str:
        if not top:
            return "trending"
        name = top[0][0]
        if name in ("covisit", "covisit_idf") and anchor:
            return f"co-visited with {anchor}"
        if name == "sequence" and anchor:
            return f"often next after {anchor}"
        if name == "affinity":
            # The item's category the user likes most (the first of equals).
            aff = profile.affinity
            best = max(categories, key=lambda c: aff.get(c, 0.0), default=None)
            if best is not None and aff.get(best, 0.0) > 0:
                return f"matches your interest in {best}"
        return REASONS.get(name, "trending")

    def _align(self, rows: np.ndarray, scores: np.ndarray, target: np.ndarray) -> np.ndarray:
        """`scores` (of sorted `rows`) at each of `target` (NaN where absent)."""
        out = np.full(len(target), np.nan)
        if len(rows):
            pos = np.minimum(np.searchsorted(rows, target), len(rows) - 1)
            hit = rows[pos] == target
            out[hit] = scores[pos[hit]]
        return out
