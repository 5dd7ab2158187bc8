"""Moving a study's MLflow runs between tracking stores, through MLflow's tracking interface
(`MlflowClient`), for `search export --with-runs` and `search import --tracking-uri`.

Export writes each run's name, status, times, params, tags and full metric histories (every
step, with its timestamp) into the export file's ``runs`` section, and its artifacts into
``FOLDER/<run id>/``. Import recreates them in the study's experiment of another tracking store:
a new parent run for a new study (or the existing study's own parent run when merging), a child
run per added trial, tagged ``search.copied_from`` with the run id they were copied from.
Registered models are not copied (their versions point at the old store).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import SearchError, TrackingError
from search.tracking.mlflow import STUDY_TAG, MlflowTracker
from search.tracking.redact import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["CopiedRuns", "export_runs", "import_runs"]

PARENT_TAG = "mlflow.parentRunId"
COPIED_TAG = "search.copied_from"
_TERMINAL = ("FINISHED", "FAILED", "KILLED")


@dataclass
class CopiedRuns:
    """Where an import put the runs: the experiment, the parent run, and old -> new run ids."""

    experiment_id: str
    parent_run_id: str
    run_ids: dict[str, str] = field(default_factory=dict)
    copied: int = 0


def _client(tracking_uri: str) -> MlflowClient:
    import os

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _run_record(client: MlflowClient, run_id: str, folder: Path) -> dict[str, Any]:
    run = client.get_run(run_id)
    metrics = {
        key: [[m.step, m.timestamp, m.value] for m in client.get_metric_history(run_id, key)]
        for key in sorted(run.data.metrics)
    }
    artifacts = None
    if client.list_artifacts(run_id):
        target = folder / run_id
        target.mkdir()
        client.download_artifacts(run_id, "", str(target))
        artifacts = run_id
    return {
        "run_id": run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": metrics,
        "artifacts": artifacts,
    }


def export_runs(
    tracking_uri: str, parent_run_id: str, run_ids: Iterable[str], folder: Path
) -> dict[str, Any]:
    """Write a study's parent run and its trials' runs: returns the manifest for the export
    file; artifacts go to ``folder`` (replaced as a whole once every run is written). Trial runs
    missing from the store are listed under ``missing``."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        try:
            parent = _run_record(client, parent_run_id, staging)
            experiment = client.get_experiment(client.get_run(parent_run_id).info.experiment_id)
        except MlflowException:
            raise TrackingError(
                f"the study's parent run {parent_run_id} is not in the tracking store "
                f"{redact(tracking_uri)}; pass the --tracking-uri the study logs to"
            ) from None
        trials: dict[str, Any] = {}
        missing: list[str] = []
        for run_id in run_ids:
            try:
                trials[run_id] = _run_record(client, run_id, staging)
            except MlflowException:
                missing.append(run_id)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {
        "tracking_uri": redact(tracking_uri),
        "experiment_name": experiment.name,
        "folder": folder.name,
        "parent": parent,
        "trials": trials,
        "missing": missing,
    }


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _create_run(
    client: MlflowClient,
    experiment_id: str,
    record: Mapping[str, Any],
    folder: Path,
    study: str,
    parent_run_id: str | None,
) -> str:
    from mlflow.entities import Metric, Param

    tags = {str(k): str(v) for k, v in dict(record.get("tags") or {}).items() if k != PARENT_TAG}
    tags[STUDY_TAG] = study
    tags[COPIED_TAG] = str(record["run_id"])
    if parent_run_id is not None:
        tags[PARENT_TAG] = parent_run_id
    run = client.create_run(
        experiment_id,
        start_time=record.get("start_time"),
        tags=tags,
        run_name=record.get("run_name"),
    )
    run_id = run.info.run_id
    params = [Param(str(k), str(v)) for k, v in dict(record.get("params") or {}).items()]
    for batch in _batches(params, 100):
        client.log_batch(run_id, params=batch)
    metrics = [
        Metric(str(key), float(value), int(timestamp), int(step))
        for key, history in dict(record.get("metrics") or {}).items()
        for step, timestamp, value in history
    ]
    for batch in _batches(metrics, 1000):
        client.log_batch(run_id, metrics=batch)
    artifacts = record.get("artifacts")
    if artifacts:
        name = str(artifacts)
        source = folder / name
        if Path(name).name != name or name in (".", "..") or not source.is_dir():
            raise SearchError(f"the artifacts of run {record['run_id']} are missing from {folder}")
        client.log_artifacts(run_id, str(source))
    status = str(record.get("status") or "FINISHED")
    if status in _TERMINAL:
        client.set_terminated(run_id, status=status, end_time=record.get("end_time"))
    return run_id


def import_runs(
    tracking_uri: str,
    manifest: Mapping[str, Any],
    folder: Path,
    study: str,
    parent_run_id: str | None,
    run_ids: Iterable[str],
) -> CopiedRuns:
    """Recreate runs from an export in ``study``'s experiment of a tracking store: the parent run
    unless ``parent_run_id`` names the one to nest under, then the runs ``run_ids`` (those of the
    trials being added; ids the manifest lacks are left as they are)."""
    from mlflow.exceptions import MlflowException

    tracker = MlflowTracker(tracking_uri, study)
    try:
        experiment_id = tracker.open()
        client = tracker.client
        copied = 0
        if parent_run_id is None:
            parent_run_id = _create_run(
                client, experiment_id, manifest["parent"], folder, study, None
            )
            copied += 1
        else:
            try:
                client.get_run(parent_run_id)
            except MlflowException:
                raise TrackingError(
                    f"the study's parent run {parent_run_id} is not in the tracking store "
                    f"{redact(tracking_uri)}"
                ) from None
        mapping: dict[str, str] = {}
        trials = dict(manifest.get("trials") or {})
        for old in run_ids:
            if old in trials and old not in mapping:
                mapping[old] = _create_run(
                    client, experiment_id, trials[old], folder, study, parent_run_id
                )
                copied += 1
        best = client.get_run(parent_run_id).data.tags.get("search.best_run_id")
        if best in mapping:
            tracker.set_tags(parent_run_id, {"search.best_run_id": mapping[best]})
    except (KeyError, TypeError, ValueError) as exc:
        raise SearchError(f"the file's MLflow runs are damaged: {exc}") from None
    except MlflowException as exc:
        raise TrackingError(
            f"MLflow refused the copy into {redact(tracking_uri)}: {redact(str(exc.message))}"
        ) from None
    return CopiedRuns(experiment_id, parent_run_id, mapping, copied)
