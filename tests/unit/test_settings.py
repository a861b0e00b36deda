import pytest

from streamrec.errors import ConfigError
from streamrec.keys import DEV_PSEUDONYM_KEY
from streamrec.settings import Secret, Settings


def test_reads_typed_values_from_env():
    s = Settings.from_env(
        {
            "STREAMREC_TOP_K": "7",
            "STREAMREC_EXCLUDE_RECENT": "false",
            "STREAMREC_DEDUP_WINDOW_S": "1.5",
        }
    )
    assert (s.top_k, s.exclude_recent, s.dedup_window_s) == (7, False, 1.5)


def test_unknown_variable_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="STREAMREC_TOPK"):
        Settings.from_env({"STREAMREC_TOPK": "7"})


def test_bad_value_says_which_variable():
    with pytest.raises(ConfigError, match="STREAMREC_TOP_K"):
        Settings.from_env({"STREAMREC_TOP_K": "many"})


def test_secret_never_prints():
    s = Settings.from_env({"STREAMREC_PSEUDONYM_KEY": "hunter2"})
    assert "hunter2" not in repr(s)
    assert s.pseudonym_key.get() == "hunter2"


def test_production_refuses_to_start_without_a_key():
    s = Settings.from_env({"STREAMREC_MODE": "production"})
    with pytest.raises(ConfigError, match="STREAMREC_PSEUDONYM_KEY"):
        s.resolved_pseudonym_key()


def test_production_refuses_the_public_dev_key():
    s = Settings.from_env(
        {"STREAMREC_MODE": "production", "STREAMREC_PSEUDONYM_KEY": DEV_PSEUDONYM_KEY}
    )
    with pytest.raises(ConfigError, match="dev key"):
        s.resolved_pseudonym_key()


def test_dev_key_only_on_the_embedded_broker():
    assert Settings.from_env({}).resolved_pseudonym_key() == DEV_PSEUDONYM_KEY.encode()
    remote = Settings.from_env({"STREAMREC_KAFKA_BOOTSTRAP": "kafka-1.prod:9092"})
    assert not remote.is_embedded
    with pytest.raises(ConfigError, match="only allowed there"):
        remote.resolved_pseudonym_key()


DEV_VARIANTS = [
    DEV_PSEUDONYM_KEY + " ",
    " " + DEV_PSEUDONYM_KEY + "\n",
    DEV_PSEUDONYM_KEY.upper(),
    DEV_PSEUDONYM_KEY.title(),
    f'"{DEV_PSEUDONYM_KEY}"',
    f"'{DEV_PSEUDONYM_KEY}'  ",
]


@pytest.mark.parametrize("key", DEV_VARIANTS)
def test_production_refuses_the_dev_key_however_it_is_cased_or_padded(key):
    s = Settings.from_env({"STREAMREC_MODE": "production", "STREAMREC_PSEUDONYM_KEY": key})
    with pytest.raises(ConfigError, match=r"dev key.*secrets\.token_hex"):
        s.resolved_pseudonym_key()


@pytest.mark.parametrize("key", [DEV_PSEUDONYM_KEY, *DEV_VARIANTS])
def test_dev_mode_refuses_an_explicit_dev_key_against_a_remote_broker(key):
    s = Settings.from_env(
        {"STREAMREC_PSEUDONYM_KEY": key, "STREAMREC_KAFKA_BOOTSTRAP": "10.0.0.7:9092"}
    )
    with pytest.raises(ConfigError, match="not a loopback broker"):
        s.resolved_pseudonym_key()


@pytest.mark.parametrize("key", ["k", "hunter2", "x" * 31, "short but not dev"])
def test_production_refuses_keys_shorter_than_32_bytes(key):
    s = Settings.from_env({"STREAMREC_MODE": "production", "STREAMREC_PSEUDONYM_KEY": key})
    with pytest.raises(ConfigError, match=r"at least 32.*secrets\.token_hex"):
        s.resolved_pseudonym_key()


def test_production_accepts_a_32_byte_key_and_derives_the_dlq_key_from_it():
    key = "0123456789abcdef" * 2
    s = Settings.from_env({"STREAMREC_MODE": "production", "STREAMREC_PSEUDONYM_KEY": key})
    assert s.resolved_pseudonym_key() == key.encode()
    assert s.resolved_dlq_key() != key.encode()  # its own key, derived
    own = s.with_overrides(dlq_key=Secret("d" * 32))
    assert own.resolved_dlq_key() == b"d" * 32
    with pytest.raises(ConfigError, match="STREAMREC_DLQ_KEY"):
        s.with_overrides(dlq_key=Secret("short")).resolved_dlq_key()


def test_to_env_round_trips():
    s = Settings.from_env({}, top_k=5, pseudonym_key=Secret("k"), exclude_recent=False)
    assert Settings.from_env(s.to_env()) == s


def test_prefixed_topic_names():
    assert Settings.from_env({"STREAMREC_TOPIC_PREFIX": "t1."}).topic("metrics") == "t1.metrics"


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"STREAMREC_BLEND_WEIGHTS": '{"covist": 1}'}, r"unknown features \['covist'\]"),
        ({"STREAMREC_BLEND_WEIGHTS": "covisit=1"}, "JSON object feature -> number"),
        ({"STREAMREC_BLEND_WEIGHTS": "[1]"}, "JSON object feature -> number"),
        ({"STREAMREC_RANKER_FEEDBACK": "clicks"}, "'auto', 'lists' or 'impressions'"),
        ({"STREAMREC_RANKER_OFFERS": "all"}, "'pool' or 'list'"),
        ({"STREAMREC_RANKER_OBJECTIVE": "listwise"}, "'pairwise' or 'pointwise'"),
    ],
)
def test_ranking_options_refuse_bad_values_saying_what_is_allowed(env, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_env(env)


def test_blend_weights_reach_the_recommender():
    from streamrec.build import build_engine
    from streamrec.core.ranking.models import FEATURES

    s = Settings.from_env({"STREAMREC_BLEND_WEIGHTS": '{"sequence": 0.7}'})
    blend = build_engine(s).recommender.blend
    assert blend.w[FEATURES.index("sequence")] == 0.7


def _breaking_values() -> list[tuple[str, str]]:
    from streamrec.settings_rules import AT_LEAST, BETWEEN, CHOICES, POSITIVE

    out = [(name, "nonsense") for name in CHOICES]
    out += [(name, str(low - 1)) for name, low in AT_LEAST.items()]
    out += [(name, str(high)) for name, (_low, high) in BETWEEN.items()]
    out += [(name, "0") for name in POSITIVE]
    return out


@pytest.mark.parametrize(("name", "value"), _breaking_values())
def test_every_rule_refuses_a_bad_value_naming_the_variable_and_the_value(name, value):
    with pytest.raises(ConfigError, match=rf"STREAMREC_{name.upper()} must .*{value}"):
        Settings.from_env({f"STREAMREC_{name.upper()}": value})
