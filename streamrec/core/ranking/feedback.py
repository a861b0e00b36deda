"""Per-user learning inputs, recorded in order so they can be replayed exactly.

What the online ranker learns from is per-user and short-lived: what each
user was offered (a published list's pool, an impression), then what they
picked among it; the blend tuner's kept shadow tops are too
(`core/ranking/tuner.py`). A worker's snapshot holds the pending offers as of its writing; the
inputs since are recorded here (`FeedbackLog`) and kept by the worker in a
journal beside the snapshot (`worker/ranker_journal.py`). A restarted worker
replays them (`replay`) through the same methods, in the same order, from the
snapshot's state, random draws included: its ranker is then the one it had,
weights, evaluation window and pending offers alike, and the tuner's kept
tops.

>>> import numpy as np
>>> from streamrec.core.ranking.models import FEATURES, OnlineRanker
>>> a, b = (OnlineRanker(min_updates=1, min_positives=1) for _ in range(2))
>>> a.recording = []
>>> x = np.eye(2, len(FEATURES))
>>> a.on_list("u", ["i", "j"], x, ts=0); _ = a.expire(5); _ = a.on_positive("u", "j", ts=10)
>>> replay(b, ops_from_wire(ops_to_wire(a.recording)))
>>> bool(np.array_equal(a.weights(), b.weights())), b.positives
(True, 1)
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from streamrec.core.ranking.models import OnlineRanker
    from streamrec.core.ranking.tuner import BlendTuner

#: One input: ("list" | "impression", user, ts, items, features), ("positive", user,
#: item, ts), ("expire", ts) or ("forget", user) for the ranker; ("shadow", user,
#: generation, tops) or ("scored", user) for the tuner.
Op = tuple[Any, ...]


def replay(ranker: OnlineRanker | None, ops: Sequence[Op], tuner: BlendTuner | None = None) -> None:
    """Feed recorded inputs to `ranker` and `tuner` again, as they first came (not
    recorded again)."""
    parts = [p for p in (ranker, tuner) if p is not None]
    recordings = [p.recording for p in parts]
    for p in parts:
        p.recording = None
    try:
        for op in ops:
            kind = op[0]
            if kind == "shadow":
                if tuner is not None:
                    tuner.keep(op[1], op[2], op[3])
                continue
            if kind == "scored":
                if tuner is not None:
                    tuner.drop(op[1])
                continue
            if ranker is None:
                continue
            if kind == "list":
                ranker.on_list(op[1], op[3], op[4], op[2])
            elif kind == "impression":
                ranker.on_impression(op[1], dict(zip(op[3], op[4], strict=True)), op[2])
            elif kind == "positive":
                ranker.on_positive(op[1], op[2], op[3])
            elif kind == "expire":
                ranker.expire(op[1])
            elif kind == "forget":
                ranker.forget(op[1])
            else:
                raise ValueError(f"unknown ranker input {kind!r}")
    finally:
        for p, recording in zip(parts, recordings, strict=True):
            p.recording = recording


def ops_to_wire(ops: Sequence[Op]) -> list[Any]:
    """JSON-ready: features as exact float64 in base64."""
    out: list[Any] = []
    for op in ops:
        if op[0] in ("list", "impression"):
            x = np.ascontiguousarray(op[4], dtype="<f8")
            out.append([op[0], op[1], op[2], list(op[3]), x.shape[1] if x.ndim == 2 else 0,
                        base64.b64encode(x.tobytes()).decode("ascii")])  # fmt: skip
        elif op[0] == "shadow":
            tops = np.ascontiguousarray(op[3], dtype="<i8")
            out.append(["shadow", op[1], op[2], list(tops.shape),
                        base64.b64encode(tops.tobytes()).decode("ascii")])  # fmt: skip
        else:
            out.append(list(op))
    return out


def ops_from_wire(doc: Sequence[Any]) -> list[Op]:
    out: list[Op] = []
    for op in doc:
        if op[0] in ("list", "impression"):
            kind, user, ts, items, width, data = op
            x = np.frombuffer(base64.b64decode(data), dtype="<f8").copy()
            out.append((kind, user, int(ts), list(items), x.reshape(len(items), width)))
        elif op[0] == "shadow":
            _kind, user, generation, shape, data = op
            tops = np.frombuffer(base64.b64decode(data), dtype="<i8").reshape(shape).copy()
            out.append(("shadow", user, int(generation), tops))
        else:
            out.append(tuple(op))
    return out
