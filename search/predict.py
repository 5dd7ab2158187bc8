"""Using the model a study found: forecasts on a new file, and the model in MLflow's registry.

The study's data is rebuilt from its record (its columns, window geometry and the normalization
statistics of its own training split) and applied to the new rows; the model is the best
trial's saved ``model.keras``, which predicts in the target's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.engines import Engine, TrialSummary
from search.errors import DataError, SearchError
from search.evaluate import load_trial_model, trial_run_id
from search.record import StudyRecord, load_study_data, load_study_space

__all__ = ["Forecasts", "predict_file", "register_best"]


@dataclass
class Forecasts:
    """One row per forecast: the time it is for, and the forecast in the target's units."""

    target: str
    unit: str
    times: np.ndarray
    values: np.ndarray  # (n_forecasts,)
    trial: int

    def to_csv(self, path: Path | None = None) -> str:
        """The forecasts as CSV text (``time,forecast <target>``), also written to ``path``."""
        lines = [f"time,forecast {self.target}"]
        for time, value in zip(self.times, self.values, strict=True):
            stamp = str(np.datetime_as_string(time, unit="s")).replace("T", " ")
            lines.append(f"{stamp},{value:.4f}")
        text = "\n".join(lines) + "\n"
        if path is not None:
            try:
                Path(path).write_text(text)
            except OSError as exc:
                raise SearchError(f"cannot write {path}: {exc.strerror}") from None
        return text


def _best(engine: Engine, study: str) -> tuple[TrialSummary, StudyRecord]:
    best = engine.best()
    if best is None:
        raise SearchError(f"study {study!r} has no completed trial to use")
    if not best.attrs.get("mlflow_run_id"):
        raise SearchError(f"study {study!r} has no MLflow run for trial {best.number}")
    return best, StudyRecord.from_attrs(engine.study_attrs())


def predict_file(
    engine: Engine,
    study: str,
    tracking_uri: str,
    data: str,
    time_column: str | None = None,
    time_format: str | None = None,
) -> Forecasts:
    """Forecast with the best trial's model on every complete window of a new file."""
    from search.data.prepare import calendar_columns
    from search.data.sources import load_dataset, unit_of, validate_source
    from search.tracking import open_tracker

    validate_source(data)
    best, record = _best(engine, study)
    tracker = open_tracker(tracking_uri, study)
    space = load_study_space(record, tracker)
    config = space.resolve(best.params, book=best.is_book)
    trained, prepared = load_study_data(record, space)
    try:
        new = load_dataset(
            data,
            time_column=time_column,
            target=trained.target_name,
            features=list(trained.feature_names),
            time_format=time_format,
        )
    except DataError as exc:
        raise DataError(f"{data}: not usable with study {study!r}'s model: {exc}") from None
    if not math.isclose(new.steps_per_hour, prepared.steps_per_hour):
        raise DataError(
            f"{data} has {new.steps_per_hour:g} rows per hour but study {study!r} was trained on "
            f"{prepared.steps_per_hour:g}; resample the file to the study's step"
        )
    spec = config.window(prepared.steps_per_hour)
    view = prepared.model_view()  # what the saved model takes (raw for a fold-mean model)
    inputs = ((np.asarray(new.values, np.float64) - view.mean) / view.std).astype(np.float32)
    if config.calendar_features:
        inputs = np.concatenate([inputs, calendar_columns(new.times, len(inputs))], axis=1)
    offsets = np.arange(spec.sequence_length, dtype=np.int64) * int(spec.sampling_rate)
    count = len(inputs) - int(offsets[-1])
    if count < 1:
        raise DataError(
            f"{data} has {len(inputs)} rows; the model needs {int(offsets[-1]) + 1} rows "
            f"({config.lookback_hours:g} h) for one forecast"
        )
    model = load_trial_model(tracker, trial_run_id(tracker, best, study))
    starts = np.arange(count, dtype=np.int64)
    outputs = []
    for first in range(0, count, 1024):
        chunk = starts[first : first + 1024]
        x = np.take(inputs, chunk[:, None] + offsets[None, :], axis=0)
        outputs.append(np.asarray(model.predict(x, verbose=0))[:, 0])
    last = new.times[starts + int(offsets[-1])].astype("datetime64[s]")
    horizon = np.timedelta64(round(spec.horizon_hours * 3600), "s")
    return Forecasts(
        target=trained.target_name,
        unit=unit_of(trained.target_name),
        times=last + horizon,
        values=np.concatenate(outputs),
        trial=best.number,
    )


def register_best(engine: Engine, study: str, tracking_uri: str, name: str) -> dict[str, Any]:
    """Register the best trial's model in MLflow's model registry under ``name`` (Keras
    flavor, with a signature from real input windows); returns the version and its URI."""
    from search.data.windows import make_windows
    from search.tracking import open_tracker

    best, record = _best(engine, study)
    tracker = open_tracker(tracking_uri, study)
    space = load_study_space(record, tracker)
    config = space.resolve(best.params, book=best.is_book)
    _, prepared = load_study_data(record, space)
    spec = config.window(prepared.steps_per_hour)
    val = make_windows(prepared.model_view(), spec, "val", 8, calendar=config.calendar_features)
    example = val[0][0]
    run_id = trial_run_id(tracker, best, study)
    model = load_trial_model(tracker, run_id)
    version = tracker.register_keras_model(run_id, model, example, name)
    return {
        "name": name,
        "version": version,
        "uri": f"models:/{name}/{version}",
        "trial": best.number,
    }
