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

import bz2
import dataclasses
import difflib
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search._resources import data_dir
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
    "validate_source",
]

JENA_FEATURES: list[str] = [
    "p (mbar)",
    "T (degC)",
    "Tpot (K)",
    "Tdew (degC)",
    "rh (%)",
    "VPmax (mbar)",
    "VPact (mbar)",
    "VPdef (mbar)",
    "sh (g/kg)",
    "H2OC (mmol/mol)",
    "rho (g/m**3)",
    "wv (m/s)",
    "max. wv (m/s)",
    "wd (deg)",
]
JENA_TARGET = "T (degC)"
SOURCES = ("jena-2020", "jena-2009-2016")

#: The missing-value code of the Jena station files.
SENTINEL = -9999.0
#: Default limit on a run of missing steps bridged by interpolation: 36 ten-minute steps = 6 hours.
DEFAULT_MAX_GAP_STEPS = 36

JENA_2020_FILE = "jena_weather_2020.csv.gz"
JENA_2009_URL = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/jena_climate_2009_2016.csv.zip"
)
JENA_2009_FILE = "jena_climate_2009_2016.csv"
JENA_2009_ROWS = 420_551
JENA_2009_HEADER = ["Date Time", *JENA_FEATURES]

_BOM = b"\xef\xbb\xbf"
_BOM_TEXTS = ("\ufeff", "\u00ef\u00bb\u00bf")  # a BOM decoded as UTF-8, or as Latin-1
_COMPRESSED: tuple[tuple[bytes, Callable[..., Any]], ...] = (
    (b"\x1f\x8b", gzip.open),
    (b"BZh", bz2.open),
    (b"\xfd7zXZ\x00", lzma.open),
)
# The time rule (module docstring): the first value's form picks the format.
_ISO_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:[ T]|$)")
_DATE_FORMS = (
    (re.compile(r"\d{4}/\d{1,2}/\d{1,2}"), "%Y/%m/%d", "year first, slashes"),
    (re.compile(r"\d{1,2}\.\d{1,2}\.\d{4}"), "%d.%m.%Y", "dotted, day first"),
)
_SLASH_YEAR_LAST = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")
_TIME_PART = re.compile(r"(?P<sep>[ T])\d{1,2}:\d{2}(?P<seconds>:\d{2})?(?P<ampm> ?[AaPp][Mm])?")
_DEFAULT_TIME_COLUMNS = {"jena-2020": "date", "jena-2009-2016": "Date Time"}
_MAX_LISTED = 50  # duplicates / gaps / sentinel times listed in the report (counts stay exact)


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
        report["end"] = _iso(self.times[n_rows - 1])
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


# ----------------------------------------------------------------------------------------------
# sources


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


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The user cache folder: cache_dir, else SEARCH_CACHE_DIR, XDG_CACHE_HOME/search, ~/.cache/search."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("SEARCH_CACHE_DIR"):
        return Path(os.environ["SEARCH_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "search"
    return Path.home() / ".cache" / "search"


def jena_2009_2016_path(cache_dir: str | Path | None = None) -> Path:
    """Where the unzipped jena_climate_2009_2016.csv lives (or must be placed by hand)."""
    return cache_root(cache_dir) / JENA_2009_FILE


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
    url = url or os.environ.get("SEARCH_JENA_URL") or JENA_2009_URL
    expected = (expected_sha256 or os.environ.get("SEARCH_JENA_SHA256") or "").strip().lower()
    target = jena_2009_2016_path(cache_dir)
    manual = (
        f"download {JENA_2009_URL} elsewhere, unzip it and place {JENA_2009_FILE} at {target} "
        "(or set SEARCH_CACHE_DIR to a folder holding it)"
    )
    if target.is_file():
        return target, _verify_jena_csv(target, expected)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache folder {target.parent} ({exc}); {manual}"
        ) from None
    local_zip = target.with_name(JENA_2009_FILE + ".zip")
    if local_zip.is_file():
        return target, _install_jena_archive(local_zip, target, expected)
    if not download:
        raise DataError(f"jena-2009-2016 is not in the cache and downloading is off; {manual}")
    fd, part_name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=target.parent)
    part = Path(part_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                request = urllib.request.Request(url, headers={"User-Agent": "search-data/0.1"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    _copy_with_progress(response, out, url)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(
                f"cannot download jena-2009-2016 from {url} ({_one_line(str(reason))}); "
                f"without network: {manual}"
            ) from None
        return target, _install_jena_archive(part, target, expected)
    finally:
        part.unlink(missing_ok=True)


def _copy_with_progress(response: Any, out: Any, url: str) -> None:
    """Copy a download to ``out``, showing MB done (of the total) on a terminal's stderr."""
    total = int(response.headers.get("Content-Length") or 0)
    show = sys.stderr.isatty()
    done = 0
    while chunk := response.read(1 << 20):
        out.write(chunk)
        done += len(chunk)
        if show:
            of = f" of {total / 1e6:.1f}" if total else ""
            sys.stderr.write(f"\rdownloading {url}: {done / 1e6:.1f}{of} MB")
            sys.stderr.flush()
    if show:
        sys.stderr.write("\n")


def _install_jena_archive(archive: Path, target: Path, expected: str) -> str:
    """Unzip (or take as is, if it is a plain CSV) ``archive`` into ``target``, verified."""
    fd, tmp_name = tempfile.mkstemp(prefix=".unzip-", suffix=".csv", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    members = [
                        m
                        for m in zf.namelist()
                        if m.lower().endswith(".csv") and not m.startswith("__MACOSX")
                    ]
                    if not members:
                        raise DataError(
                            f"the archive {archive} holds no CSV file (expected {JENA_2009_FILE})"
                        )
                    named = [m for m in members if Path(m).name == JENA_2009_FILE]
                    with zf.open((named or members)[0]) as src:
                        shutil.copyfileobj(src, out, length=1 << 20)
            else:
                with open(archive, "rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
        digest = _verify_jena_csv(tmp, expected, shown_as=target)
        os.replace(tmp, target)
        _sidecar(target).write_text(f"{digest}  {JENA_2009_FILE}\n")
        return digest
    except zipfile.BadZipFile as exc:
        raise DataError(f"the archive {archive} is not a valid zip file ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _sidecar(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".sha256")


def _verify_jena_csv(path: Path, expected: str, shown_as: Path | None = None) -> str:
    """Check the file against a pinned hash, the hash recorded at first use, or its structure.

    Returns the file's sha256. ``shown_as`` is the final name of a file still being installed
    (its hash is recorded by the caller once it is in place).
    """
    shown = shown_as or path
    digest = _sha256_file(path)
    if expected:
        if digest != expected:
            raise DataError(
                f"{shown}: sha256 {digest} does not match the expected {expected} "
                "(SEARCH_JENA_SHA256); delete the file to download it again"
            )
        _check_jena_header(path, shown)
        return digest
    sidecar = _sidecar(path)
    recorded = ""
    if shown_as is None and sidecar.is_file():
        words = sidecar.read_text().split()
        recorded = words[0].lower() if words else ""
    if recorded:
        if digest != recorded:
            raise DataError(
                f"{shown}: sha256 {digest} differs from {recorded} recorded in {sidecar} when the "
                "file was first verified; delete both files to download it again"
            )
        return digest
    _check_jena_header(path, shown)
    rows = _count_data_rows(path)
    if rows != JENA_2009_ROWS:
        raise DataError(
            f"{shown}: has {rows} data rows, expected {JENA_2009_ROWS} for {JENA_2009_FILE} "
            "(truncated or a different file); delete it to download it again"
        )
    if shown_as is None:
        sidecar.write_text(f"{digest}  {JENA_2009_FILE}\n")
    return digest


def _check_jena_header(path: Path, shown: Path) -> None:
    with open(path, "rb") as fh:
        first = fh.readline().decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    header = [name.strip().strip('"') for name in first.split(",")]
    if header != JENA_2009_HEADER:
        raise DataError(
            f"{shown}: header {_preview(header)} is not the jena_climate_2009_2016.csv header "
            f"{_preview(JENA_2009_HEADER)}"
        )


def _count_data_rows(path: Path) -> int:
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return lines - 1


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest() -> dict[str, Any]:
    path = data_dir() / "MANIFEST.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the data manifest {path} ({exc}); reinstall search") from None


def _embedded_2020() -> tuple[Path, str]:
    path = data_dir() / JENA_2020_FILE
    if not path.is_file():
        raise DataError(f"the embedded data file {path} is missing; reinstall search")
    entry = _manifest()["files"][JENA_2020_FILE]
    digest = _sha256_file(path)
    if digest != entry["sha256_gz"]:
        raise DataError(
            f"the embedded data file {path} is damaged: sha256 {digest}, expected "
            f"{entry['sha256_gz']} (MANIFEST.json); reinstall search"
        )
    return path, digest


# ----------------------------------------------------------------------------------------------
# loading and repair


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
        _check_feature_names(features)

    report: dict[str, Any] = {"source": source}
    path = _locate(source, cache_dir, download, report)
    frame, report["encoding"] = _read_csv(path)
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
    _check_columns(path, columns, [time_column])
    features, target = _choose_columns(source, path, frame, time_column, features, target, report)
    used = features + ([target] if target not in features else [])
    if time_column in used:
        raise DataError(
            f"{path}: column '{time_column}' is the time column and cannot also be a feature or "
            "the target"
        )
    _check_columns(path, columns, used)

    times, report["time_format"], report["time_format_reason"] = _parse_times(
        frame[time_column], time_column, path, auto=auto_time, time_format=time_format
    )
    raw = np.empty((rows_raw, len(used)), dtype=np.float64)
    for j, col in enumerate(used):
        raw[:, j] = _numeric_column(frame[col], col, path)

    # Sentinels and non-finite cells: counted on the file's rows, then treated as missing.
    is_sentinel = raw == SENTINEL
    is_nonfinite = ~np.isfinite(raw)
    sentinels = {c: int(n) for c, n in zip(used, is_sentinel.sum(axis=0), strict=True) if n}
    sentinel_times = {
        c: [_iso(times[i]) for i in np.flatnonzero(is_sentinel[:, j])[:_MAX_LISTED]]
        for j, c in enumerate(used)
        if c in sentinels
    }
    nonfinite = {c: int(n) for c, n in zip(used, is_nonfinite.sum(axis=0), strict=True) if n}
    raw[is_sentinel | is_nonfinite] = np.nan
    unused_sentinels = {}
    for col in columns:
        if col == time_column or col in used:
            continue
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series):
            n = int((series.to_numpy() == SENTINEL).sum())
            if n:
                unused_sentinels[col] = n

    repaired = _repair(times, raw, used, path, time_column, max_gap_steps)
    grid_times, grid, dup_info, gaps, step_ns, filled_values = repaired

    values = np.ascontiguousarray(grid[:, : len(features)], dtype=np.float32)
    target_values = np.ascontiguousarray(grid[:, used.index(target)], dtype=np.float32)
    step_minutes = step_ns / 60e9
    steps_per_hour = 3600e9 / step_ns

    actions: list[str] = []
    if dup_info["count"]:
        actions.append(
            f"dropped {dup_info['count']} row(s) with a duplicated timestamp (kept the first)"
        )
    missing_total = int(sum(g["missing_steps"] for g in gaps))
    if gaps:
        actions.append(
            f"reinserted {missing_total} missing time step(s) in {len(gaps)} gap(s) and filled "
            "them by linear interpolation in time"
        )
    for col, n in sentinels.items():
        actions.append(
            f"treated {n} sentinel value(s) {SENTINEL:g} in '{col}' as missing and interpolated"
        )
    for col, n in nonfinite.items():
        actions.append(
            f"treated {n} empty or non-finite value(s) in '{col}' as missing and interpolated"
        )
    for col, n in unused_sentinels.items():
        actions.append(f"left {n} sentinel value(s) in unused column '{col}' alone")
    if not actions:
        actions.append("no repair needed")

    report.update(
        time_column=time_column,
        features=list(features),
        target=target,
        rows_raw=rows_raw,
        rows=int(len(grid_times)),
        start=_iso(grid_times[0]),
        end=_iso(grid_times[-1]),
        step_minutes=_plain_number(step_minutes),
        steps_per_hour=_plain_number(steps_per_hour),
        duplicates=dup_info,
        gaps=gaps[:_MAX_LISTED],
        gap_count=len(gaps),
        max_gap_steps=max_gap_steps,
        sentinel_value=SENTINEL,
        sentinels=sentinels,
        sentinel_times=sentinel_times,
        sentinels_unused_columns=unused_sentinels,
        nonfinite=nonfinite,
        filled_steps=missing_total,
        filled_values={c: n for c, n in filled_values.items() if n},
        actions=actions,
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


def _check_feature_names(features: list[str]) -> None:
    """Raise DataError for an empty or repetitive ``features`` argument."""
    if not features:
        raise DataError("features must name at least one column")
    if len(set(features)) != len(features):
        dups = sorted({f for f in features if features.count(f) > 1})
        raise DataError(f"features name a column more than once: {dups}")


def _locate(
    source: str, cache_dir: str | Path | None, download: bool, report: dict[str, Any]
) -> Path:
    """The CSV file of a source (verified for the named ones); its hash goes into ``report``."""
    if source == "jena-2020":
        path, digest = _embedded_2020()
        report.update(sha256=digest, sha256_of="jena_weather_2020.csv.gz", sha256_verified=True)
    elif source == "jena-2009-2016":
        path, digest = _fetch_jena(cache_dir, download)
        report.update(sha256=digest, sha256_of=JENA_2009_FILE, sha256_verified=True)
    else:
        validate_source(source)
        path = Path(source).expanduser()
        report.update(sha256=_sha256_file(path), sha256_of=path.name, sha256_verified=False)
    report["path"] = str(path)
    return path


def _read_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as a frame, and its encoding: ``utf-8``, ``utf-8-sig`` (with a BOM) or ``latin-1``."""
    try:
        frame = _read_csv_as(path, "utf-8-sig")
        encoding = "utf-8-sig" if _head_bytes(path, len(_BOM)) == _BOM else "utf-8"
    except UnicodeDecodeError:
        frame, encoding = _read_csv_as(path, "latin-1"), "latin-1"
    first = str(frame.columns[0]) if len(frame.columns) else ""
    for bom in _BOM_TEXTS:  # a BOM read as text (a mixed file decoded as Latin-1)
        if first.startswith(bom):
            frame = frame.rename(columns={frame.columns[0]: first[len(bom) :]})
    return frame, encoding


def _read_csv_as(path: Path, encoding: str) -> pd.DataFrame:
    """The file as a frame in one encoding; a decoding error is left to the caller."""
    try:
        return pd.read_csv(path, engine="c", low_memory=False, encoding=encoding)
    except UnicodeDecodeError:
        raise
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a CSV with a header row)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a readable CSV file ({_one_line(str(exc))})") from None
    except (
        OSError,
        EOFError,
        ValueError,  # pandas on a zip archive holding no file, or several
        ImportError,  # a compression whose module is not installed (.zst)
        zipfile.BadZipFile,
        lzma.LZMAError,
        tarfile.TarError,
    ) as exc:
        reason = _one_line(str(exc)) or type(exc).__name__
        raise DataError(f"{path}: cannot be read ({reason})") from None


def _head_bytes(path: Path, n_bytes: int) -> bytes:
    """The first bytes of the file's content: decompressed if it is a gzip/bz2/xz/zip file,
    else (or if it does not decompress: pandas read it as plain text then) as they are."""
    try:
        return _decompressed_head(path, n_bytes)
    except (OSError, EOFError, IndexError, zipfile.BadZipFile, lzma.LZMAError):
        with open(path, "rb") as fh:
            return fh.read(n_bytes)


def _decompressed_head(path: Path, n_bytes: int) -> bytes:
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as member:
            return member.read(n_bytes)
    opener = next((op for m, op in _COMPRESSED if magic.startswith(m)), open)
    with opener(path, "rb") as fh:
        head: bytes = fh.read(n_bytes)
    return head


def _choose_columns(
    source: str,
    path: Path,
    frame: pd.DataFrame,
    time_column: str,
    features: list[str] | None,
    target: str | None,
    report: dict[str, Any],
) -> tuple[list[str], str]:
    """The features and target to load, defaults applied (module docstring); notes the choice."""
    columns = [str(c) for c in frame.columns]
    if target is None and JENA_TARGET not in columns:
        numeric = _numeric_columns(frame, time_column)[0]
        choices = f"one of: {', '.join(numeric)}" if numeric else "a numeric column (none found)"
        raise DataError(
            f"{path} has no column '{JENA_TARGET}' to forecast; pass --target with {choices}"
        )
    target = JENA_TARGET if target is None else target
    if features is not None:
        report["features_chosen"] = "given"
        return list(features), target
    if source in SOURCES or all(c in columns for c in JENA_FEATURES):
        report["features_chosen"] = "the 14 Jena columns"
        return list(JENA_FEATURES), target
    numeric, other = _numeric_columns(frame, time_column)
    if not numeric:
        raise DataError(
            f"{path}: no numeric column besides the time column '{time_column}' (non-numeric: "
            f"{_preview(other)}); pass --features with the input columns"
        )
    report.update(features_chosen="all numeric columns", non_numeric_columns=other)
    return numeric, target


def _numeric_columns(frame: pd.DataFrame, time_column: str) -> tuple[list[str], list[str]]:
    """(numeric, other) names of the columns besides the time column (rule: module docstring)."""
    numeric: list[str] = []
    other: list[str] = []
    for name in frame.columns:
        if str(name) != time_column:
            (numeric if _is_numeric(frame[name]) else other).append(str(name))
    return numeric, other


def _is_numeric(column: pd.Series) -> bool:
    """Every non-missing cell is a number, and at least one is a valid (non-sentinel) value."""
    if pd.api.types.is_bool_dtype(column):
        return False
    values, first_bad = _to_numbers(column)
    return first_bad is None and bool((np.isfinite(values) & (values != SENTINEL)).any())


def _to_numbers(column: pd.Series) -> tuple[np.ndarray, int | None]:
    """The column as float64 (blank cells NaN) and the row of its first non-number, if any."""
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan), None
    blank = column.isna() | column.astype(str).str.strip().eq("")
    coerced = pd.to_numeric(column.where(~blank), errors="coerce")
    bad = (coerced.isna() & ~blank).to_numpy()
    first_bad = int(np.flatnonzero(bad)[0]) if bad.any() else None
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan), first_bad


def _check_columns(path: Path, columns: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in columns]
    if not missing:
        return
    hints = []
    if len(missing) <= 3:
        for name in missing:
            close = difflib.get_close_matches(name, columns, n=1)
            if close:
                hints.append(f"'{name}' -> did you mean '{close[0]}'?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise DataError(
        f"{path}: column(s) {_preview(missing, 8)} not found{hint}; available columns: "
        f"{_preview(columns)}"
    )


def _parse_times(
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
            f"{where}: the time format {fmt!r} is not usable ({_one_line(str(exc))}); give a "
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


def _numeric_column(column: pd.Series, name: str, path: Path) -> np.ndarray:
    """The column as float64 (blank cells NaN); a cell that is not a number is a DataError."""
    values, i = _to_numbers(column)
    if i is not None:
        raise DataError(
            f"{path}: column '{name}' has a non-numeric value {str(column.iloc[i])!r} at data row "
            f"{i + 1} (CSV line {i + 2}); feature and target cells must be numbers (empty cells "
            f"and {SENTINEL:g} count as missing)"
        )
    return values


def _repair(
    times: np.ndarray,
    raw: np.ndarray,
    used: list[str],
    path: Path,
    time_column: str,
    max_gap_steps: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[dict[str, Any]], int, dict[str, int]]:
    """Deduplicate, check order and step, reindex to the grid and interpolate. O(rows)."""
    t = times.view("int64")
    back = np.flatnonzero(t[1:] < t[:-1])  # not np.diff: it overflows past 292 years
    if back.size:
        i = int(back[0]) + 1
        raise DataError(
            f"{path}: time column '{time_column}' goes back in time at data row {i + 1} "
            f"(CSV line {i + 2}): {_iso(times[i])} after {_iso(times[i - 1])}; the rows must be "
            "in time order (sort the file by time)"
        )
    if len(t) and int(t[-1]) - int(t[0]) > np.iinfo(np.int64).max:
        raise DataError(
            f"{path}: time column '{time_column}' spans {_iso(times[0])} to {_iso(times[-1])}, "
            "more than 292 years; a time series on a regular grid cannot span that"
        )
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
        "timestamps": [_iso(times[i]) for i in dup_rows[:_MAX_LISTED]],
        "rows_with_different_values": differing,
    }
    keep = ~dup
    t, raw, rows = t[keep], raw[keep], np.flatnonzero(keep)
    if len(t) < 2:
        raise DataError(f"{path}: only {len(t)} distinct timestamp(s); a time series needs many")

    intervals = np.diff(t)
    steps, counts = np.unique(intervals, return_counts=True)
    step = int(steps[np.argmax(counts)])
    share = counts.max() / len(intervals)
    if share < 0.5:
        top = ", ".join(
            f"{_duration(int(steps[k]))} x{int(counts[k])}" for k in np.argsort(-counts)[:3]
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
            f"{path}: time column '{time_column}' is irregular: {_iso(times[i])} at data row "
            f"{i + 1} (CSV line {i + 2}) is not on the {_duration(step)} grid starting at "
            f"{_iso(times[rows[0]])}"
        )

    pos = (t - t[0]) // step
    jumps = np.flatnonzero(np.diff(pos) > 1)
    gaps: list[dict[str, Any]] = []
    for jump in jumps:
        missing = int(pos[jump + 1] - pos[jump] - 1)
        gaps.append(
            {
                "start": _iso_ns(int(t[jump]) + step),
                "end": _iso_ns(int(t[jump + 1]) - step),
                "missing_steps": missing,
            }
        )
    too_long = [g for g in gaps if g["missing_steps"] > max_gap_steps]
    if too_long:
        g = max(too_long, key=lambda g: g["missing_steps"])
        more = f" (and {len(too_long) - 1} more)" if len(too_long) > 1 else ""
        raise DataError(
            f"{path}: {g['missing_steps']} missing time steps of {_duration(step)} from "
            f"{g['start']} to {g['end']}{more} exceed max_gap_steps={max_gap_steps}; raise "
            "max_gap_steps to interpolate across the gap, or cut the file to a part without it"
        )

    n_grid = int(pos[-1]) + 1
    grid = np.full((n_grid, raw.shape[1]), np.nan)
    grid[pos] = raw
    grid_times = (t[0] + np.arange(n_grid, dtype=np.int64) * step).view("datetime64[ns]")
    filled_values: dict[str, int] = {}
    index = np.arange(n_grid, dtype=np.float64)
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
                f"non-finite or {SENTINEL:g}) from {_iso(grid_times[run_start])} to "
                f"{_iso(grid_times[run_start + run_len - 1])}, more than max_gap_steps="
                f"{max_gap_steps}; raise max_gap_steps or drop the column"
            )
        good = ~missing
        grid[missing, j] = np.interp(index[missing], index[good], grid[good, j])
    return grid_times, grid, dup_info, gaps, step, filled_values


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    padded = np.concatenate([[0], mask.view(np.int8), [0]])
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    k = int(np.argmax(lengths))
    return int(starts[k]), int(lengths[k])


# ----------------------------------------------------------------------------------------------
# small helpers


def _iso(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value.astype("datetime64[s]"), unit="s")).replace("T", " ")


def _iso_ns(ns: int) -> str:
    return _iso(np.datetime64(ns, "ns"))


def _duration(ns: int) -> str:
    seconds = ns / 1e9
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}-hour"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}-minute"
    return f"{seconds:g}-second"


def _plain_number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _preview(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"


def _one_line(text: str) -> str:
    return " ".join(text.split())
