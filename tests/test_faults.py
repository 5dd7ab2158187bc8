"""Faults injected for real: the study's PostgreSQL restarts under a running worker; it
reconnects and goes on, and no trial is lost or failed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import optuna
import pytest

from search.storage import open_storage
from tests.cli_helpers import cli_env, search_command
from tests.servers import start_postgres


@pytest.mark.slow
def test_a_postgresql_restart_under_a_running_worker_loses_nothing(tmp_path: Path) -> None:
    try:
        server = start_postgres(databases=("optuna",))
    except FileNotFoundError as error:
        pytest.skip(str(error))
    try:
        storage = server.url("optuna")
        worker = subprocess.Popen(
            search_command(
                "run", "--study", "pg", "--trials", "3", "--epochs", "4", "--max-rows", "9000",
                "--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            ),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(),
        )  # fmt: skip
        assert worker.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 240
        for line in worker.stdout:
            seen.append(line)
            if "trial 0 epoch 1/" in line or time.monotonic() > deadline:
                break
        server.restart(pause=5.0)  # every connection dropped; nothing listens for 5 s
        rest, _ = worker.communicate(timeout=600)
        output = "".join(seen) + rest
        assert worker.returncode == 0, output
        assert "Traceback" not in output
        study = optuna.load_study(study_name="pg", storage=open_storage(storage))
        assert [t.number for t in study.trials] == [0, 1, 2]
        assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}, [
            t.user_attrs.get("fail_reason") for t in study.trials
        ]
    finally:
        server.stop()
