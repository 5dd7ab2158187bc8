"""Repairing a time series onto its regular grid (the rules are in search.data.sources's
docstring): order, duplicates, the step, gaps, sentinels and interpolation, each reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.data.jena import SENTINEL
from search.data.wording import MAX_LISTED, duration, iso, iso_ns
from search.errors import DataError

#: Default limit on a run of missing steps bridged by interpolation: 36 ten-minute steps = 6 hours.
DEFAULT_MAX_GAP_STEPS = 36


def mark_missing(
    raw: np.ndarray, times: np.ndarray, used: list[str], frame: pd.DataFrame, time_column: str
) -> dict[str, Any]:
    """Sentinels and non-finite cells of the used columns: counted on the file's rows, then set
    to NaN in ``raw`` (treated as missing); sentinels in the other numeric columns are counted.
    Returns the report's ``sentinels``, ``sentinel_times``, ``nonfinite`` and
    ``sentinels_unused_columns``."""
    is_sentinel = raw == SENTINEL
    is_nonfinite = ~np.isfinite(raw)
    sentinels = {c: int(n) for c, n in zip(used, is_sentinel.sum(axis=0), strict=True) if n}
    sentinel_times = {
        c: [iso(times[i]) for i in np.flatnonzero(is_sentinel[:, j])[:MAX_LISTED]]
        for j, c in enumerate(used)
        if c in sentinels
    }
    nonfinite = {c: int(n) for c, n in zip(used, is_nonfinite.sum(axis=0), strict=True) if n}
    raw[is_sentinel | is_nonfinite] = np.nan
    unused_sentinels = {}
    for col in [str(c) for c in frame.columns]:
        if col == time_column or col in used:
            continue
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series):
            n = int((series.to_numpy() == SENTINEL).sum())
            if n:
                unused_sentinels[col] = n
    return {
        "sentinels": sentinels,
        "sentinel_times": sentinel_times,
        "nonfinite": nonfinite,
        "sentinels_unused_columns": unused_sentinels,
    }


def repair(
    times: np.ndarray,
    raw: np.ndarray,
    used: list[str],
    path: Path,
    time_column: str,
    max_gap_steps: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[dict[str, Any]], int, dict[str, int]]:
    """Deduplicate, check order and step, reindex to the grid and interpolate. O(rows)."""
    t = times.view("int64")
    _check_order(t, times, path, time_column)
    dup, dup_info = _duplicates(t, raw, times)
    keep = ~dup
    t, raw, rows = t[keep], raw[keep], np.flatnonzero(keep)
    if len(t) < 2:
        raise DataError(f"{path}: only {len(t)} distinct timestamp(s); a time series needs many")
    step = _step(t, rows, times, path, time_column)
    pos = (t - t[0]) // step
    gaps = _gaps(t, pos, step, path, max_gap_steps)
    n_grid = int(pos[-1]) + 1
    grid = np.full((n_grid, raw.shape[1]), np.nan)
    grid[pos] = raw
    grid_times = (t[0] + np.arange(n_grid, dtype=np.int64) * step).view("datetime64[ns]")
    filled_values = _interpolate(grid, grid_times, used, path, max_gap_steps)
    return grid_times, grid, dup_info, gaps, step, filled_values


def _check_order(t: np.ndarray, times: np.ndarray, path: Path, time_column: str) -> None:
    back = np.flatnonzero(t[1:] < t[:-1])  # not np.diff: it overflows past 292 years
    if back.size:
        i = int(back[0]) + 1
        raise DataError(
            f"{path}: time column '{time_column}' goes back in time at data row {i + 1} "
            f"(CSV line {i + 2}): {iso(times[i])} after {iso(times[i - 1])}; the rows must be "
            "in time order (sort the file by time)"
        )
    if len(t) and int(t[-1]) - int(t[0]) > np.iinfo(np.int64).max:
        raise DataError(
            f"{path}: time column '{time_column}' spans {iso(times[0])} to {iso(times[-1])}, "
            "more than 292 years; a time series on a regular grid cannot span that"
        )


def _duplicates(
    t: np.ndarray, raw: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """The rows repeating the timestamp before them, and the report's ``duplicates``."""
    dup = np.concatenate([[False], t[1:] == t[:-1]])
    dup_rows = np.flatnonzero(dup)
    differing = 0
    if dup_rows.size:
        # duplicates are adjacent once the order is checked: compare with the kept (first) row
        keep_of = np.maximum.accumulate(np.where(dup, 0, np.arange(len(t))))
        a, b = raw[dup_rows], raw[keep_of[dup_rows]]
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        differing = int((~same.all(axis=1)).sum())
    dup_info: dict[str, Any] = {
        "count": int(dup_rows.size),
        "timestamps": [iso(times[i]) for i in dup_rows[:MAX_LISTED]],
        "rows_with_different_values": differing,
    }
    return dup, dup_info


def _step(t: np.ndarray, rows: np.ndarray, times: np.ndarray, path: Path, time_column: str) -> int:
    """The most common interval, in ns; it must be dominant and every time on its grid."""
    intervals = np.diff(t)
    steps, counts = np.unique(intervals, return_counts=True)
    step = int(steps[np.argmax(counts)])
    share = counts.max() / len(intervals)
    if share < 0.5:
        top = ", ".join(
            f"{duration(int(steps[k]))} x{int(counts[k])}" for k in np.argsort(-counts)[:3]
        )
        raise DataError(
            f"{path}: time column '{time_column}' is irregular: no dominant step (most common "
            f"intervals: {top}); expected one fixed step such as 10 minutes"
        )
    off = (t - t[0]) % step
    if off.any():
        k = int(np.flatnonzero(off)[0])
        i = int(rows[k])
        raise DataError(
            f"{path}: time column '{time_column}' is irregular: {iso(times[i])} at data row "
            f"{i + 1} (CSV line {i + 2}) is not on the {duration(step)} grid starting at "
            f"{iso(times[rows[0]])}"
        )
    return step


def _gaps(
    t: np.ndarray, pos: np.ndarray, step: int, path: Path, max_gap_steps: int
) -> list[dict[str, Any]]:
    """The runs of missing steps; one longer than ``max_gap_steps`` is an error."""
    jumps = np.flatnonzero(np.diff(pos) > 1)
    gaps: list[dict[str, Any]] = []
    for jump in jumps:
        missing = int(pos[jump + 1] - pos[jump] - 1)
        gaps.append(
            {
                "start": iso_ns(int(t[jump]) + step),
                "end": iso_ns(int(t[jump + 1]) - step),
                "missing_steps": missing,
            }
        )
    too_long = [g for g in gaps if g["missing_steps"] > max_gap_steps]
    if too_long:
        g = max(too_long, key=lambda g: g["missing_steps"])
        more = f" (and {len(too_long) - 1} more)" if len(too_long) > 1 else ""
        raise DataError(
            f"{path}: {g['missing_steps']} missing time steps of {duration(step)} from "
            f"{g['start']} to {g['end']}{more} exceed max_gap_steps={max_gap_steps}; raise "
            "max_gap_steps to interpolate across the gap, or cut the file to a part without it"
        )
    return gaps


def _interpolate(
    grid: np.ndarray, grid_times: np.ndarray, used: list[str], path: Path, max_gap_steps: int
) -> dict[str, int]:
    """Fill each column's missing values in place, linearly in time; the counts filled."""
    filled_values: dict[str, int] = {}
    index = np.arange(len(grid), dtype=np.float64)
    for j, col in enumerate(used):
        missing = np.isnan(grid[:, j])
        filled_values[col] = int(missing.sum())
        if not missing.any():
            continue
        if missing.all():
            raise DataError(
                f"{path}: column '{col}' has no valid value (all missing or {SENTINEL:g})"
            )
        run_start, run_len = _longest_run(missing)
        if run_len > max_gap_steps:
            raise DataError(
                f"{path}: column '{col}' has {run_len} consecutive missing values (empty, "
                f"non-finite or {SENTINEL:g}) from {iso(grid_times[run_start])} to "
                f"{iso(grid_times[run_start + run_len - 1])}, more than max_gap_steps="
                f"{max_gap_steps}; raise max_gap_steps or drop the column"
            )
        good = ~missing
        grid[missing, j] = np.interp(index[missing], index[good], grid[good, j])
    return filled_values


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    padded = np.concatenate([[0], mask.view(np.int8), [0]])
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    k = int(np.argmax(lengths))
    return int(starts[k]), int(lengths[k])


def actions(
    dup_info: dict[str, Any], gaps: list[dict[str, Any]], missing: dict[str, Any]
) -> list[str]:
    """The report's ``actions``: one line per repair made (``missing``: from mark_missing)."""
    done: list[str] = []
    if dup_info["count"]:
        done.append(
            f"dropped {dup_info['count']} row(s) with a duplicated timestamp (kept the first)"
        )
    if gaps:
        missing_total = int(sum(g["missing_steps"] for g in gaps))
        done.append(
            f"reinserted {missing_total} missing time step(s) in {len(gaps)} gap(s) and filled "
            "them by linear interpolation in time"
        )
    for col, n in missing["sentinels"].items():
        done.append(
            f"treated {n} sentinel value(s) {SENTINEL:g} in '{col}' as missing and interpolated"
        )
    for col, n in missing["nonfinite"].items():
        done.append(
            f"treated {n} empty or non-finite value(s) in '{col}' as missing and interpolated"
        )
    for col, n in missing["sentinels_unused_columns"].items():
        done.append(f"left {n} sentinel value(s) in unused column '{col}' alone")
    if not done:
        done.append("no repair needed")
    return done
