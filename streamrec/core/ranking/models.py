"""Ranking candidates: features, a fixed blend, and an online river model that learns.

Every candidate is a row of `FEATURES` (all roughly in [0, 1]):

* ``similarity``: cosine of the item to the user vector (interest + intent);
* ``query_match``: similarity to the current search query, normalised (search events);
* ``covisit``: co-visitation with the user's recent items, normalised;
* ``sequence``: what users touched next after the user's newest items
  (directed transitions, decayed by distance), normalised;
* ``covisit_idf``: co-visitation with each pair's weight divided by the square
  root of both items' total (cosine), so popular items do not dominate;
* ``factors``: the item against all of the user's recent items at once, through
  the co-visitation graph's leading factors (`factors.GraphFactors`);
* ``regression``: how well the user's newest items predict the item once each
  other's share is taken out (EASE over what users had together,
  `regression.ItemRegression`);
* ``popularity``: time-decayed popularity, normalised to the most popular item;
* ``growth``: popularity now against its longer-term level (item potential);
* ``affinity``: the user's best category affinity for the item, normalised;
* ``price_fit``: closeness of the item's price to what the user pays (log scale);
* ``seen``: the user already interacted with it.

`FixedBlend` scores with hand-set weights. `OnlineRanker` is a river
`LogisticRegression` that learns from what users were offered: an item offered
that the user then clicked, carted or bought within `window_s` is a positive;
one not touched within the window is a negative (sub-sampled). What counts as
offered is `feedback`:

* ``"auto"`` (the default): every list streamrec publishes is an impression
  (`on_list`), so the ranker learns on any log, until the storefront sends its
  first `impression` event; from then on only those say what was shown (they
  report what was really on screen, lists are what might have been);
* ``"lists"``: published lists only; ``"impressions"``: impression events only.

Lists are long and most of their items are never touched, so their items are
sub-sampled harder as negatives (`list_negative_rate`) than shown ones. It
scores whole candidate matrices with numpy from river's weights (river's
per-item loop would cost ~20 µs a candidate); river stays the learner.

When to trust it is measured, not assumed: every feedback example is first
scored by both the ranker and the fixed blend (test, then learn), and the
ranker ranks only while its AUC over the last `eval_window` examples beats the
blend's by `margin` (and it has seen `min_updates` examples, `min_positives`
of them positive). A ranker that drifts below the blend hands back to it.

>>> r = OnlineRanker(min_updates=2, min_positives=1)
>>> x = np.zeros(len(FEATURES)); x[FEATURES.index("affinity")] = 1.0
>>> r.on_impression("u", {"a": x, "b": np.zeros(len(FEATURES))}, ts=0)
>>> r.on_positive("u", "a", ts=10), (r.positives, r.negatives)
(True, (1, 1))
>>> bool(r.weights()[FEATURES.index("affinity")] > 0)  # a was taken over b
True
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
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
    "sequence",
    "covisit_idf",
    "factors",
    "regression",
)

#: The blend's weights. popularity, affinity, covisit_idf and factors were chosen on the
#: first half of ml-100k (`streamrec evaluate --part validation`, docs/evaluation.md);
#: regression's (it is off by default) on that half's prequential scoring; sequence's on
#: the validation splits of ml-100k and Amazon Video Games together, by the worst ratio
#: to the best baseline (scripts/tune_quality.py). The ranker weighs every feature itself
#: once it measures better, and the blend tunes itself on each shop's stream (tuner.py).
FIXED_WEIGHTS = {
    "similarity": 0.5,
    "query_match": 1.0,
    "covisit": 1.0,
    "popularity": 0.05,
    "growth": 0.05,
    "affinity": 0.05,
    "price_fit": 0.05,
    "seen": -0.2,
    "sequence": 1.0,
    "covisit_idf": 0.3,
    "factors": 0.3,
    "regression": 0.5,
}

#: Feedback: what makes a shown item a positive.
POSITIVE_TYPES = frozenset({"click", "add_to_cart", "purchase"})
#: What the ranker takes as "offered to the user" (see the module's docstring).
FEEDBACK_MODES = ("auto", "lists", "impressions")
#: How an example is learned (see `OnlineRanker`).
OBJECTIVES = ("pairwise", "pointwise")


class FixedBlend:
    version = "blend-1"

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        w = FIXED_WEIGHTS | (weights or {})
        self.w = np.array([w[f] for f in FEATURES], dtype=np.float64)

    def score(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w

    def weights(self) -> np.ndarray:
        """Per feature, its weight: a feature's contribution is its value times this."""
        return self.w


@dataclass
class Offer:
    """Items offered to a user together (a published list's pool, or an impression)."""

    ts: int
    #: item -> its row in `x`, for the items not yet answered
    open: dict[str, int]
    #: the features of every offered item, as ranked at that moment
    x: np.ndarray
    #: the share of unanswered items learned as negatives (pointwise)
    rate: float


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
        feedback: str = "auto",
        list_negative_rate: float = 0.05,
        max_offers: int = 4,
        max_pending_users: int = 200_000,
        objective: str = "pairwise",
        pair_negatives: int = 2,
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
        if feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, not {feedback!r}")
        self.feedback = feedback
        self.list_negative_rate = list_negative_rate
        self.max_offers = max_offers
        #: An `impression` event has arrived: in "auto", lists no longer count.
        self.impressions_seen = False
        self.max_pending_users = max_pending_users
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
        self.objective = objective
        self.pair_negatives = pair_negatives
        self._rng = random.Random(seed)
        self.positives = 0
        self.negatives = 0
        #: user -> their newest offers, oldest first
        self._pending: dict[str, deque[Offer]] = {}
        self._expiry: deque[tuple[int, str]] = deque()
        self._w: np.ndarray | None = None
        #: Where its inputs are recorded for a replay after a restart (`feedback.py`);
        #: None: not recorded.
        self.recording: list[tuple[Any, ...]] | None = None

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

    @property
    def learns_from_lists(self) -> bool:
        """Whether published lists count as impressions now (see `feedback`)."""
        return self.feedback == "lists" or (self.feedback == "auto" and not self.impressions_seen)

    def learn_pair(self, chosen: np.ndarray, other: np.ndarray) -> None:
        """`chosen` was taken over `other`, offered beside it: the difference of their
        features is learned, in a random one of its two orientations (chosen - other
        -> 1, or other - chosen -> 0), so the intercept stays near 0 and the weights
        order a list, which is all a ranker needs; one river update per pair."""
        d = chosen - other
        r, b = float(d @ self.weights()), float(d @ self.baseline.w)
        self._eval.append((r, b, True))  # judged both ways: AUC needs both labels
        self._eval.append((-r, -b, False))
        label = self._rng.random() < 0.5
        self.model.learn_one(
            dict(zip(FEATURES, (float(v) for v in (d if label else -d)), strict=True)), label
        )
        self._w = None
        self.positives += 1
        self.negatives += 1
        if self.positives % 100 == 0 or self.updates == self.min_updates:
            self._judge()

    def on_impression(self, user: str, shown: dict[str, np.ndarray], ts: int) -> None:
        """The storefront showed these items (features as ranked at that moment)."""
        if self.feedback == "lists" or not shown:
            return
        if self.recording is not None:
            self.recording.append(
                ("impression", user, ts, list(shown), np.stack(list(shown.values())))
            )
        if not self.impressions_seen:
            self.impressions_seen = True
            self._pending.clear()  # what lists offered: the storefront says what it showed
        self._offer(user, list(shown), np.stack(list(shown.values())), ts, self.negative_rate)

    def on_list(self, user: str, items: Sequence[str], x: np.ndarray, ts: int) -> None:
        """streamrec published `items` (features `x`, row per item) to `user`."""
        if items and self.learns_from_lists:
            if self.recording is not None:
                self.recording.append(("list", user, ts, list(items), x))
            self._offer(user, items, x, ts, self.list_negative_rate)

    def _offer(self, user: str, items: Sequence[str], x: np.ndarray, ts: int, rate: float) -> None:
        offers = self._pending.get(user)
        if offers is None:
            # A user's newest offers only: what is on their screen now, bounded per user.
            offers = self._pending[user] = deque(maxlen=self.max_offers)
        offers.append(Offer(ts, dict(zip(items, range(len(items)), strict=True)), x, rate))
        self._expiry.append((ts, user))
        if len(self._pending) > self.max_pending_users:  # bound memory: oldest users first
            self.expire(now=None, force=len(self._pending) - self.max_pending_users)

    def on_positive(self, user: str, item: str, ts: int) -> bool:
        """A click / cart / purchase: a positive if the item was offered within the window."""
        offers = self._pending.get(user)
        if not offers:
            return False
        if self.recording is not None:
            self.recording.append(("positive", user, item, ts))
        hit: tuple[Offer, int] | None = None
        for offer in reversed(offers):  # the newest offer of the item counts; it closes all
            i = offer.open.pop(item, None)
            if i is not None and hit is None:
                hit = (offer, i)
        if hit is None:
            return False
        offer, i = hit
        if ts - offer.ts > self.window_ms or ts < offer.ts:
            return False
        if self.objective == "pointwise":
            self.learn(offer.x[i], True)
            return True
        # Pairwise: the chosen item against others offered beside it, in the same list.
        beside = list(offer.open.values())
        if not beside:
            return False
        if len(beside) > self.pair_negatives:
            beside = self._rng.sample(beside, self.pair_negatives)
        for j in beside:
            self.learn_pair(offer.x[i], offer.x[j])
        return True

    def expire(self, now: int | None, force: int = 0) -> int:
        """Offers a whole window old close; pointwise, their untouched items become
        (sub-sampled) negatives."""
        if self.recording is not None and now is not None and not force:
            self.recording.append(("expire", now))
        learned = 0
        while self._expiry:
            ts, user = self._expiry[0]
            if force <= 0 and (now is None or now - ts <= self.window_ms):
                break
            self._expiry.popleft()
            force -= 1
            offers = self._pending.get(user)
            if offers is None:
                continue
            while offers and offers[0].ts <= ts:
                offer = offers.popleft()
                if self.objective == "pointwise":
                    for i in offer.open.values():
                        if self._rng.random() < offer.rate:
                            self.learn(offer.x[i], False)
                            learned += 1
            if not offers:
                del self._pending[user]
        return learned

    def forget(self, user: str) -> int:
        """Erasure: drop the user's pending offers (what they were shown, unlearned), and
        their place in the expiry queue, which snapshots keep too."""
        if self.recording is not None:
            self.recording.append(("forget", user))
        if any(u == user for _ts, u in self._expiry):
            self._expiry = deque((ts, u) for ts, u in self._expiry if u != user)
        return sum(len(o.open) for o in self._pending.pop(user, ()))

    def open_offers(self) -> list[tuple[str, Offer]]:
        """(user, offer) of every pending offer, oldest first per user."""
        return [(user, o) for user, offers in self._pending.items() for o in offers]

    # -- scoring --------------------------------------------------------------

    def weights(self) -> np.ndarray:
        if self._w is None:
            w = self.model.weights
            self._w = np.array([w.get(f, 0.0) for f in FEATURES], dtype=np.float64)
        return self._w

    def score(self, x: np.ndarray) -> np.ndarray:
        """Logit of a click, per row (monotone in the probability: enough to rank)."""
        return x @ self.weights() + float(self.model.intercept)

    def stats(self) -> dict[str, Any]:
        return {
            "positives": self.positives,
            "negatives": self.negatives,
            "ready": self.ready,
            "auc": {k: round(v, 4) for k, v in self.auc.items()},
            "pending_users": len(self._pending),
            "learns_from": "lists" if self.learns_from_lists else "impressions",
            "weights": {
                f: round(float(w), 4) for f, w in zip(FEATURES, self.weights(), strict=True)
            },
        }


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties share their average rank).

    >>> _auc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([False, True, False, True]))
    0.875
    """
    _values, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # 1-based average rank of each group of equal scores, then of every score.
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[group]
    pos = int(labels.sum())
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))
