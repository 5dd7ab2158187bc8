"""Evaluate a study's best model once on the test split (the search itself never sees test data).

The data is rebuilt from the study's record through the same code as the study.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from search.engines import Engine
from search.errors import SearchError
from search.record import StudyRecord, load_study_data, load_study_space


def load_keras_file(path: Path) -> Any:
    """A saved ``model.keras``, loaded in Keras' safe mode (it predicts in the target's units)."""
    import keras

    import search.serving.layers  # noqa: F401  (registers the custom layers for loading)

    return keras.models.load_model(path, compile=False, safe_mode=True)


def load_trial_model(tracker: Any, run_id: str) -> Any:
    """A trial's saved ``model.keras`` from the tracking store, loaded in Keras' safe mode."""
    return load_keras_file(tracker.download(run_id, "model/model.keras"))


def trial_run_id(tracker: Any, trial: Any, study: str) -> str:
    """The MLflow run of a trial; one whose run was created in the tracking spool while the
    server was down is found by its spool key once `search sync` has sent it."""
    ref = trial.attrs.get("mlflow_run_id")
    if not ref:
        raise SearchError(f"study {study!r} has no MLflow run for trial {trial.number}")
    run_id = tracker.resolve_run(str(ref))
    if run_id is None:
        raise SearchError(
            f"trial {trial.number}'s MLflow run is still in the tracking spool of the machine "
            f"that ran it; run `search sync {study}` there first"
        )
    return str(run_id)


def evaluate_best_on_test(engine: Engine, study: str, tracking_uri: str) -> dict[str, Any]:
    """Load the best trial's saved model from the tracking store, evaluate it on the test split,
    log to the study's parent run, and return the figures (with the target's ``unit``)."""
    from search.data.references import baseline_mae
    from search.data.stored_references import linear_mae_on
    from search.data.windows import make_windows
    from search.tracking import open_tracker

    best = engine.best()
    if best is None:
        raise SearchError(f"study {study!r} has no completed trial to evaluate")
    record = StudyRecord.from_attrs(engine.study_attrs())
    run_id = best.attrs.get("mlflow_run_id")
    parent = record.mlflow_parent_run_id
    if not run_id or not parent:
        raise SearchError(f"study {study!r} has no MLflow runs recorded; cannot find its model")
    tracker = open_tracker(tracking_uri, study)
    run_id = trial_run_id(tracker, best, study)
    space = load_study_space(record, tracker)
    config = space.resolve(best.params, book=best.is_book)
    dataset, prepared = load_study_data(record, space)
    spec = config.window(prepared.steps_per_hour)
    model = load_trial_model(tracker, run_id)
    test = make_windows(  # a fold-mean model takes raw windows: model_view
        prepared.model_view(), spec, "test", config.batch_size, calendar=config.calendar_features
    )
    steps: dict[str, Any] = {}
    if config.target_steps > 1 or config.quantiles:
        steps = step_test_figures(model, test, prepared, spec, config.quantiles)
        test_mae = steps.pop("test_mae")
    else:
        model.compile(loss="mae", metrics=["mae"])
        results = model.evaluate(test, verbose=0, return_dict=True)
        test_mae = float(results["mae"])
    test_baseline = baseline_mae(prepared, spec, "test")
    test_linear = linear_mae_on(prepared, spec, "test")
    figures = {
        "test_mae": test_mae,
        "test_baseline_mae": test_baseline,
        "test_skill": 1.0 - test_mae / test_baseline,
        "test_linear_mae": test_linear,
        "test_linear_skill": 1.0 - test_mae / test_linear,
    }
    estimate = best.attrs.get("skill")
    if isinstance(estimate, (int, float)) and math.isfinite(estimate):
        # how far the estimate the study printed is from what its model does on test (points)
        figures["selection_gap"] = 100.0 * (float(estimate) - figures["test_skill"])
    figures.update({k: v for k, v in steps.items() if not isinstance(v, list)})
    tracker.log_metrics(parent, figures)
    tracker.set_tags(parent, {"search.test_evaluated_trial": best.number})
    tracker.log_metrics(run_id, figures)
    lists = {k: v for k, v in steps.items() if isinstance(v, list)}
    return {
        **figures,
        **lists,
        "parent_run_id": parent,
        "trial": best.number,
        "unit": dataset.unit,
    }


def step_test_figures(
    model: Any, test: Any, prepared: Any, spec: Any, quantiles: tuple[float, ...] | None
) -> dict[str, Any]:
    """A multi-step or quantile model's test figures: the mean MAE over steps of its median
    (``test_mae``) and per step (``test_mae_step_<k>``, and ``mae_by_step`` /
    ``naive_mae_by_step`` as lists), and with quantiles the weighted quantile loss and the
    coverage of its (calibrated) central interval, overall and per step, beside the naive
    forecast with intervals from the training windows."""
    import numpy as np

    from search.training import intervals
    from search.training.steps import naive_reference

    forecast = np.asarray(model.predict(test, verbose=0), dtype=np.float64)
    forecast = forecast.reshape(forecast.shape[0], spec.target_steps, -1)
    actual = test.targets().astype(np.float64)
    point = intervals.median_of(forecast if quantiles else forecast[..., 0], quantiles)
    last = np.asarray(prepared.target, np.float64)[test.last_input_rows()]
    by_step = intervals.step_mae(point, actual)
    naive_by_step = intervals.step_mae(np.broadcast_to(last[:, None], actual.shape), actual)
    out: dict[str, Any] = {"test_mae": float(by_step.mean())}
    if spec.target_steps > 1:
        out.update({f"test_mae_step_{k}": float(v) for k, v in enumerate(by_step, 1)})
        out.update({f"test_naive_mae_step_{k}": float(v) for k, v in enumerate(naive_by_step, 1)})
        out["mae_by_step"] = [float(v) for v in by_step]
        out["naive_mae_by_step"] = [float(v) for v in naive_by_step]
    if quantiles:
        reference = naive_reference(prepared, spec, quantiles).forecast(last)
        per_step = intervals.coverage(actual, forecast, per_step=True)
        out.update(
            {
                "test_wql": intervals.weighted_quantile_loss(actual, forecast, quantiles),
                "test_naive_wql": intervals.weighted_quantile_loss(actual, reference, quantiles),
                "test_coverage": float(intervals.coverage(actual, forecast)),
                "test_naive_coverage": float(intervals.coverage(actual, reference)),
                "test_coverage_min_step": float(per_step.min()),
                "test_coverage_max_step": float(per_step.max()),
                "test_interval_level": float(quantiles[-1] - quantiles[0]),
            }
        )
        out["test_wql_skill"] = 1.0 - out["test_wql"] / out["test_naive_wql"]
        out["coverage_by_step"] = [float(v) for v in per_step]
        if spec.target_steps > 1:
            out.update({f"test_coverage_step_{k}": float(v) for k, v in enumerate(per_step, 1)})
    return out
