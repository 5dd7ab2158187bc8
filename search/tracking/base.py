"""The tracker seam: what a study logs, whatever the tracking backend.

A study has one parent run and one child run per trial. Runs are named by the ids the tracker
returns; every call names its run explicitly, so concurrent trials and workers never mix.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SPOOL_KEY_TAG", "SPOOL_PREFIX", "Tracker"]

# A trial run created from the tracking spool (search/tracking/spool.py) while the server was
# down: the trial's ``mlflow_run_id`` is ``spool:<key>`` and the run carries the key in this tag.
SPOOL_PREFIX = "spool:"
SPOOL_KEY_TAG = "search.spool_key"


class Tracker(ABC):
    """Logs one study: its parent run, and a child run per trial."""

    tracking_uri: str
    study_name: str
    parent_run_id: str | None

    @abstractmethod
    def open(self) -> str:
        """Connect and find or create the study's experiment; returns its id."""

    # -- the parent run
    @abstractmethod
    def create_parent_run(self, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Create the study's parent run and return its id."""

    @abstractmethod
    def attach_parent_run(self, run_id: str) -> None:
        """Continue logging to an existing parent run (a resumed study or a joining worker)."""

    @abstractmethod
    def finish_parent_run(self, status: str = "FINISHED") -> None:
        """Close the parent run (FINISHED, KILLED, FAILED)."""

    # -- trial runs
    @abstractmethod
    def create_trial_run(
        self, number: int, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        """A child run named ``trial-<number>`` under the parent run (this tracker's, unless
        given); returns its id."""

    @abstractmethod
    def end_trial_run(self, run_id: str, state: str, reason: str | None = None) -> None:
        """Close a trial's run with its state (COMPLETE, PRUNED, FAIL) and failure reason."""

    def create_child_run(self, name: str, tags: Mapping[str, str], parent_run_id: str) -> str:
        """Another child run under the study's parent run (an ensemble); returns its id."""
        raise NotImplementedError(f"{type(self).__name__} cannot create other child runs")

    # -- any run
    @abstractmethod
    def run_tags(self, run_id: str) -> dict[str, str]:
        """A run's tags."""

    @abstractmethod
    def terminate(self, run_id: str, status: str) -> None:
        """Set a run's final status."""

    @abstractmethod
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int = 0,
        timestamp: int | None = None,
    ) -> None: ...

    @abstractmethod
    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def log_dict(self, run_id: str, payload: Any, artifact_file: str) -> None: ...

    @abstractmethod
    def log_text(self, run_id: str, text: str, artifact_file: str) -> None: ...

    @abstractmethod
    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None: ...

    @abstractmethod
    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None: ...

    @abstractmethod
    def find_run(self, tag: str, value: str) -> str | None:
        """The id of the study's run tagged ``tag`` = ``value``, or None."""

    @abstractmethod
    def trial_runs(self) -> dict[int, list[str]]:
        """The study's trial runs, by trial number."""

    def resolve_run(self, ref: str) -> str | None:
        """The run id behind a trial's ``mlflow_run_id``: itself, or for a run that was created
        in the tracking spool (``spool:<key>``) the run tagged with that key once synced (None
        until then)."""
        if not ref.startswith(SPOOL_PREFIX):
            return ref
        return self.find_run(SPOOL_KEY_TAG, ref[len(SPOOL_PREFIX) :])

    @abstractmethod
    def register_model(self, run_id: str, folder: Path, name: str, description: str) -> str:
        """Log a saved MLflow model folder with a run and register it in the model registry as
        ``name``; returns the version."""

    @abstractmethod
    def run_metrics(self, run_id: str) -> dict[str, float]:
        """A run's latest metrics by name."""

    @abstractmethod
    def download(self, run_id: str, artifact_path: str) -> Path:
        """Download one artifact of a run into a fresh temporary folder; returns its path."""
