"""A study's lifecycle on its storage and tracking server: the start (its parent run, record
and the book configuration as trial 0), joining a started study, crashed trials failed and
re-queued, and retiring a study that ``fresh`` replaces."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from search.engines import Engine, TrialSummary
from search.errors import SearchError
from search.record import StudyRecord
from search.redact import without_credentials
from search.runtime import versions_tag
from search.summary import objective_name
from search.tracking import Tracker, open_tracker, redact
from search.tracking.spool import SPOOL_PREFIX

if TYPE_CHECKING:
    from search.data.dataset import Dataset
    from search.planning import StudyPlan
    from search.spaces import Space

__all__ = ["join_or_start", "recover_crashed_trials", "requeue", "retire"]

JOIN_WAIT_S = 120.0
CRASH_REASON = "its worker stopped sending heartbeats (crashed or killed)"
DEAD_REASON = "its worker process is gone (killed or crashed on this host)"


def join_or_start(
    plan: StudyPlan,
    engine: Engine,
    tracker: Tracker,
    space: Space,
    dataset: Dataset,
    record: StudyRecord,
    references: dict[str, Any],
    say: Callable[[str], None],
) -> tuple[str, int]:
    """Open the study: start it (``plan``'s record completed by ``record``) or join it, and on
    joining recover the trials of dead workers. Returns the MLflow experiment id and how many
    trials were recovered."""
    name = plan.study
    # The tracking store first: one that cannot be opened leaves no half-made study behind
    experiment_id = tracker.open()
    created = engine.open(name, seed=record.seed, join_seed=plan.request.seed)
    engine.name_objective(objective_name(dataset.unit))
    recovered = 0
    if created:
        start(engine, tracker, space, dataset, record, plan, experiment_id, references)
        say(f"new study {name!r}: trial 0 is the space's book configuration")
    else:
        tracker.attach_parent_run(wait_for_parent(engine, name))
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
    return experiment_id, recovered


def start(
    engine: Engine,
    tracker: Tracker,
    space: Space,
    dataset: Dataset,
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


def wait_for_parent(engine: Engine, name: str) -> str:
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


def retire(plan: StudyPlan, engine: Engine) -> None:
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
