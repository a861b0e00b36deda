"""`RecommendationClient`: streamrec over HTTP (`streamrec serve`): the
standard library's `http.client` and the project's JSON codec, no Kafka client.

Use it where an app should not speak Kafka or hold every user's list in
memory: web and mobile backends, other languages' services behind a proxy,
many small app instances. `RecommendationReader` (streamrec.client) follows
the whole topic into the process instead: for batch jobs and services that
read most users' lists anyway.

    client = RecommendationClient("http://localhost:8080", api_key="READ-KEY",
                                  write_key="WRITE-KEY")
    sent = client.track("view", "alice", item_id="sku-1")
    rec = client.latest("alice")                     # a Recommendation, or None
    doc = client.recommendations("alice", k=5, max_price=50, fallback="popular")
    client.similar("sku-1", k=10); client.search("trail shoes")

One keep-alive connection per client (not thread-safe: one per thread).
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from typing import Any

from streamrec import serde
from streamrec.errors import ServeError
from streamrec.records import Recommendation


class RecommendationClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        write_key: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port], not {base_url!r}")
        self._url = url
        self._prefix = url.path.rstrip("/")
        self.api_key = api_key
        self.write_key = write_key or api_key
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    # -- reads ----------------------------------------------------------------

    def recommendations(
        self,
        user_id: str,
        *,
        k: int | None = None,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        exclude: Iterable[str] = (),
        fallback: str | None = None,
    ) -> dict[str, Any] | None:
        """The user's latest list as the API answers it (None: no list, no fallback)."""
        params = _filters(k, category, min_price, max_price, exclude) | {"fallback": fallback}
        path = f"/v1/users/{_seg(user_id)}/recommendations"
        try:
            found: dict[str, Any] = self._request("GET", path, params)
        except ServeError as exc:
            if exc.code == "unknown_user":
                return None
            raise
        return found

    def latest(self, user_id: str, **filters: Any) -> Recommendation | None:
        """As `RecommendationReader.latest`: the user's newest list as a `Recommendation`."""
        doc = self.recommendations(user_id, **filters)
        return None if doc is None else Recommendation.from_dict(doc)

    def wait_for(
        self, user_id: str, timeout_s: float = 10.0, event_ref: str | None = None
    ) -> Recommendation | None:
        """Poll until the user has a list (the one that answers `event_ref`, if given:
        made after that event, or after a later one of the same micro-batch)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rec = self.latest(user_id)
            if rec is not None and (event_ref is None or rec.answers(event_ref)):
                return rec
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def similar(self, item_id: str, *, k: int = 10, **filters: Any) -> list[dict[str, Any]]:
        params = _filters(k, filters.get("category"), filters.get("min_price"),
                          filters.get("max_price"), filters.get("exclude", ()))  # fmt: skip
        items: list[dict[str, Any]] = self._request(
            "GET", f"/v1/items/{_seg(item_id)}/similar", params
        )["items"]
        return items

    def popular(self, *, k: int = 10, category: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._request(
            "GET", "/v1/popular", _filters(k, category, None, None, ())
        )["items"]
        return items

    def search(self, query: str, *, k: int = 10) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._request("GET", "/v1/search", {"q": query, "k": k})[
            "items"
        ]
        return items

    def readiness(self) -> dict[str, Any]:
        """/readyz's answer: ready, lag, users, items, item vectors, encoder version."""
        try:
            doc: dict[str, Any] = self._request("GET", "/readyz", {})
        except ServeError as exc:
            if exc.status != 503:
                raise
            doc = {"ready": False}
        return doc

    def ready(self) -> bool:
        """True once the replica has read what was on the topics when it started."""
        return bool(self.readiness()["ready"])

    def health(self) -> dict[str, Any]:
        """The pipeline's monitoring view (/v1/health): snapshot and per-window series."""
        doc: dict[str, Any] = self._request("GET", "/v1/health", {})
        return doc

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the service is up and ready (a replica starting, or catching up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.ready():
                    return
                error = "not caught up yet"
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise ServeError(503, "not_ready", f"not ready after {timeout_s:g} s: {error}")
            time.sleep(0.2)

    # -- writes ---------------------------------------------------------------

    def send_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Send a batch; the answer says per event whether it was accepted, and why not
        (`accepted` 0 when none was). Raises `ServeError` when the request failed."""
        answer: dict[str, Any] = self._request("POST", "/v1/events", {}, events, write=True)
        return answer

    def track(self, type: str, user_id: str, **fields: Any) -> dict[str, Any]:
        """Send one event; returns its result (`event_id`, and `event_ref`: the id the
        list that answers it carries, as `event_id` or in `covers`, for `wait_for`)."""
        event = {"type": type, "user_id": user_id, "event_id": uuid.uuid4().hex,
                 "ts": int(time.time() * 1000), **fields}  # fmt: skip
        result: dict[str, Any] = self.send_events([event])["results"][0]
        return result

    # -- plumbing -------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        body: Any = None,
        *,
        write: bool = False,
    ) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        target = self._prefix + path + (f"?{query}" if query else "")
        headers = {"Accept": "application/json"}
        key = self.write_key if write else self.api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = serde.dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):  # a kept-alive connection the server closed: once more
            conn = self._connection()
            try:
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
            except BaseException:
                self.close()  # a half-used connection cannot take the next request
                raise
        doc = serde.loads(raw) if raw else {}
        if response.status >= 400 and not (response.status == 400 and "results" in doc):
            raise ServeError(response.status, doc.get("error", "http_error"), doc.get("detail", ""))
        return doc  # events: a 400 with per-event results is an answer too (none accepted)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._url.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self._url.hostname or "", self._url.port, timeout=self.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RecommendationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _filters(
    k: int | None,
    category: str | None,
    min_price: float | None,
    max_price: float | None,
    exclude: Iterable[str],
) -> dict[str, Any]:
    ex = ",".join(exclude)
    return {"k": k, "category": category, "min_price": min_price, "max_price": max_price,
            "exclude": ex or None}  # fmt: skip
