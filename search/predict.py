"""Using the model a study found: forecasts on a new file, and the model for anyone to use.

The study's data is rebuilt from its record (its columns, window geometry and the normalization
statistics of its own training split) into one preprocessing spec (:func:`preprocessing_spec`);
the model is the best trial's saved ``model.keras``, which predicts in the target's units.
`search predict` applies the spec to a new file with ``search/serving/forecast.py``; `search
best --register` / ``--export-model`` save the same spec, functions and Keras model as an MLflow
``pyfunc`` model that takes raw rows (``search/serving/``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.engines import Engine, TrialSummary
from search.errors import DataError, SearchError
from search.evaluate import load_keras_file, load_trial_model, trial_run_id
from search.preprocessing import preprocessing_spec
from search.record import StudyRecord, load_study_data, load_study_space

__all__ = [
    "Forecasts",
    "check_export_folder",
    "export_best",
    "export_ensemble",
    "predict_ensemble_file",
    "serving_ensemble",
    "predict_file",
    "preprocessing_spec",
    "register_best",
    "register_ensemble",
]


@dataclass
class Forecasts:
    """One row per forecast (and step): when it was issued (the window's last row), the step,
    the time it is for, the forecast in the target's units and, where the file holds that time,
    the actual value and the naive forecast (the value at ``issued_at``)."""

    target: str
    unit: str
    times: np.ndarray
    values: np.ndarray  # (n_forecasts,)
    trial: int | str  # the trial whose model forecast, or the ensemble's description
    issued_at: np.ndarray | None = None
    actual: np.ndarray | None = None  # NaN where the time lies past the file's end
    naive: np.ndarray | None = None
    steps: np.ndarray | None = None  # 1 is the first step (None: every forecast is step 1)
    quantiles: np.ndarray | None = None  # (n_forecasts, levels), sorted along the levels
    levels: tuple[float, ...] | None = None

    def score(self) -> tuple[int, float, float] | None:
        """``(forecasts, MAE, naive MAE)`` over the forecasts whose time the file holds."""
        if self.actual is None or self.naive is None:
            return None
        known = np.isfinite(self.actual)
        if not known.any():
            return None
        mae = float(np.abs(self.values[known] - self.actual[known]).mean())
        naive = float(np.abs(self.naive[known] - self.actual[known]).mean())
        return int(known.sum()), mae, naive

    def to_csv(self, path: Path | None = None) -> str:
        """The forecasts as CSV text, also written to ``path``: ``issued_at,step,time,forecast
        <target>,actual <target>,naive <target>,past_end`` (``past_end`` 1 for a forecast
        beyond the file's last row, whose actual value is not known yet); a quantile model adds
        one column per level, ``q0.1 <target>``, ... (``forecast`` is the median)."""
        from search.serving.forecast import quantile_column

        t = self.target
        levels = list(self.levels or ()) if self.quantiles is not None else []
        extra = "".join(f",{quantile_column(q, t)}" for q in levels)
        lines = [f"issued_at,step,time,forecast {t}{extra},actual {t},naive {t},past_end"]
        n = len(self.values)
        issued = self.issued_at if self.issued_at is not None else [None] * n
        actual = self.actual if self.actual is not None else np.full(n, np.nan)
        naive = self.naive if self.naive is not None else np.full(n, np.nan)
        steps = self.steps if self.steps is not None else np.ones(n, dtype=np.int64)
        bands = self.quantiles if self.quantiles is not None else np.zeros((n, 0))
        for when, step, time, value, band, real, flat in zip(
            issued, steps, self.times, self.values, bands, actual, naive, strict=True
        ):
            cells = [_stamp(when) if when is not None else "", str(int(step)), _stamp(time)]
            cells += [f"{value:.4f}", *(f"{v:.4f}" for v in band)]
            cells += [f"{real:.4f}" if np.isfinite(real) else "", f"{flat:.4f}"]
            cells.append("0" if np.isfinite(real) else "1")
            lines.append(",".join(cells))
        text = "\n".join(lines) + "\n"
        if path is not None:
            try:
                Path(path).write_text(text)
            except OSError as exc:
                raise SearchError(f"cannot write {path}: {exc.strerror}") from None
        return text


def _stamp(time: Any) -> str:
    return str(np.datetime_as_string(time, unit="s")).replace("T", " ")


def _best(engine: Engine, study: str) -> tuple[TrialSummary, StudyRecord]:
    best = engine.best()
    if best is None:
        raise SearchError(f"study {study!r} has no completed trial to use")
    if not best.attrs.get("mlflow_run_id"):
        raise SearchError(f"study {study!r} has no MLflow run for trial {best.number}")
    return best, StudyRecord.from_attrs(engine.study_attrs())


@dataclass
class _Found:
    """The best trial of a study, with everything rebuilt from its record."""

    best: TrialSummary
    record: StudyRecord
    tracker: Any
    run_id: str
    dataset: Any
    prepared: Any
    spec: dict[str, Any]


def _found(engine: Engine, study: str, tracking_uri: str) -> _Found:
    from search.tracking import open_tracker

    best, record = _best(engine, study)
    tracker = open_tracker(tracking_uri, study)
    space = load_study_space(record, tracker)
    config = space.resolve(best.params, book=best.is_book)
    dataset, prepared = load_study_data(record, space)
    spec = preprocessing_spec(record, config, dataset, prepared)
    run_id = trial_run_id(tracker, best, study)
    return _Found(best, record, tracker, run_id, dataset, prepared, spec)


def predict_file(
    engine: Engine,
    study: str,
    tracking_uri: str,
    data: str,
    time_column: str | None = None,
    time_format: str | None = None,
) -> Forecasts:
    """Forecast with the best trial's model on every complete window of a new file (repaired
    like the study's own data, then through the same functions as the saved MLflow model)."""
    from search.data.sources import validate_source

    validate_source(data)
    found = _found(engine, study, tracking_uri)
    model = load_trial_model(found.tracker, found.run_id)
    predictor = [(found.spec, lambda x: model.predict(x, verbose=0), 1.0)]
    return _predict(study, found.spec, predictor, found.best.number, data, time_column, time_format)


def predict_ensemble_file(
    found: _FoundEnsemble,
    study: str,
    data: str,
    time_column: str | None = None,
    time_format: str | None = None,
) -> Forecasts:
    """Forecast with the study's ensemble (:func:`serving_ensemble`) on a new file: each member
    on its own windows, combined on the times they all forecast."""
    from search.data.sources import validate_source

    validate_source(data)
    members = [
        (spec, _predictor(load_keras_file(path)), weight) for _, path, spec, weight in found.members
    ]
    label = f"the ensemble of {len(members)} members"
    return _predict(study, found.spec, members, label, data, time_column, time_format)


def _predictor(model: Any) -> Any:
    return lambda x: model.predict(x, verbose=0)


def _predict(
    study: str,
    spec: dict[str, Any],
    members: list[tuple[dict[str, Any], Any, float]],
    label: int | str,
    data: str,
    time_column: str | None,
    time_format: str | None,
) -> Forecasts:
    from search.data.sources import load_dataset
    from search.serving.forecast import RowsError, check_row_count, ensemble_forecast

    try:
        new = load_dataset(
            data,
            time_column=time_column,
            target=spec["target"],
            features=list(spec["features"]),
            time_format=time_format,
        )
    except DataError as exc:  # its message names the file already
        raise DataError(f"not usable with the model of study {study!r}: {exc}") from None
    if not math.isclose(new.steps_per_hour, spec["steps_per_hour"]):
        raise DataError(
            f"{data} has {new.steps_per_hour:g} rows per hour but study {study!r} was trained on "
            f"{spec['steps_per_hour']:g}; resample the file to the study's step"
        )
    try:
        check_row_count(spec, len(new))
        result = ensemble_forecast(members, new.times, new.values)
    except RowsError as exc:
        raise DataError(f"{data} has {exc}") from None
    times = np.asarray(new.times).astype("datetime64[s]")
    target = np.asarray(new.target, dtype=np.float64)
    at = np.clip(np.searchsorted(times, result.times), 0, len(times) - 1)
    known = times[at] == result.times
    return Forecasts(
        target=spec["target"],
        unit=spec["unit"],
        times=result.times,
        values=result.values,
        trial=label,
        issued_at=result.made_from,
        actual=np.where(known, target[at], np.nan),
        naive=target[np.searchsorted(times, result.made_from)],
        steps=result.steps,
        quantiles=result.quantiles,
        levels=result.levels,
    )


def _example_rows(found: Any, windows: int = 3) -> Any:
    """Real rows of the study's data as a user's CSV holds them (times as text), enough for a
    few forecasts: the input example and the signature of the saved model."""
    import pandas as pd

    from search.serving.forecast import check_row_count

    spec = found.spec
    needed = len(found.dataset) - check_row_count(spec, len(found.dataset)) + windows
    times = pd.Series(found.dataset.times[:needed])
    fmt = spec["time_format"]
    text = times.dt.strftime(fmt if fmt and "%" in fmt else "%Y-%m-%d %H:%M:%S")
    frame = pd.DataFrame({spec["time_column"]: text.astype(object)})
    for j, name in enumerate(spec["features"]):
        # as the file wrote them (1008.89, not float32's 1008.890015)
        frame[name] = np.asarray(found.dataset.values[:needed, j]).astype(str).astype(np.float64)
    return frame


def _description(found: _Found, study: str) -> str:
    """Which study and trial the model came from, with its estimate and its test figures."""
    spec, best = found.spec, found.best
    unit = spec["unit"]
    text = (
        f"Forecasts {spec['target']} {spec['horizon_hours']:g} h ahead from the last "
        f"{spec['lookback_hours']:g} h of raw rows ({spec['time_column']!r} and "
        f"{len(spec['features'])} columns). From study {study!r}, trial {best.number}"
    )
    if best.value is not None:
        text += f": val MAE {best.value:.3f} {unit}"
    metrics = found.tracker.run_metrics(found.run_id)
    if "test_mae" in metrics:
        text += f"; test MAE {metrics['test_mae']:.3f} {unit}"
        if "test_baseline_mae" in metrics:
            text += f" (naive {metrics['test_baseline_mae']:.3f}"
            if "test_linear_mae" in metrics:
                text += f", linear {metrics['test_linear_mae']:.3f}"
            text += ")"
    else:
        text += "; not evaluated on the test split (search best --evaluate-test)"
    return text + "."


def _save(found: _Found, path: Path) -> None:
    from search.serving.forecast import forecast_frame
    from search.tracking.mlflow import save_pyfunc_model

    keras_path = found.tracker.download(found.run_id, "model/model.keras")
    model = load_keras_file(keras_path)
    example = _example_rows(found)
    output = forecast_frame(found.spec, example, lambda x: model.predict(x, verbose=0))
    save_pyfunc_model(path, keras_path, found.spec, example, output)


@dataclass
class _FoundEnsemble:
    """A study's ensemble, its members ready to save, and what its example rows come from."""

    ensemble: Any
    context: Any
    members: list[tuple[str, Any, dict[str, Any], float]]
    dataset: Any
    spec: dict[str, Any]  # the member reading the most rows


def serving_ensemble(ensemble: Any, context: Any) -> _FoundEnsemble:
    """A built ensemble (``search.ensemble.build_ensemble``) with its members ready to save or
    to forecast with."""
    from search.ensemble import serving_members
    from search.serving.forecast import longest_spec

    members = serving_members(ensemble, context)
    spec = longest_spec(m[2] for m in members)
    return _FoundEnsemble(ensemble, context, members, context.dataset, spec)


def _save_ensemble(found: _FoundEnsemble, path: Path) -> None:
    from search.serving.forecast import ensemble_frame
    from search.tracking.mlflow import save_ensemble_pyfunc_model

    example = _example_rows(found, windows=3)
    predictors = [(spec, _predictor(load_keras_file(p)), w) for _, p, spec, w in found.members]
    output = ensemble_frame(predictors, example)
    save_ensemble_pyfunc_model(path, found.members, example, output)


def _ensemble_description(found: _FoundEnsemble, study: str) -> str:
    ensemble, spec = found.ensemble, found.spec
    members = ", ".join(
        f"{'linear' if m == 'linear' else 'trial ' + m} {w:.2f}"
        for m, w in ensemble.weights.items()
    )
    return (
        f"Forecasts {spec['target']} {spec['horizon_hours']:g} h ahead from raw rows "
        f"({spec['time_column']!r} and {len(spec['features'])} columns): the greedy ensemble of "
        f"study {study!r} ({members}); estimate {ensemble.estimate_mae:.3f} {ensemble.unit}, "
        f"skill {ensemble.skill:+.1%} vs naive ({'in-sample' if ensemble.in_sample else 'cross-fitted'})."
    )


def register_ensemble(found: _FoundEnsemble, study: str, name: str) -> dict[str, Any]:
    """Register the study's ensemble (a ``pyfunc`` model with every member inside) as ``name``,
    logged under the ensemble's run (``log_ensemble`` first)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="search-register-") as folder:
        path = Path(folder) / "model"
        _save_ensemble(found, path)
        version = found.context.tracker.register_model(
            found.ensemble.run_id, path, name, _ensemble_description(found, study)
        )
    return {"name": name, "version": version, "uri": f"models:/{name}/{version}"}


def export_ensemble(found: _FoundEnsemble, folder: str | Path) -> dict[str, Any]:
    """Save the study's ensemble (the ``pyfunc`` model `register_ensemble` registers) into a new
    or empty ``folder``."""
    path = check_export_folder(folder)
    if path.is_dir():
        path.rmdir()
    _save_ensemble(found, path)
    return {"path": str(path.resolve())}


def register_best(engine: Engine, study: str, tracking_uri: str, name: str) -> dict[str, Any]:
    """Register the best trial's forecaster in MLflow's model registry under ``name`` (a
    ``pyfunc`` model from raw rows to forecasts); returns the version and its URI."""
    import tempfile

    found = _found(engine, study, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="search-register-") as folder:
        path = Path(folder) / "model"
        _save(found, path)
        version = found.tracker.register_model(found.run_id, path, name, _description(found, study))
    return {
        "name": name,
        "version": version,
        "uri": f"models:/{name}/{version}",
        "trial": found.best.number,
    }


def check_export_folder(folder: str | Path) -> Path:
    """The folder to export a model into: new, or empty; a one-line error otherwise."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise SearchError(f"--export-model {folder}: it is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise SearchError(
            f"--export-model {folder}: the folder exists and is not empty; give a new or empty one"
        )
    return path


def export_best(
    engine: Engine, study: str, tracking_uri: str, folder: str | Path
) -> dict[str, Any]:
    """Save the best trial's forecaster (the ``pyfunc`` model `register_best` registers) into a
    new or empty ``folder``."""
    path = check_export_folder(folder)
    found = _found(engine, study, tracking_uri)
    if path.is_dir():
        path.rmdir()  # empty: MLflow saves into a folder it creates
    _save(found, path)
    return {"path": str(path.resolve()), "trial": found.best.number}
