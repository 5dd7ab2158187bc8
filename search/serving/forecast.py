"""Forecasts from raw rows, by a plain preprocessing spec: the one path from rows to forecasts.

The spec (a JSON-able dict, written by `search.preprocessing.preprocessing_spec`) says which columns
the model reads, how inputs are normalized, whether calendar inputs are added, and the window
geometry in rows. `search predict` (on a repaired file) and the saved MLflow model (on rows
posted to it) both call :func:`forecast`, so both give the same numbers for the same rows.

Imports only numpy and pandas: this module travels with the saved model (see ``__init__``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CALENDAR_COLUMNS",
    "SPEC_VERSION",
    "Forecast",
    "RowsError",
    "calendar_columns",
    "check_row_count",
    "ensemble_forecast",
    "ensemble_frame",
    "forecast",
    "longest_spec",
    "forecast_frame",
    "model_inputs",
    "quantile_column",
    "read_rows",
]

SPEC_VERSION = 1
CALENDAR_COLUMNS = ("hour_sin", "hour_cos", "day_of_year_sin", "day_of_year_cos")
SENTINEL = -9999.0  # the station's missing-value marker
_BATCH = 1024


class RowsError(ValueError):
    """Rows the model cannot forecast from; the message is one line naming the problem."""


@dataclass
class Forecast:
    """One entry per complete window and step: the time it was made from (its last input row),
    the time it is for, and the forecast in the target's units (the median of a quantile
    forecast, whose levels are in ``quantiles``, one column per level of ``levels``)."""

    made_from: np.ndarray  # datetime64[s]
    times: np.ndarray  # datetime64[s]
    values: np.ndarray  # float32, (n,)
    steps: np.ndarray | None = None  # int64, (n,): 1 is the first step; None: all 1
    quantiles: np.ndarray | None = None  # float32, (n, levels), sorted along the levels
    levels: tuple[float, ...] | None = None


def calendar_columns(times: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Sine and cosine of the hour of day and of the day of year for each row (float32,
    ``(n_rows, 4)``, already in [-1, 1]); zeros when the series has no timestamps."""
    if times is None:
        return np.zeros((n_rows, len(CALENDAR_COLUMNS)), dtype=np.float32)
    stamps = np.asarray(times).astype("datetime64[s]")
    days = stamps.astype("datetime64[D]")
    hour = (stamps - days).astype(np.int64) / 3600.0
    years = stamps.astype("datetime64[Y]")
    day_of_year = (days - years.astype("datetime64[D]")).astype(np.int64) + hour / 24.0
    hour_angle = 2 * np.pi * hour / 24.0
    year_angle = 2 * np.pi * day_of_year / 365.25
    columns = [np.sin(hour_angle), np.cos(hour_angle), np.sin(year_angle), np.cos(year_angle)]
    return np.stack(columns, axis=1).astype(np.float32)


def model_inputs(spec: dict[str, Any], times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The model's input columns for raw rows: the features normalized with the spec's mean and
    std (the same float32 arithmetic as the study's own data), plus the calendar inputs."""
    raw = np.asarray(values, dtype=np.float32)
    inputs = np.empty(raw.shape, dtype=np.float32)
    np.subtract(raw, np.asarray(spec["mean"], np.float64), out=inputs, casting="unsafe")
    inputs /= np.asarray(spec["std"], np.float64).astype(np.float32)
    if spec["calendar"]:
        inputs = np.concatenate([inputs, calendar_columns(times, len(inputs))], axis=1)
    return inputs


def _offsets(spec: dict[str, Any]) -> np.ndarray:
    return np.arange(int(spec["sequence_length"]), dtype=np.int64) * int(spec["sampling_rate"])


def check_row_count(spec: dict[str, Any], n_rows: int) -> int:
    """The number of complete windows in ``n_rows`` rows; a RowsError when there is none."""
    count = n_rows - int(_offsets(spec)[-1])
    if count < 1:
        raise RowsError(f"{n_rows} rows; {_needs(spec)}")
    return count


def forecast(
    spec: dict[str, Any],
    times: np.ndarray,
    values: np.ndarray,
    predict: Callable[[np.ndarray], Any],
) -> Forecast:
    """Forecast from every complete window of regular rows (``times`` and the raw ``values`` of
    the spec's features, in order); ``predict`` maps a batch of windows to the model's output."""
    count = check_row_count(spec, len(values))
    inputs = model_inputs(spec, times, values)
    offsets = _offsets(spec)
    starts = np.arange(count, dtype=np.int64)
    steps = int(spec.get("target_steps", 1))  # specs written before multi-step: one step
    levels = tuple(spec.get("quantiles") or ())
    outputs = []
    for first in range(0, count, _BATCH):
        chunk = starts[first : first + _BATCH]
        x = np.take(inputs, chunk[:, None] + offsets[None, :], axis=0)
        out = np.asarray(predict(x), dtype=np.float32).reshape(len(chunk), steps, -1)
        outputs.append(out if levels else out[..., :1])
    grid = np.concatenate(outputs)  # (windows, steps, levels or 1)
    if levels:  # never hand out crossing quantiles, whatever the model does
        grid = np.sort(grid, axis=-1)
    made_from = np.asarray(times)[starts + int(offsets[-1])].astype("datetime64[s]")
    horizon = np.timedelta64(round(float(spec["horizon_hours"]) * 3600), "s")
    ahead = horizon + np.arange(steps) * np.timedelta64(3600, "s")  # hourly steps
    median = min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5)) if levels else 0
    return Forecast(
        np.repeat(made_from, steps),
        (made_from[:, None] + ahead[None, :]).ravel(),
        grid[..., median].ravel(),
        np.tile(np.arange(1, steps + 1, dtype=np.int64), count),
        grid.reshape(count * steps, -1) if levels else None,
        levels or None,
    )


def ensemble_forecast(
    members: list[tuple[dict[str, Any], Callable[[np.ndarray], Any], float]],
    times: np.ndarray,
    values: np.ndarray,
) -> Forecast:
    """The weighted mean of several models' forecasts (``(spec, predict, weight)`` each, every
    spec reading the same columns) of the times every member forecasts: members with longer
    lookbacks start later, so the ensemble forecasts from the latest first window on."""
    results = [
        (forecast(spec, times, values, predict), weight) for spec, predict, weight in members
    ]
    if len(results) == 1 and results[0][1] == 1.0:  # one model: its forecast as it is
        return results[0][0]
    common = results[0][0].times
    for result, _ in results[1:]:
        common = np.intersect1d(common, result.times)
    if not len(common):
        raise RowsError("the ensemble's members forecast no time in common from these rows")
    total = np.zeros(len(common), dtype=np.float64)
    for result, weight in results:
        at = np.searchsorted(result.times, common)  # each member's times are increasing
        total += weight * result.values[at].astype(np.float64)
    first = results[0][0]
    made_from = first.made_from[np.searchsorted(first.times, common)]
    return Forecast(made_from, common, total.astype(np.float32))


def longest_spec(specs: Any) -> dict[str, Any]:
    """The spec whose window reaches furthest back: the one to read an ensemble's rows with."""
    return max(specs, key=lambda spec: int(_offsets(spec)[-1]))


def ensemble_frame(
    members: list[tuple[dict[str, Any], Callable[[np.ndarray], Any], float]], frame: Any
) -> pd.DataFrame:
    """Raw rows -> the ensemble's forecasts, in :func:`forecast_frame`'s columns."""
    spec = longest_spec(m[0] for m in members)
    times, values = read_rows(spec, frame)
    result = ensemble_forecast(members, times, values)
    return _frame(spec, result)


def _parse_times(column: pd.Series, name: str, fmt: str | None) -> np.ndarray:
    """The time column as naive datetime64[ns] (UTC where values carry an offset), read with the
    study's format, else as ISO 8601; a RowsError naming the first value read by neither."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        parsed = pd.to_datetime(column, utc=True)
    else:
        if column.isna().any():
            i = int(np.flatnonzero(column.isna().to_numpy())[0])
            raise RowsError(f"time column {name!r} is empty at row {i + 1}")
        text = column.astype(str).str.strip()
        parsed = None
        for candidate in dict.fromkeys(f for f in (fmt, "ISO8601") if f):
            try:
                attempt = pd.to_datetime(text, format=candidate, errors="coerce", utc=True)
            except (ValueError, TypeError, OverflowError):
                continue
            if not attempt.isna().any():
                parsed = attempt
                break
            if parsed is None:
                parsed = attempt
        if parsed is None or parsed.isna().any():
            bad = parsed.isna().to_numpy() if parsed is not None else np.ones(len(text), bool)
            i = int(np.flatnonzero(bad)[0])
            expected = f"the format {fmt!r} or ISO 8601" if fmt and fmt != "ISO8601" else "ISO 8601"
            raise RowsError(
                f"time column {name!r}: {text.iloc[i]!r} at row {i + 1} is not a date-time "
                f"(expected {expected}, e.g. '2020-01-01 00:10:00')"
            )
    return parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ns]")


def read_rows(spec: dict[str, Any], frame: Any) -> tuple[np.ndarray, np.ndarray]:
    """Raw rows as a user's CSV holds them (the time column and the study's columns; others are
    ignored) -> their times and the features' values; a RowsError for rows the model cannot
    use: a missing column, an unreadable time or number, rows not one step apart in order."""
    if not isinstance(frame, pd.DataFrame):
        raise RowsError(
            f"expected a table of rows with the columns {[spec['time_column'], *spec['features']]}"
            f", got {type(frame).__name__}"
        )
    time_column = spec["time_column"]
    features = list(spec["features"])
    missing = [c for c in [time_column, *features] if c not in frame.columns]
    if missing:
        raise RowsError(
            f"missing column(s) {', '.join(repr(c) for c in missing)}; the model needs the time "
            f"column {time_column!r} and the columns {features}"
        )
    check_row_count(spec, len(frame))
    times = _parse_times(
        frame[time_column].reset_index(drop=True), time_column, spec["time_format"]
    )
    values = np.empty((len(frame), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        column = pd.to_numeric(frame[name].reset_index(drop=True), errors="coerce")
        numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(numbers) | (numbers == SENTINEL)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RowsError(
                f"column {name!r} has no usable number at row {i + 1} "
                f"({frame[name].iloc[i]!r}); the model needs every value of its columns"
            )
        values[:, j] = numbers
    step = np.timedelta64(round(3600e9 / float(spec["steps_per_hour"])), "ns")
    gaps = np.flatnonzero(np.diff(times) != step)
    if gaps.size:
        i = int(gaps[0]) + 1
        raise RowsError(
            f"rows must be in time order, one step ({_minutes(step)}) apart; row {i + 1} "
            f"({str(times[i].astype('datetime64[s]')).replace('T', ' ')}) is "
            f"{_minutes(times[i] - times[i - 1])} after the row before it"
        )
    return times, values


def _needs(spec: dict[str, Any]) -> str:
    rows = int(_offsets(spec)[-1]) + 1
    return (
        f"the model needs {rows} consecutive rows ({spec['lookback_hours']:g} h) for one forecast"
    )


def _minutes(delta: np.timedelta64) -> str:
    minutes = delta.astype("timedelta64[s]").astype(np.int64) / 60.0
    return f"{minutes:g} minutes"


def time_text(times: np.ndarray) -> list[str]:
    """Times as ``YYYY-MM-DD HH:MM:SS`` (how `search predict` writes them)."""
    return [
        str(np.datetime_as_string(t, unit="s")).replace("T", " ")
        for t in np.asarray(times).astype("datetime64[s]")
    ]


def forecast_frame(
    spec: dict[str, Any], frame: Any, predict: Callable[[np.ndarray], Any]
) -> pd.DataFrame:
    """Raw rows -> one row per complete window and step, as `search predict` writes them:
    ``issued_at`` (the time of the window's last row), ``step`` (1: one step ahead), ``time``
    (the time the forecast is for) and ``forecast <target>`` (in the target's units)."""
    times, values = read_rows(spec, frame)
    return _frame(spec, forecast(spec, times, values, predict))


def quantile_column(level: float, target: str) -> str:
    """The column of one quantile level: ``q0.1 <target>``."""
    return f"q{level:g} {target}"


def _frame(spec: dict[str, Any], result: Forecast) -> pd.DataFrame:
    steps = result.steps if result.steps is not None else np.ones(len(result.values), np.int64)
    columns = {
        "issued_at": time_text(result.made_from),
        "step": steps,
        "time": time_text(result.times),
        f"forecast {spec['target']}": result.values.astype(np.float64),
    }
    if result.quantiles is not None and result.levels:
        for j, level in enumerate(result.levels):
            columns[quantile_column(level, spec["target"])] = result.quantiles[:, j].astype(
                np.float64
            )
    return pd.DataFrame(columns)
