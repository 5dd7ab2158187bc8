"""search: hyperparameter search for Keras time-series forecasters.

Studies over the documented architectures (dense, conv1d, SimpleRNN, LSTM, GRU, stacked,
bidirectional, conv1d+GRU), trained on the Jena weather record, every trial tracked in MLflow.

From Python (a notebook, a script)::

    from search import StudyRequest, run_study
    outcome = run_study(StudyRequest(study="lstm-try", space="lstm", trials=10, progress=print))
    print(outcome.best.value, outcome.best.params)

This package imports nothing heavy at import time: Keras, Optuna and MLflow are imported by the
modules that need them, so the CLI can validate its input in about a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search._version import __version__
from search.errors import DataError, SearchError, SpaceError, StorageError, TrackingError

if TYPE_CHECKING:
    from search.study import StudyOutcome, StudyRequest, run_study

__all__ = [
    "DataError",
    "SearchError",
    "SpaceError",
    "StorageError",
    "StudyOutcome",
    "StudyRequest",
    "TrackingError",
    "__version__",
    "run_study",
]


def __getattr__(name: str) -> Any:
    """The study API, imported on first use (it pulls in the engine and tracking modules)."""
    if name in ("StudyOutcome", "StudyRequest", "run_study"):
        from search import study

        return getattr(study, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
