"""`streamrec`: one console script with subcommands; every flag falls back to STREAMREC_* env."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from streamrec import commands as c
from streamrec.errors import StreamrecError
from streamrec.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamrec", description=__doc__)
    p.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING (env STREAMREC_LOG_LEVEL)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    _add_runtime(sub)
    _add_operations(sub)
    _add_measuring(sub)
    _add_benchmarks(sub)
    return p


def _kafka_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--bootstrap", help="Kafka bootstrap servers (env STREAMREC_KAFKA_BOOTSTRAP)")
    sp.add_argument("--topic-prefix", help="topic name prefix (env STREAMREC_TOPIC_PREFIX)")


def _add_runtime(sub: Any) -> None:
    """The processes of a deployment: broker, topics, worker, scorer and its models."""
    sp = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (memory only)")
    sp.add_argument("--port", type=int, help="port on 127.0.0.1 (env STREAMREC_BROKER_PORT)")
    sp.set_defaults(func=c.cmd_broker)

    sp = sub.add_parser("topics", help="topic contracts")
    tsub = sp.add_subparsers(dest="topics_command", required=True)
    tp = tsub.add_parser("create", help="create every topic in topics/ (idempotent)")
    _kafka_flags(tp)
    tp.set_defaults(func=c.cmd_topics)

    sp = sub.add_parser("worker", help="run the ingest + profile + recommend worker")
    _kafka_flags(sp)
    sp.add_argument(
        "--store", choices=["rocksdb", "memory"], help="table store (env STREAMREC_STORE)"
    )
    sp.set_defaults(func=c.cmd_worker)

    sp = sub.add_parser("scorer", help="run the BERT scorer worker (query and item vectors)")
    _kafka_flags(sp)
    sp.add_argument("--model-dir", help="encoder directory (env STREAMREC_ENCODER_MODEL_DIR)")
    sp.add_argument("--device", help="auto, cpu or cuda[:N] (env STREAMREC_ENCODER_DEVICE)")
    sp.set_defaults(func=c.cmd_scorer)

    sp = sub.add_parser(
        "load-model", help="tell every running scorer to hot-swap to a new encoder directory"
    )
    _kafka_flags(sp)
    sp.add_argument("model_dir", help="the directory, as the scorer hosts see it")
    sp.set_defaults(func=c.cmd_load_model)

    sp = sub.add_parser(
        "finetune", help="fine-tune the encoder on (query, clicked item) pairs from an event log"
    )
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", help="event log (JSONL/CSV, as `replay --file` reads)")
    src.add_argument("--pairs", help="CSV with columns query,item_title")
    sp.add_argument("--catalog", help="catalog JSONL (item_id, title, ...) for --events")
    sp.add_argument("--out", required=True, help="parent directory of the versioned model dirs")
    sp.add_argument("--base", help="model to start from (default: the configured encoder)")
    sp.add_argument("--epochs", type=int, default=3)
    sp.add_argument("--batch-size", type=int, default=32)
    sp.add_argument("--lr", type=float, default=2e-5)
    sp.add_argument("--warmup", type=float, default=0.1, help="warm-up share of the steps")
    sp.add_argument("--holdout", type=float, default=0.2, help="held-out share of the pairs")
    sp.add_argument("--patience", type=int, default=2, help="evaluations without improvement")
    sp.add_argument(
        "--eval-every", type=int, default=0, help="steps between evaluations (0: per epoch)"
    )
    sp.add_argument("--temperature", type=float, default=0.05)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=c.cmd_finetune)


def _add_operations(sub: Any) -> None:
    """What operators run against a deployment: replay, repartition, lookups, erasure, DLQ."""
    sp = sub.add_parser(
        "replay", help="replay an event log or MovieLens-100k into storefront.events"
    )
    _kafka_flags(sp)
    sp.add_argument("--file", help="JSONL or CSV event log (default: the MovieLens-100k sample)")
    sp.add_argument("--format", choices=("csv", "jsonl", "pairs"),
                    help="read --file as `evaluate` reads logs (aliases, "
                         "'user item [ts]' lines, .gz); its items as the catalog")  # fmt: skip
    sp.add_argument("--limit", type=int, help="only the first N events (in time order)")
    sp.add_argument("--speed", type=float, help="real time x SPEED (default: as fast as possible)")
    sp.add_argument("--no-catalog", action="store_true", help="do not publish catalog items first")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=c.cmd_replay)

    sp = sub.add_parser(
        "repartition", help="copy a topic keyed otherwise into storefront.events keyed by user id"
    )
    _kafka_flags(sp)
    sp.add_argument("--source", required=True, help="the topic to read (full name, no prefix)")
    sp.set_defaults(func=c.cmd_repartition)

    sp = sub.add_parser("data", help="sample data")
    dsub = sp.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("fetch", help="download the MovieLens-100k sample (recbole wheel) once")
    dp.add_argument("--quiet", action="store_true")
    dp.set_defaults(func=c.cmd_data)

    sp = sub.add_parser("recs", help="print the latest recommendations for a raw user id")
    _kafka_flags(sp)
    sp.add_argument("user_id")
    sp.add_argument("-k", type=int, default=10)
    sp.add_argument("--timeout", type=float, default=5.0)
    sp.set_defaults(func=c.cmd_recs)

    sp = sub.add_parser("serve", help="the HTTP API and page (lists, similar, search, events)")
    _kafka_flags(sp)
    sp.add_argument("--host", help="address to listen on (env STREAMREC_SERVE_HOST)")
    sp.add_argument("--port", type=int, help="port (env STREAMREC_SERVE_PORT, default 8080)")
    sp.set_defaults(func=c.cmd_serve)

    sp = sub.add_parser("forget", help="erase a raw user id everywhere streamrec keeps it")
    _kafka_flags(sp)
    sp.add_argument("user_id")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a worker")
    sp.set_defaults(func=c.cmd_forget)

    sp = sub.add_parser("dlq", help="list, open and replay dead letters (sealed at rest)")
    dsub = sp.add_subparsers(dest="dlq_command", required=True)
    for name, what in (
        ("list", "dead letters by reason, and the latest ones"),
        ("show", "open dead letters (needs the worker's keys)"),
        ("replay", "send dead letters back to their topic after a fix"),
    ):
        dp = dsub.add_parser(name, help=what)
        _kafka_flags(dp)
        dp.add_argument("refs", nargs="+" if name == "show" else "*",
                        help="topic:partition:offset, as `list` shows them")  # fmt: skip
        dp.add_argument("--reason")
        dp.set_defaults(func=c.cmd_dlq)
        if name == "list":
            dp.add_argument("--limit", type=int, default=20)
        if name == "replay":
            dp.add_argument("--again", action="store_true", help="also those replayed before")
            dp.add_argument("--dry-run", action="store_true")


def _add_measuring(sub: Any) -> None:
    """Trying it and judging it: the demo and the evaluation."""
    sp = sub.add_parser(
        "demo", help="broker + topics + worker + replay of MovieLens-100k + summary"
    )
    sp.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--no-scorer", action="store_true", help="run without the BERT scorer")
    sp.add_argument(
        "--live-rate", type=int, default=1000, help="events/s of the live phase (default 1000)"
    )
    sp.set_defaults(func=c.cmd_demo)

    sp = sub.add_parser(
        "evaluate",
        help="replay a log through streamrec and baselines (prequential, leave-last-out); report",
    )
    sp.add_argument(
        "--dataset",
        default="ml-100k",
        help="ml-100k, synthetic, or a log file: CSV/JSONL (user, item, timestamp, ...) or "
        "'user item' lines",
    )
    sp.add_argument("--format", choices=["csv", "jsonl", "pairs"], help="log format (default: "
                    "by file suffix: .csv, .jsonl, anything else 'user item' lines)")  # fmt: skip
    sp.add_argument("--out", required=True, help="folder for report.md/.html, results.json, PNGs")
    sp.add_argument("--limit", type=int, help="only the first N events (in time order)")
    sp.add_argument(
        "--models",
        default="streamrec,popular,trending,covisit,sr,sknn,biased_mf",
        help="comma-separated: streamrec, popular, trending, covisit, sr, sknn, biased_mf",
    )
    sp.add_argument("--protocols", default="prequential,leave_last_out")
    sp.add_argument(
        "--part",
        choices=["all", "validation", "validation-late", "test"],
        default="all",
        help="score all events; the first half by time only (choose settings here); the "
        "first half, scoring its second half only (shaped like test); or learn from all "
        "and score the second half only (report this)",
    )
    sp.add_argument(
        "--no-vectors", action="store_true", help="streamrec without item/query vectors (no BERT)"
    )
    sp.add_argument(
        "--through-kafka",
        action="store_true",
        help="also replay into a local pipeline (embedded broker) and score its published lists",
    )
    sp.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with --through-kafka: worker processes in the pipeline (more than one: four "
        "partitions or more, learned item state shared over shared.state)",
    )
    sp.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="with --through-kafka: replay at this many events/s, as live traffic comes "
        "(default: as fast as possible, a backlog)",
    )
    sp.add_argument(
        "--repeats", action="store_true", help="also score interactions with items seen before"
    )
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=c.cmd_evaluate)


def _add_benchmarks(sub: Any) -> None:
    """Throughput, freshness, the scorer's rate, and the live monitor."""
    sp = sub.add_parser("bench", help="throughput and freshness benchmark (starts its own stack)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--bootstrap", help="attach to a running pipeline on this cluster instead")
    sp.add_argument("--topic-prefix", help="with --bootstrap: the running pipeline's prefix")
    sp.add_argument("--events", type=int, default=30_000, help="events for the throughput run")
    sp.add_argument("--loads", default="500,1000", help="offered loads (events/s) for freshness")
    sp.add_argument("--seconds", type=float, default=15.0, help="duration of each offered load")
    sp.add_argument(
        "--workers",
        default="1",
        help="worker processes; a list (e.g. 1,2,3): the scale-out run instead, throughput "
        "per count with learned state shared, the shared topic's bandwidth and the fold cost",
    )
    sp.add_argument(
        "--scorer",
        action="store_true",
        help="run a scorer too: searches get query vectors; adds the Kafka round-trip figures",
    )
    sp.add_argument(
        "--rank-items",
        help="e.g. 10000,100000: rank-stage latency in process at these catalog sizes, and "
        "the throughput run with item vectors loaded (events_per_s_ranked)",
    )
    sp.add_argument("--out", help="also write the JSON here")
    sp.set_defaults(func=c.cmd_bench)

    sp = sub.add_parser(
        "monitor", help="follow metrics, drift.stats and alerts live (rich), or --once --json"
    )
    _kafka_flags(sp)
    sp.add_argument("--once", action="store_true", help="print what the topics hold now, exit")
    sp.add_argument("--json", action="store_true", help="with --once: one JSON object")
    sp.add_argument(
        "--since", type=float, default=300.0, help="seconds of windows to add up (default 300)"
    )
    sp.set_defaults(func=c.cmd_monitor)

    sp = sub.add_parser(
        "bench-scorer", help="BERT encoder throughput, cache and latency (in process)"
    )
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--model", help="model directory (default: the packaged all-MiniLM-L6-v2)")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    sp.add_argument("--backend", choices=("auto", "torch", "onnx", "onnx-int8"),
                    help="default: STREAMREC_ENCODER_BACKEND (auto: int8 ONNX on CPU)")  # fmt: skip
    sp.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    sp.add_argument("--stream", type=int, default=20_000, help="queries in the Zipf stream")
    sp.add_argument("--rps", type=float, help="offered requests/s for the latency run")
    sp.add_argument("--seconds", type=float, default=10.0, help="duration of the latency run")
    sp.set_defaults(func=c.cmd_bench_scorer)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        level = args.log_level or Settings.from_env().log_level
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # The Kafka clients narrate every connection at INFO; their warnings still show.
        for noisy in ("kafka", "aiokafka"):
            logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
        # kafka-python 3 warns whenever one of its IO tasks runs > 100 ms, which a busy
        # 2-core machine does all the time; it says nothing about our data.
        logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("streamrec: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        from streamrec.tools import stack

        if stack.interrupted is not None:  # the interrupt surfaced as a client error
            print(
                "streamrec: interrupted; every process it started has been stopped", file=sys.stderr
            )
            return 130
        if isinstance(exc, StreamrecError):
            print(f"streamrec: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
