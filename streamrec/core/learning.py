"""What one event teaches (a part of `Engine`): its user's profile, and, once per
source offset across workers and restarts, its items and the value model.

An event's item learning is a record (`core/item_log.py`): learned at once
with the function that folds other workers' records. With shared learning on
(`core/sharing.py`) it goes through the `Sharing` object, which skips an
event whose source offset its ledger holds (the previous owner of the
partition learned it, or a log folded it in) and keeps the record for the
batch's log; the value model's example rides along.
"""

from __future__ import annotations

import math

import numpy as np

from streamrec.core.ingest import RawMessage, Rejection
from streamrec.core.item_log import learn
from streamrec.core.items import ItemStore
from streamrec.core.profile import Profile, ProfileUpdater
from streamrec.core.ranking.recommender import Recommender
from streamrec.core.sharing import Sharing
from streamrec.records import Event


class Learning:
    """Learning from one applied event (a part of `Engine`)."""

    items: ItemStore
    recommender: Recommender
    updater: ProfileUpdater
    sharing: Sharing | None

    def _learn(
        self,
        event: Event,
        msg: RawMessage,
        row: int | None,
        profile: Profile,
        categories: tuple[str, ...],
        known: bool = False,
    ) -> Rejection | None:
        """Everything one event teaches: the profile, co-visitation, trending, value, the
        ranker's feedback; with `known`, the profile only (the rest is learned already)."""
        amount = 0.0
        if event.type == "purchase":
            # Checked before anything changes: state never takes a non-finite number.
            amount = (event.price or 0.0) * event.quantity
            if not math.isfinite(profile.spend + amount):
                return Rejection(
                    "out_of_range",
                    f"purchase of {amount:g} makes the user's spend non-finite",
                    event.event_id,
                    event.type,
                )
        # Co-visitation learns from the session as it was *before* this event.
        session: list[int] = (
            []
            if self.updater.is_new_session(profile, event)
            else self.items.rows(profile.session_item_ids(self.recommender.covisit.window)).tolist()
        )
        # The regression counts the item against the user's newest items before it.
        regression = self.recommender.regression
        recent: list[int] = (
            self.items.rows(profile.recent_item_ids()[-regression.window :]).tolist()
            if regression.on and row is not None
            else []
        )
        sharing = self.sharing
        # Items, value and the ranker's feedback: with sharing, once per source offset across
        # workers and restarts; items and value through one function either way
        # (`item_log.learn`), the one that folds other workers'.
        if not known:
            rec = self.recommender
            rec.observe_user(event)
            example = (
                rec.value.example(profile, amount, event.ts) if event.type == "purchase" else None
            )
            evidence = self._evidence(profile, row)
            if sharing is None:
                learn(rec, row, event.type, event.ts, session, recent, example, evidence)
            else:
                sharing.learn(msg.partition, msg.offset, row, event.type, event.ts, session,
                              example, recent, evidence)  # fmt: skip
        self.updater.update(profile, event, categories)
        return None

    def _evidence(self, profile: Profile, row: int | None) -> np.ndarray | None:
        """The blend tuner's evidence from this event: every candidate weighting's NDCG
        for the user's last list, if the user is sampled and the item is new to them
        (`core/ranking/tuner.py`)."""
        tuner = self.recommender.tuner
        if tuner is None or row is None or not tuner.sampled(profile.user):
            return None
        hashed = self.items.tiebreak[row : row + 1]
        if profile.history.contains(hashed)[0]:
            return None  # had before: no list shows it, none is judged by it
        return tuner.score(profile.user, int(hashed[0]))
