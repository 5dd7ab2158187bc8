"""A study from start to finish, thinly: plan -> data -> engine.optimize(objective) -> outcome.

The engine's storage is the source of truth and the distributed mechanism: several workers
pointing at the same storage and study name join one study. The first worker creates the study
(an atomic insert in the storage), the tracking parent run and the book configuration's enqueued
trial; the others wait for the parent run id to appear on the study and log under it.

The rooms it calls: :mod:`search.planning` (the request checked, once, into a frozen plan),
:mod:`search.study_data` (the data and its references), :mod:`search.lifecycle` (start, join,
crashed trials, retire), :mod:`search.summary` (the parent run's summary) and
:mod:`search.local_folders` (the spool, checkpoints and keras-tuner state on this machine).

Nothing here prints: progress goes to ``request.progress`` (the CLI passes one that prints), and
:func:`run_study` returns a :class:`StudyOutcome` for the caller to show.

    from search import StudyRequest, run_study
    outcome = run_study(StudyRequest(study="lstm-try", space="lstm", trials=10))
    outcome.best.value, outcome.best.params
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from search.engines import Engine, SearchOptions, TrialSummary
from search.engines.base import (
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_TUNER,
    LEGACY_PRUNER,
    LEGACY_SAMPLER,
)
from search.lifecycle import join_or_start, recover_crashed_trials, requeue, retire
from search.local_folders import SpoolState, spool_root, sync_at_end, sync_timeout
from search.planning import StudyPlan, StudyRequest, plan_study
from search.record import StudyRecord, load_study_space
from search.study_data import load_and_check
from search.summary import objective_name, summarize
from search.tracking import open_tracker
from search.tracking.spool import Spool, SpooledTracker
from search.workers import checkpoint_root

if TYPE_CHECKING:
    from search.spaces import Space
    from search.training.trial import TrialRunner

__all__ = [
    "SpoolState",
    "StudyOutcome",
    "StudyPlan",
    "StudyRequest",
    "objective_name",
    "plan_study",
    "recover_crashed_trials",
    "requeue",
    "run_study",
    "spool_root",
    "sync_timeout",
]


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


def run_study(request: StudyRequest, plan: StudyPlan | None = None) -> StudyOutcome:
    """Run (or continue) a study and track it; returns what happened and where to look.

    ``plan``: the request's plan (:func:`plan_study`), when the caller made it already (the
    CLI checks the request before Keras is imported); it is taken as it is, not made again."""
    say = request.progress or (lambda line: None)
    plan = plan if plan is not None else plan_study(request)
    engine, record, name = plan.engine, plan.record, plan.study
    new = not plan.exists or request.fresh
    tracker = SpooledTracker(
        open_tracker(plan.tracking_uri, name), Spool(spool_root(plan.storage, name)), say=say
    )
    space = (
        plan.space
        if plan.space is not None
        else load_study_space(record, tracker if not new else None)
    )
    # The data is loaded and checked before anything is deleted (--fresh keeps the old study
    # when the new data is refused) and before Keras is imported (a data error costs no import).
    dataset, prepared, linear, references = load_and_check(record, space, new, say)
    if plan.exists and request.fresh:
        retire(plan, engine)
        engine.delete(name)
    record = _configure(engine, record, space, request, new)
    engine.bind(space)
    experiment_id, recovered = join_or_start(
        plan, engine, tracker, space, dataset, record, references, say
    )
    # Keras last: a tracking store that cannot be opened is refused before its import too
    from search.training.trial import TrialRunner

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
    stopped, spool = _optimize(engine, tracker, runner, request, dataset.unit, say)
    return StudyOutcome(
        study=name,
        storage=plan.storage,
        tracking_uri=plan.tracking_uri,
        record=record,
        trials=engine.trials(),
        best=engine.best(),
        unit=dataset.unit,
        recovered=recovered,
        stopped_for_failures=(request.max_consecutive_failures if stopped else None),
        spool=spool,
        experiment_id=experiment_id,
    )


def _configure(
    engine: Engine, record: StudyRecord, space: Space, request: StudyRequest, new: bool
) -> StudyRecord:
    """Configure the engine's search (the record's settings, else the space's, else the
    defaults); a new study's record remembers them."""
    options = SearchOptions(
        sampler=record.sampler
        or space.search.sampler
        or (DEFAULT_SAMPLER if new else LEGACY_SAMPLER),
        pruner=record.pruner or space.search.pruner or (DEFAULT_PRUNER if new else LEGACY_PRUNER),
        tuner=record.tuner or space.search.tuner or DEFAULT_TUNER,
        max_epochs=request.epochs or space.fixed.epochs,
        conditional=space.conditional,
    )
    engine.configure(options)
    if not new:
        return record
    if engine.name == "keras-tuner":  # a new study remembers how it searches
        return replace(record, tuner=options.tuner)
    return replace(record, sampler=options.sampler, pruner=options.pruner)


@contextlib.contextmanager
def heap_set_aside() -> Iterator[None]:
    """The objects alive before the trials (TensorFlow's, Keras', MLflow's modules: about half a
    million) set aside from the garbage collector while the trials run (``gc.freeze``), so the
    collection that frees each trial's model (``clear_session``) scans only what the trials
    made: 0.27 s a trial on a quiet machine, 0.45 s on 2 busy cores, down to milliseconds.
    Handed back afterwards (``gc.unfreeze``): garbage made before the study is still collected
    later. A process that set its own heap aside (``gc.get_freeze_count() > 0``) is left as is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _optimize(
    engine: Engine,
    tracker: SpooledTracker,
    runner: TrialRunner,
    request: StudyRequest,
    unit: str,
    say: Callable[[str], None],
) -> tuple[bool, SpoolState | None]:
    """``engine.optimize`` with the runner, stopping after ``max_consecutive_failures`` failed
    trials in a row; then the summary and the spool's sync, whatever happened. Returns whether
    the failures stopped it, and the logs left in the spool."""
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
        with heap_set_aside():
            engine.optimize(runner, request.trials, request.timeout, on_trial_end=report_best)
    except KeyboardInterrupt:
        status = "KILLED"
        stopped = [t for t in engine.trials() if t.number == runner.last_trial]
        requeue(engine, [t for t in stopped if t.state == "FAIL"])
        raise
    finally:
        try:
            summarize(engine, tracker, status, unit)
        finally:
            spool = sync_at_end(tracker, short=status != "FINISHED")
    return bool(failures["stopped"]), spool
