"""What a study remembers, in one place: the typed study record and its defaults.

The record is stored as the study's attributes in its storage, under the keys below (the keys
studies made before the record existed already use, so they resume unchanged). A field missing
from an older study takes its default; ``record_version`` says which version wrote it.

Study names are validated here, once, before they become experiment names, folder names or
anything else.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.data.splits import DEFAULT_SPLIT
from search.errors import SearchError

if TYPE_CHECKING:  # types only: the record is read before anything heavy is imported
    from search.data.dataset import Dataset
    from search.data.prepare import Prepared
    from search.spaces import Space
    from search.tracking.base import Tracker

__all__ = [
    "DEFAULT_DATA",
    "DEFAULT_ENGINE",
    "DEFAULT_SEED",
    "DEFAULT_SPACE",
    "DEFAULT_SPLIT",
    "RECORD_VERSION",
    "StudyRecord",
    "data_identity",
    "space_identity",
    "validate_study_name",
]

RECORD_VERSION = 1
DEFAULT_SPACE = "quick"
DEFAULT_DATA = "jena-2020"
DEFAULT_SEED = 42
DEFAULT_ENGINE = "optuna"

_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,128}")


def validate_study_name(name: str) -> str:
    """The name itself if it is a valid study name (letters, digits, ``-``, ``_``, ``.``; at most
    128 characters; not starting with ``.``); else a one-line SearchError."""
    shown = repr(name) if len(name) <= 60 else repr(name[:57] + "...")
    if not _NAME.fullmatch(name) or name.startswith("."):
        bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9_\-.]", c)})
        if not name:
            problem = "it is empty"
        elif bad:
            problem = "it contains " + ", ".join(repr(c) for c in bad[:5])
        elif len(name) > 128:
            problem = f"it has {len(name)} characters (at most 128)"
        else:
            problem = "it starts with '.'"
        raise SearchError(
            f"invalid study name {shown}: {problem}; use letters, digits, '-', '_' and '.', "
            "at most 128 characters, not starting with '.'"
        )
    return name


def space_identity(name_or_path: str) -> str:
    """How a study remembers its space: a shipped name as is, a file by its absolute path."""
    from search.spaces import names_a_file

    if names_a_file(name_or_path):
        return str(Path(name_or_path).expanduser().resolve())
    return name_or_path


def data_identity(source: str) -> str:
    """How a study remembers its data: a named source as is, a file by its absolute path."""
    from search.data.sources import SOURCES

    return source if source in SOURCES else str(Path(source).expanduser().resolve())


@dataclass
class StudyRecord:
    """Everything a study remembers between runs, with its defaults.

    Stored attribute keys are the field names, except the MLflow fields (``mlflow_*``).
    """

    space: str = DEFAULT_SPACE
    data: str = DEFAULT_DATA
    time_column: str | None = None
    time_format: str | None = None
    target: str | None = None
    features: list[str] | None = None
    max_rows: int | None = None
    seed: int = DEFAULT_SEED
    split: str = DEFAULT_SPLIT
    engine: str = DEFAULT_ENGINE
    sampler: str | None = None  # Optuna's sampler and pruner (None: the defaults)
    pruner: str | None = None
    tuner: str | None = None  # keras-tuner's tuner
    space_yaml: str | None = None  # the space file's text when the study began
    mlflow_parent_run_id: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_id: str | None = None
    record_version: int = RECORD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StudyRecord:
        """Read a record from a study's attributes; missing fields take their defaults and
        unknown keys are kept in ``extra``."""
        names = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in attrs.items() if k in names and v is not None}
        if values.get("max_rows") is not None:
            values["max_rows"] = int(values["max_rows"])
        if values.get("features") is not None:
            values["features"] = list(values["features"])
        extra = {k: v for k, v in attrs.items() if k not in names}
        record = cls(**values, extra=extra)
        if "record_version" not in attrs:
            record.record_version = 0  # written before the record existed
        return record

    def to_attrs(self) -> dict[str, Any]:
        """The attributes to store on the study (``extra`` is not written back)."""
        attrs = asdict(self)
        attrs.pop("extra")
        attrs["record_version"] = RECORD_VERSION
        return attrs


def load_study_space(record: StudyRecord, tracker: Tracker | None = None) -> Space:
    """The space a study was started with: its snapshot in the record; for a study made before
    snapshots, the copy its parent run logged (``space/<file>``) when a tracker is given; else
    the space of that name or path today."""
    from search.spaces import load_space, space_from_text

    text = record.space_yaml
    if text is None and tracker is not None and record.mlflow_parent_run_id:
        name = Path(record.space).name if record.space.endswith((".yaml", ".yml")) else None
        for candidate in filter(None, (name, f"{record.space}.yaml")):
            try:
                text = tracker.download(
                    record.mlflow_parent_run_id, f"space/{candidate}"
                ).read_text()
                break
            except Exception:  # not logged there: fall back to the file of that name
                continue
    if text is None:
        return load_space(record.space)
    return space_from_text(text, Path(record.space) if "/" in record.space else None)


def load_study_data(record: StudyRecord, space: Space) -> tuple[Dataset, Prepared]:
    """The study's dataset and prepared series, rebuilt from its record and space (the same
    code for the study, its evaluation and predictions)."""
    from search.data.prepare import load_prepared

    return load_prepared(
        record.data,
        time_column=record.time_column,
        time_format=record.time_format,
        target=record.target,
        features=record.features,
        max_rows=record.max_rows,
        split=record.split,
        reference_hours=space.reach_hours(),
    )
