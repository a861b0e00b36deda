"""Item factors of the co-visitation graph: what goes with everything a user did.

Co-visitation answers "what goes with these 20 items", one anchor at a time.
The factors answer "what goes with all of this user's recent items" through
the graph's dominant subspace: `q` (rows x `dim`, orthonormal columns) spans
the leading eigenvectors of the symmetric co-visitation matrix C. A user is
the sum of their recent items' rows of `q`; a candidate's score is its row's
dot product with that sum, i.e. the sum over the user's items of
(q q^T)[item, candidate], a low-rank, smoothed C. Items never co-visited with
the user's own can score through the items they share neighbours with (the
idea of PureSVD, on the graph streamrec keeps anyway: no user x item matrix).

Refreshing is subspace iteration, `q <- orth(C q)`: every `every` learned
events, `iterations` steps from the previous `q`, so the factors follow a
changing graph at a bounded cost (nnz(C) x dim per step); the first refresh
starts from a seeded random `q` and takes `cold_iterations`. The scores
depend on the subspace only (q q^T does not change when the basis rotates),
and refresh points count learned events, so lists do not depend on how the
events were batched.

>>> from streamrec.core.ranking.covisit import CoVisitation
>>> g = CoVisitation(window=1, max_neighbours=10)
>>> for a, b in [(0, 1), (1, 2), (3, 4), (4, 5)] * 3:
...     g.add(b, [a], 1.0)
>>> f = GraphFactors(dim=2, every=1)
>>> f.refresh(g, 6)
>>> s = f.scores(np.array([2, 5]), np.array([0]))  # the user had item 0
>>> bool(s[0] > s[1])  # 2 is in 0's part of the graph, 5 is not
True
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from streamrec.core.ranking.covisit import CoVisitation

log = logging.getLogger(__name__)


def _run(job: Callable[[], np.ndarray], box: dict[str, Any]) -> None:
    try:
        box["q"] = job()
    except Exception as exc:  # reported where the result is installed
        box["error"] = exc


class GraphFactors:
    def __init__(
        self,
        dim: int = 32,
        every: int = 5_000,
        iterations: int = 2,
        cold_iterations: int = 20,
        seed: int = 0,
        max_pairs: int = 5_000_000,
        history: int = 5,
        background: bool = True,
    ) -> None:
        self.dim = dim
        self.every = max(1, every)
        self.iterations = iterations
        self.cold_iterations = cold_iterations
        self.seed = seed
        #: How many of the user's newest items make the user's factor vector.
        self.history = history
        #: Past this many pairs (a catalog of some 100k items or more) a refresh takes
        #: seconds, longer than the events between two refresh points: the factors are
        #: not refreshed and `skipped` counts it.
        self.max_pairs = max_pairs
        #: Refresh on a thread (sparse products and QR release the GIL), installed
        #: `lag` learned events later, so no batch waits for it.
        self.background = background
        #: Learned events between a background refresh's start and its install: a
        #: quarter period (0.25-0.5 s of events at 2-4k/s for a 20-40 ms refresh).
        #: Waiting a whole period left the factors stale at the end of a log, and
        #: leave-last-out NDCG@10 on ml-100k's validation half fell 2.3%.
        self.lag = max(1, self.every // 4)
        self.due = 0
        self.skipped = 0
        self.failed = 0
        #: rows x dim; empty until the first refresh (the feature is 0 until then)
        self.q = np.zeros((0, dim), dtype=np.float64)
        self.learned = 0
        self.refreshes = 0
        #: The refresh under way (its thread, None once done, and its result box).
        self._pending: tuple[threading.Thread | None, dict[str, Any]] | None = None

    def on_learned(self, graph: CoVisitation, rows: int) -> bool:
        """One event was learned into `graph`; refresh at every `every`-th.

        In the background, a refresh is installed `lag` learned events after its
        point (or at the next point, if that comes first): counted in events, so
        lists are the same whatever the batching.
        """
        if self.dim <= 0:
            return False
        self.learned += 1
        if self._pending is not None and self.learned >= self.due:
            self._install()
        if self.learned % self.every:
            return False
        if not self.background:
            self.refresh(graph, rows)
            return True
        self._install()
        job = self._job(graph, rows)
        if job is not None:
            box: dict[str, Any] = {}
            thread = threading.Thread(
                target=_run, args=(job, box), name="streamrec-factors", daemon=True
            )
            thread.start()
            self._pending = (thread, box)
            self.due = self.learned + self.lag
        return True

    def refresh(self, graph: CoVisitation, rows: int) -> None:
        """Subspace iteration on `graph` over item-store rows [0, rows), now."""
        job = self._job(graph, rows)
        if job is not None:
            box: dict[str, Any] = {}
            _run(job, box)
            self._set(box)

    def pending(self) -> np.ndarray | None:
        """The factors a background refresh is computing (waits for them), for a
        snapshot: restored, they are installed at the same learned event."""
        if self._pending is None:
            return None
        thread, box = self._pending
        if thread is not None:
            thread.join()
        q = box.get("q")
        return q if isinstance(q, np.ndarray) else None

    def _install(self) -> None:
        if self._pending is not None:
            thread, box = self._pending
            self._pending = None
            if thread is not None:
                thread.join()
            self._set(box)

    def _set(self, box: dict[str, Any]) -> None:
        if "q" in box:
            self.q = box["q"]
            self.refreshes += 1
            return
        self.failed += 1  # keep the last factors: a failed refresh must not cost events
        log.error("co-visitation factors refresh failed; keeping the last ones: %r", box["error"])

    def _job(self, graph: CoVisitation, rows: int) -> Callable[[], np.ndarray] | None:
        """The refresh of `graph` as it is now (its pairs are read here, on the caller's
        thread), to run anywhere; None for none."""
        if self.dim <= 0 or rows <= 2 * self.dim:
            return None  # too few items for `dim` factors: the feature stays 0
        src, dst, w = graph.pair_arrays()
        if len(w) > self.max_pairs:
            if not self.skipped:
                log.warning(
                    "co-visitation factors not refreshed: %d pairs is more than %d to factor "
                    "between two refresh points; the factors feature keeps its last values "
                    "(0 if none). Set STREAMREC_FACTORS_DIM=0 to turn it off",
                    len(w),
                    self.max_pairs,
                )
            self.skipped += 1
            return None
        warm = self.q if len(self.q) and self.refreshes else None
        dim, seed = self.dim, self.seed
        steps = self.iterations if warm is not None else self.cold_iterations

        def job() -> np.ndarray:
            from scipy.sparse import csr_matrix

            inside = (src < rows) & (dst < rows)
            c = csr_matrix((w[inside], (src[inside], dst[inside])), shape=(rows, rows))
            c = c + c.T  # pruning keeps a pair on one side only: make it symmetric
            if warm is not None:
                q = np.zeros((rows, dim))
                q[: min(rows, len(warm))] = warm[:rows]
            else:
                q = np.random.default_rng(seed).standard_normal((rows, dim))
            for _ in range(steps):
                q, _r = np.linalg.qr(c @ q)
            return q

        return job

    def scores(self, rows: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """Per candidate row, its factor score for a user with `recent` rows (oldest
        first; the newest `history` of them count), divided by the best candidate's
        (so at most 1; below 0 where the factors say "unlike", down to -1)."""
        q = self.q
        if not len(q) or not len(recent) or not len(rows):
            return np.zeros(len(rows))
        newest = recent[-self.history :]  # `recent` is oldest first
        n = len(q)
        user = (q[newest] if newest.max() < n else q[newest[newest < n]]).sum(axis=0)
        if rows.max() < n:  # the usual case: every row existed at the last refresh
            out = q[rows] @ user
        else:
            known = rows < n
            out = np.zeros(len(rows))
            out[known] = q[rows[known]] @ user
        top = out.max()
        return np.maximum(out / top, -1.0) if top > 0 else np.zeros(len(rows))

    # -- state ----------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {"dim": self.dim, "learned": self.learned, "refreshes": self.refreshes,
                "due": self.due}  # fmt: skip

    def stats(self) -> dict[str, int]:
        return {"dim": self.dim, "refreshes": self.refreshes, "skipped": self.skipped,
                "failed": self.failed, "items": len(self.q)}  # fmt: skip

    def restore(
        self,
        state: dict[str, object],
        q: np.ndarray | None,
        rows: np.ndarray,
        pending: np.ndarray | None = None,
    ) -> None:
        """A snapshot's counters and factors (rows of `q` by snapshot position, put at
        `rows`), and those a background refresh was computing (installed at the next
        refresh point); factors of another `dim` are dropped, to be rebuilt."""
        self.learned = int(state.get("learned", 0))  # type: ignore[call-overload]
        self.due = int(state.get("due", 0))  # type: ignore[call-overload]
        later = self._mapped(pending, rows)
        self._pending = (None, {"q": later}) if later is not None else None
        now = self._mapped(q, rows)
        if now is None:
            self.q = np.zeros((0, self.dim))
            self.refreshes = 0
            return
        self.q = now
        self.refreshes = int(state.get("refreshes", 1))  # type: ignore[call-overload]

    def _mapped(self, q: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
        if q is None or q.ndim != 2 or q.shape[1] != self.dim or not len(q):
            return None
        out = np.zeros((int(rows[: len(q)].max()) + 1, self.dim))
        out[rows[: len(q)]] = q
        return out
