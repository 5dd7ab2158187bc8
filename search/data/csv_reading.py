"""Reading a CSV file: its encoding and compression, and the columns to load (the rules are in
search.data.sources's docstring)."""

from __future__ import annotations

import bz2
import difflib
import gzip
import lzma
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.data.jena import JENA_FEATURES, JENA_TARGET, SENTINEL, SOURCES
from search.data.wording import one_line, preview
from search.errors import DataError

_BOM = b"\xef\xbb\xbf"
_BOM_TEXTS = ("\ufeff", "\u00ef\u00bb\u00bf")  # a BOM decoded as UTF-8, or as Latin-1
_COMPRESSED: tuple[tuple[bytes, Callable[..., Any]], ...] = (
    (b"\x1f\x8b", gzip.open),
    (b"BZh", bz2.open),
    (b"\xfd7zXZ\x00", lzma.open),
)


def check_feature_names(features: list[str]) -> None:
    """Raise DataError for an empty or repetitive ``features`` argument."""
    if not features:
        raise DataError("features must name at least one column")
    if len(set(features)) != len(features):
        dups = sorted({f for f in features if features.count(f) > 1})
        raise DataError(f"features name a column more than once: {dups}")


def read_csv(path: Path) -> tuple[pd.DataFrame, str]:
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
        raise DataError(f"{path}: not a readable CSV file ({one_line(str(exc))})") from None
    except (
        OSError,
        EOFError,
        ValueError,  # pandas on a zip archive holding no file, or several
        ImportError,  # a compression whose module is not installed (.zst)
        zipfile.BadZipFile,
        lzma.LZMAError,
        tarfile.TarError,
    ) as exc:
        reason = one_line(str(exc)) or type(exc).__name__
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


def choose_columns(
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
            f"{preview(other)}); pass --features with the input columns"
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


def check_columns(path: Path, columns: list[str], wanted: list[str]) -> None:
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
        f"{path}: column(s) {preview(missing, 8)} not found{hint}; available columns: "
        f"{preview(columns)}"
    )


def numeric_column(column: pd.Series, name: str, path: Path) -> np.ndarray:
    """The column as float64 (blank cells NaN); a cell that is not a number is a DataError."""
    values, i = _to_numbers(column)
    if i is not None:
        raise DataError(
            f"{path}: column '{name}' has a non-numeric value {str(column.iloc[i])!r} at data row "
            f"{i + 1} (CSV line {i + 2}); feature and target cells must be numbers (empty cells "
            f"and {SENTINEL:g} count as missing)"
        )
    return values
