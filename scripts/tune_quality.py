"""Choose streamrec's settings on every data set at once: the worst ratio to the best baseline.

Each candidate setting (a JSON object of Settings fields) runs on the
validation split of every data set and protocol below; its score is the worst
of its NDCG@10 ratios to the best baseline there. Tuning on one data set is
tuning to it; the worst ratio is what a shop nobody here has seen can expect.
The baselines do not depend on the candidates: they run once per split and
are cached in `--cache`.

    python scripts/tune_quality.py --video ../shared/data/amazon_video_games.txt.gz \\
        --candidates '[{}, {"covisit_anchors": 5}]' --json out.json

Splits: Amazon Video Games leave-last-out, each user's second-to-last item
held out; MovieLens-100k prequential and leave-last-out, `--part validation`.
Reported figures come from `streamrec evaluate --part test`, never from here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from streamrec.evaluation.runner import evaluate, load_dataset
from streamrec.settings import Settings

BASELINES = ("popular", "covisit", "sr", "sknn", "biased_mf")
METRIC = "ndcg@10"


def splits(video: Path | None) -> list[tuple[str, str, str, str | None]]:
    """(label, dataset, protocol, format) of every split a candidate runs on."""
    out: list[tuple[str, str, str, str | None]] = [
           ("ml-100k prequential", "ml-100k", "prequential", None),
           ("ml-100k leave-last-out", "ml-100k", "leave_last_out", None)]  # fmt: skip
    if video is not None:
        out.append(("video games leave-last-out", str(video), "leave_last_out", "pairs"))
    return out


def ndcg(settings: Settings, dataset: str, protocol: str, fmt: str | None,
         models: tuple[str, ...]) -> dict[str, float]:  # fmt: skip
    log = load_dataset(dataset, settings, fmt)
    result = evaluate(log, settings, models=models, protocols=(protocol,), vectors=False,
                      part="validation", progress=False, say=lambda _m: None)  # fmt: skip
    return {m: run.segments["all"][METRIC] for m, run in result.runs[protocol].items()}


def baselines(
    cache: Path, label: str, dataset: str, protocol: str, fmt: str | None
) -> dict[str, float]:
    path = cache / f"{label.replace(' ', '-')}.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    got = ndcg(Settings.from_env({}), dataset, protocol, fmt, BASELINES)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(got, indent=2))
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, help="Amazon Video Games 'user item' file (.gz ok)")
    ap.add_argument("--candidates", default="[{}]",
                    help="JSON list of setting overrides, or @file.json")  # fmt: skip
    ap.add_argument("--only", default="", help="run only splits whose label contains this")
    ap.add_argument("--cache", type=Path, default=Path(".cache/tune-baselines"))
    ap.add_argument("--json", type=Path, help="append each candidate's figures here")
    args = ap.parse_args()
    raw = args.candidates
    candidates = json.loads(Path(raw[1:]).read_text() if raw.startswith("@") else raw)
    todo = [s for s in splits(args.video) if args.only in s[0]]
    best = {s[0]: baselines(args.cache, *s) for s in todo}
    for label, figures in best.items():
        name, value = max(figures.items(), key=lambda kv: kv[1])
        print(f"{label}: best baseline {name} {value:.4f}", flush=True)
    for overrides in candidates:
        t0 = time.perf_counter()
        s = Settings.from_env({}, **overrides)
        ratios = {}
        for label, dataset, protocol, fmt in todo:
            mine = ndcg(s, dataset, protocol, fmt, ("streamrec",))["streamrec"]
            ratios[label] = (mine, mine / max(best[label].values()))
        worst = min(r for _v, r in ratios.values())
        row = {"settings": overrides, "worst": round(worst, 4),
               "ratios": {k: [round(v, 5), round(r, 4)] for k, (v, r) in ratios.items()},
               "seconds": round(time.perf_counter() - t0)}  # fmt: skip
        print(json.dumps(row), flush=True)
        if args.json:
            with args.json.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
