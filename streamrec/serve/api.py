"""The routes of `streamrec serve`: handlers that parse, ask the `ServingState`, answer JSON.

    GET  /v1/users/{user_id}/recommendations?k=&category=&min_price=&max_price=&exclude=&fallback=
    GET  /v1/items/{item_id}/similar?k=&category=&min_price=&max_price=&exclude=
    GET  /v1/popular?k=&category=&min_price=&max_price=&exclude=
    GET  /v1/search?q=&k=
    POST /v1/events                      one event object or a JSON array of them
    GET  /v1/health                      the pipeline's monitoring view (for /ui)
    GET  /healthz  /readyz  /metrics  /openapi.json  /docs  /ui

`build_app` takes its collaborators as plain callables (send events, embed a
query), so the whole API runs in tests without a broker or a scorer.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client import Counter as PromCounter

from streamrec import serde
from streamrec.core.batch import QueryVectors
from streamrec.core.filters import Filters
from streamrec.core.ingest import Ingestor, Rejection
from streamrec.errors import SerdeError
from streamrec.serve.http import (
    COOKIE,
    Access,
    ApiError,
    Keys,
    RequestMetrics,
    access_middleware,
    cors_middleware,
    json_response,
)
from streamrec.serve.openapi import spec
from streamrec.serve.state import ServingState

SendEvents = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
Embed = Callable[[list[str], str | None], Awaitable[QueryVectors | None]]

MAX_K = 200
MAX_QUERY_CHARS = 512


@dataclass
class Service:
    state: ServingState
    ingestor: Ingestor
    send_events: SendEvents | None = None
    embed: Embed | None = None
    ready: Callable[[], bool] = lambda: True
    lag: Callable[[], int] = lambda: 0
    default_k: int = 20
    max_batch: int = 1_000
    scorer_timeout_ms: int = 1_000


ROUTES: dict[str, Access] = {
    "/healthz": Access.ANYONE,
    "/": Access.ANYONE,
    "/v1/events": Access.WRITE,
}


def build_app(
    service: Service, keys: Keys, *, cors_origins: str = "", max_body_bytes: int = 1 << 20
) -> web.Application:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry)
    app = web.Application(
        client_max_size=max_body_bytes,
        middlewares=[
            metrics.middleware(),
            cors_middleware(cors_origins),
            access_middleware(keys, ROUTES),
        ],
    )
    h = _Handlers(service, registry)
    r = app.router
    r.add_get("/v1/users/{user_id}/recommendations", h.recommendations)
    r.add_get("/v1/items/{item_id}/similar", h.similar)
    r.add_get("/v1/popular", h.popular)
    r.add_get("/v1/search", h.search)
    r.add_post("/v1/events", h.events)
    r.add_get("/v1/health", h.health)
    r.add_get("/healthz", h.healthz)
    r.add_get("/readyz", h.readyz)
    r.add_get("/metrics", h.metrics)
    r.add_get("/openapi.json", h.openapi)
    r.add_get("/docs", h.page("docs.html"))
    r.add_get("/ui", h.ui)
    r.add_get("/ui/app.js", h.page("app.js"))
    r.add_get("/", h.index)
    for resource in list(r.resources()):  # CORS preflights, answered by the middleware
        r.add_route("OPTIONS", resource.canonical, h.preflight)
    return app


class _Handlers:
    def __init__(self, service: Service, registry: CollectorRegistry) -> None:
        self.sv = service
        self.registry = registry
        st = service.state
        self.events_total = PromCounter(
            "streamrec_serve_events", "Events posted, by result", ["result"], registry=registry
        )
        gauges = {
            "users": ("Users with a list in this replica's store", st.lists.users),
            "store_bytes": ("Bytes of the list store on disk", st.lists.disk_bytes),
            "lag": ("Lists on the topic not applied yet", service.lag),
            "ready": ("1 once caught up with the topics at start", lambda: int(service.ready())),
            "items": ("Catalog items known", lambda: len(st.catalog)),
            "item_vectors": ("Item vectors in the active version", lambda: len(st.vectors)),
        }
        for name, (doc, fn) in gauges.items():
            Gauge(f"streamrec_serve_{name}", doc, registry=registry).set_function(fn)

    # -- reads ----------------------------------------------------------------

    async def recommendations(self, request: web.Request) -> web.Response:
        q = request.query
        k = _int(q, "k", self.sv.default_k, 1, MAX_K)
        filters = _filters(q)
        fallback = q.get("fallback", "")
        if fallback not in ("", "popular"):
            raise ApiError(400, "bad_parameter", "fallback must be 'popular' or absent")
        user_id = request.match_info["user_id"]
        state = self.sv.state
        found = state.user_list(user_id, k, filters, _now_ms())
        if found is None:
            if fallback == "popular":
                return json_response(state.popular(k, filters))
            raise ApiError(
                404,
                "unknown_user",
                "no list for this user yet: no event of theirs has been processed (or this "
                "replica is still catching up, see /readyz). Add fallback=popular to get the "
                "most popular items instead.",
            )
        return json_response(found)

    async def similar(self, request: web.Request) -> web.Response:
        q = request.query
        k = _int(q, "k", 10, 1, MAX_K)
        filters = _filters(q)
        item_id = request.match_info["item_id"]
        state = self.sv.state
        if state.vectors.active_version is None:
            raise ApiError(
                503, "no_item_vectors", "no item vectors yet: is `streamrec scorer` running?"
            )
        found = state.similar(item_id, k, filters)
        if found is None:
            known = state.catalog.get(item_id) is not None
            raise ApiError(
                404,
                "no_vector" if known else "unknown_item",
                "the item has no vector yet (embedding in progress?)"
                if known
                else "no such item in the catalog or the item vectors",
            )
        return json_response({"item_id": item_id, "items": found,
                              "encoder_version": state.vectors.active_version})  # fmt: skip

    async def popular(self, request: web.Request) -> web.Response:
        q = request.query
        k = _int(q, "k", self.sv.default_k, 1, MAX_K)
        return json_response(self.sv.state.popular(k, _filters(q)))

    async def search(self, request: web.Request) -> web.Response:
        q = request.query
        k = _int(q, "k", 10, 1, MAX_K)
        text = q.get("q", "").strip()
        if not text or len(text) > MAX_QUERY_CHARS:
            raise ApiError(400, "bad_parameter", f"q must be 1 to {MAX_QUERY_CHARS} characters")
        state = self.sv.state
        version = state.vectors.active_version
        if version is None:
            raise ApiError(
                503, "no_item_vectors", "no item vectors yet: is `streamrec scorer` running?"
            )
        got = await self.sv.embed([text], version) if self.sv.embed is not None else None
        if got is None:
            raise ApiError(
                503,
                "scorer_unavailable",
                f"no scorer answered within {self.sv.scorer_timeout_ms} ms "
                "(STREAMREC_SCORER_TIMEOUT_MS): is `streamrec scorer` running?",
            )
        if not bool(got.valid[0]):
            raise ApiError(422, "not_embeddable", "the scorer could not embed this query")
        items = state.search(got.vectors[0], k)
        return json_response({"query": text, "items": items, "encoder_version": got.version})

    async def health(self, request: web.Request) -> web.Response:
        return json_response(self.sv.state.health_view())

    # -- writes ---------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        body = await request.read()  # over client_max_size: 413 from aiohttp
        try:
            doc = serde.loads(body)
        except SerdeError as exc:
            raise ApiError(400, "not_json", f"the body is not JSON: {exc}") from None
        events = doc if isinstance(doc, list) else [doc] if isinstance(doc, dict) else None
        if not events:
            raise ApiError(400, "bad_body", "send one event object or a non-empty JSON array")
        if len(events) > self.sv.max_batch:
            raise ApiError(
                413, "too_many", f"at most {self.sv.max_batch} events per request "
                "(STREAMREC_SERVE_MAX_BATCH); split the batch",
            )  # fmt: skip
        now = _now_ms()
        results: list[dict[str, Any]] = []
        send: list[tuple[bytes, bytes]] = []
        for i, ev in enumerate(events):
            if not isinstance(ev, dict):
                results.append(_rejected(i, None, "not_object", "an event is a JSON object"))
                continue
            # Filled in for storefronts that do not set them (a retry then is a new event).
            ev.setdefault("event_id", uuid.uuid4().hex)
            ev.setdefault("ts", now)
            raw = serde.dumps(ev)
            checked = self.sv.ingestor.check(raw, now)
            if isinstance(checked, Rejection):
                results.append(_rejected(i, ev.get("event_id"), checked.reason, checked.detail))
            else:
                send.append((str(ev["user_id"]).encode(), raw))
                results.append({"index": i, "status": "accepted", "event_id": ev["event_id"],
                                "event_ref": checked[1]})  # fmt: skip
        if send:
            if self.sv.send_events is None:
                raise ApiError(503, "read_only", "this replica does not accept events")
            try:
                await self.sv.send_events(send)
            except Exception as exc:
                raise ApiError(
                    503, "broker_unavailable", f"events not sent, retry: {type(exc).__name__}"
                ) from None
        accepted = len(send)
        self.events_total.labels("accepted").inc(accepted)
        self.events_total.labels("rejected").inc(len(events) - accepted)
        return json_response(
            {"accepted": accepted, "rejected": len(events) - accepted, "results": results},
            status=200 if accepted else 400,
        )

    # -- operations -----------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        state, ready = self.sv.state, self.sv.ready()
        return json_response(
            {
                "ready": ready,
                "lag": self.sv.lag(),
                "users": state.lists.users(),
                "items": len(state.catalog),
                "item_vectors": len(state.vectors),
                "encoder_version": state.vectors.active_version,
            },
            status=200 if ready else 503,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            content_type="text/plain", charset="utf-8")  # fmt: skip

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(spec())

    async def index(self, request: web.Request) -> web.Response:
        return json_response(
            {"service": "streamrec serve", "ui": "/ui", "docs": "/docs",
             "openapi": "/openapi.json", "health": "/healthz", "ready": "/readyz"}
        )  # fmt: skip

    async def ui(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key")
        if key is not None:  # first visit with ?key=: keep it in a cookie, drop it from the URL
            response = web.HTTPSeeOther("/ui")
            response.set_cookie(
                COOKIE, key, httponly=True, samesite="Strict", path="/", secure=request.secure
            )
            raise response
        return await self.page("ui.html")(request)

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    @staticmethod
    def page(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        body = resources.files("streamrec.serve").joinpath("static", name).read_bytes()
        kind = "text/html" if name.endswith(".html") else "text/javascript"

        async def serve_page(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=kind, charset="utf-8",
                                headers={"Cache-Control": "no-cache"})  # fmt: skip

        return serve_page


def _now_ms() -> int:
    return int(time.time() * 1000)


def _rejected(i: int, event_id: Any, reason: str, detail: str) -> dict[str, Any]:
    out = {"index": i, "status": "rejected", "reason": reason, "detail": detail}
    if isinstance(event_id, str):
        out["event_id"] = event_id
    return out


def _int(q: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_parameter", f"{name} must be between {lo} and {hi}")
    return value


def _price(q: Any, name: str) -> float | None:
    raw = q.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, "bad_parameter", f"{name} must be a finite number >= 0")
    return value


def _filters(q: Any) -> Filters:
    low, high = _price(q, "min_price"), _price(q, "max_price")
    if low is not None and high is not None and low > high:
        raise ApiError(400, "bad_parameter", "min_price is above max_price")
    exclude = frozenset(x for x in q.get("exclude", "").split(",") if x)
    if len(exclude) > 1_000:
        raise ApiError(400, "bad_parameter", "exclude takes at most 1,000 item ids")
    category = q.get("category") or None
    return Filters(category, low, high, exclude)
