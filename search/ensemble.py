"""Ensembles of a study's trials: the greedy combination of its top trials and the linear
reference, chosen on predictions no member trained on, and scored on windows the choice never saw.

Forward selection with replacement (Caruana et al. 2004): start from nothing; at each of
``STEPS`` steps add the member (any of the top-N trials, or the linear reference) whose addition
gives the lowest MAE of the running mean; a member's weight is how often it was added divided
by the steps. Members may differ in lookback, sampling rate, calendar inputs and target scaling:
each forecasts with its own windows, and the ensemble combines their forecasts of the same target
times (the times every member forecasts).

- A cross-validated study (``--folds``) selects on the out-of-fold val predictions every trial
  saved (``oof.npz``). Its estimate is cross-fitted: for each fold, the weights chosen on the
  other folds' predictions, scored on this fold's; so the printed figure was never used to
  choose the weights it scores.
- A one-slice study selects on each member's val predictions (its model rerun on val); its val
  figure is in-sample, and says so.

The members' test forecasts (``--evaluate-test``) come from their saved models (the fold-mean
model for a cross-validated study) and the linear reference's saved coefficients.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.engines import Engine, TrialSummary
from search.errors import DataError, SearchError
from search.training.linear_member import linear_member_model

__all__ = [
    "DEFAULT_TOP",
    "STEPS",
    "Ensemble",
    "build_ensemble",
    "evaluate_ensemble_on_test",
    "greedy_selection",
]

DEFAULT_TOP = 10
"""Members considered by default: the 10 best complete trials (and the linear reference)."""

STEPS = 25
"""Greedy steps: weights are multiples of 1/25."""

LINEAR = "linear"
RTOL = 1e-4  # saved targets against the study's data today


def greedy_selection(
    predictions: np.ndarray, actual: np.ndarray, steps: int = STEPS
) -> tuple[np.ndarray, list[float]]:
    """Forward selection with replacement: ``(counts per member, MAE after each step)``.

    ``predictions`` is (members, targets); ties go to the earlier member (the better-ranked)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    total = np.zeros(predictions.shape[1])
    counts = np.zeros(predictions.shape[0], dtype=np.int64)
    curve: list[float] = []
    for step in range(1, steps + 1):
        maes = np.abs((total[None, :] + predictions) / step - actual[None, :]).mean(axis=1)
        chosen = int(np.argmin(maes))
        counts[chosen] += 1
        total += predictions[chosen]
        curve.append(float(maes[chosen]))
    return counts, curve


def _mae(forecast: np.ndarray, actual: np.ndarray) -> float:
    return float(np.abs(np.asarray(forecast) - np.asarray(actual)).mean())


@dataclass
class _Forecasts:
    """One member's forecasts of target rows (the first target step)."""

    rows: np.ndarray
    values: np.ndarray
    fold: np.ndarray | None = None


@dataclass
class Ensemble:
    """A chosen ensemble: its members (trial numbers or ``"linear"``), weights and figures."""

    study: str
    members: list[str]  # every candidate, best trial first, linear last
    counts: np.ndarray
    steps: int
    top: int
    folds: int
    unit: str
    val_mae: float  # the ensemble's MAE on the selection windows (in-sample for its weights)
    best_val_mae: float  # the best trial's on the same windows
    naive_val_mae: float
    linear_val_mae: float
    targets: int  # target times selected on
    estimate_mae: float  # cross-fitted with folds, else the in-sample val MAE
    best_trial: int
    linear_spec: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def weights(self) -> dict[str, float]:
        """Every selected member's weight (selection count / steps), heaviest first."""
        pairs = [(m, c / self.steps) for m, c in zip(self.members, self.counts, strict=True) if c]
        return dict(sorted(pairs, key=lambda p: -p[1]))

    @property
    def in_sample(self) -> bool:
        return self.folds < 2

    @property
    def skill(self) -> float:
        """The estimate's skill against naive (cross-fitted with folds, else in-sample val)."""
        return 1.0 - self.estimate_mae / self.naive_val_mae

    @property
    def linear_skill(self) -> float:
        return 1.0 - self.estimate_mae / self.linear_val_mae

    @property
    def key(self) -> str:
        """What identifies this choice: its members, weights and how it was chosen."""
        text = json.dumps([self.members, self.counts.tolist(), self.steps, self.top])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        return {
            "members": ",".join(self.weights),
            "weights": ",".join(f"{w:.2f}" for w in self.weights.values()),
            "candidates": ",".join(self.members),
            "top": self.top,
            "steps": self.steps,
            "selected_on": "out-of-fold val" if self.folds > 1 else "val (in-sample)",
        }


def _ranked(engine: Engine, top: int, study: str) -> list[TrialSummary]:
    complete = [
        t
        for t in engine.trials()
        if t.state == "COMPLETE" and t.value is not None and math.isfinite(t.value)
    ]
    if not complete:
        raise SearchError(f"study {study!r} has no completed trial to build an ensemble from")
    return sorted(complete, key=lambda t: (t.value, t.number))[:top]


class _Study:
    """What building or testing an ensemble needs from a study: its record, space, data and
    the members' runs and models (loaded once each)."""

    def __init__(self, engine: Engine, study: str, tracking_uri: str) -> None:
        from search.evaluate import trial_run_id
        from search.record import StudyRecord, load_study_data, load_study_space
        from search.tracking import open_tracker

        self.study = study
        self.record = StudyRecord.from_attrs(engine.study_attrs())
        if not self.record.mlflow_parent_run_id:
            raise SearchError(f"study {study!r} has no MLflow runs recorded; cannot find models")
        self.tracker = open_tracker(tracking_uri, study)
        self.space = load_study_space(self.record, self.tracker)
        fixed = self.space.fixed
        if fixed.target_steps > 1 or fixed.quantiles:
            raise SearchError(
                f"study {study!r} forecasts {fixed.target_steps} steps"
                + (" with quantiles" if fixed.quantiles else "")
                + "; --ensemble combines single-step point forecasts only"
            )
        self.dataset, self.prepared = load_study_data(self.record, self.space)
        self.run_id = lambda trial: trial_run_id(self.tracker, trial, study)
        self._models: dict[int | str, Any] = {}
        self._ridges: dict[int, list[Any]] = {}
        self._trials = {t.number: t for t in engine.trials()}

    def trial(self, number: int) -> TrialSummary:
        return self._trials[number]

    def config(self, trial: TrialSummary) -> Any:
        return self.space.resolve(trial.params, book=trial.is_book)

    def spec(self, trial: TrialSummary) -> Any:
        return self.config(trial).window(self.prepared.steps_per_hour)

    def model(self, trial: TrialSummary) -> Any:
        from search.evaluate import load_trial_model

        if trial.number not in self._models:
            self._models[trial.number] = load_trial_model(self.tracker, self.run_id(trial))
        return self._models[trial.number]

    def linear_model(self, best: TrialSummary) -> Any:
        """The linear member as a Keras model on the best trial's windows (fitted once)."""
        if LINEAR not in self._models:
            ridges = self.linear(best)
            calendar = self.config(best).calendar_features
            self._models[LINEAR] = linear_member_model(ridges, self.prepared, calendar)
        return self._models[LINEAR]

    def forecasts(self, trial: TrialSummary, split: str, model: Any = None) -> _Forecasts:
        """The trial's saved model's (or ``model``'s, on the trial's windows) forecasts of one
        split's windows."""
        from search.data.windows import make_windows

        config, spec = self.config(trial), self.spec(trial)
        windows = make_windows(
            self.prepared.model_view(),
            spec,
            split,
            config.batch_size,
            calendar=config.calendar_features,
        )
        model = model if model is not None else self.model(trial)
        values = np.asarray(model.predict(windows, verbose=0), dtype=np.float64)
        return _Forecasts(windows.start_rows() + spec.delay, values[:, 0])

    def out_of_fold(self, trial: TrialSummary) -> _Forecasts:
        """The out-of-fold val forecasts the trial saved, checked against today's data."""
        with np.load(self.tracker.download(self.run_id(trial), "oof.npz")) as saved:
            oof = {k: saved[k] for k in saved.files}
        rows = oof["row"].astype(np.int64)
        target = self.prepared.target.astype(np.float64)
        if (
            rows.min() < 0
            or rows.max() >= len(target)
            or not np.allclose(oof["actual"], target[rows], rtol=RTOL, atol=RTOL)
        ):
            raise DataError(
                f"trial {trial.number}'s saved val predictions do not match study "
                f"{self.study!r}'s data today (was the data file changed?)"
            )
        return _Forecasts(
            rows,
            oof["prediction"].astype(np.float64),
            oof["fold"],
        )

    def linear(self, trial: TrialSummary) -> list[Any]:
        """The linear reference on the trial's geometry: one ridge, or one per fold (fitted
        once per study context)."""
        from search.data.stored_references import stored_linear_reference

        if trial.number not in self._ridges:
            spec = self.spec(trial)
            views = self.prepared.folds() or [self.prepared]
            self._ridges[trial.number] = [stored_linear_reference(v, spec) for v in views]
        return self._ridges[trial.number]


def _linear_forecasts(ridges: list[Any], prepared: Any, split: str) -> _Forecasts:
    """The linear reference's forecasts (the mean of the fold ridges on test; each fold's own
    ridge on its val windows out of fold)."""
    from search.data.splits import window_starts

    spec = ridges[0].spec
    folds = prepared.folds()
    if split == "val" and folds:
        parts = [
            _Forecasts(
                window_starts(f, spec, "val") + spec.delay,
                r.predict(f, "val")[:, 0],
                np.full(len(window_starts(f, spec, "val")), i),
            )
            for i, (f, r) in enumerate(zip(folds, ridges, strict=True))
        ]
        return _Forecasts(
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.fold for p in parts]),  # type: ignore[misc]
        )
    views = folds or [prepared]
    values = np.mean([r.predict(v, split)[:, 0] for v, r in zip(views, ridges, strict=True)], 0)
    return _Forecasts(window_starts(prepared, spec, split) + spec.delay, values)


def _aligned(members: list[_Forecasts]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(rows, predictions (members, rows), folds)`` on the target rows every member forecasts."""
    common = members[0].rows
    for member in members[1:]:
        common = np.intersect1d(common, member.rows)
    if not len(common):
        raise DataError("the ensemble's members forecast no target time in common")
    predictions = np.empty((len(members), len(common)))
    fold = None
    for i, member in enumerate(members):
        order = np.argsort(member.rows, kind="stable")
        at = order[np.searchsorted(member.rows, common, sorter=order)]
        predictions[i] = member.values[at]
        if member.fold is not None and fold is None:
            fold = np.asarray(member.fold)[at]
    return common, predictions, fold


def _naive(prepared: Any, spec: Any, rows: np.ndarray) -> np.ndarray:
    return prepared.target.astype(np.float64)[rows - spec.horizon_rows]


def build_ensemble(
    engine: Engine, study: str, tracking_uri: str, top: int = DEFAULT_TOP, steps: int = STEPS
) -> tuple[Ensemble, _Study]:
    """Choose the ensemble of a study's ``top`` best trials and the linear reference."""
    ranked = _ranked(engine, top, study)
    context = _Study(engine, study, tracking_uri)
    folds = context.prepared.n_folds
    best = ranked[0]
    if folds:
        members = [context.out_of_fold(t) for t in ranked]
    else:
        members = [context.forecasts(t, "val") for t in ranked]
    ridges = context.linear(best)
    members.append(_linear_forecasts(ridges, context.prepared, "val"))
    rows, predictions, fold = _aligned(members)
    actual = context.prepared.target.astype(np.float64)[rows]
    counts, curve = greedy_selection(predictions, actual, steps)
    spec = context.spec(best)
    naive = _naive(context.prepared, spec, rows)
    estimate = curve[-1]
    if folds and fold is not None:
        # cross-fitted: each fold scored with the weights chosen on the other folds
        errors = np.empty(len(rows))
        for f in np.unique(fold):
            held = fold == f
            others, _ = greedy_selection(predictions[:, ~held], actual[~held], steps)
            errors[held] = np.abs((others / steps) @ predictions[:, held] - actual[held])
        estimate = float(errors.mean())
    ensemble = Ensemble(
        study=study,
        members=[str(t.number) for t in ranked] + [LINEAR],
        counts=counts,
        steps=steps,
        top=top,
        folds=folds,
        unit=context.dataset.unit,
        val_mae=curve[-1],
        best_val_mae=_mae(predictions[0], actual),
        naive_val_mae=_mae(naive, actual),
        linear_val_mae=_mae(predictions[-1], actual),
        targets=len(rows),
        estimate_mae=estimate,
        best_trial=best.number,
        linear_spec={"trial": best.number, "penalty": [r.penalty for r in ridges]},
    )
    return ensemble, context


def log_ensemble(ensemble: Ensemble, context: _Study) -> str:
    """Log the ensemble as a run under the study's parent (once per choice) and return its id."""
    tracker = context.tracker
    found = tracker.find_run("search.ensemble_key", ensemble.key)
    if found:
        ensemble.run_id = found
        return found
    run_id = tracker.create_child_run(
        f"ensemble-top{ensemble.top}",
        {"search.role": "ensemble", "search.kind": "ensemble", "search.ensemble_key": ensemble.key},
        str(context.record.mlflow_parent_run_id),
    )
    tracker.log_params(run_id, ensemble.summary())
    tracker.log_metrics(
        run_id,
        {
            "val_mae": ensemble.val_mae,
            "estimate_mae": ensemble.estimate_mae,
            "skill": ensemble.skill,
            "linear_skill": ensemble.linear_skill,
            "best_trial_val_mae": ensemble.best_val_mae,
            "naive_val_mae": ensemble.naive_val_mae,
            "linear_val_mae": ensemble.linear_val_mae,
        },
    )
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="search-ensemble-") as folder:
        path = Path(folder) / "model.keras"
        context.linear_model(context.trial(ensemble.best_trial)).save(path)
        tracker.log_file(run_id, path, "linear")
    tracker.log_dict(
        run_id,
        {**ensemble.summary(), "weights": ensemble.weights, **ensemble.linear_spec},
        "ensemble.json",
    )
    tracker.terminate(run_id, "FINISHED")
    ensemble.run_id = run_id
    return run_id


def evaluate_ensemble_on_test(
    engine: Engine, ensemble: Ensemble, context: _Study
) -> dict[str, Any]:
    """The ensemble's test figures beside the best trial's, naive and linear, all on the target
    times every member forecasts; logged to the ensemble's run and the parent run."""
    members: list[_Forecasts] = []
    for name in ensemble.members[:-1]:
        members.append(context.forecasts(context.trial(int(name)), "test"))
    best = context.trial(ensemble.best_trial)
    members.append(context.forecasts(best, "test", context.linear_model(best)))
    rows, predictions, _ = _aligned(members)
    actual = context.prepared.target.astype(np.float64)[rows]
    forecast = (ensemble.counts / ensemble.steps) @ predictions
    naive = _naive(context.prepared, context.spec(best), rows)
    figures = {
        "ensemble_test_mae": _mae(forecast, actual),
        "ensemble_test_best_trial_mae": _mae(predictions[0], actual),
        "ensemble_test_baseline_mae": _mae(naive, actual),
        "ensemble_test_linear_mae": _mae(predictions[-1], actual),
    }
    figures["ensemble_test_skill"] = (
        1 - figures["ensemble_test_mae"] / figures["ensemble_test_baseline_mae"]
    )
    figures["ensemble_test_linear_skill"] = (
        1 - figures["ensemble_test_mae"] / figures["ensemble_test_linear_mae"]
    )
    figures["ensemble_selection_gap"] = 100 * (ensemble.skill - figures["ensemble_test_skill"])
    if ensemble.run_id:
        context.tracker.log_metrics(ensemble.run_id, figures)
    context.tracker.log_metrics(str(context.record.mlflow_parent_run_id), figures)
    return {**figures, "test_targets": len(rows)}


def serving_members(
    ensemble: Ensemble, context: _Study
) -> list[tuple[str, Any, dict[str, Any], float]]:
    """Every member with a weight: ``(name, saved Keras model file, preprocessing spec,
    weight)``, the linear member on the best trial's windows."""
    import tempfile
    from pathlib import Path

    from search.preprocessing import preprocessing_spec

    members = []
    for name, weight in ensemble.weights.items():
        number = ensemble.best_trial if name == LINEAR else int(name)
        trial = context.trial(number)
        spec = preprocessing_spec(
            context.record, context.config(trial), context.dataset, context.prepared
        )
        if name == LINEAR:
            path = Path(tempfile.mkdtemp(prefix="search-linear-")) / "model.keras"
            context.linear_model(trial).save(path)
        else:
            path = context.tracker.download(context.run_id(trial), "model/model.keras")
        members.append((name, path, spec, weight))
    return members
