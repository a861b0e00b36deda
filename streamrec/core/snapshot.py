"""Learned state that outlives a process, in an explicit, versioned format.

A snapshot is arrays plus a small JSON header (`.npz`, no pickled objects):

* ``ids``: the item store's ids, in row order (UTF-8, concatenated, with offsets);
  every other array refers to items by these positions, and `restore` maps
  them onto the rows of the store it restores into;
* ``trending.scaled``, ``trending_long.scaled``: decayed popularity per position;
* ``covisit.src`` / ``covisit.dst`` / ``covisit.w``: co-visitation pairs, and the
  same three for ``transitions`` (directed; absent from snapshots written before
  them, which restore with none learned yet);
* ``ranker.eval``: the ranker's recent (ranker score, blend score, label);
* ``factors.q``: the co-visitation graph's factors per position (rows x dim; absent
  from snapshots written before them, which rebuild them at the next refresh);
* ``regression.gram`` / ``regression.b``: the regression's co-occurrence counts
  and its weights as of its last refresh, per position (absent from older
  snapshots, which learn them from the restart on);
* ``tuner.*`` and the header's ``tuner``: the blend tuner's candidate weightings,
  their evidence since the last switch, the switches, and each sampled user's
  kept shadow tops (`core/ranking/tuner.py`);
* ``ranker.offers.*`` / ``ranker.expiry.*``: what users were offered and have not
  answered yet (per offer: user, time, sampling rate, its open items and their
  features by name), so a restarted worker still learns from the clicks on
  lists it published before;
* the header: format name and version, the scalars of those models, and the
  river models' parameters (weights, intercepts, scaler statistics) as JSON.

A format change comes with a migration in `restore` (`migrate_pickled`
reads the pickled `Recommender`s that earlier versions wrote), never with a
crash or a silent reset: an unknown format or version is an error that says so.

>>> from streamrec.core.ranking.recommender import Recommender
>>> from streamrec.records import Event
>>> rec = Recommender()
>>> for i, item in enumerate("abcab"):
...     _ = rec.learn_item(rec.items.row(item), "view", 1_000 + i, [])
>>> header, arrays = capture(rec)
>>> back = Recommender()
>>> restore(back, header, arrays)
>>> back.trending.scores(back.items.rows(["a", "b", "c"])).round(4).tolist()
[2.0, 2.0, 1.0]
"""

from __future__ import annotations

import io
import logging
import pickle
from collections import Counter, deque
from typing import Any

import numpy as np

from streamrec import serde
from streamrec.core.packing import pack_ids, unpack_ids
from streamrec.core.ranking.covisit import CoVisitation
from streamrec.core.ranking.models import FEATURES, Offer, OnlineRanker
from streamrec.core.ranking.popularity import CategoryTop, Trending
from streamrec.core.ranking.recommender import Recommender
from streamrec.errors import SnapshotError

log = logging.getLogger(__name__)
_GRAPH_SETTINGS = ("window", "max_neighbours", "directed", "distance_decay", "type_weights")
_GRAPH_ARRAYS = ("src", "dst", "w")  # and "mass" per position (absent from older snapshots)

FORMAT = "streamrec-learned-state"
VERSION = 1
_TRENDING_ARRAYS = ("scaled", "top_rows", "top_scores", "refreshed")


# -- ids ----------------------------------------------------------------------


# -- river models -----------------------------------------------------------------


def linear_state(model: Any) -> dict[str, Any]:
    """A river linear model's parameters (weights, intercept, optimizer step)."""
    return {
        "weights": dict(model._weights),
        "intercept": float(model.intercept),
        "n_iterations": int(getattr(model.optimizer, "n_iterations", 0)),
    }


def set_linear_state(model: Any, state: dict[str, Any]) -> None:
    model._weights = type(model._weights)({k: float(v) for k, v in state["weights"].items()})
    model.intercept = float(state["intercept"])
    if hasattr(model.optimizer, "n_iterations"):
        model.optimizer.n_iterations = int(state.get("n_iterations", 0))


def _value_state(rec: Recommender) -> dict[str, Any]:
    v = rec.value
    scaler, lin = v.model["StandardScaler"], v.model["LinearRegression"]
    return {
        "linear": linear_state(lin),
        "scaler": {
            "counts": dict(scaler.counts),
            "means": dict(scaler.means),
            "vars": dict(scaler.vars),
        },
        "purchases": v.purchases,
        "max_target": v.max_target,
    }


def _set_value_state(rec: Recommender, state: dict[str, Any]) -> None:
    v = rec.value
    scaler, lin = v.model["StandardScaler"], v.model["LinearRegression"]
    set_linear_state(lin, state["linear"])
    scaler.counts = Counter(state["scaler"]["counts"])
    scaler.means.clear()
    scaler.means.update(state["scaler"]["means"])
    scaler.vars.clear()
    scaler.vars.update(state["scaler"]["vars"])
    v.purchases = int(state["purchases"])
    v.max_target = float(state["max_target"])


def _offers_state(r: OnlineRanker) -> dict[str, np.ndarray]:
    """The ranker's pending offers (what each user was offered and has not answered
    yet: the open items only) and their expiry queue, so a restarted worker still
    learns from clicks on lists published before it stopped."""
    offers = r.open_offers()
    items = [item for _u, o in offers for item in o.open]
    xs = [o.x[list(o.open.values())] for _u, o in offers]
    out = {"offers.ts": np.array([o.ts for _u, o in offers], dtype=np.int64),
           "offers.rate": np.array([o.rate for _u, o in offers], dtype=np.float64),
           "offers.sizes": np.array([len(o.open) for _u, o in offers], dtype=np.int64),
           "offers.x": np.concatenate(xs) if xs else np.zeros((0, len(FEATURES))),
           "expiry.ts": np.array([t for t, _u in r._expiry], dtype=np.int64)}  # fmt: skip
    for name, ids in (("offers.users", [u for u, _o in offers]), ("offers.items", items),
                      ("expiry.users", [u for _t, u in r._expiry])):  # fmt: skip
        out[name], out[f"{name}.ends"] = pack_ids(ids)
    return out


def _set_offers_state(r: OnlineRanker, a: dict[str, np.ndarray], features: list[str]) -> None:
    if "offers.ts" not in a:  # written before offers were kept
        return
    users = unpack_ids(a["offers.users"], a["offers.users.ends"])
    items = unpack_ids(a["offers.items"], a["offers.items.ends"])
    # Columns by feature name: a feature added since the snapshot reads as 0.
    x = np.zeros((len(items), len(FEATURES)))
    for src, name in enumerate(features):
        if name in FEATURES:
            x[:, FEATURES.index(name)] = a["offers.x"][:, src]
    r._pending = {}
    start = 0
    for user, ts, rate, n in zip(users, a["offers.ts"].tolist(), a["offers.rate"].tolist(),
                                 a["offers.sizes"].tolist(), strict=True):  # fmt: skip
        block = Offer(ts, {item: j for j, item in enumerate(items[start : start + n])},
                      x[start : start + n], rate)  # fmt: skip
        r._pending.setdefault(user, deque(maxlen=r.max_offers)).append(block)
        start += n
    expiry_users = unpack_ids(a["expiry.users"], a["expiry.users.ends"])
    r._expiry = deque(zip(a["expiry.ts"].tolist(), expiry_users, strict=True))


def _ranker_state(
    rec: Recommender,
) -> tuple[dict[str, Any] | None, np.ndarray, dict[str, np.ndarray]]:
    r = rec.ranker
    if r is None:
        return None, np.zeros((0, 3)), {}
    header = {
        "linear": linear_state(r.model),
        "positives": r.positives,
        "negatives": r.negatives,
        "ready": r.ready,
        "auc": r.auc,
        "impressions_seen": r.impressions_seen,
        "features": list(FEATURES),
        "rng": [*r._rng.getstate()[1], r._rng.getstate()[0]],
    }
    evals = np.array([(a, b, float(y)) for a, b, y in r._eval], dtype=np.float64)
    return header, evals, _offers_state(r)


def _set_ranker_state(
    rec: Recommender, state: dict[str, Any], evals: np.ndarray, offers: dict[str, np.ndarray]
) -> None:
    r = rec.ranker
    if r is None:
        return
    set_linear_state(r.model, state["linear"])
    r._w = None
    r.positives, r.negatives = int(state["positives"]), int(state["negatives"])
    r._ready, r.auc = bool(state["ready"]), dict(state["auc"])
    # Absent from snapshots written before lists counted as impressions: lists go on
    # counting until the storefront's next impression event.
    r.impressions_seen = bool(state.get("impressions_seen", False))
    if "rng" in state:  # negative sampling goes on where it stopped
        *words, version = state["rng"]
        r._rng.setstate((version, tuple(words), None))
    r._eval = deque(
        ((float(a), float(b), bool(y)) for a, b, y in evals.tolist()), maxlen=r._eval.maxlen
    )
    _set_offers_state(r, offers, list(state.get("features", FEATURES)))


# -- the snapshot -------------------------------------------------------------------


def capture(rec: Recommender) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of everything `rec` learned."""
    ids, ends = pack_ids(rec.items.ids)
    short, long = rec.trending.state(), rec.trending_long.state()
    graphs = {"covisit": rec.covisit.state(), "transitions": rec.transitions.state()}
    ranker, evals, offers = _ranker_state(rec)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "items": len(rec.items),
        "categories": rec.items.category_names,
        "trending": {k: v for k, v in short.items() if k not in _TRENDING_ARRAYS},
        "trending_long": {k: v for k, v in long.items() if k not in _TRENDING_ARRAYS},
        **{name: {k: g[k] for k in _GRAPH_SETTINGS} for name, g in graphs.items()},
        "value": _value_state(rec),
        "ranker": ranker,
        "factors": rec.factors.state(),
        "regression": rec.regression.state(),
    }
    if rec.tuner is not None:
        header["tuner"], tuned = rec.tuner.state()
    else:
        tuned = {}
    arrays: dict[str, np.ndarray] = {
        "ids": ids,
        "ids.ends": ends,
        **{f"trending.{k}": np.asarray(short[k]) for k in _TRENDING_ARRAYS},
        **{f"trending_long.{k}": np.asarray(long[k]) for k in _TRENDING_ARRAYS},
        **{f"{name}.{k}": np.asarray(g[k]) for name, g in graphs.items() for k in _GRAPH_ARRAYS},
        **{f"{name}.mass": _per_position(g["mass"], len(rec.items)) for name, g in graphs.items()},
        "ranker.eval": evals,
        **{f"ranker.{k}": v for k, v in offers.items()},
        "factors.q": rec.factors.q[: len(rec.items)],
        **{f"regression.{k}": v for k, v in rec.regression.arrays(len(rec.items)).items()},
        **{f"tuner.{k}": v for k, v in tuned.items()},
    }
    return header, arrays


def _per_position(column: Any, n: int) -> np.ndarray:
    """A per-row column as exactly `n` positions (rows never touched are 0)."""
    out = np.zeros(n, dtype=np.float64)
    values = np.asarray(column)[:n]
    out[: len(values)] = values
    return out


def restore(rec: Recommender, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Put a snapshot's learned state into `rec`, mapping its items onto `rec`'s rows."""
    if header.get("format") != FORMAT:
        raise SnapshotError(f"not a streamrec snapshot (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise SnapshotError(
            f"snapshot format version {header.get('version')} is not one this streamrec reads "
            f"(it reads {VERSION}); start the worker with an empty data dir to relearn"
        )
    store = rec.items
    rows = store.rows(unpack_ids(arrays["ids"], arrays["ids.ends"]))

    def by_row(saved: np.ndarray) -> np.ndarray:
        at = np.zeros(max(len(store), 1), dtype=np.float64)
        at[rows[: len(saved)]] = saved
        return at

    def trending(name: str) -> Trending:
        top = {"top_rows": rows[arrays[f"{name}.top_rows"]],
               "top_scores": arrays[f"{name}.top_scores"]}  # fmt: skip
        if f"{name}.refreshed" in arrays:  # absent from older snapshots
            top["refreshed"] = by_row(arrays[f"{name}.refreshed"])
        return Trending.from_state(
            {**header[name], "scaled": by_row(arrays[f"{name}.scaled"]), **top}, store
        )

    rec.trending, rec.trending_long = trending("trending"), trending("trending_long")
    # Tops within categories are made from trending as they are asked for (older
    # snapshots' "category.*" arrays are not needed).
    rec.by_category = CategoryTop(rec.trending, store, rec.by_category.n)

    def graph(name: str) -> CoVisitation:
        # What was learned comes from the snapshot; how to learn from now on (window,
        # neighbours, weighting) from the configuration of `rec`, so a changed setting
        # takes effect on restart. The header keeps the snapshot's for the record.
        live = getattr(rec, name).state()
        settings = {k: v for k, v in live.items() if k not in (*_GRAPH_ARRAYS, "mass")}
        src, dst, w = (arrays[f"{name}.{k}"] for k in _GRAPH_ARRAYS)
        mass = None
        if f"{name}.mass" in arrays:
            saved = arrays[f"{name}.mass"]
            mass = np.zeros(max(64, len(store)))
            mass[rows[: len(saved)]] = saved
        return CoVisitation.from_state(
            {**settings, "src": rows[src], "dst": rows[dst], "w": w, "mass": mass}
        )

    rec.covisit = graph("covisit")
    if "transitions" in header:
        rec.transitions = graph("transitions")
    _set_value_state(rec, header["value"])
    # Absent from snapshots written before the factors: they are built at the next
    # refresh point, as on a fresh start.
    rec.factors.restore(header.get("factors", {}), arrays.get("factors.q"), rows)
    gram, b = arrays.get("regression.gram"), arrays.get("regression.b")
    rec.regression.restore(header.get("regression", {}), gram, b, rows)
    if rec.tuner is not None and "tuner" in header:  # absent from older snapshots
        tuned = {k[6:]: v for k, v in arrays.items() if k.startswith("tuner.")}
        rec.tuner.restore(header["tuner"], tuned)
        if rec.ranker is not None:
            rec.ranker.baseline = rec.tuner.blend
    if header.get("ranker") is not None:
        offers = {
            k[7:]: v for k, v in arrays.items() if k.startswith("ranker.") and k != "ranker.eval"
        }
        _set_ranker_state(rec, header["ranker"], arrays["ranker.eval"], offers)


def to_bytes(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    head = np.frombuffer(serde.dumps(header), dtype=np.uint8)
    np.savez(buf, __header__=head, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def from_bytes(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a snapshot file's bytes; SnapshotError if it is not one."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = serde.loads(arrays.pop("__header__").tobytes())
    except Exception as exc:
        raise SnapshotError(f"not a readable snapshot: {exc}") from exc
    return header, arrays


# -- migration from the pickled snapshots of earlier versions ------------------------


class _Pickled:
    """Stands in for a streamrec class while an old pickle is read: keeps its state only."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else state[1] or {})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("streamrec."):
            return _Pickled  # streamrec's own classes: state only, no code of today runs
        return super().find_class(module, name)  # river, numpy, builtins


def migrate_pickled(data: bytes, rec: Recommender) -> None:
    """Learned state from a pickled `Recommender` (snapshots before format 1) into `rec`."""
    old = _Unpickler(io.BytesIO(data)).load()
    d = old.__dict__
    store = rec.items

    def trending(t: Any) -> Trending:
        scaled: dict[str, float] = t._scaled
        rows = store.rows(list(scaled))
        at = np.zeros(max(len(store), 1), dtype=np.float64)
        at[rows] = np.fromiter(scaled.values(), dtype=np.float64, count=len(scaled))
        return Trending.from_state(
            {
                "scaled": at,
                "origin": t._origin,
                "now": t._now,
                "half_life_ms": t.half_life_ms,
                "pool": t.pool,
                "refresh_every": t.refresh_every,
            },
            store,
        )

    rec.trending = trending(d["trending"])
    if "trending_long" in d:
        rec.trending_long = trending(d["trending_long"])
    rec.by_category = CategoryTop(rec.trending, store, rec.by_category.n)
    cov = d["covisit"].__dict__
    pairs = [(a, b, w) for a, nb in cov["_nbrs"].items() for b, w in nb.items()]
    rec.covisit = CoVisitation.from_state(
        {
            "window": cov["window"],
            "max_neighbours": cov["max_neighbours"],
            "src": store.rows([p[0] for p in pairs]),
            "dst": store.rows([p[1] for p in pairs]),
            "w": np.array([p[2] for p in pairs], dtype=np.float64),
        }
    )
    value = d.get("value")
    if value is not None:
        rec.value.model = value.__dict__["model"]
        rec.value.purchases = value.__dict__.get("purchases", 0)
        rec.value.max_target = value.__dict__.get("max_target", 0.0)
    ranker = d.get("ranker")
    if ranker is not None and rec.ranker is not None:
        r = ranker.__dict__
        rec.ranker.model = r["model"]
        rec.ranker.positives, rec.ranker.negatives = r["positives"], r["negatives"]
        rec.ranker._ready, rec.ranker.auc = r.get("_ready", False), r.get("auc", {})
        rec.ranker._eval.extend(r.get("_eval", ()))
        rec.ranker._w = None
    log.info("migrated a pickled recommender snapshot: %s", rec.stats())
