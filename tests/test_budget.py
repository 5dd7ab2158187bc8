"""Budgets that hold: `--timeout S` counts from the start of optimization, and a trial running
when it runs out stops at its next epoch boundary, recorded PRUNED with its best epoch so far
(`search.stopped_by=timeout`); a later run continues the study."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from search.storage import open_storage, resolve_storage_url
from tests.cli_helpers import migrated_store, run_cli_here

BUDGET = 12
# Trials that only the budget can stop early: a patience as long as the epochs, and an epoch
# count no 2-core machine gets through in the budget.
SPACE = """
name: budget
description: "Tiny dense trials that nothing but --timeout stops early"
architecture: dense
params:
  units: {type: int, low: 2, high: 8}
  layers: 1
  lookback_hours: 24
  sampling_rate: 6
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  batch_size: 256
fixed: {epochs: 400, optimizer: adam, loss: mse, patience: 400, horizon_hours: 24, target_steps: 1}
book:
  source: "a test"
  params: {units: 4, lookback_hours: 24, sampling_rate: 6, learning_rate: 3.0e-4, batch_size: 256}
"""


def _args(workdir: Path, *extra: str) -> list[str]:
    space = workdir / "budget.yaml"
    space.write_text(SPACE)
    return [
        "run",
        "--space",
        str(space),
        "--study",
        "budget",
        "--max-rows",
        "9000",
        "--storage",
        f"sqlite:///{workdir / 'studies.db'}",
        "--tracking-uri",
        migrated_store(workdir / "mlflow.db"),
        "--sampler",  # no enqueued start points: the trial after the budget is the next one
        "tpe",
        *extra,
    ]


@pytest.mark.slow
def test_timeout_stops_the_running_trial_at_an_epoch_boundary(tmp_path: Path) -> None:
    # 400 epochs with a patience of 400: nothing but the budget stops a trial early
    result = run_cli_here(*_args(tmp_path, "--trials", "3", "--timeout", str(BUDGET)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    storage = open_storage(resolve_storage_url(f"sqlite:///{tmp_path / 'studies.db'}"))
    study = optuna.load_study(study_name="budget", storage=storage)
    cut = [t for t in study.trials if t.user_attrs.get("search.stopped_by") == "timeout"]
    assert len(cut) == 1, [(t.number, t.state.name, t.user_attrs) for t in study.trials]
    trial = cut[0]
    assert trial.number == len(study.trials) - 1  # nothing started after the budget
    assert trial.state.name == "PRUNED"
    epochs = trial.user_attrs["epochs_run"]
    assert 1 <= epochs < 400
    epoch_s = trial.user_attrs["train_seconds"] / epochs
    # it ended within one epoch of the budget (plus its logging), not at its 60th epoch
    began = min(t.datetime_start for t in study.trials)
    spent = (trial.datetime_complete - began).total_seconds()
    assert spent <= BUDGET + 2 * epoch_s + 20, (spent, epoch_s)
    assert f"stopped after epoch {epochs}" in result.stdout
    assert sorted(trial.intermediate_values) == list(range(epochs))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.data.tags["search.stopped_by"] == "timeout"
    assert run.data.metrics["best_val_mae"] == pytest.approx(
        min(trial.intermediate_values.values())
    )
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model" in logged
    assert "forecast.png" not in logged  # no val prediction for a figure once the budget is spent

    again = run_cli_here(*_args(tmp_path, "--trials", "1", "--epochs", "1"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    study = optuna.load_study(study_name="budget", storage=storage)
    assert study.trials[-1].number == trial.number + 1
    assert study.trials[-1].state.name in ("COMPLETE", "PRUNED")
    assert "search.stopped_by" not in study.trials[-1].user_attrs
    assert "search.resumed_from_trial" not in study.trials[-1].user_attrs  # not re-run
