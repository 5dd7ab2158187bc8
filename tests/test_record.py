"""The study record: names, defaults, round trips, and a study made by the first release
(tests/fixtures/legacy_v0, created before the record existed) still resuming."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path

import mlflow
import optuna
import pytest

from search.errors import SearchError
from search.record import RECORD_VERSION, StudyRecord, validate_study_name
from tests.cli_helpers import run_cli, run_cli_here

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_v0"


@pytest.mark.parametrize("name", ["quick", "jena-all", "lstm_2009.v2", "a" * 128, "A1-b_c.d"])
def test_valid_study_names(name: str) -> None:
    assert validate_study_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../../etc/passwd", "contains '/'"),
        ("a/b", "contains '/'"),
        ("", "empty"),
        (".hidden", "starts with '.'"),
        ("a" * 129, "129 characters"),
        ("tab\there", "contains '\\t'"),
        ("new\nline", "contains '\\n'"),
        ("space here", "contains ' '"),
        ("naïve", "contains 'ï'"),
    ],
)
def test_invalid_study_names_are_one_line_errors(name: str, fragment: str) -> None:
    with pytest.raises(SearchError) as excinfo:
        validate_study_name(name)
    message = str(excinfo.value)
    assert fragment in message and "\n" not in message.replace("'\\n'", "")


@pytest.mark.parametrize("command", ["run", "trials", "best"])
def test_the_cli_refuses_a_path_as_study_name(command: str, tmp_path: Path) -> None:
    args = ["run", "--study", "../../etc/passwd"] if command == "run" else [command, "../x"]
    result = run_cli(*args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid study name" in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may be created for a refused name"


def test_record_round_trip_and_defaults() -> None:
    record = StudyRecord(space="lstm", data="/x.csv", features=["a", "b"], max_rows=10, seed=7)
    attrs = record.to_attrs()
    assert attrs["record_version"] == RECORD_VERSION
    again = StudyRecord.from_attrs(attrs)
    assert again == StudyRecord(**{**record.__dict__, "extra": {}})
    empty = StudyRecord.from_attrs({})
    assert (empty.space, empty.data, empty.seed, empty.split, empty.engine) == (
        "quick",
        "jena-2020",
        42,
        "chronological",
        "optuna",
    )
    assert empty.record_version == 0


def _unpack(tmp_path: Path) -> tuple[str, str]:
    for name in ("study.db", "mlflow.db"):
        with gzip.open(FIXTURE / f"{name}.gz") as source, open(tmp_path / name, "wb") as out:
            shutil.copyfileobj(source, out)
    # The store was made in /tmp/v0fix: move it here as a user moves mlflow.db with mlruns/
    # (the parent run's logged copy of its space file comes along).
    shutil.copytree(FIXTURE / "mlruns", tmp_path / "mlruns")
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, '/tmp/v0fix', ?)",
                (str(tmp_path),),
            )
    return f"sqlite:///{tmp_path / 'study.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_study_made_by_the_first_release_reads_and_resumes(tmp_path: Path) -> None:
    storage, tracking = _unpack(tmp_path)
    old = optuna.load_study(study_name="legacy", storage=storage)
    record = StudyRecord.from_attrs(old.user_attrs)
    assert record.record_version == 0  # written before the record existed
    assert (record.space, record.data, record.max_rows, record.seed) == (
        "quick",
        "jena-2020",
        4000,
        3,
    )
    assert record.split == "chronological" and record.engine == "optuna"  # defaults

    listed = run_cli_here("trials", "legacy", "--storage", storage, cwd=tmp_path)
    assert listed.returncode == 0 and "COMPLETE" in listed.stdout, listed.stderr

    result = run_cli_here(
        "run",
        "--study",
        "legacy",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "continuing study 'legacy' (1 trials so far)" in result.stdout
    assert "4,000 rows" in result.stdout  # max_rows remembered
    study = optuna.load_study(study_name="legacy", storage=storage)
    assert [t.number for t in study.trials] == [0, 1]
    # the space it began with (its parent run's copy), not today's shipped quick.yaml
    assert study.trials[1].state.name == "COMPLETE", study.trials[1].user_attrs
    assert "architecture" in study.trials[1].params
    client = mlflow.MlflowClient(tracking_uri=tracking)
    runs = client.search_runs([client.get_experiment_by_name("legacy").experiment_id])
    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    assert len(parents) == 1 and parents[0].info.run_id == old.user_attrs["mlflow_parent_run_id"]
    assert sum(r.data.tags.get("search.role") == "trial" for r in runs) == 2


def test_a_study_keeps_the_space_it_began_with(tmp_path: Path) -> None:
    from search.record import load_study_space
    from search.spaces import load_space

    original = (load_space("lstm").path).read_text()
    record = StudyRecord(space=str(tmp_path / "mine.yaml"), space_yaml=original)
    (tmp_path / "mine.yaml").write_text("this file was edited since: not even YAML of a space")
    space = load_study_space(record)
    assert space.architecture == "lstm" and space.name == "lstm"
    assert StudyRecord.from_attrs(record.to_attrs()).space_yaml == original


def test_a_folder_entry_named_like_a_shipped_space_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's first command in a folder that holds an entry named `quick` failed with
    `.../quick: no such space file`: three rules decided what names a file, and disagreed."""
    from search.record import space_identity
    from search.spaces import load_space

    (tmp_path / "quick").mkdir()
    (tmp_path / "lstm").write_text("not a space")
    monkeypatch.chdir(tmp_path)
    for name in ("quick", "lstm"):
        assert space_identity(name) == name
        assert load_space(space_identity(name)).name == name
    (tmp_path / "mine.yaml").write_text((tmp_path / "lstm").read_text())
    assert space_identity("mine.yaml") == str(tmp_path / "mine.yaml")
    assert space_identity("./lstm") == str(tmp_path / "lstm")
