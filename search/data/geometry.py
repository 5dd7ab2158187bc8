"""Window geometry: a pure value (hours and rows), no data and no Keras.

For lookback L hours, sampling rate s rows, horizon H hours and ``steps_per_hour`` rows per hour::

    sequence_length = L * steps_per_hour / s          (must be a whole number)
    delay           = (sequence_length - 1) * s + H * steps_per_hour

This is the one place that turns hours into rows: the space loader checks its windows with it
(on the Jena grid of 6 rows per hour) and every trial builds its windows with it (on the series'
own grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from search.errors import DataError

__all__ = ["JENA_STEPS_PER_HOUR", "WindowSpec"]

JENA_STEPS_PER_HOUR = 6.0
"""The Jena record has one row per 10 minutes."""

_EPS = 1e-6


def _whole(value: float, what: str, hint: str) -> int:
    rounded = round(value)
    if abs(value - rounded) > _EPS:
        raise DataError(f"{what} = {value:g} is not a whole number of rows; {hint}")
    return int(rounded)


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry in hours, converted to rows with ``steps_per_hour`` (6 for 10-minute data)."""

    lookback_hours: float
    sampling_rate: int
    horizon_hours: float
    target_steps: int = 1
    steps_per_hour: float = 6

    @property
    def lookback_rows(self) -> int:
        return _whole(
            self.lookback_hours * self.steps_per_hour,
            f"lookback {self.lookback_hours:g} h x {self.steps_per_hour:g} rows/h",
            "choose a lookback that is a whole number of time steps",
        )

    @property
    def sequence_length(self) -> int:
        """Input steps per window: lookback rows / sampling rate."""
        rows = self.lookback_rows
        return _whole(
            rows / self.sampling_rate,
            f"lookback {rows} rows / sampling rate {self.sampling_rate}",
            "the lookback must be a multiple of the sampling rate",
        )

    @property
    def horizon_rows(self) -> int:
        """Rows from the last input step to the (first) target."""
        return _whole(
            self.horizon_hours * self.steps_per_hour,
            f"horizon {self.horizon_hours:g} h x {self.steps_per_hour:g} rows/h",
            "choose a horizon that is a whole number of time steps",
        )

    @property
    def target_stride(self) -> int:
        """Rows between two successive targets when target_steps > 1: one hour."""
        return _whole(
            self.steps_per_hour,
            f"{self.steps_per_hour:g} rows per hour",
            "several hourly target steps need a whole number of rows per hour",
        )

    @property
    def delay(self) -> int:
        """Rows from a window's first input step to its (first) target."""
        return (self.sequence_length - 1) * self.sampling_rate + self.horizon_rows

    @property
    def span(self) -> int:
        """Rows from a window's first input step to its last target, inclusive."""
        extra = (self.target_steps - 1) * self.target_stride if self.target_steps > 1 else 0
        return self.delay + extra + 1

    def validate(self) -> None:
        """Raise DataError for nonsense geometry (checked before any data is touched)."""
        if not self.steps_per_hour > 0 or not math.isfinite(self.steps_per_hour):
            raise DataError(f"steps_per_hour must be > 0, got {self.steps_per_hour}")
        if not self.lookback_hours > 0 or not math.isfinite(self.lookback_hours):
            raise DataError(f"lookback must be > 0 hours, got {self.lookback_hours:g}")
        if (
            isinstance(self.sampling_rate, bool)
            or not float(self.sampling_rate).is_integer()
            or self.sampling_rate < 1
        ):
            raise DataError(
                f"sampling rate must be a whole number of rows >= 1, got {self.sampling_rate}"
            )
        if not math.isfinite(self.horizon_hours) or self.horizon_hours <= 0:
            raise DataError(
                f"horizon must be > 0 hours, got {self.horizon_hours:g} (0 would make the target "
                "the last input step itself)"
            )
        if (
            isinstance(self.target_steps, bool)
            or int(self.target_steps) != self.target_steps
            or self.target_steps < 1
        ):
            raise DataError(f"target_steps must be a whole number >= 1, got {self.target_steps}")
        rows = self.lookback_rows
        if self.sampling_rate > rows:
            raise DataError(
                f"sampling rate {self.sampling_rate} rows is larger than the lookback of "
                f"{self.lookback_hours:g} h = {rows} rows; a window needs at least one step"
            )
        self.sequence_length  # noqa: B018  (raises when not whole)
        self.horizon_rows  # noqa: B018
        if self.target_steps > 1:
            self.target_stride  # noqa: B018

    def describe(self) -> dict[str, Any]:
        """Plain dict of the geometry in hours and rows (for logging)."""
        self.validate()
        return {
            "lookback_hours": self.lookback_hours,
            "sampling_rate": int(self.sampling_rate),
            "horizon_hours": self.horizon_hours,
            "target_steps": int(self.target_steps),
            "steps_per_hour": self.steps_per_hour,
            "sequence_length": self.sequence_length,
            "delay": self.delay,
        }


def grid_name(steps_per_hour: float) -> str:
    """How messages name a row of a grid: ``10-minute`` rows for 6 per hour, ``hourly`` for 1."""
    minutes = 60.0 / steps_per_hour
    if abs(minutes - 60.0) < _EPS:
        return "hourly"
    return f"{minutes:g}-minute"


def lookback_steps(
    lookback_hours: float, sampling_rate: int, steps_per_hour: float = JENA_STEPS_PER_HOUR
) -> tuple[int | None, str | None]:
    """``(sequence_length, None)`` for a lookback that windows cleanly on a grid, else
    ``(None, problem)`` with a message naming the lookback or the sampling rate."""
    rows = lookback_hours * steps_per_hour
    if abs(rows - round(rows)) > _EPS:
        return None, (
            f"{lookback_hours:g} h is not a whole number of {grid_name(steps_per_hour)} rows"
        )
    if round(rows) % sampling_rate:
        return None, (
            f"sampling_rate {sampling_rate} does not divide the lookback "
            f"({lookback_hours:g} h = {round(rows)} rows)"
        )
    return round(rows) // sampling_rate, None
