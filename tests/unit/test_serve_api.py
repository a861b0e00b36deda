"""`streamrec serve`'s API in process: a real HTTP server over a real store, no broker.

The state is filled the way the follower fills it (lists into the store,
catalog records, item vectors, events for popularity, metrics windows); the
producer and the scorer are plain callables.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from streamrec import serde
from streamrec.core.batch import QueryVectors
from streamrec.core.privacy import Pseudonymizer
from streamrec.http_client import RecommendationClient, ServeError
from streamrec.keys import DEV_PSEUDONYM_KEY
from streamrec.records import CatalogItem, MetricsWindow, RecItem, Recommendation
from streamrec.serve.api import Service, build_app
from streamrec.serve.app import make_ingestor
from streamrec.serve.http import Keys
from streamrec.serve.openapi import spec
from streamrec.serve.state import ServingState
from streamrec.serve.store import ListStore
from streamrec.settings import Settings

READ, WRITE = "r" * 20, "w" * 20


def _now() -> int:
    """Now, when asked: a module-level constant would be minutes old by the time a
    test runs in a long session (ages are measured against the clock)."""
    return int(time.time() * 1000)


@dataclass
class Served:
    url: str
    state: ServingState
    sent: list[tuple[bytes, bytes]] = field(default_factory=list)
    scorer_up: list[bool] = field(default_factory=lambda: [True])

    def client(self, key: str | None = READ) -> RecommendationClient:
        return RecommendationClient(self.url, key, write_key=WRITE)

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        out = (r.status, dict(r.getheaders()), r.read())
        conn.close()
        return out


def _publish(state: ServingState, user_id: str, items: list[RecItem], offset: int) -> None:
    user = state.pseudonymize(user_id)
    now = _now()
    rec = Recommendation(
        user,
        tuple(items),
        "m1",
        "e_ref",
        "view",
        now - 5_000,
        now - 4_000,
        now - 3_000,
        encoder_version="enc@1",
        variant="A",
    )
    state.lists.apply([(user.encode(), serde.dumps(rec.to_dict()))], "recs", {0: offset})


def _fill(state: ServingState) -> None:
    now = _now()
    shoes = ("Shoes", "Running")
    catalog = [
        CatalogItem("run-1", "Trail runner", shoes, price=90.0),
        CatalogItem("run-2", "Road runner", shoes, price=60.0),
        CatalogItem("run-3", "Budget runner", shoes, price=30.0),
        CatalogItem("book-1", "Running book", ("Books",), price=12.0),
        CatalogItem("gone", "Sold out shoe", shoes, price=50.0, available=False),
    ]
    for item in catalog:
        state.upsert_item(item)
    vecs = {
        "run-1": [1, 0, 0],
        "run-2": [0.9, 0.1, 0],
        "run-3": [0.8, 0.3, 0],
        "gone": [0.95, 0.05, 0],
        "book-1": [0, 0, 1],
    }
    for item_id, v in vecs.items():
        vec = np.asarray(v, dtype=np.float32)
        state.vectors.upsert(item_id, "enc@1", vec / np.linalg.norm(vec))
    state.vectors.mark_complete("enc@1", 0, now)
    items = [
        RecItem(
            i,
            1.0 - n / 10,
            "co-visited with run-1",
            ("covisit",),
            (("covisit", 0.7),),
            category=c,
            price=p,
        )
        for n, (i, c, p) in enumerate(
            [("run-2", "Running", 60.0), ("book-1", "Books", 12.0), ("run-3", "Running", 30.0)]
        )
    ]
    _publish(state, "alice", items, 1)
    views = [
        {"type": "view", "item_id": i, "ts": now - 1000 * n}
        for n, i in enumerate(["run-3"] * 5 + ["book-1"] * 3 + ["run-1"] * 2 + ["gone"] * 9)
    ]
    state.count_events([serde.dumps(v) for v in views] + [b"not json", None])
    window = MetricsWindow(
        "w1",
        now - 20_000,
        now - 10_000,
        {"in": 100, "valid": 98, "dlq": 2, "duplicates": 0},
        {"view": 100},
        events_per_s=10.0,
    )
    state.health.add("metrics", serde.dumps(window.to_dict()))


def _serve(state: ServingState, keys: Keys, served: Served, **kw: Any) -> tuple[str, Any]:
    async def send(events: list[tuple[bytes, bytes]]) -> None:
        served.sent.extend(events)

    async def embed(texts: list[str], version: str | None) -> QueryVectors | None:
        if not served.scorer_up[0]:
            return None
        vec = np.asarray([[1.0, 0.05, 0.0]] * len(texts), dtype=np.float32)
        return QueryVectors(version or "enc@1", texts, vec, np.ones(len(texts), bool))

    settings = Settings.from_env({})
    service = Service(
        state, make_ingestor(settings, state.pseudonymize), send, embed, default_k=20, max_batch=50
    )
    app = build_app(service, keys, cors_origins="https://shop.example", max_body_bytes=64_000, **kw)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set()
        return runner

    runner = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    state = ServingState(
        ListStore(tmp_path / "store"),
        Pseudonymizer(DEV_PSEUDONYM_KEY.encode()),
        embedding_partitions=1,
        hnsw_above=50_000,
        trending_half_life_s=3600,
    )
    _fill(state)
    out = Served("", state)
    out.url, stop = _serve(state, Keys(frozenset({READ}), frozenset({WRITE})), out)
    yield out
    stop()
    state.lists.close()


def test_a_users_list_filtered_titled_and_aged(served: Served) -> None:
    with served.client() as c:
        doc = c.recommendations("alice")
        assert doc is not None and doc["source"] == "list" and doc["variant"] == "A"
        assert [i["item_id"] for i in doc["items"]] == ["run-2", "book-1", "run-3"]
        assert doc["items"][0]["title"] == "Road runner"
        assert doc["items"][0]["features"] == {"covisit": 0.7}
        assert 2_000 < doc["age_ms"] < 60_000
        assert doc["user"].startswith("u_") and "alice" not in serde.dumps(doc).decode()
        cheap = c.recommendations("alice", category="Running", max_price=40)
        assert cheap is not None and [i["item_id"] for i in cheap["items"]] == ["run-3"]
        rest = c.recommendations("alice", k=1, exclude=["run-2"])
        assert rest is not None and [i["item_id"] for i in rest["items"]] == ["book-1"]
        rec = c.latest("alice")
        assert isinstance(rec, Recommendation) and rec.item_ids == ["run-2", "book-1", "run-3"]


def test_an_unknown_user_is_404_or_popular_on_request(served: Served) -> None:
    status, _, body = served.raw(
        "GET", "/v1/users/bob/recommendations", headers={"Authorization": f"Bearer {READ}"}
    )
    assert status == 404 and serde.loads(body)["error"] == "unknown_user"
    assert "fallback=popular" in serde.loads(body)["detail"]
    with served.client() as c:
        assert c.recommendations("bob") is None
        doc = c.recommendations("bob", fallback="popular", k=3)
        assert doc is not None and doc["source"] == "popular"
        # "gone" was viewed most but is unavailable: never offered
        assert [i["item_id"] for i in doc["items"]] == ["run-3", "book-1", "run-1"]
        books = c.recommendations("bob", fallback="popular", category="Books")
        assert books is not None and [i["item_id"] for i in books["items"]] == ["book-1"]
        assert [i["item_id"] for i in c.popular(k=2)] == ["run-3", "book-1"]


def test_similar_items_leave_out_the_item_and_unavailable_ones(served: Served) -> None:
    with served.client() as c:
        sim = c.similar("run-1", k=3)
        assert [i["item_id"] for i in sim] == ["run-2", "run-3", "book-1"]
        assert sim[0]["title"] == "Road runner" and sim[0]["score"] > sim[1]["score"]
        assert [i["item_id"] for i in c.similar("run-1", k=3, max_price=50)] == ["run-3", "book-1"]
        with pytest.raises(ServeError) as err:
            c.similar("no-such-item")
        assert err.value.status == 404 and err.value.code == "unknown_item"


def test_search_through_the_scorer_and_a_clear_503_without_one(served: Served) -> None:
    with served.client() as c:
        assert [i["item_id"] for i in c.search("trail shoes", k=2)] == ["run-1", "run-2"]
        served.scorer_up[0] = False
        with pytest.raises(ServeError) as err:
            c.search("trail shoes")
        assert err.value.status == 503 and err.value.code == "scorer_unavailable"
        with pytest.raises(ServeError) as err:
            c.search("")
        assert err.value.status == 400


def test_events_batch_accepts_the_valid_and_names_the_rejected(served: Served) -> None:
    now = _now()
    batch = [
        {"type": "view", "user_id": "carol", "item_id": "run-1"},  # id and ts filled in
        {"type": "teleport", "user_id": "carol"},
        {
            "type": "purchase",
            "user_id": "carol",
            "item_id": "run-1",
            "price": 90.0,
            "event_id": "p1",
            "ts": now,
        },
        {"type": "view", "user_id": "carol", "item_id": "x", "event_id": "t", "ts": 12},
        "not an object",
    ]
    with served.client() as c:
        answer = c.send_events(batch)
    assert answer["accepted"] == 2 and answer["rejected"] == 3
    status = [(r["status"], r.get("reason")) for r in answer["results"]]
    assert status == [
        ("accepted", None),
        ("rejected", "schema"),
        ("accepted", None),
        ("rejected", "bad_timestamp"),
        ("rejected", "not_object"),
    ]
    assert "teleport" in answer["results"][1]["detail"]
    assert answer["results"][2]["event_ref"] == served.state.pseudonymize.event_id("p1")
    assert [k for k, _ in served.sent] == [b"carol", b"carol"]  # keyed by the raw user id
    sent = [serde.loads(v) for _, v in served.sent]
    assert sent[0]["event_id"] and sent[0]["ts"] >= now and sent[1]["event_id"] == "p1"
    served.sent.clear()
    with served.client() as c:  # nothing valid: 400, with the reasons
        bad = c.send_events([{"type": "view"}])
    assert bad["accepted"] == 0 and bad["results"][0]["reason"] == "schema"
    assert not served.sent


def test_bad_bodies_and_parameters_are_400_413_with_a_reason(served: Served) -> None:
    auth = {"Authorization": f"Bearer {WRITE}", "Content-Type": "application/json"}
    status, _, body = served.raw("POST", "/v1/events", b"{nope", auth)
    assert status == 400 and serde.loads(body)["error"] == "not_json"
    status, _, body = served.raw("POST", "/v1/events", b"[]", auth)
    assert status == 400 and serde.loads(body)["error"] == "bad_body"
    status, _, body = served.raw("POST", "/v1/events", b"[" + b"1," * 40_000 + b"1]", auth)
    assert status == 413 and serde.loads(body)["error"] == "too_large"
    many = serde.dumps([{"type": "view"}] * 51)
    status, _, body = served.raw("POST", "/v1/events", many, auth)
    assert status == 413 and serde.loads(body)["error"] == "too_many"
    read = {"Authorization": f"Bearer {READ}"}
    for query in (
        "k=0",
        "k=abc",
        "min_price=-1",
        "min_price=5&max_price=1",
        "fallback=x",
        "max_price=nan",
    ):
        status, _, body = served.raw("GET", f"/v1/users/alice/recommendations?{query}", None, read)
        assert status == 400 and serde.loads(body)["error"] == "bad_parameter", query


def test_keys_are_required_and_separate_for_reads_and_writes(served: Served) -> None:
    path = "/v1/users/alice/recommendations"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {WRITE}"},
        {"Authorization": READ},
    ):
        status, _, body = served.raw("GET", path, None, headers)
        assert status == 401 and serde.loads(body) == {
            "error": "unauthorized",
            "detail": "send a valid read key as `Authorization: Bearer KEY` "
            "(STREAMREC_API_READ_KEYS)",
        }
    event = serde.dumps({"type": "view", "user_id": "u", "item_id": "i"})
    status, _, _ = served.raw("POST", "/v1/events", event, {"Authorization": f"Bearer {READ}"})
    assert status == 401 and not served.sent
    for path in ("/openapi.json", "/ui", "/metrics", "/readyz", "/docs", "/v1/health"):
        assert served.raw("GET", path)[0] == 401, path
        assert served.raw("GET", path, None, {"Authorization": f"Bearer {READ}"})[0] == 200, path
    assert served.raw("GET", "/healthz")[0] == 200
    # The page: ?key= once, then a cookie (GET only) instead of the header.
    status, headers, _ = served.raw("GET", f"/ui?key={READ}")
    assert status == 303 and headers["Location"] == "/ui"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    assert served.raw("GET", path, None, {"Cookie": cookie})[0] == 200
    assert served.raw("POST", "/v1/events", event, {"Cookie": cookie})[0] == 401


def test_cors_for_the_configured_origin_only(served: Served) -> None:
    pre = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = served.raw("OPTIONS", "/v1/events", None, pre)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = served.raw("GET", "/v1/popular", None, {"Origin": "https://shop.example"})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "https://shop.example"
    _, headers, _ = served.raw("GET", "/healthz", None, {"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


def test_metrics_openapi_health_and_readiness(served: Served) -> None:
    read = {"Authorization": f"Bearer {READ}"}
    served.raw("GET", "/v1/users/alice/recommendations", None, read)
    _, _, body = served.raw("GET", "/metrics", None, read)
    text = body.decode()
    assert (
        'streamrec_serve_requests_total{route="/v1/users/{user_id}/recommendations",status="200"}'
        in text
    )
    assert "streamrec_serve_request_seconds_bucket" in text and "streamrec_serve_users" in text
    assert "alice" not in text
    _, _, body = served.raw("GET", "/readyz", None, read)
    assert serde.loads(body)["ready"] is True and serde.loads(body)["encoder_version"] == "enc@1"
    _, _, body = served.raw("GET", "/v1/health", None, read)
    health = serde.loads(body)
    assert health["series"][0]["events_per_s"] == 10.0 and health["series"][0]["dlq_share"] == 0.02


def test_the_openapi_description_matches_the_routes(served: Served) -> None:
    app = build_app(
        Service(served.state, make_ingestor(Settings.from_env({}), served.state.pseudonymize)),
        Keys(frozenset(), frozenset()),
    )
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.method not in ("OPTIONS", "HEAD") and r.resource is not None
    }
    documented = {(m, p) for p, ops in spec()["paths"].items() for m in ops}
    assert routes - {("get", "/ui/app.js"), ("get", "/")} == documented
