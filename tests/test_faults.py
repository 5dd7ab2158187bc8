"""Faults injected for real: the study's PostgreSQL restarts under a running worker (it
reconnects and goes on, no trial lost or failed); a trial diverges to NaN, or its model cannot
be allocated (each fails alone with its reason in Optuna and MLflow, no traceback, and the study
stops after --max-consecutive-failures). The tracking server's outage is in test_spool.py, a
locked or read-only SQLite file and four workers on PostgreSQL in test_storage_faults.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import optuna
import pytest

from search.storage import open_storage
from tests.cli_helpers import Lines, cli_env, search_command
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
        lines = Lines(worker)
        try:
            lines.wait_for("trial 0 epoch 1/", timeout=300)
        except AssertionError:
            worker.kill()
            raise
        server.restart(pause=5.0)  # every connection dropped; nothing listens for 5 s
        output = lines.rest(timeout=600)
        assert worker.returncode == 0, output
        assert "Traceback" not in output
        study = optuna.load_study(study_name="pg", storage=open_storage(storage))
        assert [t.number for t in study.trials] == [0, 1, 2]
        assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}, [
            t.user_attrs.get("fail_reason") for t in study.trials
        ]
    finally:
        server.stop()


# -- trials that fail for real: the study records why and goes on -------------------------------

FAILING_SPACE = """
name: {name}
description: "a dense net made to fail for real: {why}"
architecture: dense
params:
  units: {units}
  layers: 1
  lookback_hours: 24
  sampling_rate: 6
  learning_rate: {learning_rate}
  batch_size: 256
fixed: {{epochs: 2, optimizer: sgd, loss: mse, patience: 2, horizon_hours: 24, target_steps: 1}}
book:
  source: "a test"
  params: {{}}
"""


@pytest.mark.parametrize(
    ("name", "units", "learning_rate", "reason"),
    [
        # SGD at 1e12 overflows the weights: the loss is NaN within the first epoch
        ("diverges", 8, 1.0e12, r"became NaN"),
        # (and with --verbose: the traceback of each failure, which is otherwise never shown)
        # a kernel of 56 x 10^12 floats (224 TB) is more than any address space: the allocation
        # itself fails, at once, on any machine
        ("out-of-memory", 10**12, 1.0e-3, r"(?i)\bOOM\b|out of memory|MemoryError"),
    ],
)
def test_a_trial_that_diverges_or_runs_out_of_memory_fails_alone(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str, units: int,
    learning_rate: float, reason: str,
) -> None:  # fmt: skip
    from mlflow import MlflowClient

    from search.study import StudyRequest, run_study

    space = tmp_path / f"{name}.yaml"
    space.write_text(
        FAILING_SPACE.format(name=name, why=name, units=units, learning_rate=learning_rate)
    )
    lines: list[str] = []
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = run_study(
        StudyRequest(
            study=name, storage=f"sqlite:///{tmp_path / 's.db'}", tracking_uri=tracking,
            space=str(space), max_rows=6000, trials=2, epochs=2, seed=0,
            max_consecutive_failures=2, progress=lines.append, verbose=name == "out-of-memory",
        )
    )  # fmt: skip
    assert [t.state for t in outcome.trials] == ["FAIL", "FAIL"]
    assert outcome.stopped_for_failures == 2  # and the study stopped, saying why
    captured = capfd.readouterr()
    shown = captured.out + captured.err + "\n".join(lines)
    if name == "out-of-memory":  # verbose
        assert shown.count("Traceback (most recent call last)") == 2
    else:
        assert "Traceback" not in shown
    for trial in outcome.trials:
        why = trial.attrs["fail_reason"]
        assert re.search(reason, why) and "\n" not in why, why
        assert f"trial {trial.number}: FAILED ({why})" in lines
        run = MlflowClient(tracking_uri=tracking).get_run(trial.attrs["mlflow_run_id"])
        assert run.data.tags["search.fail_reason"] == why
        assert run.info.status == "FAILED"


def test_the_cli_exits_1_after_max_consecutive_failures(tmp_path: Path) -> None:
    """Through the CLI (as a scheduler sees it): trials that fail in a row stop the study after
    --max-consecutive-failures, with exit code 1 (not 0: the study did not run its trials; not 2:
    nothing was wrong with the command), the reason on stdout and no traceback."""
    from tests.cli_helpers import run_cli

    (tmp_path / "diverges.yaml").write_text(
        FAILING_SPACE.format(name="diverges", why="diverges", units=8, learning_rate=1.0e12)
    )
    result = run_cli(
        "run", "--space", "diverges.yaml", "--study", "diverges", "--trials", "5",
        "--max-consecutive-failures", "2", "--max-rows", "6000", "--epochs", "2",
        "--storage", f"sqlite:///{tmp_path / 's.db'}",
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "stopped: 2 trials failed in a row" in result.stdout, result.stdout
    study = optuna.load_study(study_name="diverges", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]  # and no third trial
