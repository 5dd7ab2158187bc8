"""The next day with intervals (issue 25): multi-step targets, the pinball and weighted quantile
losses, conformal calibration, quantiles that never cross, and `search run` / `best
--evaluate-test` / `predict` on a multi-step quantile study, every figure recomputed here
independently."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import keras
import mlflow
import numpy as np
import optuna
import pytest

from search.data.geometry import WindowSpec
from search.data.prepare import load_prepared
from search.data.windows import make_windows
from search.serving.forecast import forecast
from search.serving.layers import SortedQuantiles
from search.spaces import load_space
from search.training import intervals
from search.training.scaling import MedianMAE, PinballLoss
from tests.cli_helpers import run_cli_here

REPO = Path(__file__).resolve().parents[1]
LEVELS = (0.1, 0.5, 0.9)


# ------------------------------------------------------------------------------ the numbers


def _pinball_by_hand(y: float, f: float, q: float) -> float:
    return q * (y - f) if y >= f else (1 - q) * (f - y)


def test_pinball_and_weighted_quantile_loss_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    actual = rng.normal(5.0, 3.0, (40, 4))
    forecast_ = np.sort(rng.normal(5.0, 3.0, (40, 4, 3)), axis=-1)
    by_hand = np.array(
        [
            [
                [
                    _pinball_by_hand(actual[i, t], forecast_[i, t, j], q)
                    for j, q in enumerate(LEVELS)
                ]
                for t in range(4)
            ]
            for i in range(40)
        ]
    )
    np.testing.assert_allclose(intervals.pinball_loss(actual, forecast_, LEVELS), by_hand)
    # AutoGluon's WQL: the mean over levels of 2 * sum of the level's pinball / sum |actual|
    denominator = sum(abs(v) for v in actual.ravel())
    wql = sum(2 * by_hand[:, :, j].sum() / denominator for j in range(3)) / 3
    assert intervals.weighted_quantile_loss(actual, forecast_, LEVELS) == pytest.approx(wql)
    # the Keras loss the models train with: the same pinball, averaged, on values / scale
    loss = PinballLoss(LEVELS, scale=2.0)
    keras_value = float(keras.ops.convert_to_numpy(loss(actual, forecast_)))
    assert keras_value == pytest.approx(by_hand.mean() / 2.0, rel=1e-5)
    # the MAE every quantile trial prunes on is its median's
    metric = MedianMAE(1)
    metric.update_state(actual, forecast_)
    median_mae = np.abs(actual - forecast_[..., 1]).mean()
    assert float(keras.ops.convert_to_numpy(metric.result())) == pytest.approx(median_mae, rel=1e-5)


def test_coverage_counts_the_values_inside_the_interval() -> None:
    actual = np.array([[0.0, 5.0], [2.0, -1.0]])
    band = np.array([[[-1, 0, 1], [0, 1, 2]], [[1, 2, 2], [-1, 0, 1]]], dtype=float)
    # inside: 0 in [-1, 1] yes; 5 in [0, 2] no; 2 in [1, 2] yes (inclusive); -1 in [-1, 1] yes
    assert float(intervals.coverage(actual, band)) == pytest.approx(0.75)
    np.testing.assert_allclose(intervals.coverage(actual, band, per_step=True), [1.0, 0.5])


def test_conformal_calibration_reaches_nominal_coverage_with_known_noise() -> None:
    """A quantile model whose intervals are too narrow at one step and too wide at another
    (noise of known scale per step), calibrated on 3,000 held-out windows, covers 80% of 20,000
    fresh ones at every step; uncalibrated it is far off."""
    rng = np.random.default_rng(7)
    sigma = np.array([0.5, 2.0, 4.0])
    z = 1.2815515655446004  # the normal's 0.9 quantile
    claimed = np.array([2.0, 2.0, 2.0])  # what the model believes the noise is
    guess = np.stack([-z * claimed, np.zeros(3), z * claimed], axis=-1)  # (steps, levels)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        centre = rng.normal(0, 10, (n, 1))
        actual = centre + rng.normal(0, 1, (n, 3)) * sigma
        return guess[None] + centre[..., None], actual

    held_forecast, held_actual = draw(3_000)
    fresh_forecast, fresh_actual = draw(20_000)
    raw = intervals.coverage(fresh_actual, fresh_forecast, per_step=True)
    assert raw[0] > 0.99 and raw[2] < 0.5  # far from 80% before
    offsets = intervals.conformal_offsets(held_forecast, held_actual, LEVELS)
    assert np.all(offsets[:, 1] == 0.0)  # the median keeps its place
    calibrated = intervals.calibrated(fresh_forecast, offsets)
    np.testing.assert_allclose(
        intervals.coverage(fresh_actual, calibrated, per_step=True), 0.8, atol=0.02
    )
    # and each bound sits where the noise's own quantile says: +-z * sigma
    np.testing.assert_allclose(calibrated[0, :, 2] - calibrated[0, :, 1], z * sigma, rtol=0.1)


def test_handed_out_quantiles_never_cross() -> None:
    crossing = np.array([[[3.0, 1.0, 2.0], [0.0, -1.0, 5.0]]], dtype=np.float32)
    layer = SortedQuantiles([[0.0, 0.0, 0.0], [4.0, 0.0, -4.0]])
    out = np.asarray(keras.ops.convert_to_numpy(layer(crossing)))
    assert np.all(np.diff(out, axis=-1) >= 0)
    np.testing.assert_allclose(out, [[[1.0, 2.0, 3.0], [-1.0, 1.0, 4.0]]])
    # the serving path sorts whatever a model returns
    spec = {
        "mean": [0.0],
        "std": [1.0],
        "calendar": False,
        "sequence_length": 2,
        "sampling_rate": 1,
        "horizon_hours": 1.0,
        "target_steps": 2,
        "quantiles": list(LEVELS),
    }
    times = np.arange(6).astype("datetime64[h]").astype("datetime64[s]")
    values = np.arange(6, dtype=np.float32)[:, None]
    result = forecast(spec, times, values, lambda x: np.tile(crossing, (len(x), 1, 1)))
    assert result.quantiles is not None
    assert np.all(np.diff(result.quantiles, axis=-1) >= 0)
    np.testing.assert_allclose(result.values, result.quantiles[:, 1])  # the value is the median
    np.testing.assert_array_equal(result.steps, [1, 2] * 5)


def test_multi_step_targets_match_keras_windows_step_by_step() -> None:
    """Each step k of ``make_windows`` with 24 target steps holds exactly the targets Keras'
    ``timeseries_dataset_from_array`` gives for a horizon of k hours."""
    _, prepared = load_prepared("jena-2020", max_rows=3_000, split="chronological")
    spec = WindowSpec(24, 6, 1, 24, prepared.steps_per_hour)
    windows = make_windows(prepared, spec, "train", batch_size=10_000)
    x, y = windows[0]
    for k in range(24):
        delay = spec.delay + k * 6
        reference = keras.utils.timeseries_dataset_from_array(
            prepared.data[:-delay],
            targets=prepared.target[delay:],
            sampling_rate=6,
            sequence_length=spec.sequence_length,
            batch_size=100_000,
            shuffle=False,
        )
        ref_x, ref_y = next(iter(reference))
        ref_x, ref_y = np.asarray(ref_x), np.asarray(ref_y)
        starts = windows.start_rows()
        np.testing.assert_array_equal(y[:, k], ref_y[starts])
        if k == 0:
            np.testing.assert_array_equal(x, ref_x[starts])


# ---------------------------------------------------------------------- a study, end to end

SPACE = """
name: tiny_next
description: "Dense over 24 h, the next 3 hours with quantiles"
architecture: dense
params:
  units: {type: int, low: 8, high: 16}
  layers: 1
  dropout: 0.0
  lookback_hours: 24
  sampling_rate: 6
  learning_rate: 0.003
  batch_size: 256
  target_scaling: residual
  calendar_features: false
fixed: {epochs: 2, optimizer: rmsprop, loss: mse, patience: 2, horizon_hours: 1, target_steps: 3,
        quantiles: [0.1, 0.5, 0.9]}
book:
  params: {units: 16, lookback_hours: 24}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("next_day")
    (folder / "tiny_next.yaml").write_text(SPACE)
    result = run_cli_here(
        "run",
        "--space",
        "tiny_next.yaml",
        "--study",
        "nd",
        "--split",
        "blocked:10",
        "--trials",
        "2",
        "--max-rows",
        "9000",
        "--seed",
        "3",
        cwd=folder,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def _best(folder: Path) -> optuna.trial.FrozenTrial:
    loaded = optuna.load_study(study_name="nd", storage=f"sqlite:///{folder / 'search-studies.db'}")
    return loaded.best_trial


def test_a_quantile_trial_logs_steps_quantile_loss_and_coverage(study: Path) -> None:
    best = _best(study)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    run = client.get_run(best.user_attrs["mlflow_run_id"])
    metrics = run.data.metrics
    steps = [metrics[f"val_mae_step_{k}"] for k in (1, 2, 3)]
    assert "val_mae_step_4" not in metrics
    # the objective is the mean over steps of the median's MAE at the best epoch
    assert best.value == pytest.approx(np.mean(steps), rel=1e-4)
    for key in ("val_wql", "naive_wql", "val_coverage", "naive_coverage"):
        assert math.isfinite(metrics[key]), key
    assert 0.6 < metrics["naive_coverage"] < 0.95  # train-residual quantiles: about 80% on val
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"mae_by_step.png", "mae_by_step.csv", "forecast.png"} <= artifacts
    assert run.data.params["quantiles"] == "0.1,0.5,0.9"


def test_evaluate_test_prints_steps_and_interval_figures(study: Path) -> None:
    result = run_cli_here("best", "nd", "--evaluate-test", cwd=study)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MAE by step    1 h " in result.stdout
    assert "test MAE by step: 1 h " in result.stdout
    assert "test weighted quantile loss" in result.stdout and "80% interval covers" in result.stdout


T = "T (degC)"
SERVED = ["issued_at", "step", "time", f"forecast {T}", f"q0.1 {T}", f"q0.5 {T}", f"q0.9 {T}"]
"""The columns of a multi-step quantile model's forecasts (`search predict` adds the actual and
naive values and past_end)."""
FIRST, ROWS = 20_000, 400  # rows of the 2020 record the study never saw (it used 9,000)


@pytest.fixture(scope="module")
def predicted(study: Path) -> tuple[Path, list[list[str]]]:
    """`search predict` on a file of new rows: the file and the CSV table it wrote."""
    from search.data.sources import load_dataset

    ds = load_dataset("jena-2020")
    path = study / "new.csv"
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["Date Time", *ds.feature_names])
        for row in range(FIRST, FIRST + ROWS):
            stamp = str(ds.times[row].astype("datetime64[s]")).replace("T", " ")
            writer.writerow([stamp, *(f"{v:.2f}" for v in ds.values[row])])
    target = study / "forecasts.csv"
    result = run_cli_here("predict", "nd", "--data", str(path), "--to", str(target), cwd=study)
    assert result.returncode == 0, result.stdout + result.stderr
    return path, list(csv.reader(target.read_text().splitlines()))


def test_predict_rows_of_a_multi_step_quantile_model_recomputed(
    study: Path, predicted: tuple[Path, list[list[str]]]
) -> None:
    from search.data.sources import load_dataset

    ds = load_dataset("jena-2020")
    ds_first, rows = FIRST, ROWS
    _, table = predicted
    assert table[0] == [*SERVED, f"actual {T}", f"naive {T}", "past_end"]
    body = table[1:]
    windows = rows - (24 * 6 - 6)  # 24 h of 10-minute rows at sampling rate 6
    assert len(body) == windows * 3
    # independently: the study's statistics on the raw numbers, windows cut by hand, the
    # calibrated model straight from MLflow
    best = _best(study)
    _, data = load_prepared(
        "jena-2020",
        max_rows=9000,
        split="blocked:10",
        reference_hours=load_space(str(study / "tiny_next.yaml")).reach_hours(),
    )
    raw = ds.values[ds_first : ds_first + rows].astype(np.float64).round(2)
    inputs = ((raw - data.mean) / data.std).astype(np.float32)
    cut = np.arange(windows)[:, None] + np.arange(0, 144, 6)[None, :]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    local = client.download_artifacts(
        best.user_attrs["mlflow_run_id"], "model/model.keras", str(study)
    )
    import search.serving.layers  # noqa: F401  (registers the layers for safe mode)

    model = keras.models.load_model(local, compile=False, safe_mode=True)
    # the calibration is part of the saved model: its offsets are the conformal offsets of the
    # uncalibrated model's forecasts on the study's own val windows, recomputed here
    conformal = model.get_layer("conformal")
    raw_model = keras.Model(model.inputs[0], conformal.input)
    val = make_windows(data, WindowSpec(24, 6, 1, 3, data.steps_per_hour), "val", 512)
    offsets = intervals.conformal_offsets(raw_model.predict(val, verbose=0), val.targets(), LEVELS)
    np.testing.assert_allclose(conformal.offsets, offsets, atol=1e-4)
    assert np.abs(offsets).max() > 0
    expected = np.sort(np.asarray(model.predict(inputs[cut], verbose=0)), axis=-1)  # (w, 3, 3)
    got = np.array([[float(v) for v in row[3:7]] for row in body]).reshape(windows, 3, 4)
    np.testing.assert_allclose(got[..., 1:], expected, atol=2e-3)
    np.testing.assert_allclose(got[..., 0], expected[..., 1], atol=2e-3)  # forecast = median
    assert np.all(np.diff(got[..., 1:], axis=-1) >= 0)  # never crossing
    # issued_at is the window's last row; step k is k hours later
    first_issue = ds.times[ds_first + 138].astype("datetime64[s]")
    for k in (1, 2, 3):
        row = body[k - 1]
        assert row[0] == str(first_issue).replace("T", " ") and row[1] == str(k)
        assert row[2] == str(first_issue + np.timedelta64(k, "h")).replace("T", " ")


def test_the_exported_model_answers_with_calibrated_quantile_rows(
    study: Path, predicted: tuple[Path, list[list[str]]]
) -> None:
    """`--export-model` of a quantile study: the pyfunc model answers raw rows with the same
    rows and columns `search predict` writes (step, time, median and every level)."""
    import pandas as pd

    folder = study / "exported"
    result = run_cli_here("best", "nd", "--export-model", str(folder), cwd=study)
    assert result.returncode == 0, result.stdout + result.stderr
    frame = pd.read_csv(predicted[0]).rename(columns={"Date Time": "date"})  # the study's name
    answer = mlflow.pyfunc.load_model(str(folder)).predict(frame)
    assert list(answer.columns) == SERVED
    written = pd.read_csv(study / "forecasts.csv")
    assert len(answer) == len(written)
    assert (answer["step"].to_numpy() == written["step"].to_numpy()).all()
    assert (answer["time"].astype(str).to_numpy() == written["time"].to_numpy()).all()
    for column in (f"forecast {T}", f"q0.1 {T}", f"q0.9 {T}"):
        np.testing.assert_allclose(answer[column], written[column], atol=1e-3)


def test_an_ensemble_of_a_multi_step_study_is_refused_in_one_line(study: Path) -> None:
    result = run_cli_here("best", "nd", "--ensemble", cwd=study)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "single-step point forecasts only" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
