"""The Faust app every streamrec Faust process is built on (the worker, the
benchmark's pass-through): broker, credentials, store, producer and consumer
settings from `Settings`, raw keys and values (the core owns the encoding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from streamrec.contracts import STOREFRONT_EVENTS, partitions_for
from streamrec.settings import Settings
from streamrec.worker.lifecycle import faust_credentials

MiB = 1_048_576


def faust_app(s: Settings, app_id: str) -> faust.App:
    """A Faust app with the worker's broker, store, batching and producer settings."""
    return faust.App(
        app_id,
        broker=[f"kafka://{b}" for b in s.bootstrap_list()],
        broker_credentials=faust_credentials(s),
        store="rocksdb://" if s.store == "rocksdb" else "memory://",
        datadir=str(Path(s.data_dir) / "faust"),
        topic_partitions=partitions_for(STOREFRONT_EVENTS, s.partitions),
        topic_allow_declare=True,
        topic_disable_leader=True,
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=s.heartbeat_interval_s,
        broker_request_timeout=max(90.0, s.session_timeout_s + 10),
        producer_linger=s.producer_linger_ms / 1000.0,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=s.web_enabled,
        web_port=s.web_port,
        key_serializer="raw",
        value_serializer="raw",
    )


def profile_table(app: faust.App, s: Settings, partitions: int) -> Any:
    """The profile table: raw bytes in the store and the changelog (the core owns the
    encoding), RocksDB sized for small values."""
    return app.Table(
        "profiles",
        default=None,
        # bytes types make Faust pick the raw codec for store and changelog alike
        # (a Schema would leave the store on JSON).
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        # Per partition's RocksDB: Faust's defaults (64 MB x 3 write buffers, a 2 GB
        # block cache) let one worker grow to gigabytes; profiles are small.
        options={
            "write_buffer_size": s.store_write_buffer_mb * MiB,
            "max_write_buffer_number": 2,
            "block_cache_size": s.store_block_cache_mb * MiB,
        },
    )
