"""Ranking candidates: features, a fixed blend, and an online river model that learns.

Every candidate is a row of `FEATURES` (all roughly in [0, 1]):

* ``similarity``: cosine of the item to the user vector (interest + intent);
* ``query_match``: similarity to the current search query, normalised (search events);
* ``covisit``: co-visitation with the user's recent items, normalised;
* ``popularity``: time-decayed popularity, normalised to the most popular item;
* ``growth``: popularity now against its longer-term level (item potential);
* ``affinity``: the user's best category affinity for the item, normalised;
* ``price_fit``: closeness of the item's price to what the user pays (log scale);
* ``seen``: the user already interacted with it.

`FixedBlend` scores with hand-set weights. `OnlineRanker` is a river
`LogisticRegression` that learns from impressions: an item the storefront
showed and the user then clicked, carted or bought within `window_s` is a
positive; one not touched within the window is a negative (sub-sampled). It
scores whole candidate matrices with numpy from river's weights (river's
per-item loop would cost ~20 µs a candidate); river stays the learner.

When to trust it is measured, not assumed: every feedback example is first
scored by both the ranker and the fixed blend (test, then learn), and the
ranker ranks only while its AUC over the last `eval_window` examples beats the
blend's by `margin` (and it has seen `min_updates` examples, `min_positives`
of them positive). A ranker that drifts below the blend hands back to it.

>>> r = OnlineRanker(min_updates=2, min_positives=1, negative_rate=1.0)
>>> x = np.zeros(len(FEATURES)); x[FEATURES.index("affinity")] = 1.0
>>> r.on_impression("u", {"a": x, "b": np.zeros(len(FEATURES))}, ts=0)
>>> r.on_positive("u", "a", ts=10), r.expire(now=10**9), (r.positives, r.negatives)
(True, 1, (1, 1))
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import numpy as np

FEATURES = (
    "similarity",
    "query_match",
    "covisit",
    "popularity",
    "growth",
    "affinity",
    "price_fit",
    "seen",
)

FIXED_WEIGHTS = {
    "similarity": 0.5,
    "query_match": 1.0,
    "covisit": 1.0,
    "popularity": 0.3,
    "growth": 0.05,
    "affinity": 0.2,
    "price_fit": 0.05,
    "seen": -0.2,
}

#: Feedback: what makes a shown item a positive.
POSITIVE_TYPES = frozenset({"click", "add_to_cart", "purchase"})


class FixedBlend:
    version = "blend-1"

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        w = FIXED_WEIGHTS | (weights or {})
        self.w = np.array([w[f] for f in FEATURES], dtype=np.float64)

    def score(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w

    def contributions(self, row: np.ndarray) -> np.ndarray:
        return row * self.w


class OnlineRanker:
    """river logistic regression on `FEATURES`, fed by impression feedback."""

    def __init__(
        self,
        *,
        lr: float = 0.05,
        l2: float = 1e-4,
        min_updates: int = 300,
        min_positives: int = 30,
        window_s: float = 1_800.0,
        negative_rate: float = 0.25,
        max_pending_users: int = 200_000,
        eval_window: int = 5_000,
        margin: float = 0.01,
        seed: int = 0,
        baseline: FixedBlend | None = None,
    ) -> None:
        from river import linear_model, optim

        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
        self.baseline = baseline or FixedBlend()
        self.min_updates = min_updates
        self.min_positives = min_positives
        self.margin = margin
        #: (ranker score, blend score, label) of recent examples, scored before learning
        self._eval: deque[tuple[float, float, bool]] = deque(maxlen=eval_window)
        self._ready = False
        self.auc: dict[str, float] = {}
        self.window_ms = window_s * 1000.0
        self.negative_rate = negative_rate
        self.max_pending_users = max_pending_users
        self._rng = random.Random(seed)
        self.positives = 0
        self.negatives = 0
        #: user -> item -> (impression ts, features)
        self._pending: dict[str, dict[str, tuple[int, np.ndarray]]] = {}
        self._expiry: deque[tuple[int, str]] = deque()
        self._w: np.ndarray | None = None

    @property
    def updates(self) -> int:
        return self.positives + self.negatives

    @property
    def ready(self) -> bool:
        """True while the ranker ranks better than the fixed blend on recent feedback."""
        return self._ready

    def _judge(self) -> None:
        if self.updates < self.min_updates or self.positives < self.min_positives:
            self._ready = False
            return
        rows = np.array([(r, b, y) for r, b, y in self._eval], dtype=np.float64)
        labels = rows[:, 2] > 0.5
        if labels.all() or not labels.any():
            return
        self.auc = {"ranker": _auc(rows[:, 0], labels), "blend": _auc(rows[:, 1], labels)}
        self._ready = self.auc["ranker"] > self.auc["blend"] + self.margin

    @property
    def version(self) -> str:
        return f"river-logreg-1@{self.updates}"

    # -- learning -------------------------------------------------------------

    def learn(self, x: np.ndarray, label: bool) -> None:
        # Test, then learn: both scorers are judged on examples neither has trained on.
        row = x.reshape(1, -1)
        self._eval.append((float(self.score(row)[0]), float(self.baseline.score(row)[0]), label))
        self.model.learn_one(dict(zip(FEATURES, (float(v) for v in x), strict=True)), label)
        self._w = None
        if label:
            self.positives += 1
        else:
            self.negatives += 1
        if self.updates % 100 == 0 or self.updates == self.min_updates:
            self._judge()

    def on_impression(self, user: str, shown: dict[str, np.ndarray], ts: int) -> None:
        """The storefront showed these items (features as ranked at that moment)."""
        if not shown:
            return
        pending = self._pending.setdefault(user, {})
        for item, x in shown.items():
            pending[item] = (ts, x)
        self._expiry.append((ts, user))
        if len(self._pending) > self.max_pending_users:  # bound memory: oldest users first
            self.expire(now=None, force=len(self._pending) - self.max_pending_users)

    def on_positive(self, user: str, item: str, ts: int) -> bool:
        """A click / cart / purchase: a positive if the item was shown within the window."""
        pending = self._pending.get(user)
        if not pending:
            return False
        hit = pending.pop(item, None)
        if hit is None or ts - hit[0] > self.window_ms or ts < hit[0]:
            return False
        self.learn(hit[1], True)
        return True

    def expire(self, now: int | None, force: int = 0) -> int:
        """Shown items untouched for a whole window become (sub-sampled) negatives."""
        learned = 0
        while self._expiry:
            ts, user = self._expiry[0]
            if force <= 0 and (now is None or now - ts <= self.window_ms):
                break
            self._expiry.popleft()
            force -= 1
            pending = self._pending.get(user)
            if pending is None:
                continue
            for item, (shown_ts, x) in list(pending.items()):
                if shown_ts <= ts:
                    del pending[item]
                    if self._rng.random() < self.negative_rate:
                        self.learn(x, False)
                        learned += 1
            if not pending:
                del self._pending[user]
        return learned

    def forget(self, user: str) -> int:
        """Erasure: drop the user's pending impressions (what they were shown, unlearned)."""
        return len(self._pending.pop(user, {}))

    # -- scoring --------------------------------------------------------------

    def weights(self) -> np.ndarray:
        if self._w is None:
            w = self.model.weights
            self._w = np.array([w.get(f, 0.0) for f in FEATURES], dtype=np.float64)
        return self._w

    def score(self, x: np.ndarray) -> np.ndarray:
        """Logit of a click, per row (monotone in the probability: enough to rank)."""
        return x @ self.weights() + float(self.model.intercept)

    def contributions(self, row: np.ndarray) -> np.ndarray:
        return row * self.weights()

    def stats(self) -> dict[str, Any]:
        return {
            "positives": self.positives,
            "negatives": self.negatives,
            "ready": self.ready,
            "auc": {k: round(v, 4) for k, v in self.auc.items()},
            "pending_users": len(self._pending),
            "weights": {
                f: round(float(w), 4) for f, w in zip(FEATURES, self.weights(), strict=True)
            },
        }


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties share their average rank)."""
    order = np.argsort(scores, kind="mergesort")
    ranked = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1] == ranked[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = int(labels.sum())
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))
