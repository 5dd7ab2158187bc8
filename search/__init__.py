"""search: hyperparameter search for Keras time-series forecasters.

Optuna studies over the documented architectures (dense, conv1d, SimpleRNN, LSTM, GRU, stacked,
bidirectional, conv1d+GRU), trained on the Jena weather record, every trial tracked in MLflow.

This package imports nothing heavy at import time: Keras, Optuna and MLflow are imported by the
modules that need them, so the CLI can validate its input in about a second.
"""

__version__ = "0.1.0"

from search.errors import DataError, SearchError, SpaceError, StorageError, TrackingError

__all__ = [
    "DataError",
    "SearchError",
    "SpaceError",
    "StorageError",
    "TrackingError",
    "__version__",
]
