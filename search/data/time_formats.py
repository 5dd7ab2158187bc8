"""The time column: read by the time rule (search.data.sources's docstring) or a given
strptime format, as naive datetime64[ns] (UTC where values carry an offset)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from search.data.wording import one_line
from search.errors import DataError

# The time rule (module docstring): the first value's form picks the format.
_ISO_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:[ T]|$)")
_DATE_FORMS = (
    (re.compile(r"\d{4}/\d{1,2}/\d{1,2}"), "%Y/%m/%d", "year first, slashes"),
    (re.compile(r"\d{1,2}\.\d{1,2}\.\d{4}"), "%d.%m.%Y", "dotted, day first"),
)
_SLASH_YEAR_LAST = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")
_TIME_PART = re.compile(r"(?P<sep>[ T])\d{1,2}:\d{2}(?P<seconds>:\d{2})?(?P<ampm> ?[AaPp][Mm])?")


def parse_times(
    column: pd.Series, name: str, path: Path, auto: bool, time_format: str | None = None
) -> tuple[np.ndarray, str, str]:
    """The time column as naive datetime64[ns] (UTC where values carry an offset), the format
    used and the reason for it (the time rule of the module docstring, or ``time_format``)."""
    how = "the first column" if auto else "time column"
    fix = "; pass time_column=<name of the date-time column>" if auto else ""
    where = f"{path}: {how} '{name}'"
    if time_format is None and (
        pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    ):
        sample = column.iloc[0] if len(column) else None
        raise DataError(
            f"{where} holds numbers (e.g. {sample!r}), not date-times like "
            f"'2020-01-01 00:10:00'{fix}"
        )
    missing = column.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{where} is empty at data row {i + 1} (CSV line {i + 2}); every row needs a "
            f"date-time{fix}"
        )
    text = column.astype(str).str.strip()
    if time_format is None:
        fmt, reason = _infer_time_format(text, where, fix)
    else:
        fmt, reason = time_format, "given (time_format)"
    parsed = _to_datetimes(text, fmt, where)
    bad = parsed.isna().to_numpy()
    if bad.all():
        expected = f"with time format {fmt!r}" if time_format else "by the time rule"
        raise DataError(
            f"{where} does not hold date-times readable {expected} (first value "
            f"{text.iloc[0]!r}){fix}"
        )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where} has a value that is not a date-time like the others: "
            f"{text.iloc[i]!r} at data row {i + 1} (CSV line {i + 2}); expected the format {fmt!r}"
        )
    naive = parsed.dt.tz_localize(None)
    return naive.to_numpy().astype("datetime64[ns]"), fmt, reason


def _to_datetimes(text: pd.Series, fmt: str, where: str) -> pd.Series:
    """``text`` read with ``fmt`` (a strptime format or ``ISO8601``) in UTC; NaT where it fails."""
    try:
        return pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(
            f"{where}: the time format {fmt!r} is not usable ({one_line(str(exc))}); give a "
            'strptime format such as --time-format "%Y-%m-%d %H:%M"'
        ) from None


def _infer_time_format(text: pd.Series, where: str, fix: str) -> tuple[str, str]:
    """The format of the time column by the time rule (module docstring), and the reason."""
    first = str(text.iloc[0])
    if _ISO_DATE.match(first):
        return "ISO8601", "ISO 8601, year first"
    for pattern, date_format, reason in _DATE_FORMS:
        match = pattern.match(first)
        fmt = _with_time_part(date_format, first[match.end() :]) if match else None
        if fmt is not None:
            return fmt, reason
    match = _SLASH_YEAR_LAST.match(first)
    fmt = _with_time_part("%d/%m/%Y", first[match.end() :]) if match else None
    if fmt is not None:
        return _slash_order(text, fmt, where)
    raise DataError(
        f"{where} does not hold date-times in a known form (first value {first!r}); expected "
        "YYYY-MM-DD HH:MM[:SS], DD.MM.YYYY HH:MM[:SS] or M/D/YYYY H:MM, or pass --time-format "
        f'with a strptime format such as "%Y-%m-%d %H:%M"{fix}'
    )


def _with_time_part(date_format: str, rest: str) -> str | None:
    """``date_format`` completed by the format of a value's time part ``rest``; None if unknown."""
    if not rest:
        return date_format
    match = _TIME_PART.fullmatch(rest)
    if match is None:
        return None
    ampm = match["ampm"] or ""
    hour = "%I" if ampm else "%H"
    seconds = ":%S" if match["seconds"] else ""
    suffix = (" %p" if ampm.startswith(" ") else "%p") if ampm else ""
    return f"{date_format}{match['sep']}{hour}:%M{seconds}{suffix}"


def _slash_order(text: pd.Series, day_first: str, where: str) -> tuple[str, str]:
    """Day-first or month-first format of a ``D/M/YYYY`` or ``M/D/YYYY`` column (time rule)."""
    month_first = day_first.replace("%d/%m", "%m/%d", 1)
    fields = text.str.extract(r"^(\d{1,2})/(\d{1,2})/")
    above = [np.flatnonzero((pd.to_numeric(fields[k]) > 12).to_numpy()) for k in (0, 1)]
    if above[0].size and above[1].size:
        i, j = int(above[0][0]), int(above[1][0])
        raise DataError(
            f"{where} mixes day-first and month-first dates: {text.iloc[i]!r} at data row "
            f"{i + 1} and {text.iloc[j]!r} at data row {j + 1}; fix the file or pass "
            f'--time-format "{day_first}" (day first) or --time-format "{month_first}" '
            "(month first)"
        )
    for k, fmt, order in ((0, day_first, "day"), (1, month_first, "month")):
        if above[k].size:
            i = int(above[k][0])
            field_name = "first" if k == 0 else "second"
            return fmt, (
                f"slashes, {order} first (inferred: {text.iloc[i]!r} at data row {i + 1} has a "
                f"{field_name} field above 12)"
            )
    raise DataError(
        f"{where} is ambiguous: every date (e.g. {text.iloc[0]!r}) reads both day first and "
        f'month first; pass --time-format "{day_first}" (day first) or --time-format '
        f'"{month_first}" (month first)'
    )
