"""Bad input to the CLI: one line on stderr, exit code 2, no traceback, answered before Keras loads."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

FAST_SECONDS = 8.0  # generous for a loaded 2-core CI machine; Keras+TF alone take longer to import


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_user_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.seconds < FAST_SECONDS, (
        f"took {result.seconds:.1f}s: validated after importing Keras?"
    )


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "--trials", "0"], ["--trials", ">= 1"]),
        (["run", "--epochs", "many"], ["--epochs", "whole number"]),
        (["run", "--timeout", "-5"], ["--timeout"]),
        (["run", "--no-such-flag"], ["--no-such-flag"]),
        (["frobnicate"], ["frobnicate"]),
        (["run", "--space", "no_such_space"], ["no_such_space"]),
        (["run", "--data", "missing.csv"], ["missing.csv"]),
        (["run", "--storage", "redis://localhost/0"], ["redis"]),
        (["run", "--storage", "not a url"], ["not a url"]),
        (["run", "--storage", "sqlite:///no/such/folder/x.db"], ["does not exist"]),
        (["trials", "nope"], ["nope"]),
        (["best", "nope"], ["nope"]),
        (["spaces", "no_such_space"], ["no_such_space"]),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    assert_user_error(run_cli(*args, cwd=tmp_path), *needles)


def test_unreachable_tracking_server(tmp_path: Path) -> None:
    port = _free_port()
    result = run_cli("run", "--tracking-uri", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert_user_error(result, "unreachable", str(port))


def test_unreachable_postgres(tmp_path: Path) -> None:
    port = _free_port()
    result = run_cli(
        "run", "--storage", f"postgresql://user:secret@127.0.0.1:{port}/optuna", cwd=tmp_path
    )
    assert_user_error(result, "PostgreSQL", str(port))
    assert "secret" not in result.stderr  # passwords are never echoed


def test_env_var_storage_is_honoured(tmp_path: Path) -> None:
    result = run_cli(
        "trials", "nope", cwd=tmp_path, env={"SEARCH_STORAGE": "journal:///no/dir/j.log"}
    )
    assert_user_error(result, "/no/dir")


def test_invalid_space_file_names_file_and_parameter(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("this: [is, not: valid yaml\n")
    result = run_cli("run", "--space", str(bad), cwd=tmp_path)
    assert_user_error(result, "bad.yaml")


def test_help_documents_every_flag(tmp_path: Path) -> None:
    result = run_cli("run", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in (
        "--space",
        "--study",
        "--trials",
        "--timeout",
        "--storage",
        "--tracking-uri",
        "--data",
        "--epochs",
        "--seed",
        "--fresh",
        "--verbose",
        "--max-rows",
        "SEARCH_STORAGE",
        "MLFLOW_TRACKING_URI",
    ):
        assert flag in result.stdout, flag
