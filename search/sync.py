"""`search sync NAME`: send a study's spooled tracking logs, and back-fill from the study's
records any finished trial that has no MLflow run, without duplicates.

The spool (:mod:`search.tracking.spool`) holds what a trial logged while the tracking server was
down; sending it creates the missing runs (found again by their ``search.spool_key`` tag, never
twice) with their params, metrics at their true steps and timestamps, tags and artifacts. A
finished trial whose run is in no spool on this machine and not on the server (its worker's
disk failed; the spool was deleted) gets a run rebuilt from its Optuna record: params, value,
the numeric attributes as metrics, state and failure reason, tagged
``search.backfilled=study-record``. `search run` does the first part at its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from search.engines import Engine, TrialSummary
from search.record import StudyRecord
from search.tracking import Tracker
from search.tracking.spool import SPOOL_KEY_TAG, SPOOL_PREFIX, Sender, Spool, drain

__all__ = ["SyncOutcome", "sync_study"]

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class SyncOutcome:
    sent: int = 0  # spooled operations the server acknowledged
    runs_created: int = 0  # runs created from the spool
    backfilled: list[int] = field(default_factory=list)  # trials given a run from their record
    pending_runs: int = 0  # runs whose logs are still in the spool
    pending_operations: int = 0
    error: str | None = None  # why the spool could not be emptied
    refused: list[str] = field(default_factory=list)  # operations the server refused for good
    duplicates: list[int] = field(default_factory=list)  # trials with more than one run
    elsewhere: list[int] = field(default_factory=list)  # trials whose run is in another store


def sync_study(
    engine: Engine, record: StudyRecord, spool: Spool, tracker: Tracker, timeout: float
) -> SyncOutcome:
    """Empty the study's spool into the tracking server (retrying an unreachable server for at
    most ``timeout`` s), then give every finished trial without a run one from its record."""
    tracker.open()
    tracker.parent_run_id = record.mlflow_parent_run_id
    report = drain(Sender(spool, tracker), timeout)
    outcome = SyncOutcome(
        sent=report.sent, runs_created=report.runs_created, refused=list(report.refused)
    )
    outcome.pending_runs, outcome.pending_operations = spool.backlog()
    if report.error is not None:
        outcome.error = report.error
        return outcome
    if tracker.parent_run_id is None:
        return outcome
    runs = tracker.trial_runs()
    entries = spool.entries()
    waiting = {SPOOL_PREFIX + entry.key for entry in entries}
    waiting |= {entry.run_id for entry in entries if entry.run_id}
    for trial in engine.trials():
        if trial.state not in FINISHED:
            continue
        found = runs.get(trial.number, [])
        if len(found) > 1:
            outcome.duplicates.append(trial.number)
        if found:
            continue
        ref = str(trial.attrs.get("mlflow_run_id") or "")
        if ref in waiting:
            continue  # its logs are still in the spool
        if ref and not ref.startswith(SPOOL_PREFIX):
            outcome.elsewhere.append(trial.number)  # a run id of another store: left alone
            continue
        _backfill(tracker, trial, ref)
        outcome.backfilled.append(trial.number)
    return outcome


def _backfill(tracker: Tracker, trial: TrialSummary, ref: str) -> None:
    """A run for a finished trial from its Optuna record (tagged with the trial's spool key, so
    a spool found later on another machine completes this run instead of adding one)."""
    tags = {
        "search.backfilled": "study-record",
        "optuna.trial_number": str(trial.number),
    }
    if trial.attrs.get("architecture"):
        tags["search.architecture"] = str(trial.attrs["architecture"])
    if ref.startswith(SPOOL_PREFIX):
        tags[SPOOL_KEY_TAG] = ref[len(SPOOL_PREFIX) :]
    run_id = tracker.create_trial_run(trial.number, tags)
    if trial.params:
        tracker.log_params(run_id, trial.params)
    metrics: dict[str, Any] = {
        k: v
        for k, v in trial.attrs.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and "." not in k
    }
    if trial.value is not None:
        metrics["best_val_mae"] = trial.value
    tracker.log_metrics(run_id, metrics)
    tracker.end_trial_run(run_id, trial.state, trial.attrs.get("fail_reason"))
