"""Learned item state read back from a worker's snapshot, against an in-process run."""

import time
from pathlib import Path

import numpy as np

from streamrec import serde
from streamrec.build import build_engine, build_recommender
from streamrec.client import read_all, tail
from streamrec.contracts import STOREFRONT_EVENTS
from streamrec.core import snapshot
from streamrec.core.engine import DictProfileStore
from streamrec.core.ingest import RawMessage
from streamrec.settings import Settings

#: Unbounded neighbours: pruning to the strongest is the one part of learning that
#: depends on the order in which workers fold each other's pairs.
UNBOUNDED = {"covisit_max_neighbours": 100_000}


def learned_trending(s: Settings) -> dict[str, float]:
    """Trending scores by item from the worker's snapshot (written at its shutdown)."""
    rec = build_recommender(s)
    path = Path(s.data_dir) / f"{s.app_id}-learned.npz"
    snapshot.restore(rec, *snapshot.from_bytes(path.read_bytes()))
    return by_item(rec)


def by_item(rec) -> dict[str, float]:
    scores = rec.trending.scores(np.arange(len(rec.items)))
    return {i: x for i, x in zip(rec.items.ids, scores.tolist(), strict=True) if x}


def in_process_trending(s: Settings, events) -> dict[str, float]:
    engine = build_engine(s)
    now = int(time.time() * 1000)
    msgs = [
        RawMessage(serde.dumps(e.to_dict()), e.user_id.encode(), 0, i, now)
        for i, e in enumerate(events)
    ]
    engine.process_batch(msgs, DictProfileStore(), now)
    return by_item(engine.recommender)


def assert_same(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    keys = sorted(want)
    np.testing.assert_allclose([got[k] for k in keys], [want[k] for k in keys], rtol=1e-9)


def where_are(s: Settings, events, refs: set[str], ref) -> str:
    """For a failure: where the events without a list are on storefront.events, if at all."""
    ids = [e.event_id.encode() for e in events if ref(e.event_id) in refs]
    consumer = tail(s, STOREFRONT_EVENTS)
    found = [f"{i.decode()} at p{r.partition}@{r.offset}"
             for r in read_all(consumer, 2.0) for i in ids if i in r.value]  # fmt: skip
    consumer.close()
    return f"{len(refs)} events without a list; on the topic: {found or 'none of them'}\n"


def learned_models(rec) -> tuple[dict, dict]:
    """(header, arrays) of every model `rec` learned, as its snapshot holds them: item
    statistics, the factors, the value model, the ranker with its pending offers."""
    header, arrays = snapshot.capture(rec)
    return {k: v for k, v in header.items() if k not in ("format", "version", "categories")}, arrays


def assert_close(got, want, where: str = "") -> None:
    """Equal, floats to 1e-9 (relative), however deep."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(want, np.ndarray):
        got = np.asarray(got)
        assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=where)
        else:
            np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, float):
        assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def worker_models(s: Settings):
    """The learned models in a stopped worker's snapshot (written at its shutdown)."""
    rec = build_recommender(s)
    path = Path(s.data_dir) / f"{s.app_id}-learned.npz"
    snapshot.restore(rec, *snapshot.from_bytes(path.read_bytes()))
    return rec
