"""Distributed throughput: trials per hour with 1 vs 2 `search run` workers on PostgreSQL, and
the storage overhead of a trial (time in Optuna + MLflow calls) against its training time.

One run starts the deployment's topology natively (a throwaway PostgreSQL cluster and a real
`mlflow server` on 127.0.0.1, as tests/servers.py does), then:

1. for each worker count (default 1 and 2): a fresh Optuna database, one study, the same total
   number of trials split over the workers, all launched at once through the CLI exactly as a
   user would (`python -m search run --storage postgresql://... --tracking-uri http://...`);
   trials/hour both over the whole wall time (process start-up and data loading included) and
   over the trials' own span (first trial start to last trial end, from Optuna's timestamps);
2. per trial: wall time (Optuna datetime_complete - datetime_start) vs `train_seconds` (the
   `model.fit` time the CLI records on each trial), and `tracking_blocked_s`, the time the
   trial's thread spent blocked in tracking calls (the spool's appends, the run's creation, the
   fsync that makes the trial's logs durable before its state is final); the issue's target is
   at most 3% of the trial's wall time;
3. storage-only trials against the same servers: the Optuna calls (ask with the real trial's
   distributions, the user attrs a trial sets, tell) and the MLflow calls (child run, params,
   per-epoch metrics, summary metrics, tags, the real trial's artifacts uploaded through the
   server, terminate) that one trial makes, with no training, repeated and timed: made
   synchronously (how trials logged before the spool; the reference) and through the spool.

The space is fixed and tiny (one small GRU, only the learning rate varies), so every trial costs
the same and the comparison is about the workers, not about what TPE happened to sample.

    python benchmarks/bench_distributed.py [--trials 6] [--workers 1,2] [--epochs 2]
        [--max-rows 20000] [--storage-reps 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Keep the output to the figures: no per-run URLs or download progress bars from MLflow here.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
sys.path.insert(0, str(REPO))  # for tests.servers; `mlflow/` there has no __init__.py, so
# `import mlflow` still finds the library (tests/test_servers.py checks this).

from tests.cli_helpers import search_command  # noqa: E402
from tests.servers import MLFLOW_DATABASE, start_mlflow_server, start_postgres  # noqa: E402

TINY_SPACE = """\
name: bench-tiny
description: "Benchmark space: one small GRU; only the learning rate varies, so every trial costs the same"
architecture: gru
params:
  units: 16
  layers: 1
  lookback_hours: 48
  sampling_rate: 6
  learning_rate: {type: float, low: 1.0e-3, high: 2.0e-3, log: true}
  batch_size: 256
fixed: {epochs: 2, optimizer: rmsprop, loss: mse, patience: 2, horizon_hours: 24, target_steps: 1}
book:
  source: "benchmark"
  params: {learning_rate: 0.001}
"""


def split(total: int, workers: int) -> list[int]:
    """`total` trials over `workers` as evenly as possible."""
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def run_workers(
    args, space: Path, storage: str, tracking_uri: str, study: str, workers: int, workdir: Path
) -> float:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "MLFLOW_TRACKING_URI",
            "SEARCH_STORAGE",
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
        )
    }  # workers run as a user runs them
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    procs = []
    started = time.perf_counter()
    for seed, trials in enumerate(split(args.trials, workers)):
        folder = workdir / f"{study}-worker-{seed}"
        folder.mkdir(parents=True)
        command = search_command(
            "run",
            "--space",
            str(space),
            "--study",
            study,
            "--trials",
            str(trials),
            "--storage",
            storage,
            "--tracking-uri",
            tracking_uri,
            "--data",
            args.data,
            "--max-rows",
            str(args.max_rows),
            "--epochs",
            str(args.epochs),
            "--seed",
            str(seed),
        )
        log = open(folder / "worker.log", "w")
        procs.append(
            (
                subprocess.Popen(
                    command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                log,
                folder,
            )
        )
    for proc, log, folder in procs:
        proc.wait()
        log.close()
        if proc.returncode != 0:
            tail = (folder / "worker.log").read_text()[-3000:]
            raise SystemExit(f"worker in {folder} exited {proc.returncode}:\n{tail}")
    return time.perf_counter() - started


def measure_workers(args, space, pg, tracking_uri, workers: int, workdir: Path) -> dict:
    import optuna

    storage = pg.create_database(f"optuna_bench_{workers}w_{uuid.uuid4().hex[:6]}")
    study_name = f"bench-{workers}w-{uuid.uuid4().hex[:6]}"
    print(f"  {workers} worker(s): {args.trials} trials ...", flush=True)
    wall = run_workers(args, space, storage, tracking_uri, study_name, workers, workdir)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    span = (
        max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    ).total_seconds()
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    train = [
        float(t.user_attrs["train_seconds"]) for t in trials if "train_seconds" in t.user_attrs
    ]
    blocked = [float(t.user_attrs.get("tracking_blocked_s", "nan")) for t in trials]
    states = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "workers": workers,
        "study": study_name,
        "storage": storage,
        "trials": len(trials),
        "states": states,
        "wall_s": wall,
        "span_s": span,
        "trials_per_hour_wall": 3600 * len(trials) / wall,
        "trials_per_hour_span": 3600 * len(trials) / span if span > 0 else float("nan"),
        "trial_s_mean": statistics.mean(durations),
        "train_s_mean": statistics.mean(train) if train else float("nan"),
        # the time each trial's thread spent blocked in tracking calls, over its wall time
        "blocked_s_mean": statistics.mean(blocked),
        "blocked_share": sum(blocked) / sum(durations),
        "blocked_share_max": max(b / d for b, d in zip(blocked, durations, strict=True)),
        "example_trial": next((t for t in trials if t.state.name == "COMPLETE"), trials[0]),
    }


def measure_storage_only(
    args, pg, tracking_uri: str, example, source_run_id: str, workdir: Path
) -> dict:
    """Time the Optuna and MLflow calls of one trial, with no training, `storage_reps` times."""
    import optuna
    from mlflow import MlflowClient

    from search.tracking import open_tracker
    from search.tracking.spool import Spool, SpooledTracker

    client = MlflowClient(tracking_uri=tracking_uri)
    artifacts = Path(client.download_artifacts(source_run_id, "", str(workdir / "artifacts")))
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    artifact_bytes = sum(p.stat().st_size for p in files)
    metric_history = {
        key: client.get_metric_history(source_run_id, key)
        for key in ("loss", "mae", "val_loss", "val_mae")
    }
    epochs = max((len(h) for h in metric_history.values()), default=args.epochs)
    summary = {
        k: 1.0 for k in ("best_val_mae", "best_epoch", "skill", "epochs_run", "train_seconds")
    }
    attrs = {k: v for k, v in example.user_attrs.items() if k != "mlflow_run_id"}

    storage_url = pg.create_database(f"optuna_bench_storage_{uuid.uuid4().hex[:6]}")
    study = optuna.create_study(study_name="bench-storage-only", storage=storage_url)
    direct = open_tracker(tracking_uri, f"bench-storage-only-{uuid.uuid4().hex[:6]}")
    direct.open()
    direct.create_parent_run(params={"benchmark": "storage-only"}, tags={})
    spooled = SpooledTracker(direct, Spool(workdir / "spool"))
    spooled.open()
    optuna_s, mlflow_s, spooled_s = [], [], []
    for rep in range(2 * args.storage_reps):
        # alternate: synchronous MLflow calls (as before the spool), then the same calls through
        # the spool and its background writer, as a trial makes them now
        tracker = direct if rep % 2 == 0 else spooled
        t0 = time.perf_counter()
        trial = study.ask(fixed_distributions=example.distributions)
        t_optuna = time.perf_counter() - t0

        t0 = time.perf_counter()
        run_id = tracker.create_trial_run(
            trial.number,
            tags={
                "search.architecture": "gru",
                "search.backend": "tensorflow",
                "search.device": "cpu",
            },
        )
        tracker.log_params(run_id, {**example.params, "epochs": epochs})
        tracker.log_metrics(run_id, {"baseline_mae": 1.0, "param_count": 1000.0})
        for epoch in range(epochs):
            tracker.log_metrics(run_id, {k: 1.0 for k in metric_history}, step=epoch)
        tracker.log_metrics(run_id, summary)
        for path in files:
            parent = path.parent.relative_to(artifacts)
            tracker.log_file(run_id, path, None if str(parent) == "." else str(parent))
        tracker.end_trial_run(run_id, "COMPLETE")
        t_mlflow = time.perf_counter() - t0

        t0 = time.perf_counter()
        trial.set_user_attr("mlflow_run_id", run_id)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, 1.0)
        t_optuna += time.perf_counter() - t0
        optuna_s.append(t_optuna)
        (mlflow_s if tracker is direct else spooled_s).append(t_mlflow)
        if tracker is spooled:  # let the writer catch up, as the next trial's training would
            spooled.flush(timeout=60)
            spooled = SpooledTracker(direct, Spool(workdir / "spool"))
            spooled.open()
    direct.finish_parent_run()
    return {
        "reps": args.storage_reps,
        "epochs": epochs,
        "artifact_files": len(files),
        "artifact_bytes": artifact_bytes,
        "optuna_s_mean": statistics.mean(optuna_s),
        "mlflow_s_mean": statistics.mean(mlflow_s),
        "optuna_s_median": statistics.median(optuna_s),
        "mlflow_s_median": statistics.median(mlflow_s),
        "spooled_s_mean": statistics.mean(spooled_s),
        "spooled_s_median": statistics.median(spooled_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="total trials per worker count")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-rows", type=int, default=20000)
    parser.add_argument("--data", default="jena-2020")
    parser.add_argument("--storage-reps", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]

    print(
        f"bench_distributed: {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.trials} trials x "
        f"{args.epochs} epochs on {args.max_rows} rows of {args.data}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    space = workdir / "bench-tiny.yaml"
    space.write_text(TINY_SPACE)
    pg = start_postgres()
    server = None
    try:
        server = start_mlflow_server(pg.url(MLFLOW_DATABASE), workdir / "mlartifacts")
        print(f"  servers up: PostgreSQL 127.0.0.1:{pg.port}, MLflow {server.url}", flush=True)
        results = [measure_workers(args, space, pg, server.url, n, workdir) for n in counts]
        example = results[0]["example_trial"]
        storage = measure_storage_only(
            args, pg, server.url, example, example.user_attrs["mlflow_run_id"], workdir
        )
    finally:
        if server is not None:
            server.stop()
        pg.stop()

    print()
    print(
        "| workers | trials | states | wall s | trials/h (wall) | trials/h (trial span) "
        "| trial s (mean) | train s (mean) | not training s (mean) | blocked in tracking |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        states = " ".join(f"{k}:{v}" for k, v in sorted(r["states"].items()))
        print(
            f"| {r['workers']} | {r['trials']} | {states} | {r['wall_s']:.1f} | "
            f"{r['trials_per_hour_wall']:.0f} | {r['trials_per_hour_span']:.0f} | "
            f"{r['trial_s_mean']:.2f} | {r['train_s_mean']:.2f} | "
            f"{r['trial_s_mean'] - r['train_s_mean']:.2f} | {r['blocked_s_mean'] * 1000:.0f} ms "
            f"= {100 * r['blocked_share']:.1f}% (max {100 * r['blocked_share_max']:.1f}%) |"
        )
    base = results[0]
    for r in results[1:]:
        print(
            f"speed-up {r['workers']} vs {base['workers']} worker(s): "
            f"{r['trials_per_hour_wall'] / base['trials_per_hour_wall']:.2f}x (wall), "
            f"{r['trials_per_hour_span'] / base['trials_per_hour_span']:.2f}x (trial span)"
        )
    total = storage["optuna_s_mean"] + storage["mlflow_s_mean"]
    train = base["train_s_mean"]
    print()
    print(
        f"storage calls of one trial (no training; {storage['reps']} reps, {storage['epochs']} "
        f"epochs of metrics, {storage['artifact_files']} artifact files, "
        f"{storage['artifact_bytes'] / 1024:.0f} KiB):"
    )
    print(
        f"  Optuna (ask, user attrs, tell) on PostgreSQL: {storage['optuna_s_mean'] * 1000:.0f} ms"
        f" mean, {storage['optuna_s_median'] * 1000:.0f} ms median"
    )
    print(
        f"  MLflow (run, params, metrics, artifacts), synchronous: "
        f"{storage['mlflow_s_mean'] * 1000:.0f} ms"
        f" mean, {storage['mlflow_s_median'] * 1000:.0f} ms median"
    )
    print(
        f"  the same MLflow calls through the spool (time the caller is blocked; the background "
        f"writer sends them): {storage['spooled_s_mean'] * 1000:.0f} ms mean, "
        f"{storage['spooled_s_median'] * 1000:.0f} ms median"
    )
    share = max(r["blocked_share"] for r in results)
    print(
        f"target: a trial's thread blocked in tracking calls <= 3% of its wall time: measured "
        f"{100 * share:.1f}% (the worst worker count) -> {'met' if share <= 0.03 else 'MISSED'}"
    )
    print(
        f"  together {total:.3f} s per trial = {100 * total / train:.1f}% of the mean "
        f"train_seconds ({train:.2f} s) and {100 * total / base['trial_s_mean']:.1f}% of the "
        f"mean trial wall time ({base['trial_s_mean']:.2f} s, {base['workers']} worker)"
    )
    if args.json:
        for r in results:
            r.pop("example_trial")
        args.json.write_text(json.dumps({"workers": results, "storage_only": storage}, indent=2))


if __name__ == "__main__":
    main()
