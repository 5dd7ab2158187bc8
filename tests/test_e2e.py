"""End to end through the CLI: a tiny study on a slice of the real data, checked through MLflow's
client and Optuna's storage, then continued, listed, and its best model evaluated on test."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import mlflow
import optuna
import pytest

from tests.cli_helpers import run_cli, run_cli_here

STUDY = "e2e"
ROWS = "9000"  # the test split must hold a window of quick's longest lookback (168 h): > 8,596 rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def first_run(workdir: Path):
    result = run_cli(
        "run",
        "--space",
        "quick",
        "--study",
        STUDY,
        "--trials",
        "2",
        "--epochs",
        "2",
        "--max-rows",
        ROWS,
        "--seed",
        "7",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _client(workdir: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def _study(workdir: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{workdir / 'search-studies.db'}")


def _runs(client: mlflow.MlflowClient):
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None, "one experiment per study, named after it"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    children = [r for r in runs if r.data.tags.get("search.role") == "trial"]
    return parents, children


def test_terminal_output_is_clean_and_points_to_results(first_run) -> None:
    out = first_run.stdout
    assert "trial 0 (1/2)" in out and "trial 1 (2/2)" in out  # progress: trial i of N
    assert "epoch 1/2" in out and "val_mae" in out
    *_, start, link = out.strip().splitlines()
    assert start.count("mlflow ui --backend-store-uri sqlite:///") == 1
    assert link.startswith(
        "the study's runs in the MLflow UI: http://127.0.0.1:5000/#/experiments/"
    )
    noise = [line for line in first_run.stderr.splitlines() if line.strip()]
    assert noise == [], f"stderr should be empty without --verbose: {noise[:5]}"


def test_parent_and_child_runs(first_run, workdir: Path) -> None:
    client = _client(workdir)
    parents, children = _runs(client)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_name == STUDY
    assert {"study", "storage", "space_file", "data"} <= set(parent.data.params)
    assert "baseline_val_mae" in parent.data.metrics
    assert 0 < parent.data.metrics["linear_val_mae"] < 10  # the second yardstick
    study = _study(workdir)
    assert parent.data.metrics["best_val_mae"] == pytest.approx(study.best_value)
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"data_report.json", "optimization_history.png", "architectures.png"} <= parent_files

    assert sorted(c.info.run_name for c in children) == ["trial-0", "trial-1"]
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["search.state"] in ("COMPLETE", "PRUNED")
        for key in (
            "search.trial_number",
            "search.architecture",
            "search.backend",
            "search.device",
        ):
            assert tags.get(key), key
        for key in (
            "best_val_mae",
            "baseline_mae",
            "linear_mae",
            "skill",
            "linear_skill",
            "epochs_run",
            "train_seconds",
            "param_count",
        ):
            assert key in child.data.metrics, key
        metrics = child.data.metrics
        # the skills are what they claim: the trial's best val MAE against each yardstick
        assert metrics["skill"] == pytest.approx(
            1 - metrics["best_val_mae"] / metrics["baseline_mae"]
        )
        assert metrics["linear_skill"] == pytest.approx(
            1 - metrics["best_val_mae"] / metrics["linear_mae"]
        )
        history = client.get_metric_history(child.info.run_id, "val_mae")
        assert [m.step for m in history] == list(range(int(child.data.metrics["epochs_run"])))
        for key in ("loss", "mae", "val_loss"):
            assert len(client.get_metric_history(child.info.run_id, key)) == len(history)
        assert {"lookback_hours", "sampling_rate", "learning_rate", "epochs"} <= set(
            child.data.params
        )
        files = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {
            "learning_curve.png",
            "forecast.png",
            "history.csv",
            "model_summary.txt",
            "model",
        } <= files
        assert child.data.params["target_scaling"] in ("none", "standard", "residual")
        assert [a.path for a in client.list_artifacts(child.info.run_id, "model")] == [
            "model/model.keras"
        ]
        text = client.download_artifacts(
            child.info.run_id, "history.csv", str(workdir / child.info.run_id)
        )
        rows = list(csv.DictReader(io.StringIO(Path(text).read_text())))
        assert len(rows) == len(history)
        assert float(rows[0]["val_mae"]) == pytest.approx(history[0].value, rel=1e-5)


def test_a_finished_study_leaves_no_checkpoint_folders(first_run, workdir: Path) -> None:
    """Every trial finished: its epoch checkpoints are gone, and so are the folders that held
    them (the study's and ``search-studies.db.checkpoints``)."""
    from search.workers import checkpoint_root

    folder = checkpoint_root(f"sqlite:///{workdir / 'search-studies.db'}", STUDY)
    assert folder.parent == workdir / "search-studies.db.checkpoints"
    assert not folder.parent.exists(), sorted(str(p) for p in folder.parent.rglob("*"))


def test_optuna_records_link_to_mlflow(first_run, workdir: Path) -> None:
    study = _study(workdir)
    client = _client(workdir)
    parents, children = _runs(client)
    assert study.user_attrs["mlflow_parent_run_id"] == parents[0].info.run_id
    by_id = {c.info.run_id: c for c in children}
    for trial in study.trials:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.info.run_name == f"trial-{trial.number}"
        if trial.value is not None:
            assert run.data.metrics["best_val_mae"] == pytest.approx(trial.value)
    from search.spaces import load_space

    assert study.trials[0].params == load_space("quick").book_params()  # book config enqueued first


def test_second_run_continues_the_study(first_run, workdir: Path) -> None:
    result = run_cli_here("run", "--study", STUDY, "--trials", "1", "--epochs", "1", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "continuing study" in result.stdout
    study = _study(workdir)
    assert [t.number for t in study.trials] == [0, 1, 2]
    parents, children = _runs(_client(workdir))
    assert len(parents) == 1
    assert sorted(c.info.run_name for c in children) == ["trial-0", "trial-1", "trial-2"]

    listing = run_cli_here("trials", STUDY, cwd=workdir)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:5] == ["trial", "state", "val", "MAE", "(degC)"]
    assert len(lines) == 4
    for line, trial in zip(lines[1:], study.trials, strict=True):  # each row is its trial
        number, state, value, skill = line.split()[:4]
        assert (int(number), state) == (trial.number, trial.state.name), line
        shown = trial.value if trial.value is not None else min(trial.intermediate_values.values())
        assert value == f"{shown:.3f}", (line, shown)
        expected = trial.user_attrs.get("skill")
        assert skill == ("-" if expected is None else f"{expected:+.1%}"), (line, expected)
        for key, param in trial.params.items():
            assert f"{key}=" in line, (line, key, param)

    best = run_cli_here("best", STUDY, "--evaluate-test", cwd=workdir)
    assert best.returncode == 0, best.stdout + best.stderr
    assert "test MAE" in best.stdout
    parent = _runs(_client(workdir))[0][0]
    metrics = parent.data.metrics
    assert metrics["test_linear_mae"] > 0 and "linear" in best.stdout
    assert metrics["test_skill"] == pytest.approx(
        1 - metrics["test_mae"] / metrics["test_baseline_mae"]
    )
    # the test figures recomputed independently: the best trial's windows of the test split
    # cut by hand, "same as the last input" for the baseline, the model straight from MLflow
    import keras
    import numpy as np

    import search.training.scaling  # noqa: F401  (the inverse-scaling layer)
    from search.data.prepare import load_prepared
    from search.data.splits import window_starts
    from search.spaces import load_space

    best_trial = study.best_trial
    assert parent.data.tags["search.test_evaluated_trial"] == str(best_trial.number)
    config = load_space("quick").resolve(
        best_trial.params, book=bool(best_trial.user_attrs.get("book_config"))
    )
    _, prepared = load_prepared("jena-2020", max_rows=int(ROWS))
    spec = config.window(6)
    starts = window_starts(prepared, spec, "test")
    assert len(starts) > 0
    steps = np.arange(spec.sequence_length) * int(spec.sampling_rate)
    truth = np.array([prepared.target[s + spec.delay] for s in starts], dtype=np.float64)
    last = np.array([prepared.target[s + steps[-1]] for s in starts], dtype=np.float64)
    assert metrics["test_baseline_mae"] == pytest.approx(np.abs(truth - last).mean(), rel=1e-6)
    local = _client(workdir).download_artifacts(
        best_trial.user_attrs["mlflow_run_id"], "model/model.keras", str(workdir / "best")
    )
    model = keras.models.load_model(local, compile=False, safe_mode=True)
    inputs = np.stack([prepared.data[s + steps] for s in starts]).astype(np.float32)
    forecast = model.predict(inputs, verbose=0)[:, 0].astype(np.float64)
    assert metrics["test_mae"] == pytest.approx(np.abs(forecast - truth).mean(), rel=1e-3)


def test_resuming_with_another_space_is_refused(first_run, workdir: Path) -> None:
    result = run_cli("run", "--study", STUDY, "--space", "lstm", cwd=workdir)
    assert result.returncode == 2
    assert "--fresh" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_study_runs_on_the_torch_backend(tmp_path: Path) -> None:
    """PyTorch as the Keras backend (JAX's study is tests/test_backend.py's)."""
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    result = run_cli(
        "run",
        "--backend",
        "torch",
        "--study",
        "torch",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--max-rows",
        ROWS,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("torch")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`search.role` = 'trial'")
    assert run.data.tags["search.backend"] == "torch"
    assert run.data.tags["search.state"] == "COMPLETE"
    assert run.data.metrics["best_val_mae"] > 0


TINY_SPACE = """
name: tiny
description: "A tiny dense space for a user's hourly CSV"
architecture: dense
params:
  units: {type: int, low: 2, high: 8}
  layers: 1
  lookback_hours: {type: categorical, choices: [12, 24]}
  sampling_rate: 1
  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  batch_size: 64
fixed: {epochs: 2, optimizer: adam, loss: mse, patience: 2, horizon_hours: 6, target_steps: 1}
book:
  source: "a test"
  params: {units: 4, lookback_hours: 24, sampling_rate: 1, learning_rate: 0.005, batch_size: 64}
"""


def test_a_study_on_a_users_hourly_csv(tmp_path: Path) -> None:
    import numpy as np

    hours = np.arange(2000)
    rng = np.random.default_rng(0)
    temp = 10 + 8 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.5, hours.size)
    pressure = 1000 + rng.normal(0, 3, hours.size)
    stamps = np.datetime64("2024-01-01T00:00") + hours.astype("timedelta64[h]")
    lines = ["timestamp,temp_c,pressure,ignored"] + [
        f"{str(t).replace('T', ' ')}:00,{a:.3f},{b:.2f},x"
        for t, a, b in zip(stamps, temp, pressure, strict=True)
    ]
    (tmp_path / "station.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    result = run_cli_here(
        "run",
        "--space",
        "tiny.yaml",
        "--data",
        "station.csv",
        "--time-column",
        "timestamp",
        "--target",
        "temp_c",
        "--features",
        "temp_c,pressure",
        "--trials",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2,000 rows x 2 features" in result.stdout
    study = optuna.load_study(
        study_name="tiny", storage=f"sqlite:///{tmp_path / 'search-studies.db'}"
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # A daily cycle is easy: the trained model beats "same as 6 hours ago" on this series.
    assert min(t.value for t in study.trials) < study.trials[0].user_attrs["baseline_mae"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`search.role` = 'study'"
    )
    assert parent.data.params["target"] == "temp_c"
    assert parent.data.params["data"] == str(tmp_path / "station.csv")
    # Window geometry comes from the series' own grid: 24 h of hourly rows is 24 steps (not 144),
    # and every figure is in the target's own unit (its column name), never degC.
    children = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], "tags.`search.role` = 'trial'"
    )
    book = next(r for r in children if r.data.tags["search.trial_number"] == "0")
    assert book.data.params["lookback_hours"] == "24"
    assert book.data.params["sequence_length"] == "24"
    assert "degC" not in result.stdout
    assert "val MAE" in result.stdout and result.stdout.count(" temp_c") >= 3
    trials = run_cli_here("trials", "tiny", cwd=tmp_path)
    assert "val MAE (temp_c)" in trials.stdout and "degC" not in trials.stdout
    best = run_cli_here("best", "tiny", cwd=tmp_path)
    assert " temp_c" in best.stdout and "degC" not in best.stdout
