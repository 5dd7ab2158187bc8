"""The studies of a storage: listing them (`search studies`), describing one, its RUNNING
trials, and deleting one (`search delete`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from search.errors import SearchError
from search.redact import redact
from search.storage import open_storage

__all__ = ["StudyListing", "delete_study", "describe_study", "list_studies", "running_trials"]


@dataclass(frozen=True)
class StudyListing:
    """One study of a storage, for `search studies`."""

    name: str
    n_trials: int
    n_complete: int
    directions: tuple[str, ...]
    best_value: float | None
    last_activity: datetime | None
    engine: str | None


def open_quietly(url: str) -> optuna.storages.BaseStorage:
    """The storage, with Optuna's info logging off."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return open_storage(url)


def find_study_id(storage: optuna.storages.BaseStorage, url: str, name: str) -> int:
    """The study's id (a one-line error naming the studies there if there is no such study)."""
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        listed = ", ".join(names[:20]) if names else "none"
        raise SearchError(
            f"no study named {name!r} in storage {redact(url)} (studies there: {listed})"
        ) from None


def list_studies(storage_url: str) -> list[StudyListing]:
    """Every study in the storage, by name, with its trial counts, best value and last
    activity (the latest start or completion of any trial)."""
    storage = open_quietly(storage_url)
    listings = []
    for study in storage.get_all_studies():
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
        directions = tuple(d.name for d in study.directions)
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        best: float | None = None
        if len(directions) == 1 and complete:
            values = [t.values[0] for t in complete if not math.isnan(t.values[0])]
            if values:
                best = max(values) if directions[0] == "MAXIMIZE" else min(values)
        moments = [
            moment
            for t in trials
            for moment in (t.datetime_start, t.datetime_complete)
            if moment is not None
        ]
        engine = study.user_attrs.get("engine")
        listings.append(
            StudyListing(
                name=study.study_name,
                n_trials=len(trials),
                n_complete=len(complete),
                directions=directions,
                best_value=best,
                last_activity=max(moments) if moments else None,
                engine=str(engine) if engine is not None else None,
            )
        )
    return sorted(listings, key=lambda s: s.name)


def describe_study(storage_url: str, name: str) -> tuple[int, dict[str, Any]]:
    """How many trials the study holds, and its attributes (a one-line error if there is no
    such study)."""
    storage = open_quietly(storage_url)
    study_id = find_study_id(storage, storage_url, name)
    return storage.get_n_trials(study_id), storage.get_study_user_attrs(study_id)


def running_trials(storage_url: str, name: str) -> list[tuple[int, dict[str, Any]]]:
    """The study's RUNNING trials: (number, user attributes: the worker running it, if known)."""
    storage = open_quietly(storage_url)
    study_id = find_study_id(storage, storage_url, name)
    return [
        (t.number, dict(t.user_attrs))
        for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    ]


def delete_study(storage_url: str, name: str) -> int:
    """Delete the study (every trial, attribute and parameter) from the storage; returns how many
    trials it held."""
    storage = open_quietly(storage_url)
    study_id = find_study_id(storage, storage_url, name)
    n_trials = storage.get_n_trials(study_id)
    storage.delete_study(study_id)
    return n_trials
