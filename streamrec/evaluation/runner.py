"""`streamrec evaluate`: data set -> every model under both protocols -> report folder."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streamrec.datasets.interactions import InteractionLog, read_interactions
from streamrec.errors import ConfigError
from streamrec.evaluation.baselines import BiasedMF, CoVisit, Popular, TrendingBaseline, interacts
from streamrec.evaluation.metrics import popularity_ranks
from streamrec.evaluation.models import (
    CatalogVectors,
    EvaluatedModel,
    StreamrecModel,
    embed_catalog,
)
from streamrec.evaluation.pipeline import PipelineLists, RecordedModel, run_pipeline
from streamrec.evaluation.protocols import (
    CHUNK,
    ModelRun,
    leave_last_out,
    leave_last_out_split,
    prequential,
    prequential_targets,
)
from streamrec.evaluation.sequential import SequentialRules, SessionKNN
from streamrec.evaluation.uncertainty import versus_best_baseline
from streamrec.records import RawEvent
from streamrec.settings import Settings

BASELINES: dict[str, Callable[[], EvaluatedModel]] = {
    "popular": Popular,
    "trending": TrendingBaseline,
    "covisit": CoVisit,
    "sr": SequentialRules,
    "sknn": SessionKNN,
    "biased_mf": BiasedMF,
}
MODELS = ("streamrec", *BASELINES)
PROTOCOLS = ("prequential", "leave_last_out")
DATASETS = ("ml-100k", "synthetic")
PARTS = ("all", "validation", "validation-late", "test")


@dataclass
class Evaluation:
    """Everything a report needs: results per protocol -> model, and how they were made."""

    dataset: str
    runs: dict[str, dict[str, ModelRun]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def results(self) -> dict[str, Any]:
        """protocol -> model -> segment -> metric (the shape of results.json), plus meta."""
        out: dict[str, Any] = {
            protocol: {name: run.segments for name, run in runs.items()}
            for protocol, runs in self.runs.items()
        }
        out["meta"] = self.meta
        return out


def load_dataset(
    name: str, settings: Settings, fmt: str | None = None, limit: int | None = None
) -> InteractionLog:
    """ml-100k (the recbole wheel), synthetic (a seeded shop with searches), or a log file."""
    if name == "ml-100k":
        from streamrec.datasets import movielens

        ml = movielens.load(movielens.fetch(settings.cache_dir, quiet=True), limit=limit)
        return InteractionLog("ml-100k", ml.events, ml.items)
    if name == "synthetic":
        from streamrec.datasets.synthetic import SyntheticShop

        shop = SyntheticShop(users=3_000, items=3_000, seed=11)
        events = shop.events(limit or 60_000, start_ts=1_700_000_000_000, step_ms=2_000)
        return InteractionLog("synthetic", events, shop.catalog)
    path = Path(name)
    if not path.exists():
        raise ConfigError(
            f"--dataset {name!r} is neither one of {', '.join(DATASETS)} nor an existing file"
        )
    log = read_interactions(path, fmt)
    if limit:
        log.events = log.events[:limit]
    return log


def evaluate(
    log: InteractionLog,
    settings: Settings,
    *,
    models: tuple[str, ...] = MODELS,
    protocols: tuple[str, ...] = PROTOCOLS,
    vectors: bool = False,
    through_kafka: bool = False,
    workers: int = 1,
    rate: float = 0.0,
    repeats: bool = False,
    part: str = "all",
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Evaluation:
    """Every model under every protocol on `log`.

    `part`: "all" scores every event; "validation" runs and scores the first half
    of the events by time only (where settings are chosen); "test" learns from all
    of them and scores only the second half (what is reported), so no setting is
    chosen on a figure that is reported. "validation-late" is shaped like "test"
    within the validation half: it learns from the first half and scores only its
    second half (events N/4 to N/2), where the models are as warm, relative to
    what they have seen, as they are when "test" scores.

    A log without times ("user item" lines) has no time to split on: its test
    part is every user's last item (leave-last-out as the literature reports it),
    its validation part every user's second-to-last (their last interaction left
    out of the log), "validation-late" the same.
    """
    unknown = set(models) - set(MODELS) or set(protocols) - set(PROTOCOLS)
    if unknown:
        raise ConfigError(
            f"unknown {sorted(unknown)}: models are {', '.join(MODELS)}; "
            f"protocols are {', '.join(PROTOCOLS)}"
        )
    if part not in PARTS:
        raise ConfigError(f"--part must be one of {', '.join(PARTS)}, not {part!r}")
    half = len(log.events) // 2
    events = log.events[:half] if part.startswith("validation") else log.events
    scored_from = {"test": half, "validation-late": half // 2}.get(part, 0)
    if not log.timed and part != "all":
        events = without_last(log.events) if part.startswith("validation") else log.events
        scored_from = 0
    ev_out = Evaluation(log.name)
    run = _ModelRuns(log, events, settings, ev_out, progress)
    # The worker's batch window, in event time: the micro-batches of live traffic.
    window = settings.batch_within_ms
    ev_out.meta = {
        "dataset": log.name,
        "events": len(events),
        "interactions": len(run.interacted),
        "users": len({ev.user_id for ev in events}),
        "items": len(run.catalog),
        "searches": sum(ev.type == "search" for ev in events),
        "skipped_rows": log.skipped_count,
        "vectors": vectors,
        "through_kafka": through_kafka,
        "repeats_counted": repeats,
        "part": part,
        "micro_batch": {"window_ms": window, "max_events": CHUNK},
        "split": (
            "by time"
            if log.timed or part == "all"
            else "each user's second-to-last item"
            if part.startswith("validation")
            else "each user's last item"
        ),
        "scored_events": [scored_from, len(events)],
        "protocols": {},
    }
    if vectors and "streamrec" in models:
        run.catalog_vectors = embed_catalog(_embedder(settings, say), log.items, progress)
        ev_out.meta["encoder_version"] = run.catalog_vectors.version
        ev_out.meta["items_with_vectors"] = len(run.catalog_vectors.item_ids)
    if "prequential" in protocols:
        targets = prequential_targets(events, repeats, scored_from)
        makers = [run.maker(name) for name in models]
        recorded = None
        batches = None
        if through_kafka and "streamrec" in models:
            recorded = _through_kafka(
                log, events, settings, vectors, progress, ev_out, workers, rate
            )
            pipeline_model = RecordedModel("streamrec", recorded)
            batches = recorded.batches  # one worker: in process in the worker's batches
            makers = [
                ("streamrec", lambda: pipeline_model),
                *(("streamrec_in_process", make) if key == "streamrec" else (key, make)
                  for key, make in makers),
            ]  # fmt: skip
        runs = run.models(
            "prequential", prequential, len(events), makers,
            targets=targets, window_ms=window, batches=batches,
        )  # fmt: skip
        if recorded is not None:
            _compare_with_pipeline(ev_out, runs, recorded)
        ev_out.runs["prequential"] = runs
        ev_out.meta["protocols"]["prequential"] = {
            "scored": sum(t is not None for t in targets),
            "vs_best_baseline": versus_best_baseline(runs),
        }
    if "leave_last_out" in protocols:
        split = leave_last_out_split(events, scored_from)
        ev_out.runs["leave_last_out"] = run.models(
            "leave-last-out",
            leave_last_out,
            len(split[0]) + len(split[1]),
            [run.maker(name) for name in models],
            split=split,
            window_ms=window,
        )
        ev_out.meta["protocols"]["leave_last_out"] = {
            "train_events": len(split[0]),
            "test_users": len(split[1]),
            "vs_best_baseline": versus_best_baseline(ev_out.runs["leave_last_out"]),
        }
    return ev_out


def without_last(events: list[RawEvent]) -> list[RawEvent]:
    """`events` without each user's last interaction (and anything of theirs after it):
    a log whose leave-last-out holds out every user's second-to-last item."""
    last: dict[str, int] = {}
    for i, ev in enumerate(events):
        if interacts(ev):
            last[ev.user_id] = i
    return [ev for i, ev in enumerate(events) if i < last.get(ev.user_id, len(events))]


class _ModelRuns:
    """Runs models one after another on the same events, catalog and popularity."""

    def __init__(
        self,
        log: InteractionLog,
        events: list[RawEvent],
        settings: Settings,
        out: Evaluation,
        progress: bool,
    ) -> None:
        self.log, self.events, self.settings, self.out = log, events, settings, out
        self.progress = progress
        self.interacted = [ev.item_id for ev in events if interacts(ev) and ev.item_id]
        self.catalog = {it.item_id for it in log.items} | set(self.interacted)
        self.popularity = popularity_ranks(self.interacted)
        self.catalog_vectors: CatalogVectors | None = None

    def maker(self, name: str) -> tuple[str, Callable[[], EvaluatedModel]]:
        if name == "streamrec":
            return name, lambda: StreamrecModel(self.settings, self.log.items, self.catalog_vectors)
        return name, BASELINES[name]

    def models(
        self,
        label: str,
        protocol: Callable[..., ModelRun],
        total: int,
        makers: list[tuple[str, Callable[[], EvaluatedModel]]],
        **extra: Any,
    ) -> dict[str, ModelRun]:
        """Every model under one protocol."""
        runs: dict[str, ModelRun] = {}
        meta = self.out.meta
        for key, make in makers:
            desc = f"{label}: {key}"
            t0 = time.perf_counter()
            with tqdm(
                total=total, desc=desc, unit="ev", disable=not self.progress, mininterval=0.5
            ) as bar:
                model = make()
                runs[key] = protocol(
                    self.events,
                    model,
                    catalog_size=len(self.catalog),
                    popularity=self.popularity,
                    progress=bar.update,
                    **extra,
                )
            meta.setdefault("seconds", {})[desc] = round(time.perf_counter() - t0, 2)
            by_model = getattr(model, "lists_by_model", None)
            if by_model:  # streamrec in process: which of its models ranked the lists
                meta.setdefault("lists_by_model", {})[desc] = dict(by_model)
        return runs


def _compare_with_pipeline(
    ev_out: Evaluation, runs: dict[str, ModelRun], recorded: PipelineLists
) -> None:
    """The pipeline's latency (event ingested -> list published) and its agreement with
    the in-process core."""
    pipeline = runs["streamrec"].segments.get("all")
    if pipeline is not None:
        pipeline.pop("latency_ms_mean", None)
        pipeline["latency_ms_p50"] = recorded.freshness.percentile(50)
        pipeline["latency_ms_p99"] = recorded.freshness.percentile(99)
    ev_out.meta["pipeline_agreement"] = _agreement(runs["streamrec"], runs["streamrec_in_process"])


def _through_kafka(
    log: InteractionLog,
    events: list[RawEvent],
    settings: Settings,
    vectors: bool,
    progress: bool,
    ev_out: Evaluation,
    workers: int = 1,
    rate: float = 0.0,
) -> PipelineLists:
    # One worker: one partition, as the in-process run: the same global order of
    # events, so learned state evolves identically and lists can agree. More
    # workers: the topic's partitions (at least one each), learned state shared.
    parts = 1 if workers == 1 else max(workers, settings.partitions or 4)
    s = settings.with_overrides(partitions=parts)
    with tempfile.TemporaryDirectory(prefix="streamrec-eval-") as tmp:
        recorded = run_pipeline(
            events,
            log.items,
            s,
            log_dir=Path(tmp),
            scorer=vectors,
            progress=progress,
            workers=workers,
            rate=rate,
        )
    ev_out.meta["pipeline"] = {
        "lists": len(recorded.lists),
        "events": len(events),
        "seconds": round(recorded.seconds, 1),
        "workers": workers,
        "partitions": parts,
        "rate": rate or None,
        "shared_state": settings.share_state,
    }
    return recorded


def _agreement(a: ModelRun, b: ModelRun) -> dict[str, float]:
    """How far the pipeline's scored ranks match the in-process run's (1.0: all equal)."""
    same = int((a.rank == b.rank).sum()) if len(a.rank) == len(b.rank) else 0
    return {"scored": len(a.rank), "same_rank": same / max(1, len(b.rank))}


def _embedder(settings: Settings, say: Callable[[str], None]) -> Any:
    from streamrec.scorer.embedder import Embedder

    say("loading the encoder (item and query vectors for streamrec)")
    return Embedder.from_settings(settings)


def run_cli(args: argparse.Namespace) -> int:
    from streamrec.evaluation.report import write_report

    settings = Settings.from_env()
    say = (lambda _m: None) if args.quiet else (lambda m: print(f"==> {m}", flush=True))
    say(f"loading {args.dataset}")
    log = load_dataset(args.dataset, settings, args.format, args.limit)
    if log.skipped_count:
        say(f"skipped {log.skipped_count} unreadable rows, e.g. line {log.skipped[0][0]}: "
            f"{log.skipped[0][1]}")  # fmt: skip
    result = evaluate(
        log,
        settings,
        models=_names(args.models),
        protocols=_names(args.protocols),
        vectors=not args.no_vectors,
        through_kafka=args.through_kafka,
        workers=args.workers,
        rate=args.rate,
        repeats=args.repeats,
        part=args.part,
        progress=not args.quiet,
        say=say,
    )
    out = Path(args.out)
    paths = write_report(result, out)
    say(f"report written to {paths['markdown']} (and report.html, results.json, plots)")
    if not args.quiet:
        print(Path(paths["markdown"]).read_text().split("\n## Plots")[0])
    return 0


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())
