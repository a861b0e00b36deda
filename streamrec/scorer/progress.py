"""How far a catalog (re-)embedding has got: items done, rate, time left. No Kafka here.

A hot swap re-embeds the whole catalog with the new model before queries move
to it; on a CPU a 100,000-item catalog takes minutes. The scorer logs a line
from this every `every_s` seconds while items wait, and puts the rate and the
time left in its metrics window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class EmbedProgress:
    """Items embedded per model version since its work began (the first item waiting)."""

    clock: Callable[[], float] = time.monotonic
    every_s: float = 10.0
    _start: dict[str, float] = field(default_factory=dict)
    _done: dict[str, int] = field(default_factory=dict)
    _logged: float = 0.0
    _announced: set[str] = field(default_factory=set)

    def record(self, version: str, embedded: int, waiting: int) -> str | None:
        """`embedded` more items of `version` done, `waiting` left; a line to log when due."""
        now = self.clock()
        self._start.setdefault(version, now)
        self._done[version] = self._done.get(version, 0) + embedded
        if waiting == 0:  # the end of a run of work; said only of one that took a while
            line = self._line(version, waiting, now, finished=True)
            del self._start[version], self._done[version]
            announced = version in self._announced
            self._announced.discard(version)
            return line if announced else None
        if now - self._start[version] < self.every_s or now - self._logged < self.every_s:
            return None
        self._logged = now
        self._announced.add(version)
        return self._line(version, waiting, now)

    def rate(self, version: str) -> float | None:
        """Items per second since `version`'s work began (None before any)."""
        if version not in self._start:
            return None
        elapsed = self.clock() - self._start[version]
        return self._done[version] / elapsed if elapsed > 0 else None

    def seconds_left(self, version: str, waiting: int) -> float | None:
        rate = self.rate(version)
        return waiting / rate if rate else None

    def _line(self, version: str, waiting: int, now: float, finished: bool = False) -> str:
        done = self._done[version]
        elapsed = max(now - self._start[version], 1e-9)
        rate = done / elapsed
        if finished:
            return (
                f"catalog embedded for {version}: {done:,} items in {elapsed:,.0f} s "
                f"({rate:,.0f}/s)"
            )
        left = waiting / rate if rate > 0 else float("inf")
        return (
            f"catalog embedding for {version}: {done:,} done, {waiting:,} waiting, "
            f"{rate:,.0f} items/s, about {_duration(left)} left"
        )


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "an unknown time"
    minutes, s = divmod(int(seconds + 0.5), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"
