"""Exporting a study to its file (format ``search-study/1``, described in
:mod:`search.engines.transfer`): the format's names, the attributes that travel (pickled sampler
state and values that are not JSON are dropped), and each finished trial's entry."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial

from search.engines.studies import find_study_id, open_quietly
from search.errors import SearchError
from search.record import StudyRecord
from search.redact import redact, redact_value

__all__ = ["FORMAT", "ORIGIN_ATTR", "UID_ATTR", "ExportResult", "export_study", "write_export"]

FORMAT = "search-study/1"
ORIGIN_ATTR = "search.origin"
UID_ATTR = "search.study_uid"
RUN_ID_ATTR = "mlflow_run_id"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
_PICKLE_HEX = re.compile(r"80[0-5][0-9a-fA-F]{13,}")


# --------------------------------------------------------------------------- attributes


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_sampler_state(key: str, value: Any) -> bool:
    """Whether a system attribute holds pickled sampler state (CMA-ES keeps its optimizer as a
    hex-encoded pickle under ``cma:`` keys; the rest of its bookkeeping goes with it)."""
    if key.startswith("cma:") or ":cma:" in key:
        return True
    return isinstance(value, str) and _PICKLE_HEX.fullmatch(value) is not None


def clean_system_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The system attributes safe to carry, and how many were dropped."""
    kept = {
        str(k): v for k, v in attrs.items() if not _is_sampler_state(str(k), v) and _json_safe(v)
    }
    return kept, len(attrs) - len(kept)


def clean_user_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    kept = {str(k): v for k, v in attrs.items() if _json_safe(v)}
    return kept, len(attrs) - len(kept)


def study_uid(name: str, attrs: Mapping[str, Any], storage_url: str) -> str:
    """The study's identity across copies: its ``search.study_uid`` attribute, else derived from
    its name and MLflow parent run id (or, lacking one, the storage URL)."""
    if attrs.get(UID_ATTR):
        return str(attrs[UID_ATTR])
    basis = attrs.get("mlflow_parent_run_id") or storage_url
    return hashlib.sha256(f"{name}\n{basis}".encode()).hexdigest()[:16]


def _origin(trial: FrozenTrial, uid: str) -> str:
    return str(trial.user_attrs.get(ORIGIN_ATTR) or f"{uid}#{trial.number}")


def _iso(moment: datetime | None) -> str | None:
    """A storage's naive local datetime as ISO 8601 in UTC."""
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else None


def local(text: str | None) -> datetime | None:
    """ISO 8601 back to the naive local datetime storages keep."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo is not None else moment


def as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    """A study as its export file holds it, and what was left out."""

    payload: dict[str, Any]
    counts: dict[str, int]  # exported trials per state
    left_out: int  # RUNNING or WAITING trials
    dropped_attrs: int  # sampler-state or non-JSON attributes
    attrs: dict[str, Any] = field(default_factory=dict)  # the study's own, before redaction

    @property
    def name(self) -> str:
        return str(self.payload["study"]["name"])

    @property
    def record(self) -> StudyRecord:
        """The study's record as stored (the file's copy has its passwords redacted)."""
        return StudyRecord.from_attrs(self.attrs or self.payload["study"]["user_attrs"])

    @property
    def trials(self) -> list[dict[str, Any]]:
        return list(self.payload["trials"])


def trial_entry(trial: FrozenTrial, uid: str) -> tuple[dict[str, Any], int]:
    user_attrs, dropped_user = clean_user_attrs(trial.user_attrs)
    user_attrs.pop(ORIGIN_ATTR, None)
    system_attrs, dropped_system = clean_system_attrs(trial.system_attrs)
    entry = {
        "number": trial.number,
        "origin": _origin(trial, uid),
        "state": trial.state.name,
        "values": list(trial.values) if trial.values is not None else None,
        "params": dict(trial.params),
        "distributions": {
            name: json.loads(distribution_to_json(dist))
            for name, dist in trial.distributions.items()
        },
        "intermediate_values": {
            str(step): value for step, value in sorted(trial.intermediate_values.items())
        },
        "user_attrs": user_attrs,
        "system_attrs": system_attrs,
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
    }
    return entry, dropped_user + dropped_system


def export_study(storage_url: str, name: str) -> ExportResult:
    """Read a study and its finished trials into the export format (nothing is written)."""
    storage = open_quietly(storage_url)
    study_id = find_study_id(storage, storage_url, name)
    study = next(s for s in storage.get_all_studies() if s._study_id == study_id)
    user_attrs, dropped = clean_user_attrs(study.user_attrs)
    system_attrs, dropped_system = clean_system_attrs(study.system_attrs)
    dropped += dropped_system
    uid = study_uid(name, user_attrs, storage_url)
    trials: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    left_out = 0
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        if trial.state.name not in FINISHED:
            left_out += 1
            continue
        entry, dropped_trial = trial_entry(trial, uid)
        dropped += dropped_trial
        trials.append(entry)
        counts[entry["state"]] = counts.get(entry["state"], 0) + 1
    payload = {
        "format": FORMAT,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "source": {"storage": redact(storage_url)},
        "study": {
            "name": name,
            "uid": uid,
            "directions": [d.name for d in study.directions],
            "user_attrs": redact_value(user_attrs),
            "system_attrs": system_attrs,
        },
        "trials": trials,
        "runs": None,
    }
    return ExportResult(payload, counts, left_out, dropped, user_attrs)


def write_export(payload: Mapping[str, Any], path: Path) -> None:
    """Write an export file atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SearchError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise SearchError(f"cannot write {str(path)!r}: it is a folder")
    text = json.dumps(payload, indent=1, sort_keys=False)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise SearchError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
