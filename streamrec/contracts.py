"""Topic contracts: the files in topics/, loaded and compiled.

Each contract names a topic, its partitions, its config (retention or
compaction), its key, and the JSON Schema of its value. The same files are
what producers and consumer apps in other languages read.

>>> c = load_contract("storefront.events")
>>> c.name, c.partitions >= 1
('storefront.events', True)
>>> c.validator({"event_id": "e1", "type": "search", "user_id": "u", "ts": 1, "query": "tv"})["type"]
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
        validator = fastjsonschema.compile(raw["value_schema"])
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
KEYED_TOPICS = frozenset({STOREFRONT_EVENTS, CATALOG_ITEMS, RECOMMENDATIONS})


def partitions_for(name: str, override: int = 0) -> int:
    """Partitions of topic `name`: `override` (STREAMREC_PARTITIONS) for keyed topics, else the contract."""
    if override and name in KEYED_TOPICS:
        return override
    return load_contract(name).partitions
