"""The loaded data: a repaired, regular multivariate time series and its data-quality report."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.data.wording import iso
from search.errors import DataError


@dataclass
class Dataset:
    """A repaired, regular multivariate time series, not normalized.

    ``values`` holds the feature columns (float32, raw units) on a regular time grid ``times``;
    ``target`` is the target column in raw units (for Jena: degrees C). ``report`` is the
    data-quality report, a plain dict ready for ``json.dumps`` and MLflow.
    """

    name: str
    times: np.ndarray
    values: np.ndarray
    feature_names: list[str]
    target: np.ndarray
    target_name: str
    steps_per_hour: float
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def target_index(self) -> int | None:
        """Column of the target among the features, or None when it is not a feature."""
        return target_index(self.feature_names, self.target_name)

    @property
    def unit(self) -> str:
        """The target's unit, read from its column name (``T (degC)`` gives ``degC``)."""
        return unit_of(self.target_name)

    def head(self, n_rows: int) -> Dataset:
        """The first ``n_rows`` rows (all of them if there are fewer); the report notes the cut."""
        n_rows = int(n_rows)
        if n_rows < 1:
            raise DataError(f"head(n_rows): n_rows must be at least 1, got {n_rows}")
        total = len(self)
        if n_rows >= total:
            return self
        report = json.loads(json.dumps(self.report))  # deep copy of plain data
        report["rows_before_head"] = total
        report["rows"] = n_rows
        report["head_rows"] = n_rows
        report["end"] = iso(self.times[n_rows - 1])
        report.setdefault("actions", []).append(
            f"kept only the first {n_rows} of {total} rows (head)"
        )
        return dataclasses.replace(
            self,
            times=self.times[:n_rows],
            values=self.values[:n_rows],
            target=self.target[:n_rows],
            report=report,
        )


def target_index(feature_names: list[str], target_name: str) -> int | None:
    """Column of the target among the features, or None when it is not a feature."""
    try:
        return feature_names.index(target_name)
    except ValueError:
        return None


def unit_of(target_name: str) -> str:
    """The unit printed beside a target's values: what its column name gives in parentheses at
    the end (``T (degC)`` gives ``degC``, ``p (mbar)`` gives ``mbar``), else the column's name."""
    name = target_name.strip()
    if name.endswith(")") and "(" in name:
        unit = name[name.rindex("(") + 1 : -1].strip()
        if unit:
            return unit
    return name
