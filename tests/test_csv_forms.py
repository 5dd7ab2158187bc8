"""User CSVs as people export them: encodings, default columns, time formats, hourly files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from search.data.sources import JENA_FEATURES, load_dataset
from search.errors import DataError
from tests.data_helpers import write_jena_csv

START = "2020-03-10 00:00"


def one_line_error(excinfo: pytest.ExceptionInfo[DataError], *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


def stamps(n_rows: int, step_minutes: int = 60, start: str = START) -> list[datetime]:
    times = np.datetime64(start) + np.arange(n_rows) * np.timedelta64(step_minutes, "m")
    return [t.astype("datetime64[s]").item() for t in times]


def weather(n_rows: int, step_minutes: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible temperature (daily cycle) and pressure series, rounded as stations write them."""
    rng = np.random.default_rng(seed)
    day = np.arange(n_rows) * step_minutes / 1440
    temp = 8 + 6 * np.sin(2 * np.pi * day) + rng.normal(0, 0.3, n_rows)
    pressure = 990 + np.cumsum(rng.normal(0, 0.2, n_rows))
    return {"temp": np.round(temp, 2), "pressure": np.round(pressure, 2)}


def write(
    path: Path,
    header: list[str],
    times: list[str],
    columns: list[list[object]],
    *,
    encoding: str = "utf-8",
    bom: bool = False,
) -> Path:
    lines = [",".join(header)]
    lines += [",".join(str(v) for v in row) for row in zip(times, *columns, strict=True)]
    payload = ("\n".join(lines) + "\n").encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + payload)
    return path


def station_csv(path: Path, n_rows: int = 300, step_minutes: int = 60, **kwargs: object) -> Path:
    """A station file without the Jena columns: time, a text column and two numeric ones."""
    w = weather(n_rows, step_minutes)
    times = [t.strftime("%Y-%m-%d %H:%M:%S") for t in stamps(n_rows, step_minutes)]
    station = ["Jena"] * n_rows
    return write(
        path,
        ["time", "station", "temp_c", "pressure"],
        times,
        [station, list(w["temp"]), list(w["pressure"])],
        **kwargs,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------
# encodings


@pytest.mark.parametrize(
    ("encoding", "bom", "reported"),
    [("utf-8", False, "utf-8"), ("utf-8", True, "utf-8-sig"), ("latin-1", False, "latin-1")],
)
def test_encodings_are_read_and_reported(
    tmp_path: Path, encoding: str, bom: bool, reported: str
) -> None:
    n = 200
    w = weather(n)
    header = ["Date Time", "p (mbar)", "T (°C)", "rho (g/m³)", "PAR (µmol/m²/s)"]
    times = [t.strftime("%d.%m.%Y %H:%M:%S") for t in stamps(n)]
    rho = list(np.round(1250 - w["temp"], 2))
    par = [0.0] * n
    columns = [list(w["pressure"]), list(w["temp"]), rho, par]
    path = write(tmp_path / "station.csv", header, times, columns, encoding=encoding, bom=bom)
    ds = load_dataset(str(path), target="T (°C)")  # the target by its name in the file
    assert ds.report["encoding"] == reported
    assert ds.report["time_column"] == "Date Time"  # no BOM in the first column's name
    assert ds.feature_names == header[1:] and ds.target_name == "T (°C)"
    assert ds.unit == "°C"
    np.testing.assert_allclose(ds.target, w["temp"], atol=1e-4)
    assert ds.times[0] == np.datetime64("2020-03-10T00:00")


def test_bom_in_a_gzip_file_is_reported_and_stripped(tmp_path: Path) -> None:
    plain = station_csv(tmp_path / "plain.csv", bom=True)
    path = tmp_path / "station.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    ds = load_dataset(str(path), target="temp_c")
    assert ds.report["encoding"] == "utf-8-sig" and ds.report["time_column"] == "time"


# ---------------------------------------------------------------------------------------------
# default columns


def test_default_features_are_all_numeric_columns(tmp_path: Path) -> None:
    n = 240
    w = weather(n)
    rain = ["" if i % 50 == 3 else (-9999 if i % 70 == 5 else 0.1) for i in range(n)]
    note = ["" if i % 2 else "checked" for i in range(n)]
    times = [t.strftime("%Y-%m-%d %H:%M") for t in stamps(n)]
    header = ["time", "station", "temp_c", "note", "pressure", "rain"]
    columns = [["Jena"] * n, list(w["temp"]), note, list(w["pressure"]), rain]
    path = write(tmp_path / "station.csv", header, times, columns)
    ds = load_dataset(str(path), target="temp_c")
    assert ds.feature_names == ["temp_c", "pressure", "rain"]
    assert ds.target_index == 0 and ds.values.shape == (n, 3)
    report = ds.report
    assert report["features_chosen"] == "all numeric columns"
    assert report["features"] == ["temp_c", "pressure", "rain"]
    assert report["non_numeric_columns"] == ["station", "note"]
    assert report["sentinels"] == {"rain": 4} and report["nonfinite"] == {"rain": 5}
    assert np.isfinite(ds.values).all()


def test_given_features_and_jena_files_say_how_features_were_chosen(tmp_path: Path) -> None:
    path = station_csv(tmp_path / "station.csv")
    ds = load_dataset(str(path), target="temp_c", features=["pressure"])
    assert ds.report["features_chosen"] == "given" and "non_numeric_columns" not in ds.report
    extra = {"station": ["Jena"] * 60, "CO2": [400] * 60}
    jena = load_dataset(str(write_jena_csv(tmp_path / "jena.csv", 60, extra_columns=extra)))
    assert jena.feature_names == JENA_FEATURES and jena.target_name == "T (degC)"
    assert jena.report["features_chosen"] == "the 14 Jena columns"


def test_missing_target_names_target_flag_and_numeric_columns(tmp_path: Path) -> None:
    path = station_csv(tmp_path / "station.csv")
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    message = one_line_error(
        excinfo,
        "station.csv has no column 'T (degC)' to forecast",
        "--target",
        "one of: temp_c, pressure",
    )
    assert "station" not in message.split("one of:")[1]


def test_file_without_numeric_columns_is_an_error(tmp_path: Path) -> None:
    times = [t.strftime("%Y-%m-%d %H:%M") for t in stamps(10)]
    path = write(tmp_path / "text.csv", ["time", "T (degC)"], times, [["warm"] * 10])
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    one_line_error(excinfo, "no numeric column", "'T (degC)'", "--features")


# ---------------------------------------------------------------------------------------------
# time columns


def _us(t: datetime) -> str:
    return f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}"


def _us_ampm(t: datetime) -> str:
    return f"{t.month}/{t.day}/{t.year} {(t.hour - 1) % 12 + 1}:{t.minute:02d} {t:%p}"


def _day_first_slashes(t: datetime) -> str:
    return f"{t.day}/{t.month}/{t.year} {t.hour}:{t.minute:02d}"


@pytest.mark.parametrize(
    ("form", "fmt", "reason"),
    [
        (lambda t: t.strftime("%Y-%m-%d %H:%M"), "ISO8601", "ISO 8601"),
        (lambda t: t.strftime("%Y-%m-%dT%H:%M:%S"), "ISO8601", "ISO 8601"),
        (lambda t: t.strftime("%d.%m.%Y %H:%M:%S"), "%d.%m.%Y %H:%M:%S", "dotted, day first"),
        (_us, "%m/%d/%Y %H:%M", "month first"),
        (_us_ampm, "%m/%d/%Y %I:%M %p", "month first"),
        (_day_first_slashes, "%d/%m/%Y %H:%M", "day first"),
    ],
    ids=["iso", "iso-T", "dotted", "us", "us-ampm", "day-first-slashes"],
)
def test_time_forms(tmp_path: Path, form: Callable[[datetime], str], fmt: str, reason: str) -> None:
    n = 300  # hourly from 10 March: days 10 to 22, so a slash column shows its order
    w = weather(n)
    times = [form(t) for t in stamps(n)]
    path = write(tmp_path / "t.csv", ["when", "temp_c"], times, [list(w["temp"])])
    ds = load_dataset(str(path), target="temp_c")
    expected = np.datetime64(START) + np.arange(n) * np.timedelta64(1, "h")
    np.testing.assert_array_equal(ds.times, expected.astype("datetime64[ns]"))
    assert ds.report["time_format"] == fmt
    assert reason in ds.report["time_format_reason"]


def _ambiguous_file(tmp_path: Path) -> Path:
    n = 200  # hourly from 1 January: days 1 to 9, every date reads both ways
    times = [_day_first_slashes(t) for t in stamps(n, start="2020-01-01 00:00")]
    return write(tmp_path / "amb.csv", ["when", "temp_c"], times, [list(weather(n)["temp"])])


def test_ambiguous_slash_column_asks_for_time_format(tmp_path: Path) -> None:
    path = _ambiguous_file(tmp_path)
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), target="temp_c")
    one_line_error(
        excinfo, "ambiguous", "'1/1/2020 0:00'", '--time-format "%d/%m/%Y %H:%M"', "%m/%d/%Y"
    )


def test_explicit_time_format_resolves_the_ambiguity(tmp_path: Path) -> None:
    path = _ambiguous_file(tmp_path)
    ds = load_dataset(str(path), target="temp_c", time_format="%d/%m/%Y %H:%M")
    assert ds.times[24] == np.datetime64("2020-01-02T00:00") and len(ds) == 200
    assert ds.report["time_format"] == "%d/%m/%Y %H:%M"
    assert ds.report["time_format_reason"].startswith("given")
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), target="temp_c", time_format="%Y-%m-%d %H:%M")
    one_line_error(excinfo, "'%Y-%m-%d %H:%M'", "'1/1/2020 0:00'")


def test_slash_column_mixing_both_orders_is_an_error(tmp_path: Path) -> None:
    n = 300
    times = [_day_first_slashes(t) for t in stamps(n)]
    times[-1] = "3/23/2020 11:00"  # month first, after day-first values like 13/3/2020
    path = write(tmp_path / "mixed.csv", ["when", "temp_c"], times, [list(weather(n)["temp"])])
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), target="temp_c")
    one_line_error(excinfo, "mixes day-first and month-first", "'3/23/2020 11:00'", "--time-format")


def test_unknown_time_form_asks_for_time_format(tmp_path: Path) -> None:
    times = [t.strftime("%m/%d/%y %H:%M") for t in stamps(50)]  # two-digit years
    path = write(tmp_path / "yy.csv", ["when", "temp_c"], times, [list(weather(50)["temp"])])
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), target="temp_c")
    one_line_error(excinfo, "known form", "'03/10/20 00:00'", "--time-format")
    ds = load_dataset(str(path), target="temp_c", time_format="%m/%d/%y %H:%M")
    assert ds.times[0] == np.datetime64("2020-03-10T00:00")


def test_bad_time_value_names_row_and_format(tmp_path: Path) -> None:
    times = [_us(t) for t in stamps(100)]
    times[40] = "3/11/2020 25:00"
    path = write(tmp_path / "bad.csv", ["when", "temp_c"], times, [list(weather(100)["temp"])])
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), target="temp_c")
    one_line_error(excinfo, "'3/11/2020 25:00'", "data row 41", "'%m/%d/%Y %H:%M'")


# ---------------------------------------------------------------------------------------------
# steps


@pytest.mark.parametrize(("step_minutes", "per_hour"), [(60, 1), (10, 6)])
def test_hourly_and_ten_minute_files(tmp_path: Path, step_minutes: int, per_hour: int) -> None:
    path = station_csv(tmp_path / "station.csv", 300, step_minutes)
    ds = load_dataset(str(path), target="temp_c")
    assert ds.steps_per_hour == per_hour
    assert ds.report["steps_per_hour"] == per_hour
    assert ds.report["step_minutes"] == step_minutes
    assert ds.feature_names == ["temp_c", "pressure"] and len(ds) == 300
