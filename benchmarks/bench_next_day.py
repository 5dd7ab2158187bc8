"""The next day with intervals: `--space next_day` on the 2020 Jena file, blocked:14 split.

For each seed, one study (`search run --space next_day --split blocked:14 --trials N --seed S`,
in its own folder under --out, resumed and topped up when re-run), then its best model once on
test (`search best next_day --evaluate-test`), whose figures are read back from the study's
MLflow parent run. Every figure is printed beside its reference measured on the same windows:
the naive forecast (the last value for every step) and the naive forecast with intervals from the
training windows' empirical change quantiles per step.

Targets (the issue's, median over seeds): coverage of the central 80% interval on test within
77-83% over all steps and within 72-88% at every step; weighted quantile loss at least 5% below
naive's; mean MAE over the 24 steps at least 3% below naive's.

    python benchmarks/bench_next_day.py [--out benchmarks/results/next_day] [--seeds 0,1,2]
        [--trials 20] [--epochs E] [--parallel 2] [--json benchmarks/figures/next_day.json]
        [--figure benchmarks/figures/next_day.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cli_helpers import cli_env, search_command  # noqa: E402

STUDY = "next_day"


def _study_args(seed: int, trials: int, epochs: int | None) -> list[str]:
    args = ["run", "--space", "next_day", "--split", "blocked:14", "--study", STUDY]
    args += ["--trials", str(trials), "--seed", str(seed)]
    return args + (["--epochs", str(epochs)] if epochs else [])


def _run_studies(
    out: Path, seeds: list[int], trials: int, epochs: int | None, parallel: int
) -> dict[int, float]:
    """Run (or top up) every seed's study, ``parallel`` at a time; wall seconds per seed."""
    pending, running, walls = list(seeds), [], {}
    while pending or running:
        while pending and len(running) < parallel:
            seed = pending.pop(0)
            folder = out / f"seed-{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            log = open(folder / "run.log", "a")
            proc = subprocess.Popen(
                search_command(*_study_args(seed, trials, epochs)),
                cwd=folder,
                env=cli_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            running.append((seed, proc, time.perf_counter(), log))
            print(f"seed {seed}: study started in {folder}", flush=True)
        time.sleep(5)
        for entry in list(running):
            seed, proc, began, log = entry
            if proc.poll() is not None:
                log.close()
                walls[seed] = time.perf_counter() - began
                print(
                    f"seed {seed}: study ended (exit {proc.returncode}) after {walls[seed]:.0f} s",
                    flush=True,
                )
                running.remove(entry)
    return walls


def _figures(folder: Path) -> dict[str, Any]:
    """`search best --evaluate-test` in the seed's folder, and the figures it logged."""
    import mlflow
    import optuna

    proc = subprocess.run(
        search_command("best", STUDY, "--evaluate-test"),
        cwd=folder,
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    (folder / "best.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(
            f"{folder}: search best --evaluate-test failed: {proc.stderr.strip()[-500:]}"
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder}/search-studies.db")
    best = study.best_trial
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    parent = study.user_attrs.get("mlflow_parent_run_id") or best.user_attrs.get(
        "mlflow_parent_run_id"
    )
    if not parent:
        parent = client.get_run(best.user_attrs["mlflow_run_id"]).data.tags.get(
            "mlflow.parentRunId"
        )
    metrics = client.get_run(parent).data.metrics
    steps = int(max(int(k.rsplit("_", 1)[1]) for k in metrics if k.startswith("test_mae_step_")))
    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return {
        "trials": states,
        "best_trial": best.number,
        "architecture": best.user_attrs.get("architecture"),
        "val_mae": best.value,
        "val_naive_mae": best.user_attrs.get("baseline_mae"),
        "val_linear_mae": best.user_attrs.get("linear_mae"),
        "val_wql": best.user_attrs.get("val_wql"),
        "val_naive_wql": best.user_attrs.get("naive_wql"),
        "val_coverage_uncalibrated": best.user_attrs.get("val_coverage"),
        **{k: metrics[k] for k in sorted(metrics) if k.startswith("test_") and "_step_" not in k},
        "test_mae_by_step": [metrics[f"test_mae_step_{k}"] for k in range(1, steps + 1)],
        "test_coverage_by_step": [metrics[f"test_coverage_step_{k}"] for k in range(1, steps + 1)],
        "naive_mae_by_step": [metrics[f"test_naive_mae_step_{k}"] for k in range(1, steps + 1)],
    }


def _summary(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in results.values())

    mae_gain = {s: 1 - r["test_mae"] / r["test_baseline_mae"] for s, r in results.items()}
    wql_gain = {s: 1 - r["test_wql"] / r["test_naive_wql"] for s, r in results.items()}
    step_cover = {
        s: (min(r["test_coverage_by_step"]), max(r["test_coverage_by_step"]))
        for s, r in results.items()
    }
    summary = {
        "median_test_coverage": median("test_coverage"),
        "median_test_coverage_min_step": statistics.median(v[0] for v in step_cover.values()),
        "median_test_coverage_max_step": statistics.median(v[1] for v in step_cover.values()),
        "median_test_naive_coverage": median("test_naive_coverage"),
        "median_wql_gain_vs_naive": statistics.median(wql_gain.values()),
        "median_mae_gain_vs_naive": statistics.median(mae_gain.values()),
        "median_mae_gain_vs_linear": statistics.median(
            1 - r["test_mae"] / r["test_linear_mae"] for r in results.values()
        ),
    }
    summary["targets"] = {
        "coverage 77-83% over all steps": 0.77 <= summary["median_test_coverage"] <= 0.83,
        "coverage 72-88% at every step": summary["median_test_coverage_min_step"] >= 0.72
        and summary["median_test_coverage_max_step"] <= 0.88,
        "WQL >= 5% better than naive": summary["median_wql_gain_vs_naive"] >= 0.05,
        "mean MAE >= 3% better than naive": summary["median_mae_gain_vs_naive"] >= 0.03,
    }
    return summary


def _figure(results: dict[int, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=100)
    for seed, r in sorted(results.items()):
        steps = range(1, len(r["test_mae_by_step"]) + 1)
        left.plot(steps, r["test_mae_by_step"], marker=".", label=f"model, seed {seed}")
        right.plot(
            steps, [100 * c for c in r["test_coverage_by_step"]], marker=".", label=f"seed {seed}"
        )
    any_result = next(iter(results.values()))
    naive = any_result.get("naive_mae_by_step")
    if naive:
        left.plot(range(1, len(naive) + 1), naive, color="grey", linestyle="--", label="naive")
    left.set_xlabel("hours ahead")
    left.set_ylabel("test MAE (degC)")
    left.set_title("Test MAE by step: best trial's median per seed")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.axhspan(72, 88, color="tab:green", alpha=0.1, label="72-88% (per-step target)")
    right.axhline(80, color="black", linewidth=0.8, label="nominal 80%")
    right.set_xlabel("hours ahead")
    right.set_ylabel("coverage (%)")
    right.set_title("Test coverage of the calibrated 80% interval by step")
    right.set_ylim(50, 100)
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "next_day")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument(
        "--json", type=Path, default=REPO / "benchmarks" / "figures" / "next_day.json"
    )
    parser.add_argument(
        "--figure", type=Path, default=REPO / "benchmarks" / "figures" / "next_day.png"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    walls = _run_studies(args.out, seeds, args.trials, args.epochs, args.parallel)
    results = {}
    for seed in seeds:
        results[seed] = {**_figures(args.out / f"seed-{seed}"), "wall_seconds": walls.get(seed)}
        r = results[seed]
        print(
            f"seed {seed}: best trial {r['best_trial']} ({r['architecture']}); test MAE "
            f"{r['test_mae']:.3f} (naive {r['test_baseline_mae']:.3f}, linear "
            f"{r['test_linear_mae']:.3f}); WQL {r['test_wql']:.4f} (naive {r['test_naive_wql']:.4f}); "
            f"80% interval coverage {r['test_coverage']:.1%} (steps "
            f"{min(r['test_coverage_by_step']):.1%}-{max(r['test_coverage_by_step']):.1%}; naive "
            f"{r['test_naive_coverage']:.1%}); study {r['wall_seconds'] or 0:.0f} s",
            flush=True,
        )
    summary = _summary(results)
    print(json.dumps(summary, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"trials": args.trials, "epochs": args.epochs, "seeds": results, "summary": summary},
            indent=2,
        )
    )
    _figure(results, args.figure)
    print(f"wrote {args.json} and {args.figure}")


if __name__ == "__main__":
    main()
