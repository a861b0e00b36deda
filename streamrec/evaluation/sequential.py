"""Sequence-aware baselines: sequential rules (`sr`) and session-based kNN (`sknn`).

The replication studies of session-based recommendation (Ludewig & Jannach,
"Evaluation of session-based recommendation algorithms", 2018; Ludewig et al.,
"Empirical analysis of session-based recommendation algorithms", 2021) found
these simple models competitive with, or better than, the neural session
models of their time, so streamrec has to beat them, not only counting.

Both run in the same streaming protocol as every baseline (learn an
interaction, then publish the user's list); a user's history is their
"session" (the logs streamrec evaluates on have users, not session ids).

* `sr`: a rule a -> b for every b that followed a within `steps` interactions
  of the same user, weighted 1 / distance; the list is the rules of the user's
  newest item (Kamehkhosh et al., 2017).
* `sknn`: V-SKNN. The user's last `session_items` items, weighted by recency
  (linear decay), are matched against other users' recent items through an
  inverted index (the `sample` most recent users per item); the `k` most
  similar users vote for their items with their similarity.

>>> from streamrec.records import RawEvent
>>> sr = SequentialRules()
>>> evs = [RawEvent(f"e{i}", "view", u, i, item_id=it)
...        for i, (u, it) in enumerate([("a", "x"), ("a", "y"), ("b", "x")])]
>>> sr.process(evs, k=1)[-1]
['y']
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from streamrec.evaluation.baselines import Baseline
from streamrec.records import RawEvent


def _top(scores: dict[str, float], k: int, seen: set[str]) -> list[str]:
    """The `k` best unseen items; ties by item id, so lists are deterministic."""
    best = heapq.nlargest(k, ((s, item) for item, s in scores.items() if item not in seen))
    return [item for _s, item in best]


class SequentialRules(Baseline):
    name = "sr"

    def __init__(self, steps: int = 10) -> None:
        super().__init__()
        self.steps = steps
        self.rules: dict[str, dict[str, float]] = {}

    def learn(self, user: str, item: str, event: RawEvent) -> None:
        rules = self.rules
        for dist, before in enumerate(reversed(self.recent.get(user, [])[-self.steps :]), 1):
            if before == item:
                continue
            row = rules.get(before)
            if row is None:
                row = rules[before] = {}
            row[item] = row.get(item, 0.0) + 1.0 / dist

    def rank(self, user: str, k: int, seen: set[str]) -> list[str]:
        recent = self.recent.get(user)
        if not recent:
            return []
        return _top(self.rules.get(recent[-1], {}), k, seen)


class SessionKNN(Baseline):
    name = "sknn"

    def __init__(
        self, k: int = 100, sample: int = 500, session_items: int = 20, neighbour_items: int = 50
    ) -> None:
        super().__init__()
        self.k = k
        self.sample = sample
        self.session_items = session_items
        self.neighbour_items = neighbour_items
        #: item -> the users who touched it most recently (newest last), bounded.
        self.users_of: dict[str, deque[str]] = {}
        #: user -> their last `neighbour_items` items (what they vote for as a neighbour).
        self.tail: dict[str, deque[str]] = {}

    def learn(self, user: str, item: str, event: RawEvent) -> None:
        users = self.users_of.get(item)
        if users is None:
            users = self.users_of[item] = deque(maxlen=self.sample)
        elif user in users:
            users.remove(user)  # move to the newest end
        users.append(user)
        tail = self.tail.get(user)
        if tail is None:
            tail = self.tail[user] = deque(maxlen=self.neighbour_items)
        tail.append(item)

    def rank(self, user: str, k: int, seen: set[str]) -> list[str]:
        recent = self.recent.get(user)
        if not recent:
            return []
        session = recent[-self.session_items :]
        n = len(session)
        sims: dict[str, float] = {}
        # V-SKNN: the newest item weighs 1, the oldest of the session 1/n.
        for pos, item in enumerate(session, 1):
            w = pos / n
            for other in self.users_of.get(item, ()):
                if other != user:
                    sims[other] = sims.get(other, 0.0) + w
        if not sims:
            return []
        norm = math.sqrt(n)
        scores: dict[str, float] = {}
        for sim, other in heapq.nlargest(self.k, ((s, u) for u, s in sims.items())):
            vote = sim / (norm * math.sqrt(len(self.tail[other])))
            for item in self.tail[other]:
                scores[item] = scores.get(item, 0.0) + vote
        return _top(scores, k, seen)
