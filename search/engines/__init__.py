"""Search engines: the :class:`Engine` and :class:`TrialHandle` interfaces, and their
implementations (Optuna today). Only this package (and the storage-URL code) imports Optuna."""

from __future__ import annotations

from search.engines.base import (
    PRUNERS,
    SAMPLERS,
    TUNERS,
    Engine,
    SearchOptions,
    StudyRef,
    TrialHandle,
    TrialPruned,
    TrialSummary,
)

__all__ = [
    "ENGINES",
    "PRUNERS",
    "SAMPLERS",
    "TUNERS",
    "Engine",
    "SearchOptions",
    "StudyRef",
    "TrialHandle",
    "TrialPruned",
    "TrialSummary",
    "open_engine",
]

ENGINES = ("optuna", "keras-tuner")


def quiet_logging() -> None:
    """Keep the engines' own log lines and experimental-feature warnings off the terminal."""
    import logging
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    # Without a handler Python's last-resort handler would print Optuna's warnings, such as a
    # failed trial's traceback: our own line says why a trial failed (--verbose shows all).
    root = logging.getLogger("optuna")
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())


def open_engine(name: str, storage_url: str) -> Engine:
    """The engine of that name on a resolved storage URL."""
    if name == "optuna":
        from search.engines.optuna import OptunaEngine

        return OptunaEngine(storage_url)
    if name == "keras-tuner":
        from search.engines.keras_tuner import KerasTunerEngine

        return KerasTunerEngine(storage_url)
    from search.errors import SearchError

    raise SearchError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
