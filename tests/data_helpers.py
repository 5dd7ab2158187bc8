"""Small synthetic weather files for the data-layer tests (a few hundred rows at most)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from search.data.sources import JENA_FEATURES

TEN_MINUTES = np.timedelta64(10, "m")


def jena_like_rows(
    n_rows: int, seed: int = 0, start: str = "2020-01-01 00:10:00"
) -> tuple[np.ndarray, np.ndarray]:
    """(times, values) of a plausible 14-column Jena-like series on a 10-minute grid."""
    rng = np.random.default_rng(seed)
    times = np.datetime64(start) + np.arange(n_rows) * TEN_MINUTES
    day = np.arange(n_rows) / 144.0
    temp = 5 + 8 * np.sin(2 * np.pi * day) + rng.normal(0, 0.3, n_rows)
    base = np.array([990, 0, 273, -2, 80, 10, 6, 4, 4, 6, 1250, 2, 3, 180], dtype=float)
    values = base + rng.normal(0, 1, (n_rows, 14))
    values[:, 1] = temp
    values[:, 2] = temp + 273.15
    return times, np.round(values, 2)


def format_times(times: np.ndarray, fmt: str = "%Y-%m-%d %H:%M:%S") -> list[str]:
    return [t.astype("datetime64[s]").item().strftime(fmt) for t in times]


def write_csv(
    path: Path,
    header: list[str],
    rows: list[list[object]],
    line_end: str = "\n",
) -> Path:
    """Write rows (already formatted or plain numbers) as a CSV file."""
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(str(v) for v in row))
    path.write_text(line_end.join(lines) + line_end, encoding="utf-8")
    return path


def write_jena_csv(
    path: Path,
    n_rows: int = 300,
    *,
    seed: int = 0,
    time_column: str = "date",
    fmt: str = "%Y-%m-%d %H:%M:%S",
    times: np.ndarray | None = None,
    values: np.ndarray | None = None,
    extra_columns: dict[str, list[object]] | None = None,
) -> Path:
    """A Jena-like CSV: a time column then the 14 classic columns (plus optional extras)."""
    if times is None or values is None:
        t, v = jena_like_rows(n_rows, seed)
        times = t if times is None else times
        values = v if values is None else values
    header = [time_column, *JENA_FEATURES, *(extra_columns or {})]
    rows = []
    stamps = format_times(times, fmt)
    for i, stamp in enumerate(stamps):
        row: list[object] = [stamp, *values[i].tolist()]
        for col in (extra_columns or {}).values():
            row.append(col[i])
        rows.append(row)
    return write_csv(path, header, rows)


def jena_2009_csv_bytes(n_rows: int = 400, seed: int = 1) -> bytes:
    """A tiny file shaped like jena_climate_2009_2016.csv ('Date Time', dd.mm.YYYY)."""
    times, values = jena_like_rows(n_rows, seed, start="2009-01-01 00:10:00")
    out = io.StringIO()
    out.write(",".join(["Date Time", *JENA_FEATURES]) + "\n")
    for stamp, row in zip(format_times(times, "%d.%m.%Y %H:%M:%S"), values, strict=True):
        out.write(stamp + "," + ",".join(f"{v:.2f}" for v in row) + "\n")
    return out.getvalue().encode()


def zip_bytes(member: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
    return buffer.getvalue()


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
