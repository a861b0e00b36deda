"""`streamrec serve`: wires the store, the follower, the scorer client and the producer
to the HTTP app, and runs it until SIGTERM / Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from pathlib import Path

from aiohttp import web

from streamrec import clients
from streamrec.contracts import (
    CATALOG_EMBEDDINGS,
    STOREFRONT_EVENTS,
    load_contract,
    partitions_for,
)
from streamrec.core.ingest import Deduplicator, Ingestor
from streamrec.core.privacy import Pseudonymizer
from streamrec.errors import ConfigError
from streamrec.serve.api import Service, build_app
from streamrec.serve.follow import Follower
from streamrec.serve.http import Keys
from streamrec.serve.state import ServingState
from streamrec.serve.store import ListStore
from streamrec.settings import Settings

log = logging.getLogger(__name__)


def store_dir(s: Settings, port: int) -> Path:
    """Each replica its own store (RocksDB locks it): one per host and port under the
    data dir, unless STREAMREC_SERVE_STORE_DIR names one."""
    if s.serve_store_dir:
        return Path(s.serve_store_dir)
    return s.data_dir / f"serve-{s.hostname()}-{port}"


def check_access(s: Settings, host: str) -> Keys:
    """The API keys, refusing an open service anywhere but on loopback."""
    read, write = s.resolved_api_keys()
    loopback = host == "localhost" or _is_loopback(host)
    if not loopback and not (read and write):
        raise ConfigError(
            f"streamrec serve on {host} needs STREAMREC_API_READ_KEYS and "
            "STREAMREC_API_WRITE_KEYS (without keys it only listens on 127.0.0.1)"
        )
    if not (read and write):
        open_to = "reads and writes" if not (read or write) else "reads" if not read else "writes"
        log.warning("no API keys for %s: anyone on this host may use them (dev only)", open_to)
    return Keys(read, write)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_state(s: Settings, port: int) -> ServingState:
    return ServingState(
        ListStore(
            store_dir(s, port),
            cache_mb=s.store_block_cache_mb,
            write_buffer_mb=s.store_write_buffer_mb,
        ),
        Pseudonymizer(s.resolved_pseudonym_key()),
        embedding_partitions=partitions_for(CATALOG_EMBEDDINGS, s.partitions),
        hnsw_above=s.index_hnsw_above,
        trending_half_life_s=s.trending_half_life_s,
        control=s.experiment_config().control.name,
    )


def make_ingestor(s: Settings, pseudonymize: Pseudonymizer) -> Ingestor:
    """The worker's checks (contract, size, time) without its de-duplication."""
    return Ingestor(
        pseudonymize,
        validate=load_contract(STOREFRONT_EVENTS).validator,
        max_event_bytes=s.max_event_bytes,
        min_ts_ms=s.min_event_ts_ms,
        max_future_skew_ms=int(s.max_future_skew_s * 1000),
        dedup=Deduplicator(1, 1),  # `check` never uses it
    )


async def serve(s: Settings, host: str, port: int, stop: asyncio.Event) -> None:
    from streamrec.worker.scorer_client import ScorerClient

    keys = check_access(s, host)
    state = build_state(s, port)
    follower = Follower(s, state)
    producer = clients.aio_producer(
        s,
        # acks=all; one request in flight per partition keeps a user's events in order
        # (aiokafka's sender), without the idempotent producer the embedded broker lacks.
        acks="all",
        linger_ms=s.producer_linger_ms,
)  # fmt: skip
    scorer = ScorerClient(s, client_id=f"serve-{s.hostname()}-{port}")
    topic = s.topic(STOREFRONT_EVENTS)

    async def send_events(events: list[tuple[bytes, bytes]]) -> None:
        sends = [await producer.send(topic, value, key=key) for key, value in events]
        await asyncio.gather(*sends)  # acknowledged by the broker before we answer

    async with contextlib.AsyncExitStack() as running:
        running.callback(state.lists.close)
        running.push_async_callback(follower.stop)
        await follower.start()
        running.push_async_callback(producer.stop)
        await producer.start()
        if s.scorer_enabled:
            running.push_async_callback(scorer.stop)
            await scorer.start()
        follow = asyncio.create_task(follower.run(), name="follow")
        running.push_async_callback(_cancel, follow)
        service = Service(
            state, make_ingestor(s, state.pseudonymize), send_events,
            scorer.embed if s.scorer_enabled else None, lambda: follower.ready, follower.lag,
            s.top_k, s.serve_max_batch, s.scorer_timeout_ms,
        )  # fmt: skip
        app = build_app(service, keys, cors_origins=s.serve_cors_origins,
                        max_body_bytes=s.serve_max_body_bytes)  # fmt: skip
        runner = web.AppRunner(app, access_log=None)  # an access log would hold raw user ids
        await runner.setup()
        running.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        log.info("serving on http://%s:%d (store %s, %d users)", host, port,
                 state.lists.path, state.lists.users())  # fmt: skip
        done = asyncio.create_task(stop.wait())
        await asyncio.wait({follow, done}, return_when=asyncio.FIRST_COMPLETED)
        if follow.done():
            follow.result()  # the follower died: raise its error, exit non-zero
        done.cancel()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def run_serve(s: Settings, host: str, port: int) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(s, host, port, stop)

    asyncio.run(main())
    return 0
