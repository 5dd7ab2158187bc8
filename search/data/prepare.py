"""Split and normalize a repaired series: what every trial of a study trains and validates on.

Inputs are standardized with the mean and std of the training rows only (the split policy says
which rows those are); the target stays in its own units.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from search.data.geometry import WindowSpec
from search.data.sources import Dataset, target_index
from search.data.splits import ChronologicalSplit, SplitLayout, SplitPolicy
from search.serving.forecast import CALENDAR_COLUMNS, calendar_columns  # one implementation

__all__ = ["CALENDAR_COLUMNS", "Prepared", "calendar_columns", "prepare"]


@dataclass
class Prepared:
    """Normalized inputs (float32) and raw targets, with the split layout and train statistics."""

    data: np.ndarray
    target: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    split: SplitPolicy
    layout: SplitLayout
    feature_names: list[str] = field(default_factory=list)
    target_name: str = ""
    steps_per_hour: float = 6.0
    times: np.ndarray | None = None
    raw: np.ndarray | None = field(default=None, repr=False)  # the values before normalization
    _with_calendar: np.ndarray | None = field(default=None, repr=False)
    _folds: list[Prepared] | None = field(default=None, repr=False)

    @property
    def n_folds(self) -> int:
        """How many cross-validation folds the split has (0: one validation slice)."""
        return int(getattr(self.split, "folds", None) or 0)

    def folds(self) -> list[Prepared]:
        """The series of each cross-validation fold (empty without folds): the same rows with
        the fold's layout (its validation blocks, every other non-test block to train on, the
        same test blocks) and inputs normalized with that fold's own training rows."""
        if self._folds is None:
            fold_layouts = getattr(self.split, "fold_layouts", None)
            layouts: list[SplitLayout] = fold_layouts(self.layout) if fold_layouts else []
            self._folds = [self._relaid(layout) for layout in layouts]
        return self._folds

    def _relaid(self, layout: SplitLayout) -> Prepared:
        values = self.raw if self.raw is not None else self.data * self.std + self.mean
        data, mean, std = _normalize(values, layout.mask("train"))
        return replace(
            self, data=data, mean=mean, std=std, layout=layout, _with_calendar=None, _folds=[]
        )

    def raw_view(self) -> Prepared:
        """The same series with its inputs in their own units (mean 0, std 1: no normalization):
        what a model that normalizes inside itself, such as a fold-mean model, is fed."""
        values = self.raw if self.raw is not None else self.data * self.std + self.mean
        width = values.shape[1]
        return replace(
            self,
            data=np.asarray(values, dtype=np.float32),
            mean=np.zeros(width),
            std=np.ones(width),
            _with_calendar=None,
            _folds=[],
        )

    def model_view(self) -> Prepared:
        """What the study's saved models take as input: the raw view for a cross-validated
        study (its fold-mean model normalizes each fold itself), else this series."""
        return self.raw_view() if self.n_folds else self

    @property
    def num_train(self) -> int:
        return self.layout.rows("train")

    @property
    def num_val(self) -> int:
        return self.layout.rows("val")

    @property
    def num_test(self) -> int:
        return self.layout.rows("test")

    @property
    def target_index(self) -> int | None:
        """Column of the target among the features (None if the target is not a feature)."""
        return target_index(self.feature_names, self.target_name)

    def inputs(self, calendar: bool = False) -> np.ndarray:
        """The model's input columns: the normalized features, plus (with ``calendar``) the
        sine and cosine of the hour of day and of the day of year."""
        if not calendar:
            return self.data
        if self._with_calendar is None:
            self._with_calendar = np.concatenate(
                [self.data, calendar_columns(self.times, len(self.data))], axis=1
            )
        return self._with_calendar

    def spec(
        self, lookback_hours: float, sampling_rate: int, horizon_hours: float, target_steps: int = 1
    ) -> WindowSpec:
        """A validated WindowSpec with this series' steps_per_hour."""
        spec = WindowSpec(
            lookback_hours, sampling_rate, horizon_hours, target_steps, self.steps_per_hour
        )
        spec.validate()
        return spec


def prepare(dataset: Dataset, split: SplitPolicy | None = None) -> Prepared:
    """Split a dataset (default: the book's chronological 50/25/25) and normalize its inputs with
    the training rows' mean/std. A feature that is constant over the training rows keeps std 1
    (it is only centred) instead of dividing by zero."""
    split = split or ChronologicalSplit()
    values = np.asarray(dataset.values)
    layout = split.layout(int(values.shape[0]), float(dataset.steps_per_hour))
    data, mean, std = _normalize(values, layout.mask("train"))
    prepared = Prepared(
        data=data,
        target=np.ascontiguousarray(dataset.target, dtype=np.float32),
        mean=mean,
        std=std,
        split=split,
        layout=layout,
        feature_names=list(dataset.feature_names),
        target_name=dataset.target_name,
        steps_per_hour=float(dataset.steps_per_hour),
        times=dataset.times,
        raw=values,
    )
    prepared.folds()  # too few blocks for the folds: refused here, before anything is stored
    return prepared


def _normalize(values: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, mean, std)``: float32 inputs standardized with the mean and std of the rows
    ``train`` selects."""
    rows = values[train].astype(np.float64)
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    data = np.empty(values.shape, dtype=np.float32)
    np.subtract(values, mean, out=data, casting="unsafe")
    data /= std.astype(np.float32)
    return data, mean, std


def load_prepared(
    source: str,
    *,
    time_column: str | None = None,
    time_format: str | None = None,
    target: str | None = None,
    features: list[str] | None = None,
    max_rows: int | None = None,
    split: str | None = None,
    reference_hours: float | None = None,
) -> tuple[Dataset, Prepared]:
    """Load a source, keep its first ``max_rows`` rows, split and normalize it: the one way a
    study (and every later look at it: evaluation, prediction) builds its data."""
    from search.data.sources import load_dataset
    from search.data.splits import parse_split

    dataset = load_dataset(
        source, time_column=time_column, target=target, features=features, time_format=time_format
    )
    if max_rows:
        dataset = dataset.head(int(max_rows))
    return dataset, prepare(dataset, parse_split(split, reference_hours=reference_hours))
