"""Which engine finds good forecasters sooner? Optuna and keras-tuner on the same space, data and
wall-clock budget.

Engines (each a real `search run` with `--timeout BUDGET`):
  a. default          `search run` with no search flags: `tpe-sobol` + `percentile`, the pick
                      of this benchmark's first run (measured then as a --candidate)
  b. kt-hyperband     keras-tuner Hyperband (max_epochs = the run's --epochs)
  c. tpe-median       the default before this benchmark chose (multivariate TPE, 5 start-up
                      trials, median pruner): `--sampler tpe --pruner median`
  d. kt-bayesian      keras-tuner Bayesian optimization
  e. optuna-random    Optuna random search, no pruning
a, b and c on every space of `--spaces` and every seed; d and e on `--every-engine-on`; more
Optuna configurations with `--candidate NAME=ARGS` (run like a). Seeds 0-2 choose, seeds 3-5
(`--confirm`) confirm on `--confirm-spaces`. Runs go two at a time, each pinned to one core
(`taskset`, one TensorFlow thread pool), so every engine gets the same single core. The first
12,500 rows of the 2020 file (the fewest that window lstm's 240 h lookback in every split),
3 epochs per trial, 180 s per study. `--full` gives a bigger machine the full-size run (all rows,
10 epochs, 20-minute budgets, every engine on every space and seed, four cores per run).

Per run, from the study's own records: best val MAE and its skill against the naive forecast at
the end, the time to reach within 2% of the best any engine reached on that space and seed,
trials completed and pruned, epochs trained, and whether the budget held (the trials' span at
most the budget plus the longest epoch, from the MLflow runs' val_mae log times, plus 15 s).
The target: the default reaches keras-tuner Hyperband's final best val MAE in at most 0.6x the
wall time at which Hyperband first reached it, median over seeds (never reaching it counts as a
miss, ratio inf).

Prints a table and writes `engines.png` (best-so-far val MAE against elapsed time, one panel per
space, one line per engine and seed) and `engines.json` to --out, and logs them to MLflow
(experiment `bench-engines` in --out/mlflow.db). Studies already in --out are reused, so the
benchmark can be run in parts (choose, then confirm the winner) and summarized by a last run.

    python benchmarks/bench_engines.py [--out benchmarks/results/engines] [--budget 180]
        [--epochs 3] [--max-rows 12500] [--spaces lstm] [--every-engine-on SPACES]
        [--seeds 0,1,2] [--confirm 3,4,5] [--confirm-spaces lstm,all] [--parallel 2]
        [--candidate NAME=ARGS ...] [--only NAMES] [--extra ARGS] [--full]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cli_helpers import cli_env, search_command  # noqa: E402

ENGINES: dict[str, list[str]] = {
    "default": [],
    "kt-hyperband": ["--engine", "keras-tuner", "--tuner", "hyperband"],
    "tpe-median": ["--sampler", "tpe", "--pruner", "median"],
    "kt-bayesian": ["--engine", "keras-tuner", "--tuner", "bayesian"],
    "optuna-random": ["--sampler", "random", "--pruner", "none"],
}
CONFIRM = ["default", "kt-hyperband", "tpe-median"]
JUDGED = ["default", "tpe-median"]  # compared with Hyperband (plus every --candidate)
WITHIN = 0.02
TARGET_RATIO = 0.6
SLACK = 15.0  # a study ends within its budget plus its longest epoch plus this


def _job(out: Path, engine: str, space: str, seed: int, args: argparse.Namespace, core: int):
    study = f"{engine}-{space}-s{seed}"
    storage = f"sqlite:///{out / 'studies' / (study + '.db')}"
    log = out / "logs" / f"{study}.log"
    if (out / "studies" / f"{study}.db").exists():
        return study, storage, 0.0  # done by an earlier run of the benchmark: reuse it
    command = search_command(
        "run",
        "--space",
        space,
        "--study",
        study,
        "--seed",
        str(seed),
        "--trials",
        "10000",
        "--timeout",
        str(args.budget),
        "--epochs",
        str(args.epochs),
        "--storage",
        storage,
        "--tracking-uri",
        f"sqlite:///{out / 'mlflow.db'}",
        *(["--max-rows", str(args.max_rows)] if args.max_rows else []),
        *args.extra.split(),
        *ENGINES[engine],
    )
    env = cli_env()
    if args.parallel > 1:  # the same cores for every engine: its own share, pinned
        width = max(1, (os.cpu_count() or 2) // args.parallel)
        cores = f"{core * width}-{core * width + width - 1}"
        command = ["taskset", "-c", cores, *command]
        env.update(
            {
                "TF_NUM_INTRAOP_THREADS": str(width),
                "TF_NUM_INTEROP_THREADS": "1",
                "OMP_NUM_THREADS": str(width),
            }
        )
    started = time.perf_counter()
    with open(log, "w") as handle:
        subprocess.run(command, cwd=out, env=env, stdout=handle, stderr=subprocess.STDOUT)
    return study, storage, time.perf_counter() - started


def _epoch_seconds(trials: list, tracking: str) -> list[float]:
    """Every epoch's wall time, from the trials' MLflow runs: the time between consecutive
    val_mae logs (the first from the run's start, so it holds the trial's set-up)."""
    import mlflow

    client = mlflow.MlflowClient(tracking)
    seconds: list[float] = []
    for trial in trials:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            continue
        try:
            start = client.get_run(run_id).info.start_time
            stamps = sorted(m.timestamp for m in client.get_metric_history(run_id, "val_mae"))
        except Exception:  # a run that never reached the tracking store
            continue
        seconds += [(b - a) / 1000 for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    return seconds


def _curve(storage: str, study: str, tracking: str) -> dict:
    """Best-so-far val MAE against seconds since the study's first trial started."""
    import optuna

    from search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    if not trials:
        return {"points": [], "complete": 0, "pruned": 0, "failed": 0, "epochs": 0}
    origin = min(t.datetime_start for t in trials if t.datetime_start)
    ended = max((t.datetime_complete for t in trials if t.datetime_complete), default=origin)
    epoch_seconds = _epoch_seconds(trials, tracking)
    points, best, best_skill = [], math.inf, math.nan
    for trial in sorted(
        (t for t in trials if t.datetime_complete), key=lambda t: t.datetime_complete
    ):
        if trial.state.name == "COMPLETE" and trial.value is not None and trial.value < best:
            best, best_skill = trial.value, trial.user_attrs.get("skill", math.nan)
            points.append(((trial.datetime_complete - origin).total_seconds(), best))
    states = [t.state.name for t in trials]
    return {
        "points": points,
        "best": best,
        "skill": best_skill,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        # the budget holds when the study's trials span at most budget + longest epoch + 15 s
        "span": (ended - origin).total_seconds(),
        "longest_epoch": max(epoch_seconds, default=0.0),
    }


def _first_time(points: list, threshold: float) -> float:
    return next((t for t, value in points if value <= threshold), math.inf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/engines")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per study")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=12500)
    parser.add_argument("--spaces", default="lstm", help="spaces of the choice (seeds 0-2)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--confirm", default="3,4,5", help="confirmation seeds (a, b, c)")
    parser.add_argument(
        "--every-engine-on", default="", help="spaces that also run engines d and e"
    )
    parser.add_argument("--confirm-spaces", default="lstm,all", help="spaces of the confirmation")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once, one core each")
    parser.add_argument("--full", action="store_true", help="full size: all rows, 10 epochs")
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="another Optuna configuration to judge like the default, e.g. "
        "'hb=--pruner hyperband' (runs where the default runs; studies already in --out are "
        "reused, so a candidate can be added to a finished benchmark)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="run just these engines (comma-separated names), e.g. two candidates with --folds",
    )
    parser.add_argument(
        "--extra",
        default="",
        metavar="ARGS",
        help="flags for every study, e.g. '--folds 3 --split blocked:14' (with --only and an "
        "--out of their own)",
    )
    args = parser.parse_args()
    candidates = []
    for text in args.candidate:
        name, _, extra = text.partition("=")
        ENGINES[name] = extra.split()
        CONFIRM.append(name)
        candidates.append(name)
    if args.full:
        args.max_rows, args.epochs, args.budget = None, 10, 1200.0
        args.spaces = args.every_engine_on = args.confirm_spaces = "lstm,all"
        args.parallel = max(1, (os.cpu_count() or 2) // 4)
    out = args.out.resolve()
    for sub in ("studies", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    spaces = args.spaces.split(",")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    confirm = [int(s) for s in args.confirm.split(",") if s]
    every_engine = args.every_engine_on.split(",")
    jobs = [
        (e, sp, s)
        for s in seeds
        for sp in spaces
        for e in (ENGINES if sp in every_engine else CONFIRM)
    ]
    confirm_spaces = args.confirm_spaces.split(",")
    jobs += [(e, sp, s) for s in confirm for sp in confirm_spaces for e in CONFIRM]
    if args.only:
        jobs = [job for job in jobs if job[0] in args.only.split(",")]
    spaces = list(dict.fromkeys(spaces + confirm_spaces))
    # MLflow's store is created once, before two runs race to migrate it
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import mlflow; mlflow.MlflowClient('sqlite:///{out}/mlflow.db').search_experiments()",
        ],
        check=True,
        capture_output=True,
    )
    print(
        f"{len(jobs)} studies of {args.budget:.0f} s, {args.parallel} at a time "
        f"(epochs {args.epochs}, rows {args.max_rows or 'all'})",
        flush=True,
    )
    started = time.perf_counter()
    results: dict[tuple[str, str, int], dict] = {}
    free_cores = list(range(args.parallel))

    def run(job: tuple[str, str, int]) -> None:
        core = free_cores.pop()
        try:
            study, storage, seconds = _job(out, *job, args, core)
        finally:
            free_cores.append(core)
        curve = _curve(storage, study, f"sqlite:///{out / 'mlflow.db'}")
        results[job] = {"study": study, "seconds": seconds, **curve}
        r = results[job]
        r["limit"] = args.budget + r.get("longest_epoch", 0.0) + SLACK
        print(
            f"  {study:<28} best {r.get('best', math.nan):.4f}  trials {r['complete']}"
            f"/{r['pruned']}/{r['failed']} (complete/pruned/failed)  {seconds:.0f} s; trials "
            f"span {r.get('span', 0.0):.0f} s (limit {r['limit']:.0f} s)",
            flush=True,
        )

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(run, jobs))
    wall = time.perf_counter() - started

    rows: list[dict] = []
    ratios: dict[str, dict[str, dict[int, float]]] = {}
    for sp in spaces:
        for seed in sorted({s for _, space, s in results if space == sp}):
            runs = {e: results[(e, sp, seed)] for e in ENGINES if (e, sp, seed) in results}
            overall = min(r.get("best", math.inf) for r in runs.values())
            for engine, r in runs.items():
                rows.append(
                    {
                        "space": sp,
                        "seed": seed,
                        "engine": engine,
                        "best": r.get("best", math.inf),
                        "skill": r.get("skill", math.nan),
                        "t_within_2pct": _first_time(r["points"], overall * (1 + WITHIN)),
                        "complete": r["complete"],
                        "pruned": r["pruned"],
                        "failed": r["failed"],
                        "epochs": r["epochs"],
                        "span": r.get("span", 0.0),
                        "limit": r["limit"],
                    }
                )
            for judged in (*JUDGED, *candidates):
                if judged not in runs or "kt-hyperband" not in runs:
                    continue
                hb = runs["kt-hyperband"]
                hb_best = hb.get("best", math.inf)
                t_hb = _first_time(hb["points"], hb_best)
                t_opt = _first_time(runs[judged]["points"], hb_best)
                ratios.setdefault(judged, {sp: {} for sp in spaces})[sp][seed] = (
                    t_opt / t_hb if math.isfinite(t_hb) and t_hb > 0 else math.inf
                )

    print(f"\nall studies: {wall / 60:.1f} min wall\n")
    header = (
        f"{'space':<6} {'seed':>4} {'engine':<15} {'best val MAE':>12} {'skill':>7} "
        f"{'t(2%) s':>8} {'complete':>8} {'pruned':>6} {'failed':>6} {'epochs':>6}"
    )
    print(header)
    for row in rows:
        t = row["t_within_2pct"]
        print(
            f"{row['space']:<6} {row['seed']:>4} {row['engine']:<15} {row['best']:>12.4f} "
            f"{row['skill']:>+7.1%} {(f'{t:.0f}' if math.isfinite(t) else 'never'):>8} "
            f"{row['complete']:>8} {row['pruned']:>6} {row['failed']:>6} {row['epochs']:>6}"
        )
    over = [r for r in rows if r["span"] > r["limit"]]
    print(
        f"\nbudgets: {len(rows) - len(over)} of {len(rows)} studies ended within budget + "
        f"longest epoch + {SLACK:.0f} s (longest overrun of the budget: "
        f"{max(r['span'] - args.budget for r in rows):+.0f} s)"
        + "".join(
            f"\n  OVER: {r['engine']} {r['space']} s{r['seed']} {r['span']:.0f} s" for r in over
        )
    )
    print("\nmedian per engine (seeds 0-2 and confirmation seeds separately):")
    for sp in spaces:
        for label, group in (("choose", seeds), ("confirm", confirm)):
            for engine in ENGINES:
                picked = [r for r in rows if r["space"] == sp and r["engine"] == engine]
                picked = [r for r in picked if r["seed"] in group]
                if not picked:
                    continue
                best = statistics.median(r["best"] for r in picked)
                t = statistics.median(r["t_within_2pct"] for r in picked)
                print(
                    f"  {sp:<5} {label:<7} {engine:<15} best {best:.4f}  "
                    f"t(2%) {(f'{t:.0f} s' if math.isfinite(t) else 'never')}"
                )
    verdicts = {}
    for judged, by_space in ratios.items():
        for sp in spaces:
            for label, group in (("seeds 0-2", seeds), ("seeds 3-5", confirm)):
                values = [by_space[sp][s] for s in group if s in by_space.get(sp, {})]
                if not values:
                    continue
                median = statistics.median(values)
                verdicts[f"{judged} {sp} {label}"] = median
                shown = ", ".join(f"{v:.2f}" if math.isfinite(v) else "never" for v in values)
                print(
                    f"target ({judged}, {sp}, {label}): reaches Hyperband's final best in "
                    f"{median:.2f}x Hyperband's time (median of {shown}; target <= "
                    f"{TARGET_RATIO}): {'MET' if median <= TARGET_RATIO else 'MISSED'}"
                )

    figure = _plot(results, spaces)
    figure.savefig(out / "engines.png", dpi=120)
    payload = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds": wall,
        "rows": rows,
        "ratios": {
            judged: {sp: {str(k): v for k, v in r.items()} for sp, r in by_space.items()}
            for judged, by_space in ratios.items()
        },
        "verdicts": verdicts,
        "budgets_held": len(rows) - len(over),
        "studies": len(rows),
    }
    (out / "engines.json").write_text(json.dumps(payload, indent=2, default=str))
    _log(out, payload)
    print(f"\nwrote {out / 'engines.png'} and {out / 'engines.json'}")


def _plot(results: dict, spaces: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "default": "tab:blue",
        "tpe-median": "tab:cyan",
        "kt-hyperband": "tab:orange",
        "kt-bayesian": "tab:green",
        "optuna-random": "tab:gray",
        "hb": "tab:red",
        "tpe-pct": "tab:brown",
        "sobol-hb": "tab:pink",
        "sobol-pct": "tab:purple",
    }
    figure, axes = plt.subplots(1, len(spaces), figsize=(6.5 * len(spaces), 4.5), squeeze=False)
    for axis, sp in zip(axes[0], spaces, strict=True):
        labelled: set[str] = set()
        for (engine, space, seed), r in sorted(results.items()):
            if space != sp or not r["points"]:
                continue
            times, values = zip(*r["points"], strict=True)
            axis.step(
                times,
                values,
                where="post",
                color=colors.get(engine, "tab:purple"),
                alpha=0.8,
                linestyle="-" if seed < 3 else ":",
                label=engine if engine not in labelled else None,
            )
            labelled.add(engine)
        axis.set_title(f"space {sp}: best-so-far val MAE (solid seeds 0-2, dotted 3-5)")
        axis.set_xlabel("seconds since the study started")
        axis.set_ylabel("val MAE (degC)")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _log(out: Path, payload: dict) -> None:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench-engines")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("bench-engines")
    )
    run = client.create_run(experiment_id, run_name="bench-engines")
    for key, value in payload["verdicts"].items():
        client.log_metric(run.info.run_id, f"ratio {key}".replace(" ", "_"), float(value))
    client.log_artifact(run.info.run_id, str(out / "engines.png"))
    client.log_artifact(run.info.run_id, str(out / "engines.json"))
    client.set_terminated(run.info.run_id)


if __name__ == "__main__":
    main()
