"""One embedded broker per test session; unique topics, group and data dir per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamrec import serde
from streamrec.broker import EmbeddedBroker, free_port
from streamrec.client import read_all, tail
from streamrec.contracts import METRICS
from streamrec.records import MetricsWindow
from streamrec.settings import Settings
from streamrec.tools.stack import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    b = EmbeddedBroker(free_port(), log_path=log).start()
    yield b
    b.stop()


@pytest.fixture
def kafka_settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:10]
    return Settings.from_env(
        {},
        kafka_bootstrap=broker.bootstrap,
        topic_prefix=f"t-{tag}.",
        app_id=f"app-{tag}",
        data_dir=tmp_path / "data",
        store="memory",
        metrics_interval_s=1.0,
        snapshot_interval_s=5.0,
        stall_warn_s=10.0,  # a stalled partition is sought back well inside a test's wait
    )


@pytest.fixture
def make_stack(
    kafka_settings: Settings, broker: EmbeddedBroker, tmp_path: Path
) -> Iterator[Callable[..., LocalStack]]:
    stacks: list[LocalStack] = []

    def make(workers: int = 1, scorers: int = 0, **overrides: object) -> LocalStack:
        s = kafka_settings.with_overrides(**overrides)
        stack = LocalStack(
            s,
            workers=workers,
            scorers=scorers,
            broker=broker,
            log_dir=tmp_path / f"logs{len(stacks)}",
        )
        stacks.append(stack)
        stack.start()
        stack.wait_ready()
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def metrics_totals(
    settings: Settings, expect_in: int, timeout_s: float = 30, more: tuple[str, ...] = ()
) -> dict[str, int]:
    """Sum of every worker's windows, once they account for `expect_in` events: the main
    counts, and those named in `more`."""
    deadline = time.monotonic() + timeout_s
    consumer = tail(settings, METRICS)
    windows: list[MetricsWindow] = []
    try:
        while True:
            windows += [
                MetricsWindow.from_dict(serde.loads(r.value)) for r in read_all(consumer, max_s=5)
            ]
            totals = {
                k: sum(w.counts.get(k, 0) for w in windows)
                for k in ("in", "valid", "dlq", "duplicates", *more)
            }
            if totals["in"] >= expect_in or time.monotonic() > deadline:
                return totals
            time.sleep(0.5)
    finally:
        consumer.close()
