"""What a user sees (issue 20): run statuses in the MLflow UI, the objective's name, one vocabulary.

Fast tests: the tracker and the engine in-process, against SQLite stores in the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from search.tracking.mlflow import MlflowTracker


def test_a_trial_run_ends_with_the_status_of_its_state(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "states")
    tracker.create_parent_run({}, {})
    expected = {  # Optuna's state -> (MLflow status, search.state tag)
        "COMPLETE": ("FINISHED", "COMPLETE"),
        "PRUNED": ("FINISHED", "PRUNED"),  # stopped early as asked: not a crash, no red cross
        "FAIL": ("FAILED", "FAIL"),
        "INTERRUPTED": ("KILLED", "FAIL"),  # Ctrl-C / SIGTERM: a FAIL in the study
    }
    client = mlflow.MlflowClient(tracking_uri=uri)
    for number, (state, want) in enumerate(expected.items()):
        run_id = tracker.create_trial_run(number, {})
        tracker.end_trial_run(run_id, state)
        run = client.get_run(run_id)
        assert (run.info.status, run.data.tags["search.state"]) == want, state
