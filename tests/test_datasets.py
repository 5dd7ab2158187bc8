"""Loading, repair and data-quality report: the embedded 2020 file, user CSVs, jena-2009-2016."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from search._resources import data_dir
from search.data import sources as datasets
from search.data.sources import (
    JENA_FEATURES,
    JENA_TARGET,
    SOURCES,
    Dataset,
    cache_root,
    fetch_jena_2009_2016,
    jena_2009_2016_path,
    load_dataset,
    validate_source,
)
from search.errors import DataError
from tests.data_helpers import (
    format_times,
    jena_2009_csv_bytes,
    jena_like_rows,
    sha256,
    write_csv,
    write_jena_csv,
    zip_bytes,
)

REPO = Path(__file__).resolve().parents[1]


def one_line_error(excinfo: pytest.ExceptionInfo[DataError], *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


@pytest.fixture(scope="module")
def jena() -> Dataset:
    return load_dataset("jena-2020")


@pytest.fixture(autouse=True)
def _no_env_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEARCH_JENA_URL", "SEARCH_JENA_SHA256", "SEARCH_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# the embedded 2020 file


def test_jena_2020_shape_and_grid(jena: Dataset) -> None:
    assert jena.name == "jena-2020"
    assert jena.feature_names == JENA_FEATURES and len(JENA_FEATURES) == 14
    assert jena.target_name == JENA_TARGET == "T (degC)"
    assert jena.values.dtype == np.float32 and jena.values.shape == (52_704, 14)
    assert jena.target.dtype == np.float32 and jena.target.shape == (52_704,)
    assert jena.times.dtype == np.dtype("datetime64[ns]")
    assert np.all(np.diff(jena.times) == np.timedelta64(10, "m"))
    assert jena.times[0] == np.datetime64("2020-01-01T00:10:00")
    assert jena.times[-1] == np.datetime64("2021-01-01T00:00:00")
    assert jena.steps_per_hour == 6
    np.testing.assert_array_equal(jena.target, jena.values[:, 1])
    assert np.isfinite(jena.values).all() and (jena.values > -9000).all()


def test_jena_2020_finds_exactly_its_defects(jena: Dataset) -> None:
    report = jena.report
    assert report["rows_raw"] == 52_696 and report["rows"] == 52_704
    assert report["step_minutes"] == 10 and report["steps_per_hour"] == 6
    assert report["start"] == "2020-01-01 00:10:00" and report["end"] == "2021-01-01 00:00:00"
    assert report["duplicates"]["count"] == 1
    assert report["duplicates"]["timestamps"] == ["2020-05-12 06:00:00"]
    assert report["duplicates"]["rows_with_different_values"] == 0
    assert report["gaps"] == [
        {"start": "2020-05-29 09:40:00", "end": "2020-05-29 11:00:00", "missing_steps": 9}
    ]
    assert report["filled_steps"] == 9
    assert report["sentinels"] == {"wv (m/s)": 1}
    assert report["sentinel_times"] == {"wv (m/s)": ["2020-02-20 07:40:00"]}
    unused = report["sentinels_unused_columns"]
    assert unused["OT"] == 50 and sum(unused.values()) == 80
    assert [n for c, n in unused.items() if c.startswith("max. PAR")] == [30]
    assert report["nonfinite"] == {}
    assert report["sha256"] == "a08c6d04be34805e0167e75461d7cc6a565f81ca3296f43cc154ce9cbcf9027c"
    for key in (
        "source",
        "rows_raw",
        "rows",
        "start",
        "end",
        "step_minutes",
        "duplicates",
        "gaps",
        "sentinels",
        "nonfinite",
        "filled_steps",
        "actions",
        "sha256",
    ):
        assert key in report
    assert any("duplicated" in a for a in report["actions"])
    assert any("9 missing time step" in a for a in report["actions"])
    assert json.loads(json.dumps(report)) == report  # plain JSON


def test_jena_2020_repairs_are_interpolations(jena: Dataset) -> None:
    def row(stamp: str) -> int:
        return int(np.flatnonzero(jena.times == np.datetime64(stamp))[0])

    wv = JENA_FEATURES.index("wv (m/s)")
    i = row("2020-02-20T07:40")
    assert jena.values[i, wv] == pytest.approx(
        (jena.values[i - 1, wv] + jena.values[i + 1, wv]) / 2, abs=1e-5
    )
    before, after = row("2020-05-29T09:30"), row("2020-05-29T11:10")
    assert after - before == 10
    expected = np.linspace(jena.values[before], jena.values[after], 11)
    np.testing.assert_allclose(jena.values[before : after + 1], expected, rtol=1e-5, atol=1e-4)
    assert row("2020-05-12T06:00") == row("2020-05-12T05:50") + 1


def test_manifest_matches_the_shipped_file() -> None:
    manifest = json.loads((REPO / "data" / "MANIFEST.json").read_text())
    entry = manifest["files"]["jena_weather_2020.csv.gz"]
    raw = (REPO / "data" / "jena_weather_2020.csv.gz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == entry["sha256_gz"] and len(raw) == entry["bytes_gz"]
    csv = gzip.decompress(raw)
    assert hashlib.sha256(csv).hexdigest() == entry["sha256_csv"] and len(csv) == entry["bytes_csv"]
    assert entry["rows"] == csv.count(b"\n") - 1 == 52_696 and entry["columns"] == 22
    assert not (REPO / "data" / "__init__.py").exists()
    assert data_dir().joinpath("MANIFEST.json").is_file()


def test_embedded_file_loads_from_any_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert (data_dir() / "jena_weather_2020.csv.gz").is_file()
    validate_source("jena-2020")


def test_damaged_embedded_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shutil.copy(REPO / "data" / "MANIFEST.json", tmp_path / "MANIFEST.json")
    (tmp_path / "jena_weather_2020.csv.gz").write_bytes(gzip.compress(b"date,x\n"))
    monkeypatch.setattr(datasets, "data_dir", lambda: tmp_path)
    with pytest.raises(DataError) as excinfo:
        load_dataset("jena-2020")
    one_line_error(excinfo, "damaged", "reinstall")


def test_head_keeps_the_first_rows_and_says_so(jena: Dataset) -> None:
    small = jena.head(1000)
    assert len(small) == 1000 and small.values.shape == (1000, 14) and small.target.shape == (1000,)
    assert small.times[-1] == jena.times[999]
    assert small.report["rows"] == 1000 and small.report["rows_before_head"] == 52_704
    assert any("first 1000" in a for a in small.report["actions"])
    assert jena.report["rows"] == 52_704  # the original is untouched
    assert jena.head(10**9) is jena
    with pytest.raises(DataError):
        jena.head(0)


# ---------------------------------------------------------------------------------------------
# user CSVs


def test_user_csv_with_jena_columns(tmp_path: Path) -> None:
    path = write_jena_csv(tmp_path / "w.csv", 200)
    ds = load_dataset(str(path))
    assert ds.name == str(path)
    assert ds.values.shape == (200, 14) and ds.feature_names == JENA_FEATURES
    assert ds.report["duplicates"]["count"] == 0 and ds.report["gaps"] == []
    assert ds.report["actions"] == ["no repair needed"]
    assert ds.report["sha256"] == sha256(path.read_bytes())


def test_user_csv_custom_columns_and_target_outside_features(tmp_path: Path) -> None:
    times = np.datetime64("2021-03-01T00:00") + np.arange(50) * np.timedelta64(1, "h")
    rows = [[s, i, 2 * i, 10 + i] for i, s in enumerate(format_times(times))]
    path = write_csv(tmp_path / "hourly.csv", ["ts", "a", "b", "load"], rows)
    ds = load_dataset(str(path), time_column="ts", target="load", features=["b", "a"])
    assert ds.feature_names == ["b", "a"] and ds.target_name == "load"
    assert ds.target_index is None and ds.steps_per_hour == 1
    np.testing.assert_array_equal(ds.values[:3], [[0, 0], [2, 1], [4, 2]])
    np.testing.assert_array_equal(ds.target[:3], [10, 11, 12])


@pytest.mark.parametrize(
    ("fmt", "time_column"),
    [("%d.%m.%Y %H:%M:%S", "Date Time"), ("%Y-%m-%dT%H:%M", "when"), ("%Y/%m/%d %H:%M", "t")],
)
def test_time_formats_and_first_column_detection(
    tmp_path: Path, fmt: str, time_column: str
) -> None:
    path = write_jena_csv(tmp_path / "w.csv", 60, time_column=time_column, fmt=fmt)
    ds = load_dataset(str(path))  # time column not named: the first column
    assert ds.times[0] == np.datetime64("2020-01-01T00:10") and ds.steps_per_hour == 6
    assert ds.report["time_column"] == time_column


def test_sentinels_and_empty_cells_in_used_columns_are_filled(tmp_path: Path) -> None:
    times, values = jena_like_rows(100)
    values[10, 4] = -9999
    values[20, 0] = np.nan
    values[30, 13] = np.inf
    extra = {"CO2": [-9999 if i < 3 else 400 for i in range(100)]}
    path = write_jena_csv(tmp_path / "w.csv", times=times, values=values, extra_columns=extra)
    text = path.read_text().replace(",nan,", ",,")  # a truly empty cell
    path.write_text(text)
    ds = load_dataset(str(path))
    report = ds.report
    assert report["sentinels"] == {"rh (%)": 1}
    assert report["nonfinite"] == {"p (mbar)": 1, "wd (deg)": 1}
    assert report["sentinels_unused_columns"] == {"CO2": 3}
    assert np.isfinite(ds.values).all()
    assert ds.values[10, 4] == pytest.approx((values[9, 4] + values[11, 4]) / 2, abs=1e-4)


def test_duplicates_with_different_values_are_reported(tmp_path: Path) -> None:
    times, values = jena_like_rows(50)
    times = np.concatenate([times[:20], times[19:]])
    values = np.concatenate([values[:20], values[19:] + 0.5])
    path = write_jena_csv(tmp_path / "w.csv", times=times, values=values)
    ds = load_dataset(str(path))
    assert ds.report["duplicates"]["count"] == 1
    assert ds.report["duplicates"]["rows_with_different_values"] == 1
    assert len(ds) == 50


# ---------------------------------------------------------------------------------------------
# bad input: one clear line each


def test_missing_file_and_validate_source(tmp_path: Path) -> None:
    for name in SOURCES:
        validate_source(name)
    with pytest.raises(DataError) as excinfo:
        validate_source(str(tmp_path / "nope.csv"))
    one_line_error(excinfo, "not found", "nope.csv")
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(tmp_path / "nope.csv"))
    one_line_error(excinfo, "not found")
    with pytest.raises(DataError) as excinfo:
        validate_source(str(tmp_path))
    one_line_error(excinfo, "not a file")
    existing = write_csv(tmp_path / "ok.csv", ["a"], [[1]])
    validate_source(str(existing))


def test_missing_columns_are_listed_with_what_is_available(tmp_path: Path) -> None:
    path = write_jena_csv(tmp_path / "w.csv", 30)
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), features=["p (mbar)", "T (C)"], target="temp")
    message = one_line_error(excinfo, "'T (C)'", "'temp'", "available columns", "'p (mbar)'")
    assert "did you mean 'T (degC)'" in message
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), time_column="Date Time")
    one_line_error(excinfo, "'Date Time'", "not found")


def test_non_numeric_cell_names_column_and_row(tmp_path: Path) -> None:
    path = write_jena_csv(tmp_path / "w.csv", 30)
    lines = path.read_text().splitlines()
    cells = lines[7].split(",")
    cells[2] = "n/a?"
    lines[7] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    one_line_error(excinfo, "'T (degC)'", "'n/a?'", "row 7", "line 8")


def test_time_going_backwards_is_refused(tmp_path: Path) -> None:
    times, values = jena_like_rows(40)
    times[[15, 16]] = times[[16, 15]]
    path = write_jena_csv(tmp_path / "w.csv", times=times, values=values)
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    one_line_error(excinfo, "goes back in time", "row 17", "time order")


def test_irregular_time_columns_are_refused(tmp_path: Path) -> None:
    times, values = jena_like_rows(40)
    jitter = np.datetime64("2020-01-01T00:00") + np.cumsum(
        np.random.default_rng(0).integers(1, 30, 40)
    ) * np.timedelta64(1, "m")
    path = write_jena_csv(tmp_path / "a.csv", times=jitter, values=values)
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    one_line_error(excinfo, "irregular", "no dominant step")
    off_grid = times.copy()
    off_grid[25:] += np.timedelta64(3, "m")
    path = write_jena_csv(tmp_path / "b.csv", times=off_grid, values=values)
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    one_line_error(excinfo, "irregular", "not on the 10-minute grid", "row 26")


def test_gap_longer_than_the_limit_is_an_error_naming_it(tmp_path: Path) -> None:
    times, values = jena_like_rows(200)
    keep = np.r_[0:50, 90:200]  # 40 missing steps
    path = write_jena_csv(tmp_path / "w.csv", times=times[keep], values=values[keep])
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    one_line_error(
        excinfo,
        "40 missing time steps",
        "2020-01-01 08:30:00",
        "2020-01-01 15:00:00",
        "max_gap_steps=36",
    )
    ds = load_dataset(str(path), max_gap_steps=40)
    assert ds.report["filled_steps"] == 40 and len(ds) == 200


def test_long_run_of_missing_values_in_one_column_is_an_error(tmp_path: Path) -> None:
    times, values = jena_like_rows(100)
    values[10:20, 5] = -9999
    path = write_jena_csv(tmp_path / "w.csv", times=times, values=values)
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), max_gap_steps=5)
    one_line_error(excinfo, "'VPmax (mbar)'", "10 consecutive missing", "max_gap_steps=5")


@pytest.mark.parametrize(
    ("content", "columns", "fragment"),
    [
        ("", None, "empty"),
        ("date,p (mbar)\n", ["p (mbar)"], "data row"),
        ("x,y\n1,2\n3,4\n5,6\n", ["y"], "holds numbers"),
        ("x,y\nfoo,2\nbar,4\nbaz,5\n", ["y"], "does not hold date-times"),
        ("date,p (mbar)\n2020-01-01 00:00:00,1\n", ["p (mbar)"], "1 data row"),
    ],
)
def test_degenerate_files(
    tmp_path: Path, content: str, columns: list[str] | None, fragment: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path), features=columns, target=columns[0] if columns else None)
    one_line_error(excinfo, fragment)


def test_bad_time_value_in_the_middle(tmp_path: Path) -> None:
    path = write_jena_csv(tmp_path / "w.csv", 30)
    path.write_text(path.read_text().replace("2020-01-01 01:30:00", "yesterday"))
    with pytest.raises(DataError) as excinfo:
        load_dataset(str(path))
    one_line_error(excinfo, "'yesterday'", "row 9")


# ---------------------------------------------------------------------------------------------
# jena-2009-2016: cache, download, verification (never the internet)


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802
        payload = self.files.get(self.path)
        if payload is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_files() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    handler = type("Handler", (_Files,), {"files": files})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files
    finally:
        server.shutdown()
        server.server_close()


def test_cache_folder_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_root() == Path.home() / ".cache" / "search"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "search"
    monkeypatch.setenv("SEARCH_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert jena_2009_2016_path(tmp_path) == tmp_path / "jena_climate_2009_2016.csv"


def test_jena_2009_downloaded_from_local_server_verified_and_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http_files: tuple[str, dict[str, bytes]]
) -> None:
    base, files = http_files
    csv = jena_2009_csv_bytes(400)
    files["/jena.zip"] = zip_bytes("jena_climate_2009_2016.csv", csv)
    monkeypatch.setenv("SEARCH_JENA_URL", base + "/jena.zip")
    monkeypatch.setenv("SEARCH_JENA_SHA256", sha256(csv))
    monkeypatch.setenv("SEARCH_CACHE_DIR", str(tmp_path / "cache"))
    ds = load_dataset("jena-2009-2016")
    assert ds.name == "jena-2009-2016" and ds.values.shape == (400, 14)
    assert ds.times[0] == np.datetime64("2009-01-01T00:10") and ds.steps_per_hour == 6
    assert ds.report["time_column"] == "Date Time" and ds.report["sha256"] == sha256(csv)
    cached = tmp_path / "cache" / "jena_climate_2009_2016.csv"
    assert cached.read_bytes() == csv
    recorded = (tmp_path / "cache" / "jena_climate_2009_2016.csv.sha256").read_text()
    assert recorded.split()[0] == sha256(csv)
    assert sorted(p.name for p in cached.parent.iterdir()) == [
        "jena_climate_2009_2016.csv",
        "jena_climate_2009_2016.csv.sha256",
    ]
    files.clear()  # served from the cache from now on
    assert len(load_dataset("jena-2009-2016", download=False)) == 400


def test_jena_2009_checksum_mismatch_leaves_nothing_behind(
    tmp_path: Path, http_files: tuple[str, dict[str, bytes]]
) -> None:
    base, files = http_files
    files["/jena.zip"] = zip_bytes("jena_climate_2009_2016.csv", jena_2009_csv_bytes(50))
    with pytest.raises(DataError) as excinfo:
        fetch_jena_2009_2016(tmp_path, url=base + "/jena.zip", expected_sha256="0" * 64)
    one_line_error(excinfo, "does not match the expected", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_jena_2009_structure_check_and_recorded_hash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http_files: tuple[str, dict[str, bytes]]
) -> None:
    base, files = http_files
    csv = jena_2009_csv_bytes(120)
    files["/jena.zip"] = zip_bytes("jena_climate_2009_2016.csv", csv)
    with pytest.raises(DataError) as excinfo:  # no pinned hash: must look like the real file
        fetch_jena_2009_2016(tmp_path, url=base + "/jena.zip")
    one_line_error(excinfo, "has 120 data rows, expected 420551")
    monkeypatch.setattr(datasets, "JENA_2009_ROWS", 120)
    path = fetch_jena_2009_2016(tmp_path, url=base + "/jena.zip")
    recorded = (tmp_path / "jena_climate_2009_2016.csv.sha256").read_text().split()[0]
    assert recorded == sha256(csv)
    assert fetch_jena_2009_2016(tmp_path, download=False) == path  # checked against the record
    path.write_bytes(csv[:-10] + b"9999999999")  # altered after the first verification
    with pytest.raises(DataError) as excinfo:
        fetch_jena_2009_2016(tmp_path, download=False)
    one_line_error(excinfo, "differs from", "recorded")


def test_jena_2009_placed_by_hand(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    csv = jena_2009_csv_bytes(80)
    (tmp_path / "jena_climate_2009_2016.csv").write_bytes(csv)
    monkeypatch.setenv("SEARCH_JENA_SHA256", sha256(csv))
    ds = load_dataset("jena-2009-2016", cache_dir=tmp_path, download=False)
    assert len(ds) == 80
    bad_header = tmp_path / "other"
    bad_header.mkdir()
    payload = csv.replace(b"Date Time", b"Datum")
    (bad_header / "jena_climate_2009_2016.csv").write_bytes(payload)
    monkeypatch.setenv("SEARCH_JENA_SHA256", sha256(payload))
    with pytest.raises(DataError) as excinfo:
        load_dataset("jena-2009-2016", cache_dir=bad_header, download=False)
    one_line_error(excinfo, "is not the jena_climate_2009_2016.csv header")


def test_jena_2009_zip_placed_by_hand_is_unzipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    csv = jena_2009_csv_bytes(60)
    (tmp_path / "jena_climate_2009_2016.csv.zip").write_bytes(
        zip_bytes("jena_climate_2009_2016.csv", csv)
    )
    monkeypatch.setenv("SEARCH_JENA_SHA256", sha256(csv))
    assert fetch_jena_2009_2016(tmp_path, download=False).read_bytes() == csv


def test_jena_2009_without_network_says_where_to_put_the_file(
    tmp_path: Path, http_files: tuple[str, dict[str, bytes]]
) -> None:
    base, _ = http_files
    target = tmp_path / "jena_climate_2009_2016.csv"
    with pytest.raises(DataError) as excinfo:
        fetch_jena_2009_2016(tmp_path, url=base + "/missing.zip", timeout=5)
    one_line_error(excinfo, "cannot download", str(target), "without network")
    with pytest.raises(DataError) as excinfo:
        fetch_jena_2009_2016(tmp_path, url="http://127.0.0.1:9/closed.zip", timeout=5)
    one_line_error(excinfo, "cannot download", str(target))
    with pytest.raises(DataError) as excinfo:
        load_dataset("jena-2009-2016", cache_dir=tmp_path, download=False)
    one_line_error(excinfo, "downloading is off", str(target))
    assert sorted(os.listdir(tmp_path)) == []
