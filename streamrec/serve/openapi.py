"""The OpenAPI 3.1 description of `streamrec serve` (served at /openapi.json, shown at /docs).

Written out rather than generated: it is the contract apps code against, and
`tests/unit/test_serve_api.py` checks that every route the app has is in it
and every path in it is a route.
"""

from __future__ import annotations

from typing import Any

from streamrec.contracts import STOREFRONT_EVENTS, load_contract


def _q(name: str, kind: str, what: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": what,
            "schema": {"type": kind, **extra}}  # fmt: skip


def _path(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": what,
            "schema": {"type": "string"}}  # fmt: skip


_K = _q("k", "integer", "How many items (default: the list's length, or 10)", minimum=1,
        maximum=200)  # fmt: skip
_FILTERS = [
    _q("category", "string", "Only items of this (leaf) category"),
    _q("min_price", "number", "Only items at or above this price (items without one fail)"),
    _q("max_price", "number", "Only items at or below this price (items without one fail)"),
    _q("exclude", "string", "Comma-separated item ids to leave out (e.g. what is on screen)"),
]
_ERR = {"$ref": "#/components/responses/Error"}
_JSON = "application/json"


def _ok(what: str, schema: str) -> dict[str, Any]:
    return {"description": what,
            "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}  # fmt: skip


def _get(summary: str, params: list[dict[str, Any]], ok: dict[str, Any], *codes: str,
         tag: str = "read") -> dict[str, Any]:  # fmt: skip
    return {"get": {"summary": summary, "tags": [tag], "parameters": params,
                    "responses": {"200": ok, **dict.fromkeys(("401", *codes), _ERR)}}}  # fmt: skip


def spec() -> dict[str, Any]:
    event_schema = load_contract(STOREFRONT_EVENTS).value_schema
    item = {"type": "object", "required": ["item_id", "score"], "properties": {
        "item_id": {"type": "string"}, "score": {"type": "number"},
        "title": {"type": "string"}, "category": {"type": "string"}, "price": {"type": "number"},
        "reason": {"type": "string", "description": "Why it is in the list"},
        "sources": {"type": "array", "items": {"type": "string"}},
        "features": {"type": "object", "additionalProperties": {"type": "number"},
                     "description": "The features that weighed most, with their share"},
        "potential": {"type": "number"}}}  # fmt: skip
    items = {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamrec serve",
            "version": "1",
            "description": "Recommendations, similar items, search and event intake over HTTP, "
            "in front of streamrec's Kafka topics. Send `Authorization: Bearer KEY`: a read "
            "key for GET routes, a write key for POST /v1/events.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/users/{user_id}/recommendations": _get(
                "The latest list for a user (their own id; pseudonymised inside the service)",
                [
                    _path("user_id", "The storefront's user id"),
                    _K,
                    *_FILTERS,
                    _q(
                        "fallback",
                        "string",
                        "'popular': answer a user with no list yet with the "
                        "most popular items (source 'popular') instead of 404",
                        enum=["popular"],
                    ),
                ],
                _ok("The list, filtered, with its age", "UserList"),
                "400",
                "404",
            ),
            "/v1/items/{item_id}/similar": _get(
                "Items similar to one (cosine of the item vectors; unavailable items left out)",
                [_path("item_id", "A catalog item id"), _K, *_FILTERS],
                _ok("The nearest items, best first", "Similar"),
                "400",
                "404",
                "503",
            ),
            "/v1/popular": _get(
                "The most popular available items now (time-decayed)",
                [_K, *_FILTERS],
                _ok("Popular items", "ItemList"),
                "400",
            ),
            "/v1/search": _get(
                "Items for a free-text query, through the BERT scorer",
                [{**_q("q", "string", "The query text (1-512 characters)"), "required": True}, _K],
                _ok("Matching items, best first", "Search"),
                "400",
                "422",
                "503",
            ),
            "/v1/events": {
                "post": {
                    "summary": "Send events (one object or an array), validated against the "
                    "storefront.events contract; event_id and ts are filled in when absent",
                    "tags": ["write"],
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Event"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Event"},
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok("At least one event accepted; results per event", "Accepted"),
                        "400": _ok("No event accepted (results say why), or not JSON", "Accepted"),
                        **dict.fromkeys(("401", "413", "503"), _ERR),
                    },
                }
            },
            "/v1/health": _get(
                "The pipeline's monitoring view (metrics windows, drift, alerts)",
                [],
                _ok("Snapshot and series", "Object"),
                tag="operate",
            ),
            "/healthz": _get("Liveness (no key needed)", [], _ok("Alive", "Object"), tag="operate"),
            "/readyz": _get(
                "Ready once caught up with the topics as they were at start",
                [],
                _ok("Ready", "Object"),
                "503",
                tag="operate",
            ),
            "/metrics": _get(
                "Prometheus metrics", [], {"description": "Text exposition"}, tag="operate"
            ),
            "/openapi.json": _get("This description", [], _ok("OpenAPI", "Object"), tag="operate"),
            "/docs": _get(
                "This description, browsable", [], {"description": "HTML"}, tag="operate"
            ),
            "/ui": _get(
                "The page: a user's list and the pipeline's health (?key= once)",
                [_q("key", "string", "A read key, kept in a cookie")],
                {"description": "HTML"},
                tag="operate",
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["error", "detail"],
                                "properties": {
                                    "error": {"type": "string"},
                                    "detail": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            },
            "schemas": {
                "Item": item,
                "ItemList": {
                    "type": "object",
                    "properties": {"source": {"type": "string"}, "items": items},
                },
                "UserList": {
                    "type": "object",
                    "properties": {
                        "source": {"type": "string", "enum": ["list", "popular"]},
                        "items": items,
                        "model_version": {"type": "string"},
                        "encoder_version": {"type": "string"},
                        "variant": {"type": "string"},
                        "flags": {"type": "array"},
                        "user_value": {"type": "number"},
                        "user": {"type": "string", "description": "The user's pseudonym"},
                        "event_id": {
                            "type": "string",
                            "description": "Hashed id of the event that made the list: the "
                            "event_ref POST /v1/events answered for it",
                        },
                        "event_type": {"type": "string"},
                        "event_ts": {"type": "integer"},
                        "produced_ts": {"type": "integer"},
                        "age_ms": {"type": "integer", "description": "Now minus produced_ts"},
                    },
                },
                "Similar": {
                    "type": "object",
                    "properties": {
                        "item_id": {"type": "string"},
                        "items": items,
                        "encoder_version": {"type": "string"},
                    },
                },
                "Search": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string"},
                        "items": items,
                        "encoder_version": {"type": "string"},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "integer"},
                        "rejected": {"type": "integer"},
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "status": {"type": "string", "enum": ["accepted", "rejected"]},
                                    "event_id": {"type": "string"},
                                    "event_ref": {
                                        "type": "string",
                                        "description": "The hashed id the event's list carries",
                                    },
                                    "reason": {"type": "string"},
                                    "detail": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Event": {k: v for k, v in event_schema.items() if k != "$schema"},
                "Object": {"type": "object"},
            },
        },
    }
