"""Moving studies between Optuna storages: the Optuna side of `search export` and `search import`
(listing and deleting studies: :mod:`search.engines.studies`, re-exported here).

A study travels as one JSON file (never a pickle), format ``search-study/1``::

    {"format": "search-study/1", "exported_at": ISO, "source": {"storage": URL (redacted)},
     "study": {"name", "uid", "directions": ["MINIMIZE"], "user_attrs", "system_attrs"},
     "trials": [{"number", "origin", "state", "values", "params", "distributions",
                 "intermediate_values", "user_attrs", "system_attrs",
                 "datetime_start", "datetime_complete"}, ...],
     "runs": null | {...}}

- ``distributions`` are Optuna's own JSON form (``distribution_to_json``), ``params`` their
  external values, datetimes ISO 8601 in UTC, intermediate steps the object's keys. Non-finite
  floats are written as Python's ``json`` writes them (``NaN``, ``Infinity``).
- Only finished trials (COMPLETE, PRUNED, FAIL) are exported or imported; RUNNING and WAITING
  ones are left out and counted (export again once they have finished).
- Sampler state that Optuna keeps pickled in trial system attributes (CMA-ES ``cma:`` keys, or
  any value holding a hex-encoded pickle) is dropped on export and again on import, as is any
  attribute that is not JSON; nothing from a file is ever unpickled.

Each trial has an identity, its ``origin``: the ``search.origin`` user attribute it was
imported with, else ``<study uid>#<number>`` in the study it was run in. A study's uid is its
``search.study_uid`` attribute (given to every study an import creates), else derived from its
name and MLflow parent run id (the storage URL for a study without one). Importing into an
existing study adds the trials whose origin it lacks and refuses, writing nothing, when a trial
of the same origin holds different data or the studies' space, data or split differ; so a
second import of a file changes nothing, and exporting a copy back merges its new trials.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import json_to_distribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.engines.export import (
    FINISHED,
    FORMAT,
    ORIGIN_ATTR,
    RUN_ID_ATTR,
    UID_ATTR,
    ExportResult,
    as_float,
    clean_system_attrs,
    clean_user_attrs,
    export_study,
    local,
    study_uid,
    trial_entry,
    write_export,
)
from search.engines.studies import (
    StudyListing,
    delete_study,
    describe_study,
    list_studies,
    open_quietly,
)
from search.errors import SearchError, StorageError
from search.record import StudyRecord, validate_study_name
from search.redact import redact

__all__ = [
    "FORMAT",
    "ORIGIN_ATTR",
    "UID_ATTR",
    "ExportResult",
    "ImportPlan",
    "StudyListing",
    "apply_import",
    "describe_study",
    "delete_study",
    "export_study",
    "list_studies",
    "plan_import",
    "read_export",
    "write_export",
]

# Record keys that make a study a different study: merging across them is refused.
IDENTITY_KEYS = ("space", "data", "split")


# --------------------------------------------------------------------------- reading a file


@dataclass(frozen=True)
class _Incoming:
    """One trial of a file, checked and ready to add."""

    origin: str
    number: int
    entry: dict[str, Any]
    frozen: FrozenTrial
    dropped: int = 0  # attributes left out: pickled sampler state, values that are not JSON


def read_export(path: Path) -> dict[str, Any]:
    """An export file's content, checked for its format (a one-line SearchError otherwise);
    the trials themselves are checked by :func:`plan_import`."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SearchError(f"file {shown!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SearchError(
            f"cannot read {shown!r}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SearchError(
            f"{shown!r} is not a study export (not JSON: {exc.msg} at line {exc.lineno}); "
            "write one with `search export NAME --to FILE`"
        ) from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise SearchError(
            f"{shown!r} is not a study export (no 'format' field); write one with "
            "`search export NAME --to FILE`"
        )
    if payload["format"] != FORMAT:
        raise SearchError(
            f"{shown!r} has format {str(payload['format'])[:40]!r}; this version of search reads "
            f"{FORMAT!r}"
        )
    study = payload.get("study")
    if not isinstance(study, dict) or not isinstance(payload.get("trials"), list):
        raise SearchError(f"{shown!r} is a damaged study export: no 'study' or 'trials'")
    if not isinstance(study.get("name"), str) or not isinstance(study.get("directions"), list):
        raise SearchError(f"{shown!r} is a damaged study export: the study has no name/directions")
    for key in ("user_attrs", "system_attrs"):
        if not isinstance(study.get(key, {}), dict):
            raise SearchError(f"{shown!r} is a damaged study export: study {key} is not an object")
    return payload


def _directions(payload: Mapping[str, Any], shown: str) -> list[StudyDirection]:
    try:
        directions = [StudyDirection[str(d)] for d in payload["study"]["directions"]]
    except KeyError as exc:
        raise SearchError(f"{shown!r}: unknown study direction {exc.args[0]!r}") from None
    if not directions or StudyDirection.NOT_SET in directions:
        raise SearchError(f"{shown!r}: the study has no direction")
    return directions


def _incoming(entry: Any, n_objectives: int) -> _Incoming:
    """A file's trial as a FrozenTrial, validated by Optuna (ValueError/KeyError/TypeError on a
    malformed entry)."""
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    if str(entry.get("state")) not in FINISHED:
        raise ValueError(f"unknown state {str(entry.get('state'))[:40]!r}")
    state = TrialState[str(entry["state"])]
    distributions = {
        str(name): json_to_distribution(json.dumps(spec))
        for name, spec in dict(entry.get("distributions") or {}).items()
    }
    params = dict(entry.get("params") or {})
    if set(params) != set(distributions):
        raise ValueError("its params and distributions name different parameters")
    raw_values = entry.get("values")
    values = [as_float(v) for v in raw_values] if raw_values is not None else None
    if values is not None and len(values) != n_objectives:
        raise ValueError(f"{len(values)} values for a study of {n_objectives} objective(s)")
    intermediate = {
        int(step): as_float(value)
        for step, value in dict(entry.get("intermediate_values") or {}).items()
    }
    user_attrs, dropped = clean_user_attrs(dict(entry.get("user_attrs") or {}))
    system_attrs, dropped_system = clean_system_attrs(dict(entry.get("system_attrs") or {}))
    origin = entry.get("origin")
    if not isinstance(origin, str) or not origin:
        raise ValueError("it has no origin")
    user_attrs[ORIGIN_ATTR] = origin
    frozen = optuna.trial.create_trial(
        state=state,
        values=values,
        params=params,
        distributions=distributions,
        user_attrs=user_attrs,
        system_attrs=system_attrs,
        intermediate_values=intermediate,
    )
    start, complete = local(entry.get("datetime_start")), local(entry.get("datetime_complete"))
    # A trial failed while still waiting has no start: its completion stands in for it.
    frozen.datetime_start = start or complete
    frozen.datetime_complete = complete or frozen.datetime_start
    number = entry.get("number")
    label = int(number) if isinstance(number, int) else -1
    return _Incoming(origin, label, entry, frozen, dropped + dropped_system)


def _comparable(entry: Mapping[str, Any]) -> str:
    """A trial's data as compared between copies: everything but its number, origin, system
    attributes (sampler bookkeeping) and the id of its MLflow run (which changes when runs are
    copied to another tracking store)."""
    user_attrs = {
        k: v for k, v in dict(entry.get("user_attrs") or {}).items() if k not in _VOLATILE_ATTRS
    }
    data = {
        "state": entry.get("state"),
        "values": entry.get("values"),
        "params": entry.get("params"),
        "distributions": entry.get("distributions"),
        "intermediate_values": {
            str(int(k)): v for k, v in dict(entry.get("intermediate_values") or {}).items()
        },
        "user_attrs": user_attrs,
        "datetime_start": entry.get("datetime_start") or entry.get("datetime_complete"),
        "datetime_complete": entry.get("datetime_complete") or entry.get("datetime_start"),
    }
    return json.dumps(data, sort_keys=True, default=str)


_VOLATILE_ATTRS = (ORIGIN_ATTR, RUN_ID_ATTR)


def _differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    keys = ("state", "values", "params", "distributions", "intermediate_values", "user_attrs")
    a, b = json.loads(_comparable(mine)), json.loads(_comparable(theirs))
    return [k for k in (*keys, "datetime_start", "datetime_complete") if a.get(k) != b.get(k)]


# --------------------------------------------------------------------------- import


@dataclass
class ImportPlan:
    """What an import will do, checked before anything is written."""

    storage_url: str
    study: str
    create: bool
    directions: list[StudyDirection]
    study_user_attrs: dict[str, Any]
    study_system_attrs: dict[str, Any]
    source_uid: str
    to_add: list[_Incoming] = field(default_factory=list)
    already: int = 0
    left_out: int = 0  # RUNNING/WAITING trials in the file
    dropped_attrs: int = 0
    target_record: StudyRecord | None = None

    @property
    def record(self) -> StudyRecord:
        """The record the study has (or will have) after the import."""
        if self.target_record is not None:
            return self.target_record
        return StudyRecord.from_attrs(self.study_user_attrs)

    def run_ids(self) -> list[str]:
        """The MLflow run ids named by the trials to add."""
        return [
            str(t.frozen.user_attrs[RUN_ID_ATTR])
            for t in self.to_add
            if t.frozen.user_attrs.get(RUN_ID_ATTR)
        ]


def _incoming_trials(
    payload: Mapping[str, Any], n_objectives: int, shown: str
) -> tuple[list[_Incoming], int, int]:
    """The file's finished trials, checked (a malformed trial, or two of the same origin, is a
    one-line SearchError); how many RUNNING/WAITING ones were left out; how many attributes
    were dropped from the trials."""
    dropped = 0
    incoming: list[_Incoming] = []
    left_out = 0
    seen: dict[str, int] = {}
    for index, entry in enumerate(payload["trials"]):
        label = entry.get("number", index) if isinstance(entry, dict) else index
        if isinstance(entry, dict) and str(entry.get("state")) in ("RUNNING", "WAITING"):
            left_out += 1
            continue
        try:
            trial = _incoming(entry, n_objectives)
            trial.frozen._validate()
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            problem = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            first = problem.strip().splitlines()[0] if problem.strip() else type(exc).__name__
            raise SearchError(f"{shown!r}: trial {label} is malformed: {first}") from None
        if trial.origin in seen:
            raise SearchError(
                f"{shown!r}: trials {seen[trial.origin]} and {label} have the same origin "
                f"{trial.origin!r}"
            )
        seen[trial.origin] = label
        incoming.append(trial)
        dropped += trial.dropped
    return incoming, left_out, dropped


def plan_import(
    storage_url: str, payload: Mapping[str, Any], shown: str, study: str | None = None
) -> ImportPlan:
    """Check a file's trials against the target storage: which trials are new, which are there
    already; a conflict (same origin, different data; a study of the same name with another
    space, data, split or direction) is a one-line SearchError. Nothing is written."""
    name = validate_study_name(study or str(payload["study"]["name"]))
    directions = _directions(payload, shown)
    raw_user_attrs, dropped = clean_user_attrs(dict(payload["study"].get("user_attrs") or {}))
    system_attrs, dropped_system = clean_system_attrs(
        dict(payload["study"].get("system_attrs") or {})
    )
    source_uid = str(payload["study"].get("uid") or "")
    incoming, left_out, dropped_in_trials = _incoming_trials(payload, len(directions), shown)
    dropped += dropped_in_trials

    storage = open_quietly(storage_url)
    try:
        study_id: int | None = storage.get_study_id_from_name(name)
    except KeyError:
        study_id = None
    plan = ImportPlan(
        storage_url=storage_url,
        study=name,
        create=study_id is None,
        directions=directions,
        study_user_attrs={k: v for k, v in raw_user_attrs.items() if k != UID_ATTR},
        study_system_attrs=system_attrs,
        source_uid=source_uid,
        left_out=left_out,
        dropped_attrs=dropped + dropped_system,
    )
    if study_id is None:
        plan.to_add = incoming
        return plan

    target = next(s for s in storage.get_all_studies() if s._study_id == study_id)
    where = f"study {name!r} in {redact(storage_url)}"
    if list(target.directions) != directions:
        raise SearchError(
            f"{where} is {'/'.join(d.name.lower() for d in target.directions)}, the file's study "
            f"{'/'.join(d.name.lower() for d in directions)}: not the same study; import it under "
            "another name with --study NEW"
        )
    mine = StudyRecord.from_attrs(target.user_attrs)
    theirs = StudyRecord.from_attrs(raw_user_attrs)
    for key in IDENTITY_KEYS:
        if getattr(mine, key) != getattr(theirs, key):
            raise SearchError(
                f"{where} has {key} {getattr(mine, key)!r}, the file's study {key} "
                f"{getattr(theirs, key)!r}: not the same study; import it under another name "
                "with --study NEW"
            )
    plan.target_record = mine
    uid = study_uid(name, target.user_attrs, storage_url)
    existing: dict[str, dict[str, Any]] = {}
    for stored in storage.get_all_trials(study_id, deepcopy=False):
        entry, _ = trial_entry(stored, uid)
        existing[entry["origin"]] = entry
    for trial in incoming:
        there = existing.get(trial.origin)
        if there is None:
            plan.to_add.append(trial)
            continue
        if _comparable(there) != _comparable(trial.entry):
            differing = ", ".join(_differences(there, trial.entry)) or "data"
            raise SearchError(
                f"conflict: trial {trial.number} of {shown!r} (origin {trial.origin}) is trial "
                f"{there['number']} of {where} with different {differing}; nothing imported"
            )
        plan.already += 1
    return plan


def apply_import(
    plan: ImportPlan,
    study_attrs: Mapping[str, Any] | None = None,
    run_ids: Mapping[str, str] | None = None,
) -> int:
    """Write a checked import: create the study if needed (with the file's attributes, updated
    by ``study_attrs``), then add the new trials, their ``mlflow_run_id`` mapped through
    ``run_ids``. Returns how many trials were added."""
    storage = open_quietly(plan.storage_url)
    if plan.create:
        try:
            study_id = storage.create_new_study(plan.directions, plan.study)
        except optuna.exceptions.DuplicatedStudyError:
            raise StorageError(
                f"study {plan.study!r} appeared in {redact(plan.storage_url)} during the "
                "import; import again to merge"
            ) from None
        attrs = {**plan.study_user_attrs, **(study_attrs or {}), UID_ATTR: uuid.uuid4().hex}
        for key, value in attrs.items():
            storage.set_study_user_attr(study_id, key, value)
        for key, value in plan.study_system_attrs.items():
            storage.set_study_system_attr(study_id, key, value)
    else:
        study_id = storage.get_study_id_from_name(plan.study)
        for key, value in (study_attrs or {}).items():
            storage.set_study_user_attr(study_id, key, value)
    for trial in plan.to_add:
        frozen = trial.frozen
        old = frozen.user_attrs.get(RUN_ID_ATTR)
        if run_ids and isinstance(old, str) and old in run_ids:
            frozen = _with_user_attr(frozen, RUN_ID_ATTR, run_ids[old])
        storage.create_new_trial(study_id, template_trial=frozen)
    return len(plan.to_add)


def _with_user_attr(trial: FrozenTrial, key: str, value: Any) -> FrozenTrial:
    import copy

    changed = copy.deepcopy(trial)
    changed.set_user_attr(key, value)
    return changed
