"""Per-trial time of two checkouts of this project, measured in one run: the same 6-trial tiny
GRU study (the book trial plus 5) run by each checkout's code in turn, alternating, on the same
machine. For a change to the trial loop, compare it with the commit before it:

    git worktree add /tmp/before HEAD~1
    python benchmarks/bench_checkouts.py /tmp/before . [--rounds 2]

Prints, per checkout and round: the study's wall time, the mean trial wall time (Optuna's
start to complete, the book trial left out), the mean gap between trials, and their sum.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ONE_STUDY = r"""
import pathlib, statistics, sys, tempfile, time
import optuna
from search.study import StudyRequest, run_study
tmp = pathlib.Path(tempfile.mkdtemp())
space = tmp / "tiny.yaml"
space.write_text(sys.argv[1])
storage = f"sqlite:///{tmp / 's.db'}"
started = time.time()
run_study(StudyRequest(study="p", storage=storage, tracking_uri=f"sqlite:///{tmp / 'm.db'}",
                       space=str(space), max_rows=20000, trials=6, seed=0))
total = time.time() - started
trials = optuna.load_study(study_name="p", storage=storage).trials
wall = statistics.mean((t.datetime_complete - t.datetime_start).total_seconds() for t in trials[1:])
gap = statistics.mean((b.datetime_start - a.datetime_complete).total_seconds()
                      for a, b in zip(trials, trials[1:]))
print(f"RESULT {total:.1f} {wall:.2f} {gap:.2f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts: before, after")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from benchmarks.bench_distributed import TINY_SPACE

    print("| checkout | round | study s | trial wall s | between trials s | per trial s |")
    print("|---|---:|---:|---:|---:|---:|")
    for round_ in range(args.rounds):
        for tree in args.trees:
            env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
            env.pop("MLFLOW_TRACKING_URI", None)
            done = subprocess.run(
                [sys.executable, "-c", ONE_STUDY, TINY_SPACE],
                env=env, capture_output=True, text=True, check=True, cwd="/tmp",
            )  # fmt: skip
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
            total, wall, gap = (float(v) for v in line.split()[1:])
            print(
                f"| {tree} | {round_} | {total:.1f} | {wall:.2f} | {gap:.2f} | {wall + gap:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
