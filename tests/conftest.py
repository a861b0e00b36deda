"""Shared fixtures: settings that ignore the developer's own STREAMREC_* environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT directory (built once per session)."""
    pytest.importorskip("transformers")
    from tests.tiny_bert import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny BERT (other weights, so another version): the hot-swap target."""
    pytest.importorskip("transformers")
    from tests.tiny_bert import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert-b", seed=1)
