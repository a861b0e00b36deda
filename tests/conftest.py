"""Shared fixtures: settings that ignore the developer's own STREAMREC_* environment."""

from __future__ import annotations

import pytest

from streamrec.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({})
