"""Topic contracts: the files in topics/, loaded and compiled.

Each contract names a topic, its partitions, its config (retention or
compaction), its key, and the JSON Schema of its value. The same files are
what producers and consumer apps in other languages read.

>>> c = load_contract("storefront.events")
>>> c.name, c.partitions >= 1
('storefront.events', True)
>>> doc = {"event_id": "e1", "type": "search", "user_id": "u", "ts": 1, "query": "tv"}
>>> c.validator(doc)["type"]
'search'
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema

from streamrec.errors import ContractError

STOREFRONT_EVENTS = "storefront.events"
CATALOG_ITEMS = "catalog.items"
EVENTS_DLQ = "events.dlq"
RECOMMENDATIONS = "recommendations"
METRICS = "metrics"
DRIFT_STATS = "drift.stats"
ALERTS = "alerts"
CATALOG_EMBEDDINGS = "catalog.embeddings"
SCORER_REQUESTS = "scorer.requests"
SCORER_REPLIES = "scorer.replies"
SCORER_CONTROL = "scorer.control"
PRIVACY_AUDIT = "privacy.audit"
SHARED_STATE = "shared.state"
SHARED_CHECKPOINT = "shared.checkpoint"


def contracts_dir() -> Path:
    """topics/ in a source checkout, or the copy packed into the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "topics", here / "_topics"):
        if candidate.is_dir():
            return candidate
    raise ContractError(f"no topics/ directory next to {here}; reinstall streamrec")


@dataclass(frozen=True)
class Contract:
    name: str
    partitions: int
    config: dict[str, str]
    key: dict[str, Any]
    value_schema: dict[str, Any]
    description: str = ""
    validator: Callable[[Any], Any] = field(repr=False, compare=False, default=lambda v: v)


@functools.cache
def load_contract(name: str) -> Contract:
    path = contracts_dir() / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ContractError(f"no contract for topic {name!r} at {path}") from exc
    except json.JSONDecodeError as exc:
        raise ContractError(f"{path} is not valid JSON: {exc}") from exc
    try:
        validator = compile_validator(raw["value_schema"])
        return Contract(
            name=raw["name"],
            partitions=int(raw["partitions"]),
            config={str(k): str(v) for k, v in raw.get("config", {}).items()},
            key=raw["key"],
            value_schema=raw["value_schema"],
            description=raw.get("description", ""),
            validator=validator,
        )
    except (KeyError, TypeError, ValueError, fastjsonschema.JsonSchemaDefinitionException) as exc:
        raise ContractError(f"{path} is not a valid topic contract: {exc!r}") from exc


def all_contracts() -> list[Contract]:
    return [load_contract(p.stem) for p in sorted(contracts_dir().glob("*.json"))]


#: Topics keyed by user or item: their partition count scales with the deployment.
#: catalog.embeddings follows catalog.items: a vector sits on its item's partition.
KEYED_TOPICS = frozenset({STOREFRONT_EVENTS, CATALOG_ITEMS, CATALOG_EMBEDDINGS, RECOMMENDATIONS})


def partitions_for(name: str, override: int = 0) -> int:
    """Partitions of `name`: `override` (STREAMREC_PARTITIONS) for keyed topics, else contract."""
    if override and name in KEYED_TOPICS:
        return override
    return load_contract(name).partitions


def compile_validator(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """fastjsonschema for `schema`, with a fast path for per-type `required` rules.

    An ``allOf`` of ``{"if": {"properties": {"type": {"enum"|"const": ...}}},
    "then": {"required": [...]}}`` clauses (how the event schema states "a click
    needs item_id") costs fastjsonschema a raised-and-caught exception per
    failing ``if``: ~20 us per event, three times per event. Such clauses are
    checked here with a dict lookup instead; any other shape compiles as is.
    tests/unit/test_contracts.py checks both paths agree.
    """
    rules = _type_rules(schema.get("allOf"))
    if rules is None:
        return fastjsonschema.compile(schema)
    base = fastjsonschema.compile({k: v for k, v in schema.items() if k != "allOf"})

    def validate(doc: Any) -> Any:
        doc = base(doc)
        for field_name in rules.get(doc.get("type"), ()):
            if field_name not in doc:
                raise fastjsonschema.JsonSchemaValueException(
                    f"data must contain [{field_name!r}] properties",
                    value=doc,
                    name="data",
                    definition=schema,
                    rule="required",
                )
        return doc

    return validate


def _type_rules(all_of: Any) -> dict[Any, tuple[str, ...]] | None:
    if not isinstance(all_of, list):
        return None
    rules: dict[Any, list[str]] = {}
    for clause in all_of:
        try:
            cond = clause["if"]["properties"]["type"]
            required = clause["then"]["required"]
        except (KeyError, TypeError):
            return None
        if set(clause) != {"if", "then"} or set(clause["then"]) != {"required"}:
            return None
        if set(clause["if"]) != {"properties"} or set(clause["if"]["properties"]) != {"type"}:
            return None
        values = cond.get("enum", [cond["const"]] if "const" in cond else None)
        if values is None or set(cond) - {"enum", "const"}:
            return None
        for v in values:
            rules.setdefault(v, []).extend(required)
    return {k: tuple(v) for k, v in rules.items()}
