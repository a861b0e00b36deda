"""The ceiling of one Faust hop: the worker's app and batching, no core.

`streamrec bench` runs this next to the real worker on the same broker to
report `faust_passthrough_per_s`: a Faust agent built like the worker's (same
app settings, the same `take_events` micro-batches, the same fetch max wait,
the same raw producer path) that decodes each event and sends one small
message on. What the ranked worker reaches against it is the share of a
Faust hop the core costs.

    python -m streamrec.worker.passthrough SOURCE_TOPIC DEST_TOPIC

(settings from the environment, as for `streamrec worker`).
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

from streamrec import clients, serde
from streamrec.settings import Settings


def build(settings: Settings, source: str, dest: str) -> Any:
    """The pass-through Faust app: decode each event, send {event_id, produced_ts} on."""
    from streamrec.worker.faust_app import faust_app
    from streamrec.worker.faust_tuning import set_fetch_max_wait_ms

    s = settings.with_overrides(web_enabled=False, store="memory")
    # Faust creates its data dir without parents and exits 0 when it cannot.
    Path(s.data_dir, "faust").mkdir(parents=True, exist_ok=True)
    set_fetch_max_wait_ms(s.fetch_max_wait_ms)
    app = faust_app(s, f"{s.app_id}-passthrough-{uuid.uuid4().hex[:6]}")
    topic = app.topic(source, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")  # fmt: skip

    async def passthrough(stream: Any) -> None:
        async for batch in stream.take_events(s.batch_max, s.batch_within_ms / 1000.0):
            now = int(time.time() * 1000)
            for ev in batch:
                doc = serde.loads(ev.value)
                value = serde.dumps({"event_id": doc.get("event_id"), "produced_ts": now})
                await app.producer.send(dest, ev.key, value, None, None, None)

    app.agent(topic, name="passthrough")(passthrough)
    return app


def measure(
    settings: Settings, messages: list[tuple[bytes, bytes]], timeout_s: float = 300
) -> float:
    """Events/s of the pass-through over `messages` (key, value), sent first as a backlog.

    Runs the app as its own process, like a worker; the rate is taken over the
    middle 80% of the messages it sent on, by their produce times (as
    `events_per_s` is for the worker).
    """
    import os
    import subprocess

    from kafka.admin import NewTopic

    from streamrec.contracts import STOREFRONT_EVENTS, partitions_for
    from streamrec.tools.admin import admin_client

    tag = uuid.uuid4().hex[:8]
    source, dest = settings.topic(f"bench-faust-in-{tag}"), settings.topic(f"bench-faust-out-{tag}")
    parts = partitions_for(STOREFRONT_EVENTS, settings.partitions)
    admin = admin_client(settings)
    admin.create_topics([NewTopic(source, parts, 1), NewTopic(dest, parts, 1)])
    admin.close()
    producer = clients.producer(settings, linger_ms=5)
    for key, value in messages:
        producer.send(source, value, key=key)
    producer.flush()
    producer.close()
    consumer = clients.consumer(
        settings, dest, auto_offset_reset="earliest", enable_auto_commit=False
    )
    env = {**os.environ, **settings.to_env()}
    log_path = Path(settings.data_dir) / f"faust-passthrough-{tag}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.worker.passthrough", source, dest],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    produced: list[int] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(produced) < len(messages) and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the Faust pass-through exited with {proc.returncode}; see {log_path}"
                )
            for records in consumer.poll(timeout_ms=500).values():
                produced.extend(serde.loads(r.value)["produced_ts"] for r in records)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        consumer.close()
    return middle_rate(produced)


def middle_rate(produced_ms: list[int]) -> float:
    """Messages/s over the middle 80% of produce times: start-up and the tail left out."""
    produced = sorted(produced_ms)
    lo, hi = int(len(produced) * 0.1), int(len(produced) * 0.9) - 1
    span_s = (produced[hi] - produced[lo]) / 1000 if hi > lo else 0.0
    return (hi - lo) / span_s if span_s > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m streamrec.worker.passthrough SOURCE_TOPIC DEST_TOPIC",
              file=sys.stderr)  # fmt: skip
        return 2
    import contextlib

    from faust import Worker

    app = build(Settings.from_env(), args[0], args[1])
    worker = Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    with contextlib.suppress(SystemExit):  # Faust exits 0 whatever happened
        worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
