"""Evaluate a study's best model once on the test split (the search itself never sees test data)."""

from __future__ import annotations

from typing import Any

import keras
import optuna

from search.errors import SearchError
from search.study import PARENT_ATTR


def evaluate_best_on_test(study: optuna.Study, tracking_uri: str) -> dict[str, Any]:
    """Load the best trial's saved model from MLflow, evaluate it on the test split, log to the
    study's parent run, and return the figures."""
    from search.datasets import load_dataset
    from search.spaces import load_space
    from search.tracking import StudyTracker
    from search.windows import baseline_mae, make_windows, prepare

    try:
        best = study.best_trial
    except ValueError:
        raise SearchError(
            f"study {study.study_name!r} has no completed trial to evaluate"
        ) from None
    attrs = study.user_attrs
    run_id = best.user_attrs.get("mlflow_run_id")
    parent = attrs.get(PARENT_ATTR)
    if not run_id or not parent:
        raise SearchError(
            f"study {study.study_name!r} has no MLflow runs recorded; cannot find its model"
        )
    space = load_space(attrs.get("space", "quick"))
    config = space.resolve(best.params)
    dataset = load_dataset(
        attrs.get("data", "jena-2020"),
        time_column=attrs.get("time_column"),
        target=attrs.get("target"),
        features=attrs.get("features"),
    )
    if attrs.get("max_rows"):
        dataset = dataset.head(int(attrs["max_rows"]))
    prepared = prepare(dataset)
    spec = prepared.spec(
        config.lookback_hours, config.sampling_rate, config.horizon_hours, config.target_steps
    )
    tracker = StudyTracker(tracking_uri, study.study_name)
    model_path = tracker.download(run_id, "model/model.keras")
    import search.models  # noqa: F401  (registers the custom layers for deserialization)

    model = keras.models.load_model(model_path, compile=False)
    model.compile(loss=config.loss, metrics=["mae"])
    test = make_windows(prepared, spec, "test", config.batch_size)
    results = model.evaluate(test, verbose=0, return_dict=True)
    test_mae = float(results["mae"])
    test_baseline = baseline_mae(prepared, spec, "test")
    figures = {
        "test_mae": test_mae,
        "test_baseline_mae": test_baseline,
        "test_skill": 1.0 - test_mae / test_baseline,
    }
    tracker.log_metrics(parent, figures)
    tracker.set_tags(parent, {"search.test_evaluated_trial": best.number})
    tracker.log_metrics(run_id, figures)
    return {**figures, "parent_run_id": parent, "trial": best.number}
