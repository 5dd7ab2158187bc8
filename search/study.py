"""A study from start to finish, thinly: request -> record -> engine.optimize(objective) -> outcome.

The engine's storage is the source of truth and the distributed mechanism: several workers
pointing at the same storage and study name join one study. The first worker creates the study
(an atomic insert in the storage), the tracking parent run and the book configuration's enqueued
trial; the others wait for the parent run id to appear on the study and log under it.

Nothing here prints: progress goes to ``request.progress`` (the CLI passes one that prints), and
:func:`run_study` returns a :class:`StudyOutcome` for the caller to show.

    from search import StudyRequest, run_study
    outcome = run_study(StudyRequest(study="lstm-try", space="lstm", trials=10))
    outcome.best.value, outcome.best.params
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.data.references import LinearCache
from search.data.splits import FOLDS_MARK
from search.engines import Engine, SearchOptions, TrialSummary, open_engine
from search.engines.base import DEFAULT_PRUNER, DEFAULT_SAMPLER, DEFAULT_TUNER
from search.errors import DataError, SearchError
from search.local_folders import spool_root
from search.record import (
    DEFAULT_SEED,
    DEFAULT_SPACE,
    StudyRecord,
    data_identity,
    load_study_data,
    load_study_space,
    space_identity,
    validate_study_name,
)
from search.runtime import versions_tag
from search.tracking import Tracker, open_tracker, redact, resolve_tracking_uri
from search.tracking.redact import without_credentials
from search.tracking.spool import SPOOL_PREFIX, Spool, SpooledTracker
from search.workers import checkpoint_root

if TYPE_CHECKING:
    from search.spaces import Space

__all__ = ["StudyOutcome", "StudyRequest", "plan_study", "run_study"]

JOIN_WAIT_S = 120.0
CRASH_REASON = "its worker stopped sending heartbeats (crashed or killed)"
DEAD_REASON = "its worker process is gone (killed or crashed on this host)"


@dataclass
class StudyRequest:
    """What to run: everything `search run` takes, as one explicit object.

    ``None`` means "the default, or what the study remembers" (space ``quick``, data
    ``jena-2020``, seed 42, the default storage and tracking store).
    """

    study: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    space: str | None = None
    data: str | None = None
    time_column: str | None = None
    target: str | None = None
    features: list[str] | None = None
    max_rows: int | None = None
    trials: int | None = 6
    timeout: float | None = None
    epochs: int | None = None
    seed: int | None = None
    split: str | None = None
    folds: int | None = None  # cross-validated trials over the blocked split's non-test blocks
    time_format: str | None = None
    engine: str | None = None  # optuna or keras-tuner; None: what the study remembers, else optuna
    sampler: str | None = None  # Optuna: tpe, random, gp, cmaes (None: the space's, else tpe)
    pruner: str | None = None  # Optuna: median, halving, hyperband, none
    tuner: str | None = None  # keras-tuner: hyperband, bayesian, random
    max_consecutive_failures: int = 5
    fresh: bool = False
    verbose: bool = False
    progress: Callable[[str], None] | None = field(default=None, repr=False)


@dataclass
class StudyPlan:
    """A checked request: resolved URLs, the study's record, and whether it exists already."""

    request: StudyRequest
    study: str
    storage: str
    tracking_uri: str
    record: StudyRecord
    exists: bool
    stored: StudyRecord | None
    engine: Engine = field(repr=False)


@dataclass
class SpoolState:
    """Tracking logs left in a study's local spool when `search run` ended (the server was
    unreachable): where they are, how many runs and operations, and why they were not sent."""

    folder: str
    runs: int
    operations: int
    reason: str | None


@dataclass
class StudyOutcome:
    """What a run of a study did and where its results are."""

    study: str
    storage: str
    tracking_uri: str
    record: StudyRecord
    trials: list[TrialSummary]
    best: TrialSummary | None
    unit: str
    recovered: int = 0
    stopped_for_failures: int | None = None  # N when --max-consecutive-failures N stopped it
    spool: SpoolState | None = None  # tracking logs still waiting for the server, if any
    experiment_id: str | None = None  # the study's MLflow experiment (else the record's)

    @property
    def counts(self) -> dict[str, int]:
        """Trials per state."""
        states: dict[str, int] = {}
        for trial in self.trials:
            states[trial.state] = states.get(trial.state, 0) + 1
        return states


def plan_study(request: StudyRequest) -> StudyPlan:
    """Check a request before anything heavy is imported: the study name, the storage, the
    tracking URI, the space and the data source, and agreement with what an existing study of
    that name remembers (a contradicting ``space``/``data``/``split`` is refused unless
    ``fresh``). Raises a one-line SearchError."""
    from search.data.sources import validate_source
    from search.spaces import load_space
    from search.storage import check_storage, resolve_storage_url
    from search.tracking import check_tracking_uri

    name = validate_study_name(
        request.study
        if request.study is not None
        else (_stem(request.space) if request.space else DEFAULT_SPACE)
    )
    if request.space is not None:
        load_space(request.space)  # one line naming the file and parameter
    if request.data is not None:
        validate_source(request.data)
    if request.split is not None or request.folds is not None:
        _split_identity(request.split, request.folds, required=request.split is not None)
    _check_search_options(request)
    storage = resolve_storage_url(request.storage)
    check_storage(storage)
    tracking_uri = resolve_tracking_uri(request.tracking_uri)
    check_tracking_uri(tracking_uri)
    engine = open_engine("optuna", storage)  # every engine keeps its study in this storage
    exists = engine.exists(name)
    stored: StudyRecord | None = None
    if exists:
        engine.open(name, seed=None, create=False, join_seed=request.seed)
        stored = StudyRecord.from_attrs(_wait_for_record(engine))
    record = _reconcile(request, name, stored if not request.fresh else None)
    _check_search_options(request, record)
    if record.engine != "optuna":
        engine = open_engine(record.engine, storage)
    if record.space_yaml is None:
        load_space(record.space)
    validate_source(record.data)
    return StudyPlan(request, name, storage, tracking_uri, record, exists, stored, engine)


def _wait_for_record(engine: Engine, wait: float = 60.0) -> dict[str, Any]:
    """The attributes of an existing study, once its record is complete: a worker that starts
    while another is creating the study (it writes the record, ``record_version`` last, after
    creating the study) waits for it rather than comparing its flags with an empty record. A
    study of the first release (no ``record_version``) has its parent run id."""
    deadline = time.monotonic() + wait
    while True:
        attrs = engine.study_attrs()
        if "record_version" in attrs or attrs.get("mlflow_parent_run_id"):
            return attrs
        if time.monotonic() > deadline:  # its creator died before writing it
            return attrs
        time.sleep(0.5)


def _check_search_options(request: StudyRequest, record: StudyRecord | None = None) -> None:
    """Engine, sampler, pruner and tuner names, and flags that do not fit the engine."""
    from search.engines import ENGINES, PRUNERS, SAMPLERS, TUNERS

    for flag, value, allowed in (
        ("engine", request.engine, ENGINES),
        ("sampler", request.sampler, SAMPLERS),
        ("pruner", request.pruner, PRUNERS),
        ("tuner", request.tuner, TUNERS),
    ):
        if value is not None and value not in allowed:
            raise SearchError(f"unknown --{flag} {value!r}; expected one of {', '.join(allowed)}")
    if record is None:
        return
    if record.engine == "keras-tuner":
        for flag, value in (("sampler", request.sampler), ("pruner", request.pruner)):
            if value is not None:
                raise SearchError(
                    f"--{flag} is an Optuna setting; a keras-tuner study takes --tuner"
                )
        if FOLDS_MARK in record.split:
            raise SearchError(
                "--folds is not for the keras-tuner engine (its oracles score one validation "
                "slice); use the Optuna engine for cross-validated trials"
            )
    elif request.tuner is not None:
        raise SearchError("--tuner is a keras-tuner setting; pass --engine keras-tuner with it")
    if record.sampler in ("gp", "cmaes"):
        from search.engines.optuna import check_sampler_installed

        check_sampler_installed(record.sampler)


def _stem(space: str) -> str:

    return Path(space).stem


def _reconcile(request: StudyRequest, name: str, stored: StudyRecord | None) -> StudyRecord:
    """The record of this run: the request's values, else what the study remembers, else the
    defaults; a request that contradicts the study's space, data or split is refused."""
    if stored is None:
        return StudyRecord(
            space=space_identity(request.space or DEFAULT_SPACE),
            data=data_identity(request.data or StudyRecord.data),
            time_column=request.time_column,
            time_format=request.time_format,
            target=request.target,
            features=request.features,
            max_rows=request.max_rows,
            seed=request.seed if request.seed is not None else DEFAULT_SEED,
            split=_split_identity(request.split or StudyRecord.split, request.folds),
            engine=request.engine or StudyRecord.engine,
            sampler=request.sampler,
            pruner=request.pruner,
            tuner=request.tuner,
        )
    for flag, given, kept in (
        ("target", request.target, stored.target),
        ("features", request.features, stored.features),
        ("max-rows", request.max_rows, stored.max_rows if stored.max_rows else "all rows"),
        ("time-column", request.time_column, stored.time_column),
        ("time-format", request.time_format, stored.time_format),
    ):
        if given is None or kept is None or given == kept:
            continue  # not given, or the study never fixed it (the source's default)
        shown = ",".join(kept) if isinstance(kept, list) else kept
        raise SearchError(
            f"study {name!r} was started with --{flag} {shown}; resume it without --{flag} (or "
            "with that value), or pass --fresh (or a new --study name) to start a new study"
        )
    if request.tuner is not None and stored.tuner is not None and request.tuner != stored.tuner:
        raise SearchError(
            f"study {name!r} searches with --tuner {stored.tuner} (its oracle's state); resume it "
            "with that --tuner, or pass --fresh (or a new --study name) to start anew"
        )
    if request.engine is not None and request.engine != stored.engine:
        raise SearchError(
            f"study {name!r} runs on the {stored.engine} engine; resume it without --engine (or with "
            f"--engine {stored.engine}), or pass --fresh (or a new --study name) to start anew"
        )
    for key, given, identity in (
        ("space", request.space, space_identity),
        ("data", request.data, data_identity),
    ):
        if given is not None and identity(given) != getattr(stored, key):
            raise SearchError(
                f"study {name!r} was started with --{key} {getattr(stored, key)}; resume it with "
                f"that --{key}, or pass --fresh (or a new --study name) to start a new study"
            )
    _check_same_split(request, name, stored.split)
    return replace(
        stored,
        time_column=request.time_column or stored.time_column,
        time_format=request.time_format or stored.time_format,
        target=request.target or stored.target,
        features=request.features or stored.features,
        max_rows=request.max_rows or stored.max_rows,
        seed=request.seed if request.seed is not None else stored.seed,
        sampler=request.sampler or stored.sampler,
        pruner=request.pruner or stored.pruner,
        tuner=request.tuner or stored.tuner,
    )


def _split_identity(text: str | None, folds: int | None = None, required: bool = True) -> str:
    """How a study remembers its split: the policy's canonical name (``blocked`` is
    ``blocked:28``; with folds, ``blocked:28/folds:K``). ``folds`` without a blocked split, or
    fewer than 2, is a one-line error."""
    from search.data.splits import parse_split

    if folds is not None and folds < 2:
        raise SearchError(f"--folds must be at least 2, got {folds}: each fold validates once")
    if folds is not None and not required and text is None:
        return f"blocked/folds:{folds}"  # checked against the study's split when it resumes
    return parse_split(text, folds=folds).name


def _check_same_split(request: StudyRequest, name: str, stored: str) -> None:
    """A resumed study keeps its split and its folds: ``--split`` and ``--folds`` may repeat
    them, never change them."""
    from search.data.splits import FOLDS_MARK

    base, _, kept = stored.partition(FOLDS_MARK)
    folds = int(kept) if kept else None
    if request.folds is not None and request.folds != folds:
        had = f"with --folds {folds}" if folds else "without --folds (one validation slice)"
        raise SearchError(
            f"study {name!r} was started {had}; resume it "
            + (f"with --folds {folds} or " if folds else "")
            + "without --folds, or pass --fresh (or a new --study name) to start a new study"
        )
    if request.split is not None and _split_identity(request.split) != base:
        raise SearchError(
            f"study {name!r} was started with --split {stored}; resume it with that --split, "
            "or pass --fresh (or a new --study name) to start a new study"
        )


def run_study(request: StudyRequest) -> StudyOutcome:
    """Run (or continue) a study and track it; returns what happened and where to look."""
    from search.training.trial import TrialRunner

    say = request.progress or (lambda line: None)
    plan = plan_study(request)
    engine, record, name = plan.engine, plan.record, plan.study
    if plan.exists and request.fresh:
        _retire(plan, engine)
        engine.delete(name)
    tracker = SpooledTracker(
        open_tracker(plan.tracking_uri, name), Spool(spool_root(plan.storage, name)), say=say
    )
    space = load_study_space(record, tracker if plan.exists and not request.fresh else None)

    say(f"loading data {record.data} ...")
    dataset, prepared = load_study_data(record, space)
    unit = dataset.unit
    say(
        f"data: {len(dataset.values):,} rows x {len(dataset.feature_names)} features, "
        f"train/val/test {prepared.num_train:,}/{prepared.num_val:,}/{prepared.num_test:,} "
        f"({prepared.split.name} split)"
    )
    linear = LinearCache()  # shared with the trials: the book geometry is fitted once
    references = _book_references(space, prepared, linear)  # a window that cannot fit fails here
    problem = _widest_window_problem(space, prepared)
    if problem is not None:
        if not plan.exists or request.fresh:
            raise DataError(problem)  # a new study: refused before anything is stored
        say(f"note: {problem}")  # a study begun before this check goes on as it was
    for warning in references["split"].get("warnings", []):
        say(f"note: {warning}")
    options = SearchOptions(
        sampler=record.sampler or space.search.sampler or DEFAULT_SAMPLER,
        pruner=record.pruner or space.search.pruner or DEFAULT_PRUNER,
        tuner=record.tuner or space.search.tuner or DEFAULT_TUNER,
        max_epochs=request.epochs or space.fixed.epochs,
        conditional=space.conditional,
    )
    engine.configure(options)
    if not plan.exists or request.fresh:  # a new study remembers how it searches
        if engine.name == "keras-tuner":
            record = replace(record, tuner=options.tuner)
        else:
            record = replace(record, sampler=options.sampler, pruner=options.pruner)
    engine.bind(space)
    created = engine.open(name, seed=record.seed, join_seed=request.seed)
    engine.name_objective(objective_name(unit))
    experiment_id = tracker.open()
    recovered = 0
    if created:
        _start(engine, tracker, space, dataset, record, plan, experiment_id, references)
        say(f"new study {name!r}: trial 0 is the space's book configuration")
    else:
        tracker.attach_parent_run(_wait_for_parent(engine, name))
    if tracker.parent_run_id is not None:  # every machine that worked on the study
        tracker.set_tags(tracker.parent_run_id, versions_tag())
    if not created:
        recovered = recover_crashed_trials(engine, tracker)
        done = len(engine.trials())
        extra = (
            f"; {recovered} trial(s) of a stopped worker marked FAIL and re-queued"
            if recovered
            else ""
        )
        say(f"continuing study {name!r} ({done} trials so far{extra})")

    runner = TrialRunner(
        space=space,
        prepared=prepared,
        tracker=tracker,
        seed=record.seed,
        epochs=request.epochs,
        verbose=request.verbose,
        trials_planned=request.trials,
        say=say,
        fixed_params={"data": record.data, "max_rows": record.max_rows},
        linear=linear,
        checkpoints=checkpoint_root(plan.storage, name),
    )

    failures = {"in_a_row": 0, "stopped": False}

    def report_best(trial: TrialSummary) -> None:
        best = engine.best()
        if best is not None and best.value is not None:
            say(f"  best so far: trial {best.number}, val_mae {best.value:.3f} {unit}")
        failures["in_a_row"] = failures["in_a_row"] + 1 if trial.state == "FAIL" else 0
        if failures["in_a_row"] >= request.max_consecutive_failures:
            failures["stopped"] = True
            engine.stop()

    status = "FINISHED"
    if request.timeout is not None:  # the budget counts from here; a trial stops at an epoch end
        runner.deadline = time.monotonic() + request.timeout
    try:
        engine.optimize(runner, request.trials, request.timeout, on_trial_end=report_best)
    except KeyboardInterrupt:
        status = "KILLED"
        stopped = [t for t in engine.trials() if t.number == runner.last_trial]
        requeue(engine, [t for t in stopped if t.state == "FAIL"])
        raise
    finally:
        try:
            _summarize(engine, tracker, status, unit)
        finally:
            spool = _sync_at_end(tracker, short=status != "FINISHED")
    return StudyOutcome(
        study=name,
        storage=plan.storage,
        tracking_uri=plan.tracking_uri,
        record=record,
        trials=engine.trials(),
        best=engine.best(),
        unit=unit,
        recovered=recovered,
        stopped_for_failures=(request.max_consecutive_failures if failures["stopped"] else None),
        spool=spool,
        experiment_id=experiment_id,
    )


def objective_name(unit: str) -> str:
    """What the study minimises, with its unit, as the engine's views name it."""
    return f"val MAE ({unit})" if unit else "val MAE"


def sync_timeout() -> float:
    """How long `search run` and `search sync` keep retrying an unreachable tracking server
    before leaving the logs in the spool (``$SEARCH_SYNC_TIMEOUT`` seconds, default 30)."""
    try:
        return max(0.0, float(os.environ.get("SEARCH_SYNC_TIMEOUT", "30")))
    except ValueError:
        return 30.0


def _sync_at_end(tracker: SpooledTracker, short: bool) -> SpoolState | None:
    """`search sync` at the end of `search run`: send what is spooled (bounded); what the
    server could not take stays in the spool, durable, for `search sync NAME`."""
    report = tracker.flush(timeout=min(5.0, sync_timeout()) if short else sync_timeout())
    runs, operations = tracker.spooled
    if operations == 0:
        return None
    return SpoolState(str(tracker.spool.root), runs, operations, report.error)


def _book_references(space: Space, prepared: Any, cache: LinearCache) -> dict[str, Any]:
    """Both references on the book configuration's val windows, and the split report."""
    from search.data.references import baseline_mae
    from search.data.splits import split_report

    book = space.resolve(space.book_params(), book=True)
    book_spec = book.window(prepared.steps_per_hour)
    linear = cache.get(prepared, book_spec)
    return {
        "baseline_val_mae": baseline_mae(prepared, book_spec, "val"),
        "linear_val_mae": linear.val_mae,
        "linear_penalty": linear.penalty,
        "split": split_report(prepared),
    }


def _widest_window_problem(space: Space, prepared: Any) -> str | None:
    """Why some split holds no window of the longest lookback the space can sample (a trial
    left unscorable, or a best model that cannot be evaluated on the test split), or None."""
    from search.data.geometry import WindowSpec
    from search.data.splits import SPLITS, window_starts

    for hours, rate in space.widest_windows():
        spec = WindowSpec(
            hours,
            rate,
            space.fixed.horizon_hours,
            space.fixed.target_steps,
            prepared.steps_per_hour,
        )
        for split in SPLITS:
            try:
                window_starts(prepared, spec, split)
            except DataError as error:
                return (
                    f"space {space.name!r} can sample lookback_hours {hours:g} at sampling_rate "
                    f"{rate}, which this data cannot window: {error}"
                )
    return None


def _start(
    engine: Engine,
    tracker: Tracker,
    space: Space,
    dataset: Any,
    record: StudyRecord,
    plan: StudyPlan,
    experiment_id: str,
    references: dict[str, Any],
) -> None:
    """A new study: its parent run, its record, and the book configuration as trial 0."""
    parent = tracker.create_parent_run(
        params={
            "study": plan.study,
            "storage": redact(plan.storage),
            "space": record.space,
            "space_file": str(space.path) if space.path else record.space,
            "data": record.data,
            "max_rows": record.max_rows,
            "target": dataset.target_name,
            "features": dataset.feature_names,
            "seed": record.seed,
            "split": record.split,
            "engine": engine.name,
            "book_config": space.book_params(),
        },
        tags={"search.space": space.name, "search.data": record.data},
    )
    tracker.log_dict(parent, {**dataset.report, "split": references["split"]}, "data_report.json")
    tracker.log_metrics(parent, {k: v for k, v in references.items() if k != "split"})
    if space.path:
        tracker.log_file(parent, space.path, "space")
    record = replace(
        record,
        space_yaml=space.path.read_text() if space.path else None,
        target=dataset.target_name,
        features=list(dataset.feature_names),
        engine=engine.name,
        mlflow_tracking_uri=without_credentials(plan.tracking_uri),
        mlflow_experiment_id=experiment_id,
    )
    engine.set_study_attrs(record.to_attrs())
    # Enqueue before publishing the parent run: joining workers wait for it, so the book
    # configuration is always trial 0.
    engine.enqueue(space.book_params(), {"book_config": True})
    engine.set_study_attrs({"mlflow_parent_run_id": parent})


def _wait_for_parent(engine: Engine, name: str) -> str:
    deadline = time.monotonic() + JOIN_WAIT_S
    while True:
        parent = engine.study_attrs().get("mlflow_parent_run_id")
        if parent:
            return str(parent)
        if time.monotonic() > deadline:
            raise SearchError(
                f"study {name!r} has no MLflow parent run after {JOIN_WAIT_S:.0f} s; "
                "was it created by an older version or a crashed worker? Start anew with --fresh"
            )
        time.sleep(1.0)


def _retire(plan: StudyPlan, engine: Engine) -> None:
    """Before ``fresh`` deletes a study, mark its parent run as superseded (nothing deleted)."""
    parent = plan.stored.mlflow_parent_run_id if plan.stored else None
    if not parent:
        return
    try:
        tracker = open_tracker(plan.tracking_uri, plan.study)
        tracker.set_tags(parent, {"search.superseded": "true"})
        tracker.terminate(parent, "KILLED")
    except Exception:  # the old run may live in another tracking store; nothing to retire then
        pass


def recover_crashed_trials(engine: Engine, tracker: Tracker) -> int:
    """Fail the RUNNING trials of workers that died (at once when this host can prove its
    process gone, else after the heartbeat grace), close their child runs as FAILED and
    re-queue their configurations once (the re-run continues from the dead trial's last epoch
    checkpoint when this machine has it); returns how many trials were recovered so."""
    from search.workers import worker_is_gone

    dead = engine.fail_dead(lambda trial: worker_is_gone(trial.attrs), DEAD_REASON)
    dead += engine.fail_stale()
    for trial in dead:
        run_id = trial.attrs.get("mlflow_run_id")
        if run_id and (
            run_id.startswith(SPOOL_PREFIX)  # its run may still be in this machine's spool
            or tracker.run_tags(run_id).get("search.state") == "RUNNING"
        ):
            tracker.end_trial_run(run_id, "FAIL", trial.attrs.get("fail_reason", CRASH_REASON))
    requeue(engine, dead)
    return len(dead)


def requeue(engine: Engine, trials: list[TrialSummary]) -> None:
    """Queue the configurations of interrupted trials again, each once (a trial re-run is
    marked ``search.resumed_from_trial``), ahead of new samples."""
    done = {
        t.attrs.get("search.resumed_from_trial")
        for t in engine.trials()
        if t.attrs.get("search.resumed_from_trial") is not None
    }
    for trial in trials:
        if not engine.requeues or trial.number in done or not trial.params:
            continue
        attrs: dict[str, Any] = {"search.resumed_from_trial": trial.number}
        if trial.is_book:
            attrs["book_config"] = True
        engine.enqueue(trial.params, attrs)


def _best_per_architecture(trials: list[TrialSummary]) -> list[dict[str, Any]]:
    """The best COMPLETE trial of each architecture with its references (for the chart)."""
    best: dict[str, TrialSummary] = {}
    for trial in trials:
        arch = trial.attrs.get("architecture") or trial.params.get("architecture")
        if trial.state != "COMPLETE" or trial.value is None or not arch:
            continue
        if arch not in best or trial.value < (best[arch].value or math.inf):
            best[arch] = trial
    return [
        {
            "architecture": arch,
            "best": float(t.value or 0.0),
            "naive": float(t.attrs.get("baseline_mae", math.nan)),
            "linear": float(t.attrs.get("linear_mae", math.nan)),
        }
        for arch, t in sorted(best.items())
    ]


def _run_of(tracker: Tracker, trial: TrialSummary) -> str:
    """A trial's MLflow run id; a run still in the spool is named by its spool reference."""
    ref = str(trial.attrs.get("mlflow_run_id", ""))
    if not ref.startswith(SPOOL_PREFIX):
        return ref
    try:
        return tracker.resolve_run(ref) or ref
    except Exception:  # noqa: BLE001 - the server is down: the reference will do
        return ref


def _summarize(engine: Engine, tracker: Tracker, status: str, unit: str) -> None:
    """Log the best trial and the study's figures to the parent run."""
    parent = tracker.parent_run_id
    if parent is None:
        return
    trials = engine.trials()
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    metrics: dict[str, float] = {f"trials_{k.lower()}": v for k, v in counts.items()}
    best = engine.best()
    if best is not None and best.value is not None:
        metrics["best_val_mae"] = float(best.value)
        skill = best.attrs.get("skill")
        if skill is not None and math.isfinite(skill):
            metrics["best_skill"] = float(skill)
        tracker.set_tags(
            parent,
            {
                "search.best_trial": best.number,
                "search.best_run_id": _run_of(tracker, best),
                "search.best_params": best.params,
            },
        )
    tracker.log_metrics(parent, metrics, step=len(trials))
    import matplotlib.pyplot as plt

    rows = _best_per_architecture(trials)
    if rows:
        from search.training.plots import architecture_chart

        figure = architecture_chart(rows, unit)
        tracker.log_figure(parent, figure, "architectures.png")
        plt.close(figure)

    for figure_name, figure in engine.figures().items():
        tracker.log_figure(parent, figure, figure_name)
        plt.close(figure)
    tracker.finish_parent_run(status)
