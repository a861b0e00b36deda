"""The serving replica's list store and its access settings, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.errors import ConfigError
from streamrec.serve.app import check_access
from streamrec.serve.store import ListStore
from streamrec.settings import Settings


def test_lists_and_offsets_survive_a_restart_and_tombstones_delete(tmp_path: Path) -> None:
    with ListStore(tmp_path) as store:
        store.apply([(f"u_{i}".encode(), b'{"i": %d}' % i) for i in range(1000)], "recs", {0: 600})
        store.apply([(b"u_7", None), (b"u_8", b'{"i": 88}')], "recs", {1: 402})
    with ListStore(tmp_path) as store:  # a restarted replica serves at once from its store
        assert store.get("u_7") is None and store.get("u_8") == b'{"i": 88}'
        assert store.get("u_999") == b'{"i": 999}'
        assert store.offsets("recs") == {0: 600, 1: 402}
        assert store.offsets("other-topic") is None  # another topic's store: start over
        assert 900 <= store.users() <= 1100
        store.clear()
        assert store.get("u_8") is None and store.offsets("recs") is None


def test_a_second_replica_on_the_same_store_is_told_what_to_do(tmp_path: Path) -> None:
    with ListStore(tmp_path), pytest.raises(ConfigError, match="STREAMREC_SERVE_STORE_DIR"):
        ListStore(tmp_path)


def test_production_refuses_to_serve_without_keys() -> None:
    prod = {"STREAMREC_MODE": "production", "STREAMREC_PSEUDONYM_KEY": "k" * 32}
    with pytest.raises(ConfigError, match="STREAMREC_API_READ_KEYS"):
        check_access(Settings.from_env(prod), "0.0.0.0")
    short = prod | {"STREAMREC_API_READ_KEYS": "short", "STREAMREC_API_WRITE_KEYS": "w" * 16}
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        check_access(Settings.from_env(short), "0.0.0.0")
    two = "r" * 16 + ", " + "s" * 16
    good = prod | {"STREAMREC_API_READ_KEYS": two, "STREAMREC_API_WRITE_KEYS": "w" * 16}
    keys = check_access(Settings.from_env(good), "0.0.0.0")
    assert len(keys.read) == 2 and len(keys.write) == 1


def test_dev_without_keys_listens_on_loopback_only() -> None:
    dev = Settings.from_env({})
    keys = check_access(dev, "127.0.0.1")
    assert keys.read == () and keys.write == ()
    with pytest.raises(ConfigError, match=r"only listens on 127\.0\.0\.1"):
        check_access(dev, "0.0.0.0")
