"""Weather records as repaired, regular time series, each with a data-quality report.

Three kinds of source:

* ``"jena-2020"``: the 2020 record of the Jena MPI-BGC roof station, shipped with the package
  (``data/jena_weather_2020.csv.gz``, verified against ``data/MANIFEST.json``). Offline.
* ``"jena-2009-2016"``: the classic Keras tutorial file, downloaded on request from the Keras
  dataset URL (``SEARCH_JENA_URL`` overrides it), unzipped and cached in the user cache folder
  (``cache_dir``, else ``SEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/search``, else
  ``~/.cache/search``). No checksum of that file is published, so it is verified by structure
  (its exact header and 420,551 data rows) on first use, and the sha256 computed then is recorded
  beside it (``jena_climate_2009_2016.csv.sha256``) and checked on every later load. Setting
  ``SEARCH_JENA_SHA256`` (or passing ``expected_sha256`` to :func:`fetch_jena_2009_2016`) pins a
  hash instead.
* any other string: the path of a CSV file with a time column and numeric columns.

Reading a CSV file (the report records each choice):

* encoding (``report["encoding"]``): UTF-8, with or without a byte-order mark (``utf-8`` /
  ``utf-8-sig``; the mark never ends up in a column name), else Latin-1 (``latin-1``), the
  station's own export format (``T (°C)``, ``rho (g/m³)``, ``µ``). Column names keep their
  characters: a target is named as the file spells it.
* columns: the target defaults to ``T (degC)``; a file without that column is an error asking
  for ``--target``, listing the numeric columns. The features default to the 14 Jena columns
  for the named sources and for a file holding all of them, and otherwise to every numeric
  column except the time column (``report["features_chosen"] == "all numeric columns"``; the
  others are listed in ``report["non_numeric_columns"]``). A column is numeric when every cell
  that is not blank is a number and at least one is neither blank nor ``-9999``.
* the time column (``report["time_format"]``, ``report["time_format_reason"]``) follows this
  rule unless ``time_format`` (a strptime format, used as is) is given. The first value's form
  picks the format, which every row must then have:

  - ISO 8601, year first: ``2020-01-31 13:00[:00]``, also with ``T`` for the space, fractional
    seconds, a UTC offset (converted to UTC) or the date alone (reported as ``ISO8601``);
  - year first with slashes: ``2020/01/31 13:00[:00]``;
  - dotted, always day first (the classic Jena file): ``31.01.2020 13:00[:00]``;
  - slashes with the year last, ``D/M/YYYY`` or ``M/D/YYYY`` (as US exports write them):
    month first if some value's second field is above 12, day first if some value's first field
    is; a column where every value reads both ways is ambiguous, and one with both kinds mixed
    is inconsistent: both are errors asking for ``--time-format`` (e.g.
    ``--time-format "%d/%m/%Y %H:%M"``).

  The time of day is ``H:MM`` or ``H:MM:SS`` (24-hour, or 12-hour with ``AM``/``PM``), or absent.
  Any other form is an error asking for ``--time-format``. The step (``report["step_minutes"]``,
  ``report["steps_per_hour"]``: 6 for 10-minute files, 1 for hourly ones) is inferred below.

Repairs, all reported in :attr:`Dataset.report` (a plain JSON-serializable dict):

* the time column must be in non-decreasing order (a file that goes back in time is an error
  naming the first out-of-order row: we do not guess how to sort it);
* duplicated timestamps are dropped (the first row is kept) and listed;
* the step is the most common interval; it must cover at least half of the intervals and every
  timestamp must lie on the grid it defines, otherwise the time column is irregular (error);
* missing steps are reinserted on the regular grid and, like ``-9999`` sentinels and non-finite
  cells of the used columns, filled by linear interpolation in time (at the ends of the series:
  the nearest value). A run of more than ``max_gap_steps`` consecutive missing steps (or missing
  values in one column) is an error naming the run: it is never silently bridged.

Only the columns used (features and target) are repaired; sentinels in other columns are still
counted in the report (``sentinels_unused_columns``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from search._resources import data_dir
from search.data.csv_reading import (
    check_columns,
    check_feature_names,
    choose_columns,
    numeric_column,
    read_csv,
)
from search.data.dataset import Dataset, target_index, unit_of
from search.data.jena import (
    JENA_2009_FILE,
    JENA_2009_ROWS,
    JENA_2009_URL,
    JENA_FEATURES,
    JENA_TARGET,
    SENTINEL,
    SOURCES,
    DownloadProgress,
    cache_root,
    embedded_2020,
    fetch_jena,
    jena_2009_2016_path,
    sha256_file,
)
from search.data.repair import DEFAULT_MAX_GAP_STEPS, actions, mark_missing, repair
from search.data.time_formats import parse_times
from search.data.wording import MAX_LISTED, iso, plain_number
from search.errors import DataError

__all__ = [
    "DEFAULT_MAX_GAP_STEPS",
    "JENA_2009_ROWS",
    "JENA_2009_URL",
    "JENA_FEATURES",
    "JENA_TARGET",
    "SENTINEL",
    "SOURCES",
    "Dataset",
    "cache_root",
    "fetch_jena_2009_2016",
    "jena_2009_2016_path",
    "load_dataset",
    "target_index",
    "unit_of",
    "report_downloads_to",
    "validate_source",
]

_DEFAULT_TIME_COLUMNS = {"jena-2020": "date", "jena-2009-2016": "Date Time"}

#: Told of downloads (search.data.jena.DownloadProgress); the CLI sets it, None is silent.
_download_progress: DownloadProgress | None = None


def report_downloads_to(progress: DownloadProgress | None) -> None:
    """Have ``progress`` told of every download's bytes from now on (None: silence)."""
    global _download_progress
    _download_progress = progress


def validate_source(source: str) -> None:
    """Cheap check (no Keras, no parsing): a named source, or a readable file. Raises DataError."""
    if source in SOURCES:
        return
    if not isinstance(source, str) or not source.strip():
        raise DataError(
            f"data source must be one of {', '.join(SOURCES)} or the path of a CSV file, "
            f"got {source!r}"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data file not found: {source} (expected one of {', '.join(SOURCES)} "
            "or the path of an existing CSV file)"
        )
    if not path.is_file():
        raise DataError(f"data source {source} is not a file (expected a CSV file)")
    if not os.access(path, os.R_OK):
        raise DataError(f"data file {source} is not readable (check its permissions)")


def fetch_jena_2009_2016(
    cache_dir: str | Path | None = None,
    download: bool = True,
    *,
    url: str | None = None,
    expected_sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Path of the verified jena_climate_2009_2016.csv, downloading and unzipping it if needed.

    ``url`` defaults to ``SEARCH_JENA_URL`` or the Keras dataset URL; ``expected_sha256`` to
    ``SEARCH_JENA_SHA256``. A ``jena_climate_2009_2016.csv.zip`` placed in the cache folder by
    hand is unzipped too.
    """
    return _fetch_jena(cache_dir, download, url, expected_sha256, timeout)[0]


def _fetch_jena(
    cache_dir: str | Path | None,
    download: bool,
    url: str | None = None,
    expected_sha256: str | None = None,
    timeout: float = 60.0,
) -> tuple[Path, str]:
    return fetch_jena(
        cache_dir,
        download,
        url,
        expected_sha256,
        timeout,
        rows=JENA_2009_ROWS,
        progress=_download_progress,
    )


def load_dataset(
    source: str = "jena-2020",
    *,
    time_column: str | None = None,
    target: str | None = None,
    features: list[str] | None = None,
    time_format: str | None = None,
    max_gap_steps: int = DEFAULT_MAX_GAP_STEPS,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> Dataset:
    """Load, check and repair a source (a name in SOURCES or a CSV path) into a :class:`Dataset`.

    Defaults (see the module docstring): the 14 Jena features, or every numeric column of a CSV
    without them; target ``T (degC)``; the time column is ``date`` / ``Date Time`` for the named
    sources and the first column of a user CSV, read by the time rule unless ``time_format`` (a
    strptime format) is given. Every problem is a one-line :class:`DataError`.
    """
    if int(max_gap_steps) < 0:
        raise DataError(f"max_gap_steps must be >= 0, got {max_gap_steps}")
    max_gap_steps = int(max_gap_steps)
    if features is not None:
        check_feature_names(features)

    report: dict[str, Any] = {"source": source}
    path = _locate(source, cache_dir, download, report)
    frame, report["encoding"] = read_csv(path)
    columns = [str(c) for c in frame.columns]
    if time_column is None:
        time_column = _DEFAULT_TIME_COLUMNS.get(source)
    auto_time = time_column is None
    if time_column is None:
        if not columns:
            raise DataError(f"{path}: the file has no columns")
        time_column = columns[0]
    rows_raw = len(frame)
    if rows_raw < 2:
        raise DataError(f"{path}: has {rows_raw} data row(s); a time series needs many more")
    check_columns(path, columns, [time_column])
    features, target = choose_columns(source, path, frame, time_column, features, target, report)
    used = features + ([target] if target not in features else [])
    if time_column in used:
        raise DataError(
            f"{path}: column '{time_column}' is the time column and cannot also be a feature or "
            "the target"
        )
    check_columns(path, columns, used)

    times, report["time_format"], report["time_format_reason"] = parse_times(
        frame[time_column], time_column, path, auto=auto_time, time_format=time_format
    )
    raw = np.empty((rows_raw, len(used)), dtype=np.float64)
    for j, col in enumerate(used):
        raw[:, j] = numeric_column(frame[col], col, path)
    missing = mark_missing(raw, times, used, frame, time_column)
    repaired = repair(times, raw, used, path, time_column, max_gap_steps)
    report.update(
        time_column=time_column, features=list(features), target=target, rows_raw=rows_raw
    )
    return _repaired_dataset(
        source, repaired, features, target, used, max_gap_steps, missing, report
    )


def _repaired_dataset(
    source: str,
    repaired: tuple[Any, ...],
    features: list[str],
    target: str,
    used: list[str],
    max_gap_steps: int,
    missing: dict[str, Any],
    report: dict[str, Any],
) -> Dataset:
    """The Dataset of the repaired grid, its report completed (``missing``: from mark_missing)."""
    grid_times, grid, dup_info, gaps, step_ns, filled_values = repaired
    values = np.ascontiguousarray(grid[:, : len(features)], dtype=np.float32)
    target_values = np.ascontiguousarray(grid[:, used.index(target)], dtype=np.float32)
    steps_per_hour = 3600e9 / step_ns
    report.update(
        rows=int(len(grid_times)),
        start=iso(grid_times[0]),
        end=iso(grid_times[-1]),
        step_minutes=plain_number(step_ns / 60e9),
        steps_per_hour=plain_number(steps_per_hour),
        duplicates=dup_info,
        gaps=gaps[:MAX_LISTED],
        gap_count=len(gaps),
        max_gap_steps=max_gap_steps,
        sentinel_value=SENTINEL,
        sentinels=missing["sentinels"],
        sentinel_times=missing["sentinel_times"],
        sentinels_unused_columns=missing["sentinels_unused_columns"],
        nonfinite=missing["nonfinite"],
        filled_steps=int(sum(g["missing_steps"] for g in gaps)),
        filled_values={c: n for c, n in filled_values.items() if n},
        actions=actions(dup_info, gaps, missing),
    )
    return Dataset(
        name=source,
        times=grid_times,
        values=values,
        feature_names=list(features),
        target=target_values,
        target_name=target,
        steps_per_hour=float(steps_per_hour),
        report=report,
    )


def _locate(
    source: str, cache_dir: str | Path | None, download: bool, report: dict[str, Any]
) -> Path:
    """The CSV file of a source (verified for the named ones); its hash goes into ``report``."""
    if source == "jena-2020":
        path, digest = embedded_2020(data_dir())
        report.update(sha256=digest, sha256_of="jena_weather_2020.csv.gz", sha256_verified=True)
    elif source == "jena-2009-2016":
        path, digest = _fetch_jena(cache_dir, download)
        report.update(sha256=digest, sha256_of=JENA_2009_FILE, sha256_verified=True)
    else:
        validate_source(source)
        path = Path(source).expanduser()
        report.update(sha256=sha256_file(path), sha256_of=path.name, sha256_verified=False)
    report["path"] = str(path)
    return path
