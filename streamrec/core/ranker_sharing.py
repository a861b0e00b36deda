"""The online ranker shared by every worker: what each one's learning changed, added by all.

Each worker's river ranker learns from the lists its own partitions published.
Two ways to make N of them learn as one, both measured by
`scripts/ranker_sharing.py` (docs/scaling.md):

* ``sum`` (summed updates, the default): a worker publishes the change its own
  SGD steps made to the weights and intercept since its last record, and
  every worker adds every other worker's change, once (by worker and sequence
  number). All workers then take every worker's steps, a few batches late:
  asynchronous SGD.
* ``average`` (periodic model averaging): a worker publishes its parameters;
  each worker sets its own to the mean of the latest of every worker's,
  weighted by the examples each has learned.

Records carry feature names, so a worker with another feature set maps them
by name (a feature it lacks is ignored). The decision to rank with the model
(`OnlineRanker.ready`) stays each worker's own, on its own judged examples.

>>> from streamrec.core.ranking.models import OnlineRanker
>>> import numpy as np
>>> a, b = OnlineRanker(), OnlineRanker()
>>> share_a, share_b = RankerSharing(a, "w1"), RankerSharing(b, "w2")
>>> x = np.ones(len(FEATURES))
>>> a.learn_pair(x, 0 * x)
>>> share_b.fold(RankerDelta.from_dict(share_a.take().to_dict()))
'applied'
>>> bool(np.allclose(b.weights(), a.weights()))
True
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.core.ranking.models import FEATURES, OnlineRanker
from streamrec.errors import DeltaError

MODES = ("sum", "average", "off")
#: The wire format of every record on the shared-state topic (item deltas too);
#: a reader refuses others with a clear message.
DELTA_VERSION = 1


@dataclass(frozen=True, eq=False)
class RankerDelta:
    """One worker's ranker record: a change of the parameters (sum) or the parameters."""

    by: str
    seq: int
    mode: str
    features: tuple[str, ...]
    #: one per feature, then the intercept
    params: np.ndarray
    updates: int

    @property
    def key(self) -> bytes:
        return f"ranker/{self.by}".encode()

    def to_bytes(self) -> bytes:
        return serde.dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        raw = np.ascontiguousarray(self.params, dtype="<f8").tobytes()
        return {"v": DELTA_VERSION, "kind": "ranker", "by": self.by, "seq": self.seq,
                "mode": self.mode, "features": list(self.features),
                "params": base64.b64encode(raw).decode(), "updates": self.updates}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankerDelta:
        if d.get("v") != DELTA_VERSION:
            raise DeltaError(f"shared ranker record of format {d.get('v')!r}; this streamrec "
                             f"reads {DELTA_VERSION}: upgrade every worker")  # fmt: skip
        try:
            params = np.frombuffer(base64.b64decode(d["params"]), dtype="<f8").copy()
            features = tuple(str(f) for f in d["features"])
            delta = cls(str(d["by"]), int(d["seq"]), str(d.get("mode", "sum")), features,
                        params, int(d["updates"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise DeltaError(f"malformed shared ranker record: {exc!r}") from exc
        if len(delta.params) != len(delta.features) + 1 or not np.isfinite(params).all():
            raise DeltaError("malformed shared ranker record: parameters do not match features")
        return delta


class RankerSharing:
    """One worker's side of the shared ranker (`mode` "sum" or "average")."""

    def __init__(self, ranker: OnlineRanker, by: str, mode: str = "sum") -> None:
        if mode not in MODES:
            raise ValueError(f"ranker sharing mode must be one of {MODES}, not {mode!r}")
        self.ranker = ranker
        self.by = by
        self.mode = mode
        self.seq = 0
        #: the parameters as of the last record taken or folded: own learning is the rest
        self._base = self._params()
        self._updates_base = ranker.updates
        #: worker -> the last sequence number applied from it
        self._applied: dict[str, int] = {}
        #: average: worker -> (its latest parameters, examples learned)
        self._latest: dict[str, tuple[np.ndarray, int]] = {}

    def rebase(self) -> None:
        """The parameters now are not this worker's learning: they came from a snapshot."""
        self._base, self._updates_base = self._params(), self.ranker.updates

    def state(self) -> dict[str, Any]:
        """What a snapshot must keep: the last record applied from each worker (this
        one's own included), so a state restored from it never applies them twice."""
        return {"applied": {**self._applied, self.by: self.seq}}

    def restore(self, state: dict[str, Any] | None) -> None:
        """After the ranker's parameters were restored from a snapshot with `state`."""
        self._applied = {str(k): int(v) for k, v in (state or {}).get("applied", {}).items()}
        self._applied.pop(self.by, None)
        self.rebase()

    def absorb(self, workers: set[str]) -> None:
        """Every record of `workers` is in this ranker already (this worker before a
        restart, whose inputs it replayed from its journal): never apply one."""
        for by in workers - {self.by}:
            self._applied[by] = 2**62

    def _params(self) -> np.ndarray:
        return np.append(self.ranker.weights(), float(self.ranker.model.intercept))

    def _set(self, params: np.ndarray) -> None:
        weights = self.ranker.model._weights
        for name, value in zip(FEATURES, params[:-1].tolist(), strict=True):
            weights[name] = value
        self.ranker.model.intercept = float(params[-1])
        self.ranker._w = None

    def take(self) -> RankerDelta | None:
        """What this worker's ranker learned since the last record (None: nothing)."""
        if self.mode == "off" or self.ranker.updates == self._updates_base:
            return None
        now = self._params()
        payload = now - self._base if self.mode == "sum" else now
        updates = self.ranker.updates - self._updates_base if self.mode == "sum" else (
            self.ranker.updates
        )  # fmt: skip
        self._base, self._updates_base = now, self.ranker.updates
        self.seq += 1
        return RankerDelta(self.by, self.seq, self.mode, FEATURES, payload, updates)

    def fold(self, delta: RankerDelta) -> str:
        """Apply another worker's record once: 'applied', or 'known' (own, or seen)."""
        if delta.by == self.by or delta.seq <= self._applied.get(delta.by, 0):
            return "known"
        self._applied[delta.by] = delta.seq
        theirs = np.zeros(len(FEATURES) + 1)
        at = {name: i for i, name in enumerate(FEATURES)}
        for j, name in enumerate(delta.features):
            if name in at:
                theirs[at[name]] = delta.params[j]
        theirs[-1] = delta.params[-1]
        if delta.mode == "sum":
            self._set(self._params() + theirs)
            self._base = self._base + theirs
        else:
            self._latest[delta.by] = (theirs, delta.updates)
            own = (self._params(), self.ranker.updates)
            weights = np.array([max(1, n) for _p, n in [own, *self._latest.values()]], float)
            stacked = np.stack([p for p, _n in [own, *self._latest.values()]])
            mean = weights @ stacked / weights.sum()
            self._set(mean)
            self._base = mean
        return "applied"
