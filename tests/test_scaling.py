"""Target scaling: train-only statistics, the exact inverse inside the model, a residual model
that starts as the naive forecast, safe-mode loading, and the book trial kept on raw targets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

from search.data.geometry import WindowSpec
from search.data.prepare import prepare
from search.data.references import baseline_mae
from search.data.splits import window_starts
from search.data.windows import make_windows
from search.engines.optuna import suggest
from search.spaces import load_space, parse_space
from search.training.models import build_model
from search.training.scaling import (
    InverseTargetScaling,
    compile_loss,
    fit_scaling,
    scaled_model,
)
from tests.test_windows import synthetic

SPEC = WindowSpec(lookback_hours=4, sampling_rate=2, horizon_hours=2, steps_per_hour=6)


def _prepared(n: int = 900, seed: int = 0):
    ds = synthetic(n, seed=seed)
    ds.values[:, 0] = 15 + np.cumsum(np.random.default_rng(seed).normal(0, 0.3, n))
    ds.target[:] = ds.values[:, 0]
    return ds, prepare(ds)


def test_standard_statistics_come_from_the_training_rows_only() -> None:
    ds, p = _prepared()
    scaling = fit_scaling("standard", p, SPEC)
    train = ds.target[: p.num_train].astype(np.float64)
    assert scaling.center == pytest.approx(train.mean(), rel=1e-12)
    assert scaling.scale == pytest.approx(train.std(), rel=1e-12)
    changed = dataclasses.replace(ds, target=ds.target.copy(), values=ds.values.copy())
    changed.target[p.num_train :] += 100.0  # val and test only
    again = fit_scaling("standard", prepare(changed), SPEC)
    assert (again.center, again.scale) == (scaling.center, scaling.scale)


def test_residual_scale_is_the_train_windows_change_std() -> None:
    ds, p = _prepared()
    scaling = fit_scaling("residual", p, SPEC)
    starts = window_starts(p, SPEC, "train")
    target = ds.target.astype(np.float64)
    changes = [
        target[s + SPEC.delay] - target[s + (SPEC.sequence_length - 1) * SPEC.sampling_rate]
        for s in starts
    ]
    assert scaling.scale == pytest.approx(np.std(changes), rel=1e-12)
    assert scaling.target_index == 0
    assert scaling.input_mean == pytest.approx(p.mean[0]) and scaling.input_std == pytest.approx(
        p.std[0]
    )
    changed = dataclasses.replace(ds, target=ds.target.copy(), values=ds.values.copy())
    changed.target[p.num_train + SPEC.span :] *= 3.0  # rows no train window reaches
    changed.values[p.num_train + SPEC.span :, 0] *= 3.0
    assert fit_scaling("residual", prepare(changed), SPEC).scale == scaling.scale


@pytest.mark.parametrize("mode", ["standard", "residual"])
def test_the_inverse_layer_is_exact(mode: str) -> None:
    _, p = _prepared()
    scaling = fit_scaling(mode, p, SPEC)
    layer = InverseTargetScaling(
        scaling.mode,
        scaling.center,
        scaling.scale,
        scaling.target_index,
        scaling.input_mean,
        scaling.input_std,
    )
    x, y = make_windows(p, SPEC, "val", batch_size=64)[0]
    y_scaled = np.random.default_rng(1).normal(size=y.shape).astype(np.float32)
    out = np.asarray(layer([x, y_scaled]))
    if mode == "standard":
        expected = y_scaled * scaling.scale + scaling.center
    else:
        last_raw = x[:, -1, 0].astype(np.float64) * p.std[0] + p.mean[0]
        expected = y_scaled * scaling.scale + last_raw[:, None]
        # the raw last value read back from the normalized inputs is the target's own value
        starts = window_starts(p, SPEC, "val")[:64]
        rows = starts + (SPEC.sequence_length - 1) * SPEC.sampling_rate
        np.testing.assert_allclose(last_raw, p.target[rows], rtol=0, atol=1e-4)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("architecture", ["dense", "lstm", "conv1d", "gru"])
def test_an_untrained_residual_model_is_exactly_the_naive_forecast(architecture: str) -> None:
    keras.utils.set_random_seed(0)
    _, p = _prepared(1500)
    spec = WindowSpec(lookback_hours=12, sampling_rate=1, horizon_hours=2, steps_per_hour=6)
    scaling = fit_scaling("residual", p, spec)
    kwargs = {"units": 4} if architecture != "conv1d" else {"filters": 4, "kernel_size": 6}
    base = build_model(architecture, (spec.sequence_length, p.data.shape[1]), **kwargs)
    model = scaled_model(base, scaling)
    model.compile(loss=compile_loss("mse", scaling), metrics=["mae"])
    val = make_windows(p, spec, "val", batch_size=128)
    mae = model.evaluate(val, verbose=0, return_dict=True)["mae"]
    assert mae == pytest.approx(baseline_mae(p, spec, "val"), rel=1e-5)


def test_the_saved_model_loads_in_safe_mode_and_predicts_in_target_units(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    _, p = _prepared()
    scaling = fit_scaling("standard", p, SPEC)
    model = scaled_model(build_model("dense", (SPEC.sequence_length, 3), units=4), scaling)
    model.compile(optimizer="adam", loss=compile_loss("mse", scaling), metrics=["mae"])
    train = make_windows(p, SPEC, "train", batch_size=64, shuffle=True, seed=0)
    model.fit(train, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)
    x, y = make_windows(p, SPEC, "val", batch_size=64)[0]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), 1e-6)
    # in degrees, near the series' level, not in standard units near 0
    assert abs(float(np.mean(loaded.predict(x, verbose=0))) - float(np.mean(y))) < 5


def test_the_scaled_loss_is_the_loss_on_scaled_values() -> None:
    _, p = _prepared()
    scaling = fit_scaling("standard", p, SPEC)
    loss = compile_loss("mse", scaling)
    y, y_pred = np.array([[10.0], [20.0]]), np.array([[12.0], [17.0]])
    expected = np.mean(((y - y_pred) / scaling.scale) ** 2)
    assert float(loss(y, y_pred)) == pytest.approx(expected, rel=1e-6)
    assert compile_loss("mse", fit_scaling("none", p, SPEC)) == "mse"


def test_residual_needs_the_target_among_the_inputs() -> None:
    ds = synthetic(600)
    ds = dataclasses.replace(ds, target_name="outside")
    with pytest.raises(Exception, match="among the input features"):
        fit_scaling("residual", prepare(ds), SPEC)


def test_the_book_trial_keeps_raw_targets_while_the_space_searches_scalings() -> None:
    space = load_space("quick")
    assert "target_scaling" not in space.book_params()  # never enqueued as a choice
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.book_params(), user_attrs={"book_config": True})
    book = study.ask()
    params = suggest(space, book)
    assert "target_scaling" not in params
    assert space.resolve(params, book=True).target_scaling == "none"
    seen = set()
    for _ in range(12):
        trial = study.ask()
        seen.add(space.resolve(suggest(space, trial)).target_scaling)
    assert seen == {"standard", "residual"}


def test_book_params_may_not_set_the_scaling() -> None:
    from search.errors import SpaceError

    data = {
        "name": "x",
        "description": "x",
        "architecture": "dense",
        "params": {
            "units": 4,
            "lookback_hours": 24,
            "sampling_rate": 6,
            "learning_rate": 0.001,
            "batch_size": 32,
            "target_scaling": {"type": "categorical", "choices": ["standard", "residual"]},
        },
        "book": {"params": {"target_scaling": "residual"}},
    }
    with pytest.raises(SpaceError, match="always uses target_scaling=none"):
        parse_space(data)
    data["params"]["target_scaling"] = {"type": "categorical", "choices": ["bogus"]}
    data["book"] = {}
    with pytest.raises(SpaceError, match="target_scaling"):
        parse_space(data)
