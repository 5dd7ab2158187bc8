"""The split's data-quality report: each part's rows, blocks, first and last times and the
calendar months it covers, and a warning for a part covering months train does not."""

from __future__ import annotations

from typing import Any

import numpy as np

from search.data.split_layout import EPS, SPLITS, PreparedSeries

__all__ = ["MIN_MONTH_DAYS", "split_report"]

MIN_MONTH_DAYS = 3.0
"""A part covers a calendar month when it holds at least this many days of rows in it."""
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def split_report(prepared: PreparedSeries) -> dict[str, Any]:
    """Plain JSON-able summary of a prepared split for the data-quality report.

    ``policy`` and the policy's settings; ``rows``; for each part (``train``, ``val``, ``test``):
    its ``rows``, its number of ``blocks`` (row ranges) and, when the series has times, its
    ``first`` and ``last`` timestamps (ISO), the calendar ``months`` (``"2020-01"``) in which it
    holds at least ``min_month_days`` days of rows and its ``partial_months`` (some rows, fewer
    days). ``warnings``: one line per part (val, test) naming the months of the year (by name)
    that the part covers and train does not; the few days at a part's edge (a partial month)
    neither count as coverage nor raise a warning.
    """
    layout = prepared.layout
    steps_per_hour = float(prepared.steps_per_hour)
    times = prepared.times
    has_times = times is not None and len(times) == layout.n_rows
    report: dict[str, Any] = dict(prepared.split.describe(steps_per_hour))
    report["rows"] = int(layout.n_rows)
    if has_times:
        report["min_month_days"] = MIN_MONTH_DAYS
    covered: dict[str, set[int]] = {}
    for part in SPLITS:
        ranges = layout._ranges(part)
        entry: dict[str, Any] = {"rows": int(layout.rows(part)), "blocks": len(ranges)}
        if has_times and times is not None and entry["rows"]:
            part_times = np.asarray(times).astype("datetime64[s]")[layout.mask(part)]
            entry["first"] = _iso(part_times[0])
            entry["last"] = _iso(part_times[-1])
            months, counts = np.unique(part_times.astype("datetime64[M]"), return_counts=True)
            full = counts >= MIN_MONTH_DAYS * 24 * steps_per_hour - EPS
            entry["months"] = [str(m) for m in months[full]]
            entry["partial_months"] = [str(m) for m in months[~full]]
            covered[part] = {int(m) % 12 for m in months[full].astype(np.int64)}
        report[part] = entry
    warnings = []
    if prepared.split.name.startswith("blocked"):
        remedy = (
            "shorter blocks (--split blocked:14) or more rows (--max-rows, a longer file) cover it"
        )
    else:
        remedy = (
            "`--split blocked` (a new study, or --fresh) interleaves train, val and test through "
            "the year"
        )
    for part in ("val", "test"):
        missing = sorted(covered.get(part, set()) - covered.get("train", set()))
        if missing:
            names = ", ".join(_MONTH_NAMES[m] for m in missing)
            warnings.append(
                f"{part} covers {names}, where train holds fewer than {MIN_MONTH_DAYS:g} days of "
                f"rows: {part} scores of the {prepared.split.name} split include months of the "
                f"year the model never trained on; {remedy}"
            )
    report["warnings"] = warnings
    return report


def _iso(value: Any) -> str:
    return str(np.datetime_as_string(np.asarray(value).astype("datetime64[s]")))
