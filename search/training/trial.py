"""One trial, on one screen: handle.params -> windows -> build -> fit -> references -> log -> record.

`TrialRunner` is the objective every engine runs. Each trial is seeded, logs every epoch to its
child run as it happens, reports val MAE to the engine's handle (which may stop it), keeps the
best epoch's weights and frees Keras' memory afterwards. Any exception becomes a FAIL with its
reason; the study goes on. Nothing here imports an engine or a tracking library.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from search import interrupt
from search.data.prepare import Prepared
from search.data.references import baseline_mae
from search.data.sources import unit_of
from search.data.stored_references import LinearCache
from search.data.windows import WindowDataset, make_windows
from search.engines.base import TrialHandle, TrialPruned
from search.runtime import runtime_tags
from search.training.checkpoints import (
    load_checkpoint,
    remove_checkpoint,
    restore,
    save_checkpoint,
)
from search.training.compile import TrialFailed, compiled_model
from search.training.crossval import train_folds
from search.training.monitor import EpochMonitor
from search.training.scaling import fit_scaling, loss_label
from search.training.steps import (
    StepReport,
    calibrate,
    describe_steps,
    forecast_view,
    log_report,
    trial_step_figures,
)
from search.workers import worker_attrs

if TYPE_CHECKING:
    from search.spaces import Space, TrialConfig
    from search.tracking import Tracker


@dataclass
class TrialRunner:
    """The objective of a study: call it with a trial handle, get the best val MAE in the
    target's own units."""

    space: Space
    prepared: Prepared
    tracker: Tracker
    seed: int
    epochs: int | None = None
    verbose: bool = False
    trials_planned: int | None = None
    say: Callable[[str], None] = lambda line: None
    fixed_params: dict[str, Any] = field(default_factory=dict)
    linear: LinearCache = field(default_factory=LinearCache)
    checkpoints: Path | None = None  # the study's local epoch-checkpoint folder (None: no resume)
    deadline: float | None = None  # time.monotonic() when --timeout's budget ends (None: none)
    last_trial: int | None = None  # the number of the trial run last (for a stop request)
    _done: int = 0

    @property
    def unit(self) -> str:
        return unit_of(self.prepared.target_name)

    def __call__(self, handle: TrialHandle) -> float:
        blocked = getattr(self.tracker, "blocked_seconds", None)
        try:
            return self._run(handle)
        finally:
            if blocked is not None:  # the time this trial waited in tracking calls
                now = float(getattr(self.tracker, "blocked_seconds", blocked))
                with contextlib.suppress(Exception):
                    handle.set_attrs({"tracking_blocked_s": round(now - blocked, 4)})

    def _run(self, handle: TrialHandle) -> float:
        self._done += 1
        self.last_trial = handle.number
        handle.set_attrs(worker_attrs())  # a later run on this host can tell if we died
        machine = runtime_tags()  # search.backend, search.device
        try:
            params = handle.params(self.space)
            config = self.space.resolve(params, book=handle.is_book)
        except Exception as exc:  # a space the study's sampler cannot follow: FAIL, go on
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            handle.set_attrs({"fail_reason": reason})
            self.say(f"trial {handle.number}: FAILED ({reason})")
            raise
        if self.epochs is not None:
            config = replace(config, epochs=self.epochs)
        run_id = self.tracker.create_trial_run(
            handle.number,
            tags={
                "search.architecture": config.architecture,
                "search.engine": handle.engine,
                **machine,
                "optuna.trial_number": str(handle.number),
            },
        )
        handle.set_attrs(
            {
                "mlflow_run_id": run_id,
                "architecture": config.architecture,
                "target_scaling": config.target_scaling,
                "calendar_features": config.calendar_features,
            }
        )
        counter = f"{self._done}/{self.trials_planned}" if self.trials_planned else f"{self._done}"
        self.say(f"trial {handle.number} ({counter}): {_short(config)}")
        try:
            self.tracker.log_params(
                run_id, {**config.as_dict(self.prepared.steps_per_hour), **self.fixed_params}
            )
            value = self._train(handle, config, run_id)
        except TrialPruned:
            self.tracker.end_trial_run(run_id, "PRUNED")
            handle.set_attrs({"state_reason": "pruned"})
            self.say(f"trial {handle.number}: pruned")
            self._forget(handle)
            raise
        except interrupt.Interrupted as stop:
            reason = f"interrupted by {stop}: {stop.__cause__ or 'before its first epoch ended'}"
            handle.set_attrs({"fail_reason": reason})
            self.tracker.end_trial_run(run_id, "INTERRUPTED", reason)
            self.say(f"trial {handle.number}: {reason}")
            raise
        except Exception as exc:  # a failing trial never stops the study
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            handle.set_attrs({"fail_reason": reason})
            self.tracker.end_trial_run(run_id, "FAIL", reason)
            self.say(f"trial {handle.number}: FAILED ({reason})")
            if self.verbose:  # the whole story, on request
                self.say(traceback.format_exc().rstrip())
            self._forget(handle)
            raise
        finally:
            # Keras' global state and the model freed, with one garbage collection (here, not by
            # Optuna) of what the trials made only (search.study.heap_set_aside)
            keras.backend.clear_session(free_memory=True)
        self.tracker.end_trial_run(run_id, "COMPLETE")
        self._forget(handle)
        return value

    def _checkpoint_dir(self, number: int) -> Path | None:
        return self.checkpoints / f"trial-{number}" if self.checkpoints is not None else None

    def _forget(self, handle: TrialHandle) -> None:
        """A finished trial's checkpoints are not needed any more (its model is an artifact)."""
        for number in (handle.number, handle.resumed_from):
            folder = self._checkpoint_dir(number) if number is not None else None
            if folder is not None:
                remove_checkpoint(folder)

    def _train(self, handle: TrialHandle, config: TrialConfig, run_id: str) -> float:
        if self.prepared.n_folds:  # a cross-validated study: K fold models in lockstep
            return train_folds(self, handle, config, run_id)
        number = handle.number
        keras.utils.set_random_seed(self.seed + number)
        prepared, calendar = self.prepared, config.calendar_features
        spec = config.window(prepared.steps_per_hour)
        scaling = fit_scaling(config.target_scaling, prepared, spec)
        train = make_windows(
            prepared,
            spec,
            "train",
            config.batch_size,
            shuffle=True,
            seed=self.seed + number,
            calendar=calendar,
        )
        val = make_windows(prepared, spec, "val", config.batch_size, calendar=calendar)
        baseline = baseline_mae(prepared, spec, "val")
        linear = self.linear.get(prepared, spec)
        model = compiled_model(prepared, spec, config, scaling)
        initial_epoch, epochs = handle.epochs(config.epochs)
        warm = handle.warm_start()
        if warm is not None:  # a multi-fidelity engine continues an earlier trial's model
            model.load_weights(warm)
        restored = self._restore(handle, model, run_id, epochs)
        if restored is not None:  # the re-run of an interrupted trial: from its last epoch
            initial_epoch = max(initial_epoch, restored.next_epoch)
        param_count = int(model.count_params())
        self.tracker.log_metrics(
            run_id,
            {
                "baseline_mae": baseline,
                "linear_mae": linear.val_mae,
                "param_count": param_count,
                **{k: v for k, v in scaling.describe().items() if k != "target_scaling"},
            },
        )

        monitor = self._monitor(handle, run_id, model, config, epochs, (baseline, linear.val_mae))
        if restored is not None:
            monitor.resume(
                restored.history, restored.best, restored.best_epoch, restored.best_weights
            )
        started = time.perf_counter()
        model.fit(
            train,
            validation_data=val,
            epochs=epochs,
            initial_epoch=initial_epoch,
            verbose="auto" if self.verbose else 0,
            callbacks=[monitor],
        )
        train_seconds = time.perf_counter() - started
        _raise_for(monitor)
        best = monitor.best
        checkpoint = handle.checkpoint()
        if checkpoint is not None:  # the best weights, for the trials that continue this one
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            model.save_weights(checkpoint)
        self._record(handle, run_id, monitor, baseline, linear.val_mae, train_seconds)
        handle.set_attrs({"param_count": param_count, "train_windows": train.num_windows})
        if config.target_steps > 1 or config.quantiles:  # per step, and the calibrated model
            model, report = self._steps(
                run_id, model, spec, config, val, linear.predict(prepared, "val")
            )
            handle.set_attrs(describe_steps(report))
        self._log_artifacts(run_id, model, monitor.history, baseline, linear.val_mae)
        if monitor.timed_out:  # the budget is spent: no val prediction just for a figure
            raise self.timed_out(handle, run_id, len(monitor.history))
        self._log_forecast(run_id, model, val, config.quantiles)
        if monitor.pruned:
            raise TrialPruned(f"pruned at epoch {len(monitor.history)}")
        return best

    def _monitor(
        self,
        handle: TrialHandle,
        run_id: str,
        model: keras.Model,
        config: TrialConfig,
        epochs: int,
        references: tuple[float, float],
    ) -> EpochMonitor:
        """The fit's epoch monitor: each epoch logged and said (against the naive and linear
        references on this trial's val windows), checkpointed, reported to the engine."""
        number, unit = handle.number, self.unit
        baseline, linear = references

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            self.tracker.log_metrics(run_id, logs, step=epoch)
            best = min([h.get("val_mae", math.inf) for h in monitor.history])
            self.say(
                f"  trial {number} epoch {epoch + 1}/{epochs}: "
                f"loss {logs.get('loss', math.nan):.4f} ({loss_label(config.loss_name, config.target_scaling, unit)})  "
                f"val_mae {logs.get('val_mae', math.nan):.3f} {unit}  (trial best {best:.3f}; "
                f"on this trial's val windows: naive {baseline:.3f}, linear {linear:.3f})"
            )

        checkpoint_dir = self._checkpoint_dir(number)

        def save(epoch: int) -> None:
            if checkpoint_dir is not None:
                save_checkpoint(
                    checkpoint_dir,
                    model,
                    epoch,
                    monitor.history,
                    monitor.best,
                    monitor.best_epoch,
                    monitor.best_weights,
                )

        monitor = EpochMonitor(
            handle.report,
            on_epoch,
            patience=config.patience,
            after_epoch=save,
            deadline=self.deadline,
        )
        return monitor

    def _restore(self, handle: TrialHandle, model: keras.Model, run_id: str, epochs: int) -> Any:
        """The checkpoint of the interrupted trial this one re-runs, restored into ``model``
        (its epochs logged again at their true steps and reported to the engine); None when
        this trial re-runs none."""
        source = handle.resumed_from
        source_dir = self._checkpoint_dir(source) if source is not None else None
        restored = load_checkpoint(source_dir) if source_dir is not None else None
        if restored is None:
            return None
        number = handle.number
        optimizer_restored = restore(model, restored)
        self.tracker.set_tags(
            run_id,
            {
                "search.resumed_from_trial": str(source),
                "search.resumed_from_epoch": str(restored.next_epoch),
            },
        )
        handle.set_attrs(
            {
                "search.resumed_from_epoch": restored.next_epoch,
                "search.optimizer_restored": optimizer_restored,
            }
        )
        for row in restored.history:  # the dead trial's epochs, at their true steps
            step = int(row["epoch"])
            values = {k: float(v) for k, v in row.items() if k != "epoch"}
            self.tracker.log_metrics(run_id, values, step=step)
            if "val_mae" in values and math.isfinite(values["val_mae"]):
                handle.report(step, values["val_mae"])
        self.say(
            f"  trial {number} resumes trial {source} after its epoch "
            f"{restored.next_epoch}/{epochs}"
        )
        return restored

    def _record(
        self,
        handle: TrialHandle,
        run_id: str,
        monitor: EpochMonitor,
        baseline: float,
        linear: float,
        train_seconds: float,
    ) -> None:
        """A finished fit's figures at its best epoch, in its run and the engine's trial."""
        best = monitor.best
        skill = 1.0 - best / baseline if baseline > 0 else math.nan
        linear_skill = 1.0 - best / linear if linear > 0 else math.nan
        self.tracker.log_metrics(
            run_id,
            {
                "best_val_mae": best,
                "best_epoch": monitor.best_epoch + 1,  # counted from 1 (its step is one less)
                "skill": skill,
                "linear_skill": linear_skill,
                "epochs_run": len(monitor.history),
                "train_seconds": train_seconds,
            },
        )
        handle.set_attrs(
            {
                "skill": skill,
                "baseline_mae": baseline,
                "linear_mae": linear,
                "linear_skill": linear_skill,
                "epochs_run": len(monitor.history),
                "train_seconds": round(train_seconds, 3),
            }
        )

    def timed_out(self, handle: TrialHandle, run_id: str, epochs: int) -> TrialPruned:
        """A trial cut short by the study's ``--timeout`` at an epoch's end: recorded PRUNED
        (its best epoch's figures and model logged), tagged ``search.stopped_by=timeout``, and
        not re-run."""
        handle.set_attrs({"search.stopped_by": "timeout"})
        self.tracker.set_tags(run_id, {"search.stopped_by": "timeout"})
        self.say(
            f"  trial {handle.number}: the --timeout budget is spent; stopped after epoch {epochs}"
        )
        return TrialPruned(f"stopped by --timeout after epoch {epochs}")

    def _log_artifacts(
        self,
        run_id: str,
        model: keras.Model,
        history: list[dict[str, float]],
        baseline: float,
        linear: float,
    ) -> None:
        from search.training.plots import learning_curve

        keys = sorted({k for row in history for k in row if k != "epoch"})
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["epoch", *keys])
        for row in history:
            writer.writerow([int(row["epoch"]) + 1, *(row.get(k, "") for k in keys)])  # from 1
        self.tracker.log_text(run_id, buffer.getvalue(), "history.csv")
        lines: list[str] = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        self.tracker.log_text(run_id, "\n".join(lines) + "\n", "model_summary.txt")
        figure = learning_curve(
            history, baseline, unit=self.unit, linear=linear, trial=self.last_trial
        )
        self.tracker.log_figure(run_id, figure, "learning_curve.png")
        import matplotlib.pyplot as plt

        plt.close(figure)
        with tempfile.TemporaryDirectory(prefix="search-model-") as folder:
            path = Path(folder) / "model.keras"
            model.save(path)
            self.tracker.log_file(run_id, path, "model")

    def _steps(
        self,
        run_id: str,
        model: keras.Model,
        spec: Any,
        config: TrialConfig,
        val: WindowDataset,
        linear_forecast: np.ndarray,
    ) -> tuple[keras.Model, StepReport]:
        """A multi-step or quantile trial's per-step figures on val (logged), and its model
        with the conformal calibration from those val windows (what is saved)."""
        forecast = np.asarray(model.predict(val, verbose=0), dtype=np.float64)
        report = trial_step_figures(
            self.prepared,
            spec,
            config.quantiles,
            forecast,
            val.targets(),
            val.last_input_rows(),
            linear_forecast,
        )
        log_report(self.tracker, run_id, report, self.unit)
        if report.offsets is not None:
            model = calibrate(model, report.offsets)
        return model, report

    def _log_forecast(
        self,
        run_id: str,
        model: keras.Model,
        val: WindowDataset,
        quantiles: tuple[float, ...] | None = None,
    ) -> None:
        """forecast.png: the best epoch's val forecast against the actual series and the naive
        forecast over two weeks, and the error distributions (the last step of a multi-step
        forecast, with its interval band and a few whole paths)."""
        output = np.asarray(model.predict(val, verbose=0), dtype=np.float64)
        view = forecast_view(self.prepared, val, output, quantiles)
        self._log_forecast_arrays(run_id, *view.arrays, band=view.band, paths=view.paths)

    def _log_forecast_arrays(
        self,
        run_id: str,
        times: np.ndarray,
        actual: np.ndarray,
        predicted: np.ndarray,
        naive: np.ndarray,
        band: tuple[np.ndarray, np.ndarray, str] | None = None,
        paths: list[dict[str, Any]] | None = None,
    ) -> None:
        import matplotlib.pyplot as plt

        from search.training.plots import forecast_figure

        figure = forecast_figure(
            times,
            actual,
            predicted,
            naive,
            self.unit,
            self.prepared.steps_per_hour,
            horizon_hours=self.space.fixed.horizon_hours + (self.space.fixed.target_steps - 1),
            band=band,
            paths=paths,
        )
        self.tracker.log_figure(run_id, figure, "forecast.png")
        plt.close(figure)


def _raise_for(monitor: EpochMonitor) -> None:
    """A fit that was interrupted, went NaN or never produced a finite val MAE ends here."""
    if monitor.interrupted is not None:
        done = len(monitor.history)
        raise interrupt.Interrupted(monitor.interrupted) from TrialFailed(
            f"stopped after epoch {done}; re-queued to resume from its checkpoint"
        )
    if monitor.nan_epoch is not None:
        raise TrialFailed(f"loss or val_mae became NaN at epoch {monitor.nan_epoch + 1}")
    if monitor.best_weights is None:
        raise TrialFailed("no epoch produced a finite val_mae")


def _short(config: TrialConfig) -> str:
    model = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(config.model_kwargs.items())
        if v not in (False, 0, 0.0, None) or k == "units"
    )
    extra = f" target={config.target_scaling}" + (" +calendar" if config.calendar_features else "")
    return (
        f"{config.architecture}({model}) lookback={config.lookback_hours:g}h "
        f"rate={config.sampling_rate} lr={config.learning_rate:.3g} batch={config.batch_size}"
        f"{extra}"
    )
