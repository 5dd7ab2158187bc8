"""Cross-validated trials: K fold models trained in lockstep, scored on every fold, handed out as
one fold-mean model.

A study with ``--folds K`` (a blocked split) rotates its non-test blocks over K folds
(:meth:`search.data.splits.BlockedSplit.fold_layouts`); fold f validates on its blocks and trains
on the other non-test blocks, with inputs normalized and targets scaled from its own training
rows (:meth:`search.data.prepare.Prepared.folds`). A trial trains its K fold models one epoch
each in turn and reports the mean val MAE over folds at step = epoch, so pruners, early stopping
(on that mean), per-epoch MLflow metrics and epoch checkpoints keep their meaning. Its value is
the mean over folds of each fold's best-epoch val MAE.

What a trial hands out is :func:`fold_mean_model`: one Keras model that takes raw windows (the
study's :meth:`~search.data.prepare.Prepared.model_view`), feeds each fold model its own
normalization (a ``Normalization`` layer with the fold's training statistics) and averages their
forecasts, in the target's units. It loads in Keras' safe mode like any trial's model. Each trial
also saves its out-of-fold val predictions (``oof.npz``: no pickle) for ensembles.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from search import interrupt
from search.data.prepare import CALENDAR_COLUMNS, Prepared
from search.data.references import LinearReference, baseline_mae
from search.data.windows import WindowDataset, make_windows
from search.engines.base import TrialHandle, TrialPruned
from search.training.checkpoints import (
    load_fold_checkpoints,
    restore,
    save_fold_checkpoints,
)
from search.training.compile import TrialFailed, compiled_model
from search.training.intervals import median_of
from search.training.scaling import TargetScaling, fit_scaling, loss_label
from search.training.steps import (
    StepReport,
    calibrate,
    describe_steps,
    log_report,
    naive_reference,
    step_report,
)
from search.workers import past

if TYPE_CHECKING:
    from search.spaces import TrialConfig
    from search.training.trial import TrialRunner

__all__ = ["Fold", "fold_mean_model", "fold_summary", "train_folds"]

EPOCH_KEYS = ("loss", "mae", "val_loss", "val_mae")


@dataclass
class Fold:
    """One fold of a trial: its series, windows, references, model and progress."""

    index: int
    prepared: Prepared
    scaling: TargetScaling
    model: keras.Model
    train: WindowDataset
    val: WindowDataset
    baseline: float
    linear: LinearReference
    history: list[dict[str, float]] = field(default_factory=list)
    best: float = math.inf
    best_epoch: int = -1
    best_weights: list[np.ndarray] | None = None

    def fit_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch; remember it (and its weights when its val MAE is the fold's best)."""
        result = self.model.fit(
            self.train,
            validation_data=self.val,
            epochs=epoch + 1,
            initial_epoch=epoch,
            verbose=0,
        )
        logs = {k: float(v[-1]) for k, v in result.history.items()}
        self.history.append({"epoch": epoch, **logs})
        value = logs.get("val_mae", math.nan)
        if math.isfinite(value) and value < self.best:
            self.best, self.best_epoch = value, epoch
            self.best_weights = self.model.get_weights()
        return logs


def fold_summary(
    values: list[float], baselines: list[float], linears: list[float]
) -> dict[str, float]:
    """The figures a cross-validated trial records: the mean over folds of each fold's best val
    MAE, of the references and of the skills, with standard errors over folds
    (``std(ddof=1) / sqrt(K)``)."""
    k = len(values)
    mae = np.asarray(values, dtype=np.float64)
    naive = np.asarray(baselines, dtype=np.float64)
    linear = np.asarray(linears, dtype=np.float64)
    skills, linear_skills = 1.0 - mae / naive, 1.0 - mae / linear

    def se(x: np.ndarray) -> float:
        return float(x.std(ddof=1) / math.sqrt(k)) if k > 1 else math.nan

    return {
        "value": float(mae.mean()),
        "val_mae_se": se(mae),
        "baseline_mae": float(naive.mean()),
        "linear_mae": float(linear.mean()),
        "skill": float(skills.mean()),
        "skill_se": se(skills),
        "linear_skill": float(linear_skills.mean()),
        "linear_skill_se": se(linear_skills),
    }


def fold_mean_model(folds: list[Fold], calendar: bool) -> keras.Model:
    """One model over raw windows: each fold model behind its own normalization, averaged."""
    first = folds[0].model
    inputs = keras.Input(shape=first.input_shape[1:], name="raw_window")
    extra = len(CALENDAR_COLUMNS) if calendar else 0
    outputs = []
    for fold in folds:
        mean = np.concatenate([fold.prepared.mean, np.zeros(extra)])
        variance = np.concatenate([fold.prepared.std**2, np.ones(extra)])
        normalize = keras.layers.Normalization(
            axis=-1, mean=mean.tolist(), variance=variance.tolist(), name=f"fold_{fold.index}_norm"
        )
        member = keras.Model(  # the fold's layers under a name of their own
            fold.model.inputs[0], fold.model.outputs[0], name=f"fold_{fold.index}_model"
        )
        outputs.append(member(normalize(inputs)))
    averaged = keras.layers.Average(name="fold_mean")(outputs)
    return keras.Model(inputs, averaged, name=f"fold_mean_of_{len(folds)}")


def _fold(
    runner: TrialRunner, config: TrialConfig, prepared: Prepared, index: int, seed: int
) -> Fold:
    calendar = config.calendar_features
    spec = config.window(prepared.steps_per_hour)
    scaling = fit_scaling(config.target_scaling, prepared, spec)
    train = make_windows(
        prepared, spec, "train", config.batch_size, shuffle=True, seed=seed, calendar=calendar
    )
    val = make_windows(prepared, spec, "val", config.batch_size, calendar=calendar)
    return Fold(
        index=index,
        prepared=prepared,
        scaling=scaling,
        model=compiled_model(prepared, spec, config, scaling),
        train=train,
        val=val,
        baseline=baseline_mae(prepared, spec, "val"),
        linear=runner.linear.get(prepared, spec),
    )


def _mean_logs(folds: list[Fold], logs: list[dict[str, float]]) -> dict[str, float]:
    row = {key: float(np.mean([entry.get(key, math.nan) for entry in logs])) for key in EPOCH_KEYS}
    for fold, entry in zip(folds, logs, strict=True):
        row[f"val_mae_fold_{fold.index}"] = entry.get("val_mae", math.nan)
    return row


def train_folds(
    runner: TrialRunner, handle: TrialHandle, config: TrialConfig, run_id: str
) -> float:
    """Train a cross-validated trial (see the module's docstring); returns its value."""
    number, unit, tracker = handle.number, runner.unit, runner.tracker
    seed = runner.seed + number
    keras.utils.set_random_seed(seed)
    folds = [
        _fold(runner, config, prepared, k, seed * 100 + k)
        for k, prepared in enumerate(runner.prepared.folds())
    ]
    initial_epoch, epochs = handle.epochs(config.epochs)
    history, initial_epoch = _resume(runner, handle, run_id, folds, epochs, initial_epoch)
    best_mean, best_mean_epoch = math.inf, -1
    for row in history:  # the resumed epochs' best
        if row.get("val_mae", math.inf) < best_mean:
            best_mean, best_mean_epoch = row["val_mae"], int(row["epoch"])
    baselines = [fold.baseline for fold in folds]
    linears = [fold.linear.val_mae for fold in folds]
    naive, linear = float(np.mean(baselines)), float(np.mean(linears))
    param_count = int(folds[0].model.count_params())
    tracker.log_metrics(
        run_id,
        {
            "baseline_mae": naive,
            "linear_mae": linear,
            "param_count": param_count,
            "folds": len(folds),
            **{f"baseline_mae_fold_{f.index}": f.baseline for f in folds},
            **{f"linear_mae_fold_{f.index}": f.linear.val_mae for f in folds},
        },
    )
    checkpoint_dir = runner._checkpoint_dir(number)
    pruned = timed_out = False
    started = time.perf_counter()
    for epoch in range(initial_epoch, epochs):
        row = {"epoch": epoch, **_mean_logs(folds, [fold.fit_epoch(epoch) for fold in folds])}
        history.append(row)
        values = {k: v for k, v in row.items() if k != "epoch"}
        tracker.log_metrics(run_id, values, step=epoch)
        value = row["val_mae"]
        if value < best_mean:
            best_mean, best_mean_epoch = value, epoch
        runner.say(
            f"  trial {number} epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} "
            f"({loss_label(config.loss_name, config.target_scaling, unit)})  val_mae {value:.3f} {unit} (mean of {len(folds)} "
            f"folds; trial best {min(h['val_mae'] for h in history):.3f}; on this trial's fold "
            f"windows: naive {naive:.3f}, linear {linear:.3f})"
        )
        if not all(math.isfinite(row[k]) for k in ("loss", "val_mae")):
            raise _nan(epoch)
        stop = epoch - best_mean_epoch >= config.patience
        if handle.report(epoch, value):
            pruned = stop = True
        if past(runner.deadline) and epoch + 1 < epochs:
            timed_out = stop = True  # the study's --timeout budget is spent
        signum = interrupt.requested()
        if checkpoint_dir is not None and (signum is not None or not stop) and epoch + 1 < epochs:
            save_fold_checkpoints(checkpoint_dir, [_state(f) for f in folds], history, epoch)
        if signum is not None:
            raise interrupt.Interrupted(signum) from _stopped(len(history))
        if stop:
            break
    train_seconds = time.perf_counter() - started
    for fold in folds:
        if fold.best_weights is None:
            raise _no_finite()
        fold.model.set_weights(fold.best_weights)
    best = _record(handle, tracker, run_id, folds, history, best_mean_epoch, train_seconds)
    handle.set_attrs({"param_count": param_count})
    _hand_out(runner, handle, run_id, folds, config, history, (naive, linear))
    if timed_out:
        raise runner.timed_out(handle, run_id, len(history))
    if pruned:
        raise TrialPruned(f"pruned at epoch {len(history)}")
    return best


def _resume(
    runner: TrialRunner,
    handle: TrialHandle,
    run_id: str,
    folds: list[Fold],
    epochs: int,
    initial_epoch: int,
) -> tuple[list[dict[str, float]], int]:
    """The re-run of an interrupted trial: every fold restored from its epoch checkpoint, the
    dead trial's epochs logged again and reported; returns the mean history so far and the
    epoch to start from (no checkpoint: nothing, and ``initial_epoch``)."""
    number, tracker = handle.number, runner.tracker
    source = handle.resumed_from
    source_dir = runner._checkpoint_dir(source) if source is not None else None
    restored = load_fold_checkpoints(source_dir, len(folds)) if source_dir is not None else None
    if restored is None:
        return [], initial_epoch
    states, history = restored
    for fold, state in zip(folds, states, strict=True):
        restore(fold.model, state)
        fold.history, fold.best, fold.best_epoch = state.history, state.best, state.best_epoch
        fold.best_weights = state.best_weights
    initial_epoch = max(initial_epoch, states[0].next_epoch)
    tracker.set_tags(
        run_id,
        {
            "search.resumed_from_trial": str(source),
            "search.resumed_from_epoch": str(initial_epoch),
        },
    )
    handle.set_attrs({"search.resumed_from_epoch": initial_epoch})
    for row in history:
        step = int(row["epoch"])
        tracker.log_metrics(run_id, {k: v for k, v in row.items() if k != "epoch"}, step=step)
        if math.isfinite(row.get("val_mae", math.nan)):
            handle.report(step, row["val_mae"])
    runner.say(f"  trial {number} resumes trial {source} after its epoch {initial_epoch}/{epochs}")
    return history, initial_epoch


def _record(
    handle: TrialHandle,
    tracker: Any,
    run_id: str,
    folds: list[Fold],
    history: list[dict[str, float]],
    best_mean_epoch: int,
    train_seconds: float,
) -> float:
    """The trial's figures over its folds (each fold's best epoch), logged and recorded;
    returns its value."""
    baselines = [fold.baseline for fold in folds]
    linears = [fold.linear.val_mae for fold in folds]
    summary = fold_summary([f.best for f in folds], baselines, linears)
    best = summary.pop("value")
    figures = {
        "best_val_mae": best,
        "best_epoch": best_mean_epoch + 1,  # counted from 1
        **summary,
        **{f"best_val_mae_fold_{f.index}": f.best for f in folds},
        "epochs_run": len(history),
        "train_seconds": train_seconds,
    }
    tracker.log_metrics(run_id, figures)
    handle.set_attrs(
        {
            **{k: v for k, v in summary.items()},
            "folds": len(folds),
            "fold_val_mae": [round(f.best, 6) for f in folds],
            "epochs_run": len(history),
            "train_seconds": round(train_seconds, 3),
        }
    )
    return best


def _hand_out(
    runner: TrialRunner,
    handle: TrialHandle,
    run_id: str,
    folds: list[Fold],
    config: TrialConfig,
    history: list[dict[str, float]],
    references: tuple[float, float],
) -> None:
    """The fold-mean model (calibrated out of fold for a quantile forecast), its out-of-fold
    predictions, artifacts and forecast figure, in the trial's run."""
    tracker, unit = runner.tracker, runner.unit
    naive, linear = references
    model = fold_mean_model(folds, config.calendar_features)
    if config.target_steps > 1 or config.quantiles:  # per step; calibrated out of fold
        report = _fold_steps(folds, config.quantiles)
        log_report(tracker, run_id, report, unit)
        handle.set_attrs(describe_steps(report))
        if report.offsets is not None:
            model = calibrate(model, report.offsets)
    oof = _out_of_fold(folds, runner.prepared, config.quantiles)
    _log_oof(tracker, run_id, oof)
    runner._log_artifacts(run_id, model, history, naive, linear)
    order = np.argsort(oof["row"], kind="stable")
    times = oof["time"].astype("datetime64[s]") if "time" in oof else oof["row"]
    runner._log_forecast_arrays(
        run_id, times[order], oof["actual"][order], oof["prediction"][order], oof["naive"][order]
    )


def _state(fold: Fold) -> tuple[keras.Model, list[dict[str, float]], float, int, Any]:
    return fold.model, fold.history, fold.best, fold.best_epoch, fold.best_weights


def _fold_steps(folds: list[Fold], quantiles: tuple[float, ...] | None) -> StepReport:
    """The per-step figures of every fold's best-epoch forecasts on its own val windows
    together (each fold's naive intervals from its own train windows), and the conformal
    offsets from them: out of fold, so the fold-mean model is calibrated on windows none of its
    fold models trained on."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("forecast", "actual", "last", "linear")}
    naive: list[np.ndarray] = []
    for fold in folds:
        spec = fold.val.spec
        parts["forecast"].append(np.asarray(fold.model.predict(fold.val, verbose=0), np.float64))
        parts["actual"].append(fold.val.targets().astype(np.float64))
        last = np.asarray(fold.prepared.target, np.float64)[fold.val.last_input_rows()]
        parts["last"].append(last)
        parts["linear"].append(fold.linear.predict(fold.prepared, "val"))
        if quantiles:
            naive.append(naive_reference(fold.prepared, spec, quantiles).forecast(last))
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    return step_report(
        joined["forecast"],
        joined["actual"],
        joined["last"],
        joined["linear"],
        quantiles,
        np.concatenate(naive) if quantiles else None,
    )


def _out_of_fold(
    folds: list[Fold], prepared: Prepared, quantiles: tuple[float, ...] | None = None
) -> dict[str, np.ndarray]:
    """Every fold's best-epoch forecasts on its own val windows, with the rows and times of the
    targets (every step), the actual values, the naive and the linear forecasts."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("fold", "row", "prediction", "actual")}
    parts.update(naive=[], linear=[])
    for fold in folds:
        spec, val = fold.val.spec, fold.val
        stride = spec.target_stride if spec.target_steps > 1 else 0
        offsets = spec.delay + np.arange(spec.target_steps) * stride
        rows = val.start_rows()[:, None] + offsets[None, :]
        predicted = np.asarray(fold.model.predict(val, verbose=0), dtype=np.float64)
        predicted = predicted.reshape(len(rows), spec.target_steps, -1)
        predicted = median_of(predicted if quantiles else predicted[..., 0], quantiles)
        parts["fold"].append(np.full(len(rows), fold.index, dtype=np.int64))
        parts["row"].append(rows[:, 0])
        parts["prediction"].append(predicted[:, 0])
        parts["actual"].append(val.targets()[:, 0].astype(np.float64))
        parts["naive"].append(prepared.target[val.last_input_rows()].astype(np.float64))
        parts["linear"].append(fold.linear.predict(fold.prepared, "val")[:, 0])
    oof = {k: np.concatenate(v) for k, v in parts.items()}
    if prepared.times is not None:
        oof["time"] = (
            np.asarray(prepared.times).astype("datetime64[s]")[oof["row"]].astype(np.int64)
        )
    return oof


def _log_oof(tracker: Any, run_id: str, oof: dict[str, Any]) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="search-oof-") as folder:
        path = Path(folder) / "oof.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **oof)
        path.write_bytes(buffer.getvalue())
        tracker.log_file(run_id, path, "")


def _nan(epoch: int) -> Exception:
    return TrialFailed(f"loss or val_mae became NaN at epoch {epoch + 1}")


def _no_finite() -> Exception:
    return TrialFailed("no epoch produced a finite val_mae")


def _stopped(done: int) -> Exception:
    return TrialFailed(f"stopped after epoch {done}; re-queued to resume from its checkpoint")
