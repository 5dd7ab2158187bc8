"""Search engines: the :class:`Engine` and :class:`TrialHandle` interfaces, and their
implementations (Optuna today). Only this package (and the storage-URL code) imports Optuna."""

from __future__ import annotations

from search.engines.base import Engine, StudyRef, TrialHandle, TrialPruned, TrialSummary

__all__ = [
    "ENGINES",
    "Engine",
    "StudyRef",
    "TrialHandle",
    "TrialPruned",
    "TrialSummary",
    "open_engine",
]

ENGINES = ("optuna",)


def quiet_logging() -> None:
    """Keep the engines' own log lines and experimental-feature warnings off the terminal."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()


def open_engine(name: str, storage_url: str) -> Engine:
    """The engine of that name on a resolved storage URL."""
    if name == "optuna":
        from search.engines.optuna import OptunaEngine

        return OptunaEngine(storage_url)
    from search.errors import SearchError

    raise SearchError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
