"""A study from start to finish: find or create it, wire Optuna to MLflow, run trials, summarize.

The Optuna storage is the source of truth and the distributed engine: several workers pointing at
the same storage and study name join one study. The first worker creates the study (an atomic
insert in the storage), the MLflow parent run and the book configuration's enqueued trial; the
others wait for the parent run id to appear on the study and log their trials under it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from search.errors import SearchError
from search.storage import open_storage

PARENT_ATTR = "mlflow_parent_run_id"
JOIN_WAIT_S = 120.0


@dataclass
class RunOptions:
    """Everything `search run` needs, validated once by the CLI and passed down."""

    study: str
    storage: str
    tracking_uri: str
    space: str | None = None
    data: str | None = None
    time_column: str | None = None
    target: str | None = None
    features: list[str] | None = None
    max_rows: int | None = None
    trials: int | None = 10
    timeout: float | None = None
    epochs: int | None = None
    seed: int | None = None
    fresh: bool = False
    verbose: bool = False
    print_fn: Callable[[str], None] = field(default=print, repr=False)


def space_identity(name_or_path: str) -> str:
    """How a study remembers its space: a shipped name as is, a file by its absolute path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return str(path.expanduser().resolve())
    return name_or_path


def data_identity(source: str) -> str:
    from search.datasets import SOURCES

    return source if source in SOURCES else str(Path(source).expanduser().resolve())


def find_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    """The study of that name in the storage, or None."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def load_existing_study(storage_url: str, name: str) -> optuna.Study:
    """Load a study or raise a one-line error listing the studies that do exist."""
    storage = open_storage(storage_url)
    study = find_study(storage, name)
    if study is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        listed = ", ".join(names[:20]) if names else "none"
        raise SearchError(
            f"no study named {name!r} in storage {storage_url} (studies there: {listed})"
        )
    return study


def reconcile_with_existing(options: RunOptions, study: optuna.Study | None) -> RunOptions:
    """Fill the options a resumed study remembers (space, data) and refuse contradictions."""
    if study is None or options.fresh:
        return options
    attrs = study.user_attrs
    for key, given, identity in (
        ("space", options.space, space_identity),
        ("data", options.data, data_identity),
    ):
        stored = attrs.get(key)
        if stored is None:
            continue
        if given is None:
            setattr(options, key, stored)
        elif identity(given) != stored:
            raise SearchError(
                f"study {options.study!r} was started with --{key} {stored}; resume it with that "
                f"--{key}, or pass --fresh (or a new --study name) to start a new study"
            )
    if options.max_rows is None and attrs.get("max_rows") is not None:
        options.max_rows = int(attrs["max_rows"])
    for key in ("time_column", "target"):
        if getattr(options, key) is None and attrs.get(key) is not None:
            setattr(options, key, attrs[key])
    if options.features is None and attrs.get("features"):
        options.features = list(attrs["features"])
    return options


def run_study(options: RunOptions) -> optuna.Study:
    """Run (or continue) a study and log it to MLflow; returns the Optuna study."""
    from search.datasets import load_dataset
    from search.spaces import load_space
    from search.tracking import StudyTracker, ui_command
    from search.trial import TrialRunner
    from search.windows import baseline_mae, prepare

    say = options.print_fn
    storage = open_storage(options.storage)
    existing = find_study(storage, options.study)
    options = reconcile_with_existing(options, existing)
    if existing is not None and options.fresh:
        _retire(existing, options)
        optuna.delete_study(study_name=options.study, storage=storage)
        existing = None
    space_name = options.space or "quick"
    space = load_space(space_name)
    data_source = options.data or "jena-2020"

    say(f"loading data {data_source} ...")
    dataset = load_dataset(
        data_source,
        time_column=options.time_column,
        target=options.target,
        features=options.features,
    )
    if options.max_rows:
        dataset = dataset.head(options.max_rows)
    prepared = prepare(dataset)
    say(
        f"data: {len(dataset.values):,} rows x {len(dataset.feature_names)} features, "
        f"train/val/test {prepared.num_train:,}/{prepared.num_val:,}/{prepared.num_test:,}"
    )

    seed = options.seed if options.seed is not None else 42
    created, study = _create_or_join(options, storage, seed)
    tracker = StudyTracker(options.tracking_uri, options.study)
    book = space.resolve(space.book_params())
    book_spec = prepared.spec(
        book.lookback_hours, book.sampling_rate, book.horizon_hours, book.target_steps
    )
    study_baseline = baseline_mae(prepared, book_spec, "val")
    if created:
        parent = tracker.create_parent_run(
            params={
                "study": options.study,
                "storage": options.storage,
                "space": space_identity(space_name),
                "space_file": str(space.path) if space.path else space_name,
                "data": data_identity(data_source),
                "max_rows": options.max_rows,
                "target": dataset.target_name,
                "features": dataset.feature_names,
                "seed": seed,
                "book_config": space.book_params(),
            },
            tags={"search.space": space.name, "search.data": data_source},
        )
        tracker.log_dict(parent, dataset.report, "data_report.json")
        tracker.log_metrics(parent, {"baseline_val_mae": study_baseline})
        if space.path:
            tracker.log_file(parent, Path(space.path), "space")
        study.set_user_attr("space", space_identity(space_name))
        study.set_user_attr("data", data_identity(data_source))
        study.set_user_attr("max_rows", options.max_rows)
        study.set_user_attr("time_column", options.time_column)
        study.set_user_attr("target", options.target)
        study.set_user_attr("features", options.features)
        study.set_user_attr("seed", seed)
        study.set_user_attr("mlflow_tracking_uri", options.tracking_uri)
        study.set_user_attr("mlflow_experiment_id", tracker.experiment_id)
        # Enqueue before publishing the parent run: joining workers wait for it, so the book
        # configuration is always trial 0.
        study.enqueue_trial(space.book_params(), user_attrs={"book_config": True})
        study.set_user_attr(PARENT_ATTR, parent)
        say(f"new study {options.study!r}: trial 0 is the space's book configuration")
    else:
        tracker.attach_parent_run(_wait_for_parent(study))
        recovered = recover_crashed_trials(study, tracker)
        done = len(study.get_trials(deepcopy=False))
        extra = f"; {recovered} trial(s) of a stopped worker marked FAIL" if recovered else ""
        say(f"continuing study {options.study!r} ({done} trials so far{extra})")

    runner = TrialRunner(
        space=space,
        prepared=prepared,
        tracker=tracker,
        seed=seed,
        epochs=options.epochs,
        verbose=options.verbose,
        trials_planned=options.trials,
        print_fn=say,
        fixed_params={"data": data_source, "max_rows": options.max_rows},
    )

    def report_best(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            best = study.best_trial
        except ValueError:
            return
        say(f"  best so far: trial {best.number}, val_mae {best.value:.3f} degC")

    status = "FINISHED"
    try:
        study.optimize(
            runner,
            n_trials=options.trials,
            timeout=options.timeout,
            catch=(Exception,),
            callbacks=[report_best],
            gc_after_trial=True,
        )
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _summarize(study, tracker, status)
    _print_summary(study, options, tracker, say, ui_command)
    return study


def _create_or_join(options: RunOptions, storage: Any, seed: int) -> tuple[bool, optuna.Study]:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=options.study,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner,
        )
        return True, study
    except optuna.exceptions.DuplicatedStudyError:
        pass
    # Joining or resuming: an explicit --seed is honoured; otherwise each worker samples on its
    # own random stream so simultaneous workers do not propose the same parameters.
    sampler = optuna.samplers.TPESampler(seed=options.seed if options.seed is not None else None)
    study = optuna.load_study(
        study_name=options.study, storage=storage, sampler=sampler, pruner=pruner
    )
    return False, study


def _wait_for_parent(study: optuna.Study) -> str:
    deadline = time.monotonic() + JOIN_WAIT_S
    while True:
        parent = study.user_attrs.get(PARENT_ATTR)
        if parent:
            return str(parent)
        if time.monotonic() > deadline:
            raise SearchError(
                f"study {study.study_name!r} has no MLflow parent run after {JOIN_WAIT_S:.0f} s; "
                "was it created by an older version or a crashed worker? Start anew with --fresh"
            )
        time.sleep(1.0)


def _retire(study: optuna.Study, options: RunOptions) -> None:
    """Before --fresh deletes a study, mark its MLflow parent run as superseded (nothing deleted)."""
    parent = study.user_attrs.get(PARENT_ATTR)
    if not parent:
        return
    from search.tracking import StudyTracker

    try:
        tracker = StudyTracker(options.tracking_uri, options.study)
        tracker.set_tags(parent, {"search.superseded": "true"})
        tracker.client.set_terminated(parent, status="KILLED")
    except Exception:  # the old run may live in another tracking store; nothing to retire then
        pass


CRASH_REASON = "its worker stopped sending heartbeats (crashed or killed)"


def recover_crashed_trials(study: optuna.Study, tracker: Any) -> int:
    """Fail the RUNNING trials of workers that died (Optuna's heartbeat) and close their MLflow
    child runs to match; returns how many child runs were closed."""
    optuna.storages.fail_stale_trials(study)  # a no-op on storages without heartbeats
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id or "fail_reason" in trial.user_attrs:
            continue
        run = tracker.client.get_run(run_id)
        if run.data.tags.get("search.state") == "RUNNING":
            tracker.end_trial_run(run_id, "FAIL", CRASH_REASON)
            closed += 1
    return closed


def _summarize(study: optuna.Study, tracker: Any, status: str) -> None:
    """Log the best trial and the study's figures to the parent run."""
    parent = tracker.parent_run_id
    if parent is None:
        return
    from search.plots import study_figures

    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in optuna.trial.TrialState}
    for t in trials:
        counts[t.state.name] += 1
    metrics: dict[str, float] = {f"trials_{k.lower()}": v for k, v in counts.items() if v}
    try:
        best = study.best_trial
        assert best.value is not None  # best_trial only returns COMPLETE trials, which have one
        metrics["best_val_mae"] = float(best.value)
        skill = best.user_attrs.get("skill")
        if skill is not None and math.isfinite(skill):
            metrics["best_skill"] = float(skill)
        tracker.set_tags(
            parent,
            {
                "search.best_trial": best.number,
                "search.best_run_id": best.user_attrs.get("mlflow_run_id", ""),
                "search.best_params": best.params,
            },
        )
    except ValueError:
        pass
    tracker.log_metrics(parent, metrics, step=len(trials))
    import matplotlib.pyplot as plt

    for name, figure in study_figures(study).items():
        tracker.log_figure(parent, figure, name)
        plt.close(figure)
    tracker.finish_parent_run(status)


def _print_summary(
    study: optuna.Study, options: RunOptions, tracker: Any, say: Callable, ui_command: Callable
) -> None:
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    counts = ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
    say("")
    say(f"study {options.study!r}: {len(trials)} trials ({counts})")
    try:
        best = study.best_trial
        attrs = best.user_attrs
        extra = ""
        if attrs.get("baseline_mae") is not None and attrs.get("skill") is not None:
            extra = f" (baseline {attrs['baseline_mae']:.3f}, skill {attrs['skill']:+.1%})"
        say(f"best: trial {best.number}, val MAE {best.value:.3f} degC{extra}")
    except ValueError:
        say("no trial completed yet")
    say(f"list the trials: search trials {options.study} --storage {options.storage}")
    say(
        f"results: Optuna study {options.study!r} in {options.storage}; MLflow experiment "
        f"{options.study!r} in {options.tracking_uri}; open the UI: {ui_command(options.tracking_uri)}"
    )
