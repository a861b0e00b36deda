"""Logging for long-running processes: one line about a lost broker, not thousands.

With the broker gone, aiokafka logs every failed connect, metadata refresh,
fetch, heartbeat and produce: measured, 7,400 error lines in 20 s from one
worker, which buries everything else. `quiet_broker_outages` lets the first
such line through (with what it means), then one per `every_s` saying how many
were held back; everything else logs as before.
"""

from __future__ import annotations

import importlib
import logging
import time

#: What aiokafka says while it cannot reach a broker.
OUTAGE_MARKERS = (
    "Unable connect",
    "Unable to bootstrap",
    "Unable to update metadata",
    "NodeNotReadyError",
    "KafkaConnectionError",
    "Connect call failed",
    "Group Coordinator Request failed",
    "Marking the coordinator dead",
    "Got error produce response",
    "Failed fetch messages",
    "Heartbeat failed",
    "Error sending",
)


class OutageFilter(logging.Filter):
    """Rate-limits broker-outage lines; attached to every aiokafka logger.

    >>> f = OutageFilter(every_s=60)
    >>> rec = lambda: logging.LogRecord("aiokafka", 40, "", 0, "Unable connect to node 1", (), None)
    >>> first, second = rec(), rec()
    >>> f.filter(first), f.filter(second), f.held_back
    (True, False, 1)
    >>> first.getMessage()[:38]
    'Kafka broker unreachable, reconnecting'
    """

    def __init__(self, every_s: float = 30.0) -> None:
        super().__init__()
        self.every_s = every_s
        self.held_back = 0
        self._last = -float("inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not any(m in message for m in OUTAGE_MARKERS):
            return True
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.held_back += 1
            return False
        held, self.held_back, self._last = self.held_back, 0, now
        record.msg = (
            f"Kafka broker unreachable, reconnecting ({message}); "
            f"{held} more such lines held back since the last one, "
            f"at most one is shown every {self.every_s:.0f} s"
        )
        record.args = ()
        return True


def quiet_broker_outages(every_s: float = 30.0) -> OutageFilter:
    """Attach one `OutageFilter` to aiokafka's loggers (those that exist now, and its root)."""
    for module in ("aiokafka.consumer.fetcher", "aiokafka.producer.sender"):
        importlib.import_module(module)  # their loggers must exist before we attach

    shared = OutageFilter(every_s)
    names = [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] == "aiokafka"]
    for name in {"aiokafka", *names}:
        logging.getLogger(name).addFilter(shared)
    return shared
