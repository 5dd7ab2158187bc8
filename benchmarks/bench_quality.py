"""Forecast quality benchmark: do the trials learn, and does a study find forecasters worth having?

Three parts, on the embedded 2020 Jena file, every figure beside its references measured in the
same run (naive = "24 h from now equals now" and the ridge linear model, both on the exact
windows of the trial they judge):

A. The book's LSTM(16) (120 h lookback, hourly steps, 24 h ahead, rmsprop 1e-3, batch 256), val
   MAE per epoch with each target scaling (none / standard / residual), same seed and weights.
B. The default `search run` (space quick, 6 trials) in a fresh folder: best val MAE against
   naive and linear, and its wall time (seed 42, the default, then two more seeds).
R. Each shipped architecture's book model with residual targets: val MAE after one epoch
   against naive.
C. A `--space all` study on each split (chronological, blocked): best val MAE against both
   references, and the best model's test MAE evaluated once (`search best --evaluate-test`).
   The studies live in --out and resume where they stopped when the benchmark is re-run (a
   study is topped up to --trials); the two splits run side by side, one core each.
D. The default study against candidate defaults (seeds 0, 1, 2, each in a fresh folder, one at a
   time): today's `search run` and each `--candidate-args` (default `--split blocked:14 --folds
   3`). For each: the estimate it prints, the best model's test figures (`search best quick
   --evaluate-test`), the gap in points and the wall time of `search run` (target: 3 minutes).
E. The ensemble (`search best --ensemble --evaluate-test`: the greedy ensemble of the 10 best
   trials and the linear reference) against the best trial's model, on part F's studies (run F
   first, or with it): the estimate, test skill against naive and linear, the gap, and the best
   trial's test MAE on the same target times.
F. Cross-validated trials against one validation slice: `--space quick --epochs 6 --trials 20`
   on blocked:14 (seeds 0, 1, 2) and blocked:28 (seed 0), each once with one slice and once with
   `--folds 3`; for each, the estimate the study prints (skill against naive and linear), the
   best model's test figures (`search best --evaluate-test`: the fold-mean model for --folds),
   the selection gap (estimate minus test skill, points), wall time and trials per hour. Two
   studies run side by side, one core each; studies resume when the benchmark is re-run.

    python benchmarks/bench_quality.py [--out benchmarks/results/quality] [--trials 50]
        [--epochs 6] [--timeout 4200] [--parts ABRCDFE] [--json results.json]
        [--fold-cases blocked:14@0,blocked:14@1,blocked:14@2,blocked:28@0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cli_helpers import cli_env, search_command  # noqa: E402

SPLITS = ("chronological", "blocked")


def part_a(epochs: int) -> dict[str, list[float]]:
    """Val MAE per epoch of the book's LSTM(16) with each target scaling."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from search.data.prepare import load_prepared
    from search.data.references import baseline_mae, linear_reference
    from search.data.windows import make_windows
    from search.training.models import build_model, make_optimizer
    from search.training.scaling import compile_loss, fit_scaling, scaled_model

    _, prepared = load_prepared("jena-2020")
    spec = prepared.spec(120, 6, 24)
    curves: dict[str, list[float]] = {
        "naive": [baseline_mae(prepared, spec, "val")],
        "linear": [linear_reference(prepared, spec).val_mae],
    }
    for mode in ("none", "standard", "residual"):
        keras.utils.set_random_seed(0)
        scaling = fit_scaling(mode, prepared, spec)
        model = scaled_model(build_model("lstm", (spec.sequence_length, 14), units=16), scaling)
        model.compile(
            optimizer=make_optimizer("rmsprop", 1e-3),
            loss=compile_loss("mse", scaling),
            metrics=["mae"],
        )
        train = make_windows(prepared, spec, "train", 256, shuffle=True, seed=0)
        val = make_windows(prepared, spec, "val", 256)
        started = time.perf_counter()
        history = model.fit(train, validation_data=val, epochs=epochs, verbose=0)
        curves[mode] = [round(float(v), 3) for v in history.history["val_mae"]]
        print(
            f"A  LSTM(16) {mode:<8} val MAE per epoch: {curves[mode]}  "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    print(
        f"A  references on the same windows: naive {curves['naive'][0]:.3f}, "
        f"linear {curves['linear'][0]:.3f}",
        flush=True,
    )
    return curves


def part_r() -> dict[str, dict]:
    """Each shipped architecture's book model with residual targets: val MAE after one epoch
    against naive on the same windows (an untrained residual model is exactly naive)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from search.data.prepare import load_prepared
    from search.data.references import baseline_mae
    from search.data.windows import make_windows
    from search.spaces import list_spaces
    from search.training.models import build_model, make_optimizer
    from search.training.scaling import compile_loss, fit_scaling, scaled_model

    _, prepared = load_prepared("jena-2020")
    results = {}
    # every shipped single-architecture space (the default `quick` aside)
    for space in list_spaces():
        if space.architectures is not None or space.name == "quick":
            continue
        name = space.name
        config = space.resolve(space.book_params(), book=True)
        spec = config.window(prepared.steps_per_hour)
        keras.utils.set_random_seed(0)
        scaling = fit_scaling("residual", prepared, spec)
        base = build_model(
            config.architecture,
            (spec.sequence_length, 14),
            config.target_steps,
            **config.model_kwargs,
        )
        model = scaled_model(base, scaling)
        model.compile(
            optimizer=make_optimizer(config.optimizer, config.learning_rate),
            loss=compile_loss(config.loss, scaling),
            metrics=["mae"],
        )
        train = make_windows(prepared, spec, "train", config.batch_size, shuffle=True, seed=0)
        val = make_windows(prepared, spec, "val", config.batch_size)
        started = time.perf_counter()
        history = model.fit(train, validation_data=val, epochs=1, verbose=0)
        mae = float(history.history["val_mae"][0])
        naive = baseline_mae(prepared, spec, "val")
        results[name] = {"epoch1_val_mae": mae, "naive": naive, "ratio": mae / naive}
        print(
            f"R  {name:<13} residual, book config, epoch 1: val {mae:.3f} vs naive {naive:.3f} "
            f"= {mae / naive:.3f}x ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return results


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, log: Path | None = None):
    started = time.perf_counter()
    out = open(log, "a") if log else subprocess.PIPE
    proc = subprocess.run(
        search_command(*args),
        cwd=cwd,
        env=cli_env(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if log:
        out.close()  # type: ignore[union-attr]
    return proc, time.perf_counter() - started


def _best(storage: str, study: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loaded = optuna.load_study(study_name=study, storage=storage)
    best = loaded.best_trial
    states: dict[str, int] = {}
    for trial in loaded.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return {
        "trials": len(loaded.trials),
        "states": states,
        "best_trial": best.number,
        "best_val_mae": best.value,
        "naive_val_mae": best.user_attrs.get("baseline_mae"),
        "linear_val_mae": best.user_attrs.get("linear_mae"),
        "skill_vs_naive": best.user_attrs.get("skill"),
        "skill_vs_linear": best.user_attrs.get("linear_skill"),
        "params": best.params,
    }


def part_b(out: Path, seeds: list[int]) -> list[dict]:
    """The default study in a fresh folder per seed."""
    results = []
    for seed in seeds:
        folder = out / f"default-seed-{seed}"
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        extra = [] if seed == 42 else ["--seed", str(seed)]
        proc, seconds = _run(["run", *extra], folder)
        if proc.returncode != 0:
            raise SystemExit(f"default study failed:\n{proc.stdout[-3000:]}")
        result = {"seed": seed, "wall_s": round(seconds, 1)}
        result.update(_best(f"sqlite:///{folder / 'search-studies.db'}", "quick"))
        results.append(result)
        print(
            f"B  default study, seed {seed}: {result['trials']} trials in {seconds:.0f} s; best "
            f"trial {result['best_trial']} val {result['best_val_mae']:.3f} vs naive "
            f"{result['naive_val_mae']:.3f} ({result['skill_vs_naive']:+.1%}) and linear "
            f"{result['linear_val_mae']:.3f} ({result['skill_vs_linear']:+.1%})",
            flush=True,
        )
    return results


def part_c(out: Path, trials: int, epochs: int | None, timeout: float) -> dict[str, dict]:
    """A --space all study per split, side by side, topped up to `trials`; then test once."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out / 'studies.db'}"
    tracking = f"sqlite:///{out / 'mlflow.db'}"
    procs = {}
    started = time.perf_counter()
    for split in SPLITS:
        study = f"all-{split}"
        try:
            done = len(optuna.load_study(study_name=study, storage=storage).trials)
        except KeyError:
            done = 0
        left = trials - done
        if left <= 0:
            continue
        args = ["run", "--space", "all", "--study", study, "--split", split]
        args += ["--trials", str(left), "--timeout", str(int(timeout))]
        args += ["--storage", storage, "--tracking-uri", tracking, "--seed", "0"]
        if epochs:
            args += ["--epochs", str(epochs)]
        env = cli_env({"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"})
        log = open(out / f"{study}.log", "a")
        procs[split] = (
            subprocess.Popen(
                search_command(*args), cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT
            ),
            log,
        )
        print(f"C  {study}: {done} trials so far, running {left} more (log {log.name})", flush=True)
    for split, (proc, log) in procs.items():
        proc.wait()
        log.close()
        if proc.returncode != 0:
            print(f"C  all-{split} exited {proc.returncode}; see its log", flush=True)
    results = {}
    for split in SPLITS:
        study = f"all-{split}"
        result = _best(storage, study)
        proc, test_figures = _evaluate_test(storage, study, out)
        result.update(test_figures)
        results[split] = result
        test = (
            f"; test {result['test_mae']:.3f} vs naive {result['test_naive_mae']:.3f} "
            f"({result['test_skill_vs_naive']:+.1%}) and linear {result['test_linear_mae']:.3f} "
            f"({result['test_skill_vs_linear']:+.1%})"
            if "test_mae" in result
            else f"; test evaluation failed: {proc.stdout[-300:]}"
        )
        print(
            f"C  all on {split}: {result['trials']} trials {result['states']}; best trial "
            f"{result['best_trial']} ({result['params'].get('architecture')}, "
            f"{result['params'].get('target_scaling', 'none')}) val {result['best_val_mae']:.3f} "
            f"vs naive {result['naive_val_mae']:.3f} ({result['skill_vs_naive']:+.1%}) and linear "
            f"{result['linear_val_mae']:.3f} ({result['skill_vs_linear']:+.1%}){test}",
            flush=True,
        )
    print(f"C  wall time this run: {time.perf_counter() - started:.0f} s", flush=True)
    return results


TEST_LINE = re.compile(
    r"test MAE ([\d.]+) \S+ \(naive ([\d.]+), skill ([-+\d.]+)%; linear ([\d.]+), "
    r"skill ([-+\d.]+)%\)"
)


def _evaluate_test(storage: str, study: str, cwd: Path) -> tuple[Any, dict[str, float]]:
    """`search best STUDY --evaluate-test`, and the test figures it printed (empty if none)."""
    proc, _ = _run(["best", study, "--storage", storage, "--evaluate-test"], cwd)
    match = TEST_LINE.search(proc.stdout)
    if not match:
        return proc, {}
    return proc, {
        "test_mae": float(match[1]),
        "test_naive_mae": float(match[2]),
        "test_skill_vs_naive": float(match[3]) / 100,
        "test_linear_mae": float(match[4]),
        "test_skill_vs_linear": float(match[5]) / 100,
    }


def _linear_gap(result: dict) -> dict[str, float]:
    """The linear reference's own gap (its val skill against naive minus its test skill, points):
    what the test blocks differ from the validation blocks with no selection at all; the rest of
    a study's gap is what choosing its best trial on val added."""
    val = 1 - result["linear_val_mae"] / result["naive_val_mae"]
    test = 1 - result["test_linear_mae"] / result["test_naive_mae"]
    gap = 100 * (val - test)
    return {"linear_gap": gap, "selection_part": result["selection_gap"] - gap}


def part_d(out: Path, seeds: list[int], candidates: list[str]) -> list[dict]:
    """The default study and each candidate default, per seed, one at a time, in fresh folders."""
    import shutil

    results = []
    for label, extra in [("default", [])] + [(c, c.split()) for c in candidates]:
        for seed in seeds:
            folder = out / f"{'default' if not extra else '_'.join(extra).strip('-')}-s{seed}"
            folder = Path(str(folder).replace(":", ""))
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            proc, seconds = _run(["run", "--seed", str(seed), *extra], folder)
            if proc.returncode != 0:
                raise SystemExit(f"{label} study failed:\n{proc.stdout[-3000:]}")
            result = {"candidate": label, "seed": seed, "wall_s": round(seconds, 1)}
            storage = f"sqlite:///{folder / 'search-studies.db'}"
            result.update(_best(storage, "quick"))
            evaluated, test = _evaluate_test(storage, "quick", folder)
            if not test:
                raise SystemExit(f"{label} --evaluate-test failed:\n{evaluated.stdout[-3000:]}")
            result.update(test)
            result["selection_gap"] = 100 * (result["skill_vs_naive"] - test["test_skill_vs_naive"])
            result.update(_linear_gap(result))
            results.append(result)
            print(
                f"D  {label:<28} seed {seed}: estimate {result['skill_vs_naive']:+.1%} vs naive, "
                f"{result['skill_vs_linear']:+.1%} vs linear; test {test['test_mae']:.3f} "
                f"({test['test_skill_vs_naive']:+.1%} vs naive {test['test_naive_mae']:.3f}, "
                f"{test['test_skill_vs_linear']:+.1%} vs linear {test['test_linear_mae']:.3f}); "
                f"gap {result['selection_gap']:+.1f} points (the linear reference's own "
                f"{result['linear_gap']:+.1f}: {result['selection_part']:+.1f} from selection); "
                f"{result['trials']} trials, "
                f"wall {seconds:.0f} s",
                flush=True,
            )
    return results


ENSEMBLE_LINES = (
    re.compile(r"estimate ([\d.]+) \S+, skill ([-+\d.]+)% vs naive, ([-+\d.]+)% vs linear"),
    re.compile(
        r"ensemble test MAE ([\d.]+) \S+ \(naive ([\d.]+), skill ([-+\d.]+)%; linear ([\d.]+), "
        r"skill ([-+\d.]+)%; best trial ([\d.]+) on the same ([\d,]+) times\); selection gap "
        r"([-+\d.]+) points"
    ),
    re.compile(
        r"ensemble +(\d+) of the (\d+) best trials[^,]*, (\d+) greedy steps.*?: (.*)$", re.M
    ),
)


def part_e(out: Path, cases: list[tuple[str, int]], trials: int) -> list[dict]:
    """The ensemble of each part-F study against its best trial."""
    storage = f"sqlite:///{out}/studies.db"
    results = []
    for split, seed in cases:
        for folds in (None, 3):
            args = _fold_study(out, split, seed, folds, trials)
            name = args[args.index("--study") + 1]
            proc, seconds = _run(
                ["best", name, "--storage", storage, "--ensemble", "--evaluate-test"], out
            )
            estimate, test, chosen = (p.search(proc.stdout) for p in ENSEMBLE_LINES)
            if proc.returncode != 0 or not (estimate and test and chosen):
                print(f"E  {name}: failed\n{proc.stdout[-2000:]}", flush=True)
                continue
            result = {
                "split": split,
                "seed": seed,
                "folds": folds or 1,
                "study": name,
                "members": chosen[4],
                "estimate_skill": float(estimate[2]) / 100,
                "estimate_linear_skill": float(estimate[3]) / 100,
                "test_mae": float(test[1]),
                "test_naive_mae": float(test[2]),
                "test_skill_vs_naive": float(test[3]) / 100,
                "test_linear_mae": float(test[4]),
                "test_skill_vs_linear": float(test[5]) / 100,
                "best_trial_test_mae": float(test[6]),
                "selection_gap": float(test[8]),
                "seconds": round(seconds, 1),
            }
            results.append(result)
            protocol = f"--folds {folds}" if folds else "one slice"
            print(
                f"E  {split} seed {seed} {protocol:<10} ensemble ({result['members']}): estimate "
                f"{result['estimate_skill']:+.1%} vs naive; test {result['test_mae']:.3f} "
                f"({result['test_skill_vs_naive']:+.1%} vs naive {result['test_naive_mae']:.3f}, "
                f"{result['test_skill_vs_linear']:+.1%} vs linear {result['test_linear_mae']:.3f})"
                f" against the best trial's {result['best_trial_test_mae']:.3f} "
                f"({1 - result['test_mae'] / result['best_trial_test_mae']:+.1%}); gap "
                f"{result['selection_gap']:+.1f} points ({seconds:.0f} s)",
                flush=True,
            )
    return results


def _fold_study(out: Path, split: str, seed: int, folds: int | None, trials: int) -> list[str]:
    name = f"f-{split.replace(':', '')}-s{seed}-{'k' + str(folds) if folds else 'slice'}"
    args = ["run", "--space", "quick", "--study", name, "--split", split, "--seed", str(seed)]
    args += ["--epochs", "6", "--trials", str(trials), "--storage", f"sqlite:///{out}/studies.db"]
    # one MLflow store per study: two fresh SQLite stores migrated at once by two processes race
    args += ["--tracking-uri", f"sqlite:///{out}/mlflow-{name}.db"]
    return args + (["--folds", str(folds)] if folds else [])


def part_f(out: Path, cases: list[tuple[str, int]], trials: int) -> list[dict]:
    """One slice against --folds 3, per (split, seed), two studies at a time."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out}/studies.db"
    jobs = [(split, seed, folds) for split, seed in cases for folds in (None, 3)]
    env = cli_env({"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"})
    walls: dict[tuple, float] = {}
    running: list[tuple[tuple, subprocess.Popen, float, Any]] = []
    queue = list(jobs)
    while queue or running:
        while queue and len(running) < 2:
            job = queue.pop(0)
            args = _fold_study(out, *job, trials)
            name = args[args.index("--study") + 1]
            try:
                left = trials - len(optuna.load_study(study_name=name, storage=storage).trials)
            except KeyError:
                left = trials
            if left <= 0:
                continue
            args[args.index("--trials") + 1] = str(left)
            log = open(out / f"{name}.log", "a")
            proc = subprocess.Popen(
                search_command(*args), cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            running.append((job, proc, time.perf_counter(), log))
            print(f"F  {name}: running {left} trials (log {log.name})", flush=True)
        time.sleep(2)
        for entry in list(running):
            job, proc, began, log = entry
            if proc.poll() is not None:
                log.close()
                walls[job] = time.perf_counter() - began
                running.remove(entry)
    results = []
    for job in jobs:
        split, seed, folds = job
        args = _fold_study(out, split, seed, folds, trials)
        name = args[args.index("--study") + 1]
        result = {"split": split, "seed": seed, "folds": folds or 1, "study": name}
        result.update(_best(storage, name))
        loaded = optuna.load_study(study_name=name, storage=storage)
        durations = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in loaded.trials
            if t.datetime_complete and t.datetime_start
        ]
        result["trial_seconds"] = round(sum(durations), 1)
        result["trials_per_hour"] = round(3600 * len(durations) / max(sum(durations), 1e-9), 1)
        if job in walls:
            result["wall_s"] = round(walls[job], 1)
        proc, test_figures = _evaluate_test(storage, name, out)
        result.update(test_figures)
        match = bool(test_figures)
        if match:
            result["selection_gap"] = 100 * (
                result["skill_vs_naive"] - result["test_skill_vs_naive"]
            )
            result.update(_linear_gap(result))
        results.append(result)
        protocol = f"--folds {folds}" if folds else "one slice"
        test = (
            f"test {result['test_mae']:.3f} ({result['test_skill_vs_naive']:+.1%} vs naive "
            f"{result['test_naive_mae']:.3f}, {result['test_skill_vs_linear']:+.1%} vs linear "
            f"{result['test_linear_mae']:.3f}); gap {result['selection_gap']:+.1f} points (the "
            f"linear reference's own {result['linear_gap']:+.1f}: {result['selection_part']:+.1f} "
            "from selection)"
            if match
            else f"test evaluation failed: {proc.stdout[-300:]}"
        )
        print(
            f"F  {split} seed {seed} {protocol:<10} estimate {result['skill_vs_naive']:+.1%} vs "
            f"naive, {result['skill_vs_linear']:+.1%} vs linear (val {result['best_val_mae']:.3f}"
            f", trial {result['best_trial']}); {test}; {result['trials_per_hour']:.0f} "
            f"trials/h, wall {result.get('wall_s', float('nan')):.0f} s",
            flush=True,
        )
    return results


def gap_figure(figures: dict, path: Path) -> None:
    """Each study's gap (estimate minus test skill against naive, points), split into the linear
    reference's own gap (the test blocks') and what selection added; the ensembles' beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for r in figures.get("d_default_candidates", []):
        rows.append((f"D {r['candidate'].replace('--split ', '')} s{r['seed']}", r))
    for r in figures.get("f_folds", []):
        protocol = "folds 3" if r["folds"] > 1 else "slice"
        rows.append((f"F {r['split']} s{r['seed']} {protocol}", r))
    rows = [(label, r) for label, r in rows if "linear_gap" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.5))
    y = range(len(rows))
    own = [r["linear_gap"] for _, r in rows]
    chosen = [r["selection_part"] for _, r in rows]
    ax.barh(y, own, color="#9bb7d4", label="the linear reference's own gap (the test blocks')")
    ax.barh(y, chosen, left=own, color="#d9822b", label="added by choosing the best trial on val")
    ax.scatter(
        [r["selection_gap"] for _, r in rows],
        y,
        color="black",
        s=12,
        zorder=3,
        label="the study's gap (estimate minus test skill)",
    )
    ensembles = {(e["split"], e["seed"], e["folds"]): e for e in figures.get("e_ensembles", [])}
    xs, ys = [], []
    for i, (_, r) in enumerate(rows):
        e = ensembles.get((r.get("split"), r.get("seed"), r.get("folds")))
        if e:
            xs.append(e["selection_gap"])
            ys.append(i)
    if xs:
        ax.scatter(xs, ys, marker="x", color="#2a7f3f", s=30, zorder=3, label="its ensemble's gap")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(list(y), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("points of skill against naive")
    ax.set_title("Estimate minus test skill, and how much of it is selection")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quality")
    parser.add_argument("--parts", default="ABRC", help="which parts to run (default ABRC)")
    parser.add_argument("--epochs-a", type=int, default=8, help="epochs per scaling in part A")
    parser.add_argument("--seeds", default="42,1,2", help="seeds of the default study (part B)")
    parser.add_argument("--trials", type=int, default=50, help="trials per split (part C)")
    parser.add_argument("--epochs", type=int, default=None, help="max epochs per trial (part C)")
    parser.add_argument("--timeout", type=float, default=4200, help="seconds per study (part C)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--fold-cases",
        default="blocked:14@0,blocked:14@1,blocked:14@2,blocked:28@0",
        help="part F: SPLIT@SEED pairs, each run with one slice and with --folds 3",
    )
    parser.add_argument(
        "--candidate-args",
        default="--split blocked:14 --folds 3",
        help="part D: ';'-separated `search run` arguments, each a candidate default",
    )
    parser.add_argument("--default-seeds", default="0,1,2", help="seeds of part D")
    parser.add_argument("--fold-trials", type=int, default=20, help="trials per study (part F)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    figures: dict = {}
    if "A" in args.parts:
        figures["a_book_lstm"] = part_a(args.epochs_a)
    if "B" in args.parts:
        figures["b_default_study"] = part_b(args.out, [int(s) for s in args.seeds.split(",")])
    if "R" in args.parts:
        figures["r_residual_epoch1"] = part_r()
    if "C" in args.parts:
        figures["c_all_studies"] = part_c(args.out, args.trials, args.epochs, args.timeout)
    if "D" in args.parts:
        figures["d_default_candidates"] = part_d(
            args.out / "defaults",
            [int(s) for s in args.default_seeds.split(",")],
            [c.strip() for c in args.candidate_args.split(";") if c.strip()],
        )
    if "F" in args.parts:
        cases = [(c.split("@")[0], int(c.split("@")[1])) for c in args.fold_cases.split(",")]
        figures["f_folds"] = part_f(args.out / "folds", cases, args.fold_trials)
    if "E" in args.parts:
        cases = [(c.split("@")[0], int(c.split("@")[1])) for c in args.fold_cases.split(",")]
        figures["e_ensembles"] = part_e(args.out / "folds", cases, args.fold_trials)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    if {"D", "F"} & set(args.parts):
        gap_figure(figures, REPO / "benchmarks" / "figures" / "quality_gaps.png")


if __name__ == "__main__":
    main()
