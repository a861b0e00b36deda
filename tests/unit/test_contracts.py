import fastjsonschema
import pytest

from streamrec import serde
from streamrec.contracts import (
    KEYED_TOPICS,
    all_contracts,
    compile_validator,
    load_contract,
    partitions_for,
)
from streamrec.datasets.malformed import malformed_events
from streamrec.records import EVENT_TYPES, Recommendation

REQUIRED_TOPICS = {"storefront.events", "catalog.items", "events.dlq", "recommendations", "metrics"}


def test_every_topic_has_a_complete_contract():
    contracts = {c.name: c for c in all_contracts()}
    assert set(contracts) >= REQUIRED_TOPICS
    for c in contracts.values():
        assert c.partitions >= 1
        assert c.config.get("cleanup.policy") in {"delete", "compact"}
        assert c.key["description"]
        assert c.value_schema["type"] == "object"


def test_event_schema_covers_the_fields_producers_need():
    props = load_contract("storefront.events").value_schema["properties"]
    for name in (
        "event_id",
        "type",
        "user_id",
        "session_id",
        "ts",
        "item_id",
        "query",
        "price",
        "quantity",
        "shown",
        "context",
    ):
        assert name in props
    assert props["type"]["enum"] == list(EVENT_TYPES)


def test_catalog_schema_fields():
    props = load_contract("catalog.items").value_schema["properties"]
    for name in ("item_id", "title", "category", "price", "brand", "attributes", "available"):
        assert name in props


def _corpus():
    base = {"event_id": "e", "user_id": "u", "ts": 1_700_000_000_000}
    docs = [
        base | {"type": t, "item_id": "1", "query": "q", "price": 1.0, "shown": ["1"]}
        for t in EVENT_TYPES
    ]
    docs += [base | {"type": t} for t in EVENT_TYPES]  # per-type fields missing
    docs += [base | {"type": "purchase", "item_id": "1"}, base | {"type": "search", "query": 3}]
    docs += [
        serde.loads(v)
        for _, v, r in malformed_events(11, 1_700_000_000_000)
        if r not in {"not_json", "oversized"}
    ]
    return docs


@pytest.mark.parametrize("doc", _corpus())
def test_fast_validator_agrees_with_fastjsonschema(doc):
    schema = load_contract("storefront.events").value_schema
    full = fastjsonschema.compile(schema)
    fast = compile_validator(schema)

    def verdict(fn):
        try:
            fn(doc)
            return "ok"
        except fastjsonschema.JsonSchemaValueException as exc:
            return exc.rule if exc.rule == "required" else "invalid"

    assert verdict(fast) == verdict(full)


def test_partition_override_applies_only_to_keyed_topics():
    assert partitions_for("storefront.events", 12) == 12
    assert partitions_for("events.dlq", 12) == load_contract("events.dlq").partitions
    assert {"storefront.events", "recommendations"} <= KEYED_TOPICS


def test_dead_letters_are_kept_no_longer_than_the_input_they_come_from():
    def retention(name: str) -> int:
        return int(load_contract(name).config["retention.ms"])

    assert retention("events.dlq") <= retention("storefront.events")
    schema = load_contract("events.dlq").value_schema
    assert "original" not in schema["properties"] and "sealed" in schema["required"]
    audit = load_contract("privacy.audit")
    assert audit.config["cleanup.policy"] == "compact"


def test_the_lists_the_engine_publishes_keep_to_the_recommendations_contract():
    """Every field of real lists, every candidate source included, against the schema a
    consumer validates with."""
    import time

    from streamrec.build import build_engine
    from streamrec.core.engine import DictProfileStore
    from streamrec.core.ranking.features import SOURCES
    from streamrec.datasets.synthetic import SyntheticShop
    from streamrec.settings import Settings
    from streamrec.tools.rank_bench import shop_messages

    schema = load_contract("recommendations").value_schema
    item = schema["properties"]["items"]["items"]["properties"]
    assert set(item["sources"]["items"]["enum"]) == set(SOURCES)
    validate = compile_validator(schema)
    engine = build_engine(Settings.from_env({}).with_overrides(partitions=1))
    shop = SyntheticShop(seed=3)
    for it in shop.catalog:
        engine.catalog.upsert(it)
    now = int(time.time() * 1000)
    msgs = shop_messages(shop, 3_000, now)
    store = DictProfileStore()
    seen: set[str] = set()
    covering = 0
    for i in range(0, len(msgs), 200):
        for rec in engine.process_batch(msgs[i : i + 200], store, now).recommendations:
            wire = serde.loads(serde.dumps(rec.to_dict()))
            validate(wire)
            back = Recommendation.from_dict(wire)
            assert (back.event_ids, back.item_ids) == (rec.event_ids, rec.item_ids)
            seen.update(s for it in rec.items for s in it.sources)
            covering += bool(rec.covers)
    assert {"covisit", "trending", "sequence"} <= seen  # the sources a shop's lists carry
    assert covering  # lists that answer several events of their user
