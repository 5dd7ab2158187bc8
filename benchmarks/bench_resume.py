"""What a crash costs, and what `--jobs` buys, measured with real `search run` processes.

K. Time lost to a `kill -9` in the middle of a 10-epoch trial (space lstm, its book LSTM(16),
   12,500 rows of the 2020 file): the worker is killed after epoch 5, then `search run` is
   started again, once with the trial's epoch checkpoint (it resumes at epoch 6) and once with
   the checkpoint deleted (the re-queued trial starts from scratch). Printed: the wall time from
   the restart to the trial's end, and the epochs trained again, for both; and the uninterrupted
   run's time for the same trial as the reference.
J. Trials per hour with `--jobs 1` and `--jobs N` (default 2: this machine's cores) on the same
   study settings (space lstm, 1 epoch, 12,500 rows, 8 trials each), both measured here.

    python benchmarks/bench_resume.py [--out benchmarks/results/resume] [--parts KJ] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cli_helpers import cli_env, search_command  # noqa: E402

ROWS = "12500"


def _args(folder: Path, study: str, trials: int, epochs: int) -> list[str]:
    return [
        "run", "--space", "lstm", "--study", study, "--trials", str(trials),
        "--epochs", str(epochs), "--max-rows", ROWS,
        "--storage", f"sqlite:///{folder / 'studies.db'}",
        "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
    ]  # fmt: skip


def _timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=cli_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started, result.stdout


def _killed_after(folder: Path, study: str, epoch: int) -> None:
    worker = subprocess.Popen(
        search_command(*_args(folder, study, 1, 10)),
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert worker.stdout is not None
    for line in worker.stdout:
        if f"trial 0 epoch {epoch}/" in line:
            break
    time.sleep(1.0)  # the epoch's checkpoint
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def part_k(out: Path) -> dict:
    results: dict = {}
    reference = out / "uninterrupted"
    shutil.rmtree(reference, ignore_errors=True)
    reference.mkdir(parents=True)
    seconds, _ = _timed(search_command(*_args(reference, "k", 1, 10)), reference)
    results["uninterrupted_s"] = seconds
    print(f"K  uninterrupted 10-epoch trial (with start-up): {seconds:.0f} s", flush=True)
    for mode in ("resume", "scratch"):
        folder = out / mode
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        _killed_after(folder, "k", 5)
        if mode == "scratch":
            shutil.rmtree(folder / "studies.db.checkpoints", ignore_errors=True)
        seconds, stdout = _timed(search_command(*_args(folder, "k", 1, 10)), folder)
        trained = stdout.count("trial 1 epoch ")
        results[mode] = {"restart_to_end_s": seconds, "epochs_after_restart": trained}
        print(
            f"K  after kill -9 at epoch 5, {mode:<7}: restart to end {seconds:.0f} s, "
            f"{trained} epochs trained after the restart",
            flush=True,
        )
    saved = results["scratch"]["restart_to_end_s"] - results["resume"]["restart_to_end_s"]
    results["saved_s"] = saved
    print(f"K  epoch-level resume saved {saved:.0f} s of the restart", flush=True)
    return results


def part_j(out: Path, jobs: int) -> dict:
    results: dict = {}
    for n in (1, jobs):
        folder = out / f"jobs{n}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        command = search_command(*_args(folder, "j", 8, 1), "--jobs", str(n))
        seconds, _ = _timed(command, folder)
        results[f"jobs{n}"] = {"seconds": seconds, "trials_per_hour": 8 * 3600 / seconds}
        print(
            f"J  --jobs {n}: 8 trials in {seconds:.0f} s = {8 * 3600 / seconds:.0f} trials/hour",
            flush=True,
        )
    ratio = results[f"jobs{jobs}"]["trials_per_hour"] / results["jobs1"]["trials_per_hour"]
    results["speed_up"] = ratio
    print(f"J  --jobs {jobs} gives {ratio:.2f}x the trials per hour of --jobs 1", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/resume")
    parser.add_argument("--parts", default="KJ")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if "K" in args.parts:
        results["K"] = part_k(out)
    if "J" in args.parts:
        results["J"] = part_j(out, args.jobs)
    (out / "resume.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
