"""Planning a study before anything heavy is imported: the request checked once, each input
parsed once, and agreement with what an existing study of that name remembers; the result is a
frozen :class:`StudyPlan` that :func:`search.study.run_study` takes as it is."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.data.splits import FOLDS_MARK
from search.engines import Engine, open_engine
from search.errors import SearchError
from search.record import (
    DEFAULT_SEED,
    DEFAULT_SPACE,
    StudyRecord,
    data_identity,
    space_identity,
    validate_study_name,
)
from search.tracking import resolve_tracking_uri

if TYPE_CHECKING:
    from search.spaces import Space

__all__ = ["StudyPlan", "StudyRequest", "plan_study"]


@dataclass
class StudyRequest:
    """What to run: everything `search run` takes, as one explicit object.

    ``None`` means "the default, or what the study remembers" (space ``quick``, data
    ``jena-2020``, seed 42, the default storage and tracking store).
    """

    study: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    space: str | None = None
    data: str | None = None
    time_column: str | None = None
    target: str | None = None
    features: list[str] | None = None
    max_rows: int | None = None
    trials: int | None = 6
    timeout: float | None = None
    epochs: int | None = None
    seed: int | None = None
    split: str | None = None
    folds: int | None = None  # cross-validated trials over the blocked split's non-test blocks
    time_format: str | None = None
    engine: str | None = None  # optuna or keras-tuner; None: what the study remembers, else optuna
    sampler: str | None = None  # Optuna: tpe, random, gp, cmaes (None: the space's, else tpe)
    pruner: str | None = None  # Optuna: median, halving, hyperband, none
    tuner: str | None = None  # keras-tuner: hyperband, bayesian, random
    max_consecutive_failures: int = 5
    fresh: bool = False
    verbose: bool = False
    progress: Callable[[str], None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StudyPlan:
    """A checked request: resolved URLs, the study's record, and whether it exists already;
    for a new study, also its space, loaded once (``None``: a study that resumes loads the
    space it remembers)."""

    request: StudyRequest
    study: str
    storage: str
    tracking_uri: str
    record: StudyRecord
    exists: bool
    stored: StudyRecord | None
    engine: Engine = field(repr=False)
    space: Space | None = field(default=None, repr=False)


def plan_study(request: StudyRequest) -> StudyPlan:
    """Check a request before anything heavy is imported: the study name, the storage, the
    tracking URI, the space and the data source, and agreement with what an existing study of
    that name remembers (a contradicting ``space``/``data``/``split`` is refused unless
    ``fresh``). Each input is parsed once. Raises a one-line SearchError."""
    from search.data.sources import validate_source
    from search.spaces import load_space
    from search.storage import check_storage, resolve_storage_url
    from search.tracking import check_tracking_uri

    name = validate_study_name(
        request.study
        if request.study is not None
        else (_stem(request.space) if request.space else DEFAULT_SPACE)
    )
    given_space = load_space(request.space) if request.space is not None else None
    if request.data is not None:
        validate_source(request.data)
    given_split = None
    if request.split is not None or request.folds is not None:
        given_split = _split_identity(
            request.split, request.folds, required=request.split is not None
        )
    _check_names(request)
    storage = resolve_storage_url(request.storage)
    check_storage(storage)
    tracking_uri = resolve_tracking_uri(request.tracking_uri)
    check_tracking_uri(tracking_uri)
    engine = open_engine("optuna", storage)  # every engine keeps its study in this storage
    exists = engine.exists(name)
    stored: StudyRecord | None = None
    if exists:
        engine.open(name, seed=None, create=False, join_seed=request.seed)
        stored = StudyRecord.from_attrs(_wait_for_record(engine))
    split = given_split if request.split is not None else None
    record = _reconcile(request, name, stored if not request.fresh else None, split)
    _check_fit(request, record)
    if record.engine != "optuna":
        engine = open_engine(record.engine, storage)
    space = None
    if record.space_yaml is None:
        space = _space_of(record, request, given_space, load_space)
    if request.data is None:  # a given source was checked above (the record names that file)
        validate_source(record.data)
    new = not exists or request.fresh
    return StudyPlan(
        request, name, storage, tracking_uri, record, exists, stored, engine, space if new else None
    )


def _space_of(
    record: StudyRecord,
    request: StudyRequest,
    given: Space | None,
    load_space: Callable[[str], Space],
) -> Space:
    """The space a record names, as :func:`search.spaces.load_space` loads it: the space the
    request gave (its file named by the absolute path the record keeps), else loaded now."""
    if given is None or request.space is None or space_identity(request.space) != record.space:
        return load_space(record.space)
    if record.space == request.space:  # a shipped name, or a file by its absolute path
        return given
    return given.model_copy(update={"path": Path(record.space)})


def _wait_for_record(engine: Engine, wait: float = 60.0) -> dict[str, Any]:
    """The attributes of an existing study, once its record is complete: a worker that starts
    while another is creating the study (it writes the record, ``record_version`` last, after
    creating the study) waits for it rather than comparing its flags with an empty record. A
    study of the first release (no ``record_version``) has its parent run id."""
    deadline = time.monotonic() + wait
    while True:
        attrs = engine.study_attrs()
        if "record_version" in attrs or attrs.get("mlflow_parent_run_id"):
            return attrs
        if time.monotonic() > deadline:  # its creator died before writing it
            return attrs
        time.sleep(0.5)


def _check_names(request: StudyRequest) -> None:
    """Engine, sampler, pruner and tuner names."""
    from search.engines import ENGINES, PRUNERS, SAMPLERS, TUNERS

    for flag, value, allowed in (
        ("engine", request.engine, ENGINES),
        ("sampler", request.sampler, SAMPLERS),
        ("pruner", request.pruner, PRUNERS),
        ("tuner", request.tuner, TUNERS),
    ):
        if value is not None and value not in allowed:
            raise SearchError(f"unknown --{flag} {value!r}; expected one of {', '.join(allowed)}")


def _check_fit(request: StudyRequest, record: StudyRecord) -> None:
    """Flags that do not fit the study's engine, and a sampler's optional dependency."""
    if record.engine == "keras-tuner":
        for flag, value in (("sampler", request.sampler), ("pruner", request.pruner)):
            if value is not None:
                raise SearchError(
                    f"--{flag} is an Optuna setting; a keras-tuner study takes --tuner"
                )
        if FOLDS_MARK in record.split:
            raise SearchError(
                "--folds is not for the keras-tuner engine (its oracles score one validation "
                "slice); use the Optuna engine for cross-validated trials"
            )
    elif request.tuner is not None:
        raise SearchError("--tuner is a keras-tuner setting; pass --engine keras-tuner with it")
    if record.sampler in ("gp", "cmaes"):
        from search.engines.samplers import check_sampler_installed

        check_sampler_installed(record.sampler)


def _stem(space: str) -> str:
    return Path(space).stem


def _reconcile(
    request: StudyRequest, name: str, stored: StudyRecord | None, split: str | None
) -> StudyRecord:
    """The record of this run: the request's values, else what the study remembers, else the
    defaults; a request that contradicts the study's space, data or split is refused.
    ``split``: the identity of the request's ``--split`` (with its ``--folds``), parsed once
    already, or None when no ``--split`` was given."""
    if stored is None:
        return StudyRecord(
            space=space_identity(request.space or DEFAULT_SPACE),
            data=data_identity(request.data or StudyRecord.data),
            time_column=request.time_column,
            time_format=request.time_format,
            target=request.target,
            features=request.features,
            max_rows=request.max_rows,
            seed=request.seed if request.seed is not None else DEFAULT_SEED,
            split=split or _split_identity(StudyRecord.split, request.folds),
            engine=request.engine or StudyRecord.engine,
            sampler=request.sampler,
            pruner=request.pruner,
            tuner=request.tuner,
        )
    _check_same_settings(request, name, stored)
    _check_same_split(request, name, stored.split, split)
    return replace(
        stored,
        time_column=request.time_column or stored.time_column,
        time_format=request.time_format or stored.time_format,
        target=request.target or stored.target,
        features=request.features or stored.features,
        max_rows=request.max_rows or stored.max_rows,
        seed=request.seed if request.seed is not None else stored.seed,
        sampler=request.sampler or stored.sampler,
        pruner=request.pruner or stored.pruner,
        tuner=request.tuner or stored.tuner,
    )


def _check_same_settings(request: StudyRequest, name: str, stored: StudyRecord) -> None:
    """A resumed study keeps its target, features, rows, time column and format, tuner,
    engine, space and data: the request may repeat them, never change them."""
    for flag, given, kept in (
        ("target", request.target, stored.target),
        ("features", request.features, stored.features),
        ("max-rows", request.max_rows, stored.max_rows if stored.max_rows else "all rows"),
        ("time-column", request.time_column, stored.time_column),
        ("time-format", request.time_format, stored.time_format),
    ):
        if given is None or kept is None or given == kept:
            continue  # not given, or the study never fixed it (the source's default)
        shown = ",".join(kept) if isinstance(kept, list) else kept
        raise SearchError(
            f"study {name!r} was started with --{flag} {shown}; resume it without --{flag} (or "
            "with that value), or pass --fresh (or a new --study name) to start a new study"
        )
    if request.tuner is not None and stored.tuner is not None and request.tuner != stored.tuner:
        raise SearchError(
            f"study {name!r} searches with --tuner {stored.tuner} (its oracle's state); resume it "
            "with that --tuner, or pass --fresh (or a new --study name) to start anew"
        )
    if request.engine is not None and request.engine != stored.engine:
        raise SearchError(
            f"study {name!r} runs on the {stored.engine} engine; resume it without --engine (or with "
            f"--engine {stored.engine}), or pass --fresh (or a new --study name) to start anew"
        )
    for key, given, identity in (
        ("space", request.space, space_identity),
        ("data", request.data, data_identity),
    ):
        if given is not None and identity(given) != getattr(stored, key):
            raise SearchError(
                f"study {name!r} was started with --{key} {getattr(stored, key)}; resume it with "
                f"that --{key}, or pass --fresh (or a new --study name) to start a new study"
            )


def _split_identity(text: str | None, folds: int | None = None, required: bool = True) -> str:
    """How a study remembers its split: the policy's canonical name (``blocked`` is
    ``blocked:28``; with folds, ``blocked:28/folds:K``). ``folds`` without a blocked split, or
    fewer than 2, is a one-line error."""
    from search.data.splits import parse_split

    if folds is not None and folds < 2:
        raise SearchError(f"--folds must be at least 2, got {folds}: each fold validates once")
    if folds is not None and not required and text is None:
        return f"blocked/folds:{folds}"  # checked against the study's split when it resumes
    return parse_split(text, folds=folds).name


def _check_same_split(
    request: StudyRequest, name: str, stored: str, split: str | None = None
) -> None:
    """A resumed study keeps its split and its folds: ``--split`` and ``--folds`` may repeat
    them, never change them (``split``: the request's, parsed already)."""
    base, _, kept = stored.partition(FOLDS_MARK)
    folds = int(kept) if kept else None
    if request.folds is not None and request.folds != folds:
        had = f"with --folds {folds}" if folds else "without --folds (one validation slice)"
        raise SearchError(
            f"study {name!r} was started {had}; resume it "
            + (f"with --folds {folds} or " if folds else "")
            + "without --folds, or pass --fresh (or a new --study name) to start a new study"
        )
    if split is not None and (
        FOLDS_MARK in str(request.split) or split.partition(FOLDS_MARK)[0] != base
    ):
        raise SearchError(
            f"study {name!r} was started with --split {stored}; resume it with that --split, "
            "or pass --fresh (or a new --study name) to start a new study"
        )
