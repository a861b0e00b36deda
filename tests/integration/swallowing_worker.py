"""`streamrec worker` whose Faust fetch swallows events once: every event of one
partition from an offset on is fetched and never handed to the agent, the first
time it comes. Faust's read offset then stands past them, as it did in the
restarts where a partition stopped for good. Run as a script by a test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any


def swallow_once(topic: str, partition: int, from_offset: int) -> None:
    from faust.transport import consumer as faust_consumer

    original = faust_consumer.Consumer.getmany
    swallowed: set[int] = set()

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        async for tp, message in original(self, timeout):
            mine = (tp.topic, tp.partition) == (topic, partition)
            if mine and message.offset >= from_offset and message.offset not in swallowed:
                swallowed.add(message.offset)
                continue
            yield tp, message

    faust_consumer.Consumer.getmany = getmany  # type: ignore[method-assign]


if __name__ == "__main__":
    swallow_once(os.environ["SWALLOW_TOPIC"], 0, int(os.environ["SWALLOW_FROM"]))
    from streamrec.cli import main

    sys.argv = ["streamrec", "worker"]
    sys.exit(main())
