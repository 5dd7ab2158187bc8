"""What every split policy shares: the three parts, a series' row ranges per part
(:class:`SplitLayout`), the policy's interface (:class:`SplitPolicy`) and what the split
functions read of a prepared series (:class:`PreparedSeries`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from search.data.geometry import WindowSpec
from search.errors import DataError

__all__ = ["EPS", "SPLITS", "PreparedSeries", "SplitLayout", "SplitPolicy"]

SPLITS = ("train", "val", "test")
EPS = 1e-6


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

    def describe(self, steps_per_hour: float) -> dict[str, Any]:
        """Plain dict of the policy's settings for reports (at least its name)."""
        return {"policy": self.name}


class PreparedSeries(Protocol):
    """What the functions here read of a prepared series (a
    :class:`search.data.prepare.Prepared`, which imports this module)."""

    @property
    def split(self) -> SplitPolicy: ...

    @property
    def layout(self) -> SplitLayout: ...

    @property
    def steps_per_hour(self) -> float: ...

    @property
    def times(self) -> np.ndarray | None: ...
