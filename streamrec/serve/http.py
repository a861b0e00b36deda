"""The HTTP plumbing of `streamrec serve`: access, CORS, errors as JSON, request metrics.

Access: every route names what it needs (`Access`). Read routes take a read
key, `POST /v1/events` a write key, each as `Authorization: Bearer KEY`; the
page (`/ui`) also takes a read key once as `?key=`, which it keeps in an
HttpOnly, SameSite=Strict cookie, so a browser can use it; the cookie is
good for GET requests only. Keys are compared in constant time. With no keys
configured (dev only, loopback only) the role is open.

Nothing here logs a request's path or query: a path holds a raw user id.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from streamrec import serde

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "streamrec_key"


class Access(Enum):
    ANYONE = "anyone"
    READ = "read"
    WRITE = "write"


class ApiError(web.HTTPException):
    """An error answered as JSON: {"error": code, "detail": what to do}."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        self.status_code = status
        super().__init__(
            body=serde.dumps({"error": code, "detail": detail, **extra}),
            content_type="application/json",
        )


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=serde.dumps(doc), status=status, content_type="application/json")


class Keys:
    def __init__(self, read: frozenset[str], write: frozenset[str]) -> None:
        self.read = tuple(k.encode() for k in read)
        self.write = tuple(k.encode() for k in write)

    def allows(self, access: Access, key: str | None) -> bool:
        if access is Access.ANYONE:
            return True
        wanted = self.read if access is Access.READ else self.write
        if not wanted:
            return True  # no keys for this role: open (dev on loopback only)
        if key is None:
            return False
        given = key.encode()
        # Every key compared, in constant time each: no early exit to time.
        return sum(hmac.compare_digest(given, k) for k in wanted) > 0


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def access_middleware(keys: Keys, routes: dict[str, Access]) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return await handler(request)  # CORS preflight: carries no credentials
        route = _route(request)
        access = routes.get(route, Access.READ)
        key = bearer(request)
        if key is None and request.method == "GET":
            key = request.query.get("key") if route == "/ui" else None
            key = key or request.cookies.get(COOKIE)
        if not keys.allows(access, key):
            how = (
                "open /ui?key=<a read key> once: the page keeps it in a cookie"
                if route == "/ui"
                else f"send a valid {access.value} key as `Authorization: Bearer KEY`"
            )
            raise ApiError(
                401, "unauthorized", f"{how} (STREAMREC_API_{access.value.upper()}_KEYS)"
            )
        return await handler(request)

    return check


def cors_middleware(origins: str) -> Any:
    allowed = {o.strip() for o in origins.split(",") if o.strip()}

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        ok = origin is not None and ("*" in allowed or origin in allowed)
        if request.method == "OPTIONS" and ok:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # a browser reads errors only with these too
                if ok:
                    _allow(exc.headers, allowed, origin)
                raise
        if ok:
            _allow(response.headers, allowed, origin)
        return response

    return cors


def _allow(headers: Any, allowed: set[str], origin: str | None) -> None:
    headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
    headers["Vary"] = "Origin"


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "streamrec_serve_requests", "HTTP requests by route and status",
            ["route", "status"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "streamrec_serve_request_seconds", "Time to answer, by route", ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )  # fmt: skip

    def middleware(self) -> Any:
        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            t0 = time.perf_counter()
            route = _route(request)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                status = exc.status
                if not isinstance(exc, ApiError) and status >= 400:
                    exc = _as_json(exc)  # aiohttp's own (404 no route, 413 body too big)
                self._count(route, status, t0)
                raise exc from None
            except Exception:
                log.exception("error answering %s %s", request.method, route)  # no raw path
                self._count(route, 500, t0)
                raise ApiError(500, "internal", "the service failed; see its log") from None
            self._count(route, response.status, t0)
            return response

        return measure

    def _count(self, route: str, status: int, t0: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(time.perf_counter() - t0)


def _route(request: web.Request) -> str:
    """The route's template (`/v1/users/{user_id}/recommendations`), never the path."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _as_json(exc: web.HTTPException) -> ApiError:
    if exc.status == 413:
        detail = (
            f"the body is over this service's limit ({exc.text}); STREAMREC_SERVE_MAX_BODY_BYTES"
        )
    else:
        detail = exc.reason
    return ApiError(exc.status, _CODES.get(exc.status, "http_error"), detail)
