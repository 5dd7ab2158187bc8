"""A regular install (a wheel, not the source tree) carries the embedded data and the spaces."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is not installed")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    (path,) = out.glob("search-*.whl")
    return path


def test_wheel_contains_data_manifest_and_spaces(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "search/_data/jena_weather_2020.csv.gz" in names
    assert "search/_data/MANIFEST.json" in names
    assert {"search/_spaces/all.yaml", "search/_spaces/quick.yaml"} <= names
    assert not any(n.startswith(("mlflow/", "data/", "spaces/")) for n in names)


def test_installed_wheel_loads_data_and_spaces_from_any_directory(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import search._resources as r, search.data.sources as d, search.spaces as s;"
        f"assert str(r.data_dir()).startswith({str(target)!r}), r.data_dir();"
        "ds = d.load_dataset('jena-2020'); print(len(ds.values));"
        "print(len(s.list_spaces()))"
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows, spaces = result.stdout.split()
    assert int(rows) == 52_704  # 52,696 rows + 9 filled - 1 duplicate, on the regular grid
    assert int(spaces) >= 10
