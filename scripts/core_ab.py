"""The core's cost per event, this checkout against another, alternated on one machine.

    git worktree add /tmp/base <commit>
    python scripts/core_ab.py --base /tmp/base --runs 3     # 10,000 events per run

Each run is `scripts/rank_in_process.py --batch-times` (this checkout's script)
with `PYTHONPATH` set to one of the two checkouts, so both run the same
workload; runs alternate. A busy or throttled machine moves whole runs by
±15%, more than most changes to the core: the figure to read is the ratio of
per-batch minima (each timed batch's fastest run, summed), which such spells
mostly leave out. The per-run figures are printed too, to show the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def one_run(checkout: Path, events: int, out: Path) -> np.ndarray:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, str(HERE / "rank_in_process.py"), "--events", str(events),
           "--batch-times", str(out)]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return np.array(json.loads(out.read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, type=Path, help="the other checkout")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args()
    this = HERE.parent
    runs: dict[str, list[np.ndarray]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, checkout in (("base", args.base), ("this", this)):
                t = one_run(checkout, args.events, Path(tmp) / f"{name}{i}.json")
                runs[name].append(t)
                ms = t.sum() / len(t) / args.batch * 1e3
                print(f"run {i + 1}/{args.runs} {name}: {ms:.3f} ms/event", flush=True)
    best = {name: np.min(np.stack(r), axis=0).sum() for name, r in runs.items()}
    batches = len(runs["this"][0])
    for name in ("base", "this"):
        print(f"{name}: per-batch minima {best[name] / batches / args.batch * 1e3:.3f} ms/event")
    print(f"this / base: {best['this'] / best['base']:.3f}")


if __name__ == "__main__":
    main()
