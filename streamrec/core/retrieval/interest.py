"""The user's vectors: a time-decayed interest mix, and the intent of the last search.

* **interest**: the sum of the vectors of items the user interacted with, each
  weighted by event type (view < click < cart < purchase) and decayed with a
  half-life (default 3 days): long-term taste.
* **intent**: the vector of the last search query. Right after a search it
  dominates; its weight halves every `intent_half_life_s` (default 10 min), so
  the user vector drifts back to long-term interest.

Both are kept in one encoder version; when the items switch version the
profile's vectors are dropped (another space) and rebuilt from new events.

>>> import numpy as np
>>> m = InterestModel()
>>> s = UserVectors()
>>> m.add_item(s, np.array([1.0, 0.0]), "click", ts=0, version="v")
>>> m.add_query(s, np.array([0.0, 1.0]), ts=0, version="v")
>>> [round(float(x), 2) for x in m.user_vector(s, now=0, version="v")]  # intent leads
[0.32, 0.95]
>>> [round(float(x), 2) for x in m.user_vector(s, now=3_600_000, version="v")]
[1.0, 0.05]
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from streamrec.core.profile import EVENT_WEIGHTS


@dataclass(slots=True)
class UserVectors:
    """What a profile stores: float16 vectors (base64 in JSON) and their times."""

    version: str | None = None
    interest: np.ndarray | None = None
    interest_ts: int = 0
    intent: np.ndarray | None = None
    intent_ts: int = 0

    def to_dict(self) -> dict[str, object]:
        def enc(v: np.ndarray | None) -> str | None:
            return None if v is None else base64.b64encode(v.astype("<f2").tobytes()).decode()

        return {
            "version": self.version,
            "interest": enc(self.interest),
            "interest_ts": self.interest_ts,
            "intent": enc(self.intent),
            "intent_ts": self.intent_ts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object] | None) -> UserVectors:
        """The stored vectors; unreadable ones (corrupt state) are dropped, never raised."""
        if not d:
            return cls()
        try:
            return cls._decode(d)
        except (ValueError, TypeError, AttributeError):
            return cls()

    @classmethod
    def _decode(cls, d: dict[str, object]) -> UserVectors:

        def dec(s: object) -> np.ndarray | None:
            if not isinstance(s, str):
                return None
            return np.frombuffer(base64.b64decode(s), dtype="<f2").astype(np.float32)

        return cls(
            version=d.get("version"),  # type: ignore[arg-type]
            interest=dec(d.get("interest")),
            interest_ts=int(d.get("interest_ts") or 0),  # type: ignore[call-overload]
            intent=dec(d.get("intent")),
            intent_ts=int(d.get("intent_ts") or 0),  # type: ignore[call-overload]
        )


class InterestModel:
    def __init__(
        self,
        interest_half_life_s: float = 3 * 86_400.0,
        intent_half_life_s: float = 600.0,
        intent_weight: float = 3.0,
    ) -> None:
        self.interest_half_life_ms = interest_half_life_s * 1000.0
        self.intent_half_life_ms = intent_half_life_s * 1000.0
        self.intent_weight = intent_weight

    def _same_space(self, s: UserVectors, version: str) -> None:
        if s.version != version:
            s.version, s.interest, s.intent, s.interest_ts, s.intent_ts = version, None, None, 0, 0

    def add_item(
        self, s: UserVectors, vector: np.ndarray, event_type: str, ts: int, version: str
    ) -> None:
        weight = EVENT_WEIGHTS.get(event_type, 0.0)
        if weight <= 0:
            return
        self._same_space(s, version)
        if s.interest is None:
            s.interest, s.interest_ts = _as_stored(weight * vector), ts
            return
        if ts > s.interest_ts:
            s.interest = s.interest * 0.5 ** ((ts - s.interest_ts) / self.interest_half_life_ms)
            s.interest_ts = ts
        s.interest = s.interest + weight * vector
        # Keep the stored magnitude bounded (float16 on the wire): direction is what counts.
        norm = float(np.linalg.norm(s.interest))
        if norm > 1_000.0:
            s.interest = s.interest * (100.0 / norm)
        s.interest = _as_stored(s.interest)

    def add_query(self, s: UserVectors, vector: np.ndarray, ts: int, version: str) -> None:
        self._same_space(s, version)
        s.intent, s.intent_ts = _as_stored(vector), ts

    def user_vector(self, s: UserVectors, now: int, version: str | None) -> np.ndarray | None:
        """Unit vector for retrieval in `version`, or None without usable vectors."""
        if version is None or s.version != version:
            return None
        out: np.ndarray | None = None
        if s.interest is not None:
            norm = float(np.linalg.norm(s.interest))
            if norm > 0:
                out = s.interest / norm
        if s.intent is not None:
            age = max(0, now - s.intent_ts)
            w = self.intent_weight * 0.5 ** (age / self.intent_half_life_ms)
            out = w * s.intent if out is None else out + w * s.intent
        if out is None:
            return None
        norm = float(np.linalg.norm(out))
        return None if norm == 0 else (out / norm).astype(np.float32)


def _as_stored(v: np.ndarray) -> np.ndarray:
    """Rounded to float16 at every step, as the profile stores it: the vector is the
    same whether or not the profile was saved in between (lists must not depend on
    how events were batched)."""
    return np.asarray(v, dtype=np.float32).astype("<f2").astype(np.float32)
