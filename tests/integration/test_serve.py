"""`streamrec serve` on the embedded broker, in front of a worker and a scorer (tiny BERT).

Events go in over HTTP and come back as lists over HTTP; similar items and
search use the scorer's item vectors; the replica restarts onto its store and
serves at once; an erased user is gone from it; and no raw user id reaches
anything the service writes.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from streamrec.broker import free_port
from streamrec.client import EventProducer
from streamrec.core.privacy import Pseudonymizer
from streamrec.http_client import RecommendationClient, ServeError
from streamrec.scorer.encoder import model_version

from .test_scorer import ITEMS, publish_catalog, wait_catalog_complete

pytestmark = pytest.mark.integration

READ, WRITE = "read-" + "r" * 20, "write-" + "w" * 20
MARK = "RAWSERVEUSER"


def _client(port: int) -> RecommendationClient:
    return RecommendationClient(f"http://127.0.0.1:{port}", READ, write_key=WRITE)


def _wait_vectors(client: RecommendationClient, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client.similar(ITEMS[0].item_id, k=3)
            return
        except ServeError as exc:
            if exc.status not in (404, 503):
                raise
        time.sleep(0.3)
    raise AssertionError("the service never got item vectors")


def _search(client: RecommendationClient, query: str, timeout_s: float = 30) -> list:
    """A search, retried while the scorer is busy (a loaded machine can miss the first
    deadline; the service then answers 503 until the scorer replies to a probe)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return client.search(query, k=3)
        except ServeError as exc:
            if exc.code != "scorer_unavailable" or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_events_in_lists_out_similar_search_restart_and_erasure(
    make_stack, tiny_model_dir, tmp_path: Path
) -> None:
    stack = make_stack(workers=1, scorers=1, encoder_model_dir=str(tiny_model_dir))
    s = stack.settings
    publish_catalog(s)
    wait_catalog_complete(s, model_version(tiny_model_dir))
    port, store = free_port(), tmp_path / "serve-store"
    keys = {"api_read_keys": READ, "api_write_keys": WRITE, "serve_store_dir": str(store)}
    stack.start_serve(port, **keys)
    alice, bob = f"{MARK}-alice-{uuid.uuid4().hex[:6]}", f"{MARK}-bob-{uuid.uuid4().hex[:6]}"
    with _client(port) as c:
        c.wait_ready(60)
        # Events over HTTP, keyed by user id, answered by the worker, read back over HTTP.
        first = c.track("view", alice, item_id=ITEMS[0].item_id)
        assert first["status"] == "accepted"
        answer = c.send_events(
            [
                {"type": "view", "user_id": alice, "item_id": ITEMS[1].item_id},
                {"type": "view", "user_id": alice},  # no item: rejected, named
                {"type": "search", "user_id": bob, "query": ITEMS[2].title},
            ]
        )
        assert answer["accepted"] == 2 and answer["results"][1]["reason"] == "schema"
        rec = c.wait_for(alice, 30, event_ref=answer["results"][0]["event_ref"])
        assert rec is not None and rec.items and rec.user.startswith("u_")
        assert rec.event_type == "view"
        got_bob = c.wait_for(bob, 30, event_ref=answer["results"][2]["event_ref"])
        assert got_bob is not None and got_bob.event_type == "search"
        doc = c.recommendations(alice, k=3)
        assert doc is not None and len(doc["items"]) <= 3 and doc["age_ms"] >= 0
        assert all("title" in i for i in doc["items"])  # titles from the catalog
        assert c.recommendations("never-seen") is None
        assert c.recommendations("never-seen", fallback="popular")["source"] == "popular"
        # Similar items and search from the scorer's vectors.
        _wait_vectors(c)
        similar = c.similar(ITEMS[0].item_id, k=5)
        assert similar and ITEMS[0].item_id not in [i["item_id"] for i in similar]
        found = _search(c, ITEMS[3].title)
        assert found and all("item_id" in i for i in found)

    # A restart: the replica serves alice at once from its store, then catches up.
    stack.stop_worker(stack.serves.pop())
    with EventProducer(s) as p:
        late = p.track("view", bob, item_id=ITEMS[4].item_id)
    stack.start_serve(port, **keys)
    with _client(port) as c:
        deadline = time.monotonic() + 30
        before = None
        while before is None and time.monotonic() < deadline:
            try:
                before = c.latest(alice)
            except OSError:
                time.sleep(0.1)  # not listening yet
        assert before is not None and before.event_id == rec.event_id
        c.wait_ready(60)
        late_ref = Pseudonymizer(s.resolved_pseudonym_key()).event_id(late.event_id)
        assert c.wait_for(bob, 30, event_ref=late_ref) is not None

        # Erasure reaches the serving store: the user is gone from it.
        with EventProducer(s) as p:
            p.forget(alice, timeout_s=30)
        deadline = time.monotonic() + 20
        while c.recommendations(alice) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.recommendations(alice) is None

    # Nothing the service wrote holds a raw user id: its store files and its log.
    stack.stop_worker(stack.serves.pop())
    written = [f for f in store.rglob("*") if f.is_file()]
    written += list(stack.log_dir.glob("serve-*.log"))
    assert written and any(f.stat().st_size for f in written)
    leaks = [f.name for f in written if MARK.encode() in f.read_bytes()]
    assert not leaks, leaks
