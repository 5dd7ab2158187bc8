"""Split policies: which rows train, validate and test a model, and which windows each split holds.

A policy turns a series length into a :class:`SplitLayout` (row ranges per split); normalization
statistics come from the layout's training rows only, and :func:`window_starts` asks the policy
which windows belong to a split. Today's policy is the book's chronological 50/25/25 split.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from search.data.geometry import WindowSpec
from search.errors import DataError

if TYPE_CHECKING:
    from search.data.prepare import Prepared

__all__ = [
    "SPLITS",
    "ChronologicalSplit",
    "SplitLayout",
    "SplitPolicy",
    "parse_split",
    "window_starts",
]

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT = "chronological"
_EPS = 1e-6


@dataclass(frozen=True)
class SplitLayout:
    """Row ranges ``[start, end)`` of each split, in chronological order."""

    ranges: dict[str, list[tuple[int, int]]]
    n_rows: int

    def rows(self, split: str) -> int:
        """How many rows a split holds."""
        return sum(end - start for start, end in self._ranges(split))

    def mask(self, split: str) -> np.ndarray:
        """Boolean mask over the series' rows that belong to a split."""
        mask = np.zeros(self.n_rows, dtype=bool)
        for start, end in self._ranges(split):
            mask[start:end] = True
        return mask

    def _ranges(self, split: str) -> list[tuple[int, int]]:
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.ranges[split]


class SplitPolicy(ABC):
    """How a series is divided into train, val and test, and which windows each split holds."""

    @property
    @abstractmethod
    def name(self) -> str:
        """How a study records the policy (``chronological``, ``blocked:28``)."""

    @abstractmethod
    def layout(self, n_rows: int, steps_per_hour: float) -> SplitLayout:
        """The row ranges of every split for a series of ``n_rows`` rows."""

    @abstractmethod
    def starts(self, layout: SplitLayout, spec: WindowSpec, split: str) -> np.ndarray:
        """First input row of every window of a split, in chronological order (int64)."""


class ChronologicalSplit(SplitPolicy):
    """The book's split: the first 50% of rows train, the next 25% validate, the rest test.

    A window belongs to the split its first row lies in (``timeseries_dataset_from_array``'s
    ``start_index``/``end_index``), so its later rows may reach into the next split, as in the book.
    """

    def __init__(self, train_fraction: float = 0.5, val_fraction: float = 0.25) -> None:
        if not (
            0 < train_fraction < 1 and 0 < val_fraction < 1 and train_fraction + val_fraction < 1
        ):
            raise DataError(
                f"split fractions must be > 0 and leave a test part: train {train_fraction:g}, "
                f"val {val_fraction:g}, test {1 - train_fraction - val_fraction:g}"
            )
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction

    @property
    def name(self) -> str:
        return "chronological"

    def layout(self, n_rows: int, steps_per_hour: float) -> SplitLayout:
        num_train = int(self.train_fraction * n_rows)
        num_val = int(self.val_fraction * n_rows)
        num_test = n_rows - num_train - num_val
        if num_train < 2 or num_val < 1 or num_test < 1:
            raise DataError(
                f"series too short to split: {n_rows} rows give train {num_train}, val {num_val}, "
                f"test {num_test} rows (need at least 2, 1 and 1)"
            )
        return SplitLayout(
            ranges={
                "train": [(0, num_train)],
                "val": [(num_train, num_train + num_val)],
                "test": [(num_train + num_val, n_rows)],
            },
            n_rows=n_rows,
        )

    def starts(self, layout: SplitLayout, spec: WindowSpec, split: str) -> np.ndarray:
        """Mirrors the index arithmetic and argument checks of ``timeseries_dataset_from_array``
        with start/end (0, num_train), (num_train, num_train + num_val), (num_train + num_val,
        None); a split with no complete window is a DataError giving the numbers."""
        n = layout.n_rows
        ((start, end_row),) = layout._ranges(split)
        end: int | None = None if split == "test" else end_row
        length, rate, delay = spec.sequence_length, int(spec.sampling_rate), spec.delay
        data_len = n - delay  # len(data[:-delay])
        geometry = (
            f"lookback {spec.lookback_hours:g} h (sequence_length {length} x sampling rate {rate}) "
            f"+ horizon {spec.horizon_hours:g} h = a span of {spec.span} rows"
        )
        stop = data_len if end is None else end
        last_row = (n if end is None else end) - 1
        if (
            data_len <= 0
            or rate >= data_len
            or start >= data_len
            or stop >= data_len + (end is None)
        ):
            # Keras: start_index and end_index must be < len(data[:-delay]), sampling_rate too.
            raise DataError(
                f"series too short for {geometry}: the {split} split covers rows "
                f"{start}..{last_row} of {n}, and each window's target lies {delay} rows after "
                f"the window's first row (only rows before {max(data_len, 0)} can start one), so "
                "it has no complete window; use a shorter lookback/horizon or more data"
            )
        num = stop - start - (length - 1) * rate
        num = min(num, data_len)
        if spec.target_steps > 1:
            num = min(num, n - (spec.span - 1) - start)
        if num <= 0:
            raise DataError(
                f"series too short for {geometry}: the {split} split has "
                f"{last_row - start + 1} rows (rows {start}..{last_row} of {n}), which hold no "
                "complete window; use a shorter lookback/horizon or more data"
            )
        return np.arange(start, start + num, dtype=np.int64)


def parse_split(text: str | None) -> SplitPolicy:
    """The policy a ``--split`` value names (None: the default, chronological)."""
    text = (text or DEFAULT_SPLIT).strip()
    if text == "chronological":
        return ChronologicalSplit()
    raise DataError(f"unknown split {text!r}; expected chronological")


def window_starts(prepared: Prepared, spec: WindowSpec, split: str) -> np.ndarray:
    """First input row of every window of a split of a prepared series, in chronological order."""
    spec.validate()
    if spec.steps_per_hour and abs(spec.steps_per_hour - prepared.steps_per_hour) > _EPS:
        raise DataError(
            f"window spec assumes {spec.steps_per_hour:g} rows per hour but the series has "
            f"{prepared.steps_per_hour:g}; build the spec with steps_per_hour="
            f"{prepared.steps_per_hour:g}"
        )
    return prepared.split.starts(prepared.layout, spec, split)
