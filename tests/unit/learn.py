"""Teach a recommender one event the way the engine does (`Engine._learn`)."""

from __future__ import annotations

from collections.abc import Sequence

from streamrec.core.ranking.recommender import Recommender
from streamrec.records import Event


def observe(
    rec: Recommender,
    event: Event,
    row: int | None,
    session_rows: Sequence[int] = (),
    recent_rows: Sequence[int] = (),
) -> None:
    """The user's feedback on what they were offered, then the item's statistics."""
    rec.observe_user(event)
    if row is not None:
        rec.learn_item(row, event.type, event.ts, session_rows, recent_rows)
