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
refresh points count learned events, so lists do not depend on how the
events were batched, and items are factored in the order of their ids'
hashes, not of their rows, so the same graph gives the same factors in
every process.

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

import numpy as np

from streamrec.core.ranking.covisit import CoVisitation

log = logging.getLogger(__name__)


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
    ) -> None:
        self.dim = dim
        self.every = max(1, every)
        self.iterations = iterations
        self.cold_iterations = cold_iterations
        self.seed = seed
        #: How many of the user's newest items make the user's factor vector.
        self.history = history
        #: A refresh runs inside a batch: past this many pairs (a catalog of some
        #: 100k items or more) it would stall the worker, so the factors are not
        #: refreshed and `skipped` counts it (a background refresh is the way there).
        self.max_pairs = max_pairs
        self.skipped = 0
        #: rows x dim; empty until the first refresh (the feature is 0 until then)
        self.q = np.zeros((0, dim), dtype=np.float64)
        self.learned = 0
        self.refreshes = 0

    def on_learned(
        self, graph: CoVisitation, rows: int, n: int = 1, key: np.ndarray | None = None
    ) -> bool:
        """`n` events were learned into `graph` (by this worker, or by another and folded
        in); refresh when the count passes a multiple of `every` (`key`: see `refresh`)."""
        if self.dim <= 0:
            return False
        before = self.learned
        self.learned += n
        if self.learned // self.every == before // self.every:
            return False
        self.refresh(graph, rows, key)
        return True

    def refresh(self, graph: CoVisitation, rows: int, key: np.ndarray | None = None) -> None:
        """Subspace iteration on `graph` over item-store rows [0, rows).

        The items of the graph are taken in the order of `key` (per row: the item
        store's tiebreak, a hash of the item id), not of rows: rows are handed out
        in the order a process meets items, so two processes, or one before and
        after a restart, number them differently. In `key` order the same graph
        gives the same factors, bit for bit, in every process.
        """
        from scipy.linalg import qr
        from scipy.sparse import csr_matrix

        if self.dim <= 0:
            return
        src, dst, w = graph.pair_arrays()
        if len(w) > self.max_pairs:
            if not self.skipped:
                log.warning(
                    "co-visitation factors not refreshed: %d pairs is more than %d to factor "
                    "inside a batch; the factors feature keeps its last values (0 if none). "
                    "Set STREAMREC_FACTORS_DIM=0 to turn it off",
                    len(w),
                    self.max_pairs,
                )
            self.skipped += 1
            return
        inside = (src < rows) & (dst < rows)
        src, dst, w = src[inside], dst[inside], w[inside]
        nodes = np.unique(np.concatenate([src, dst]))
        if len(nodes) <= 2 * self.dim:
            return  # too few items for `dim` factors: the feature stays 0
        if key is not None:
            nodes = nodes[np.argsort(key[nodes], kind="stable")]
        at = np.zeros(rows, dtype=np.int64)
        at[nodes] = np.arange(len(nodes))
        n = len(nodes)
        c = csr_matrix((w, (at[src], at[dst])), shape=(n, n))
        c = c + c.T  # pruning keeps a pair on one side only: make it symmetric
        c.sort_indices()  # each row's sum in one order, whatever order the pairs came in
        if len(self.q) and self.refreshes:
            q = np.zeros((n, self.dim))
            known = nodes < len(self.q)
            q[known] = self.q[nodes[known]]
            steps = self.iterations
        else:
            q = np.random.default_rng(self.seed).standard_normal((n, self.dim))
            steps = self.cold_iterations
        for _ in range(steps):
            # SciPy's economic QR: the same LAPACK result, bit for bit, as numpy's, in
            # 3.8 ms instead of 8.3 at 10k x 32 (one thread); a refresh runs inside a batch.
            q, _r = qr(c @ q, mode="economic", check_finite=False)
        self.q = np.zeros((rows, self.dim))
        self.q[nodes] = q
        self.refreshes += 1

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
        return {"dim": self.dim, "learned": self.learned, "refreshes": self.refreshes}

    def stats(self) -> dict[str, int]:
        return {"dim": self.dim, "refreshes": self.refreshes, "skipped": self.skipped,
                "items": len(self.q)}  # fmt: skip

    def restore(self, state: dict[str, object], q: np.ndarray | None, rows: np.ndarray) -> None:
        """A snapshot's counters and factors (rows of `q` by snapshot position, put at
        `rows`); factors of another `dim` are dropped, to be rebuilt at the next refresh."""
        self.learned = int(state.get("learned", 0))  # type: ignore[call-overload]
        if q is None or q.ndim != 2 or q.shape[1] != self.dim or not len(q):
            self.q = np.zeros((0, self.dim))
            self.refreshes = 0
            return
        out = np.zeros((int(rows[: len(q)].max()) + 1, self.dim))
        out[rows[: len(q)]] = q
        self.q = out
        self.refreshes = int(state.get("refreshes", 1))  # type: ignore[call-overload]
