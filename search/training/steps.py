"""What a multi-step or quantile trial adds after its fit: MAE per step against the naive and
linear forecasts per step (``val_mae_step_<k>``, ``mae_by_step.csv``, ``mae_by_step.png``), the
quantile figures against the naive forecast with intervals (``val_wql``, ``val_coverage``,
``naive_wql``, ``naive_coverage``), and the conformal calibration that makes the saved model's
intervals honest (see :mod:`search.training.intervals`). A single-step point trial never comes
here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.data.splits import window_starts
from search.serving.layers import SortedQuantiles
from search.training import intervals

if TYPE_CHECKING:
    from search.tracking import Tracker

__all__ = ["StepReport", "calibrate", "step_report", "target_offsets"]


def target_offsets(spec: WindowSpec) -> np.ndarray:
    """Rows from a window's first input row to each of its targets."""
    stride = spec.target_stride if spec.target_steps > 1 else 0
    return spec.delay + np.arange(spec.target_steps, dtype=np.int64) * stride


def naive_reference(
    prepared: Prepared, spec: WindowSpec, quantiles: tuple[float, ...]
) -> intervals.NaiveQuantiles:
    """The naive forecast with intervals, fitted on ``prepared``'s training windows."""
    starts = window_starts(prepared, spec, "train")
    target = np.asarray(prepared.target, dtype=np.float64)
    last = target[starts + (spec.sequence_length - 1) * int(spec.sampling_rate)]
    actual = target[starts[:, None] + target_offsets(spec)[None, :]]
    return intervals.naive_quantiles(actual, last, quantiles)


@dataclass
class StepReport:
    """A multi-step or quantile trial's figures on its val windows."""

    metrics: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, float]] = field(default_factory=list)  # one per step
    offsets: np.ndarray | None = None  # (steps, levels) conformal offsets


def step_report(
    forecast: np.ndarray,
    actual: np.ndarray,
    last: np.ndarray,
    linear: np.ndarray,
    quantiles: tuple[float, ...] | None,
    naive_forecast: np.ndarray | None,
) -> StepReport:
    """Figures of a val forecast (``(windows, steps[, levels])``, uncalibrated) against the
    actual values, the naive (``last``; with intervals: ``naive_forecast``) and the linear
    forecasts, and the conformal offsets."""
    point = intervals.median_of(forecast, quantiles)
    actual = np.asarray(actual, np.float64)
    by_step = intervals.step_mae(point, actual)
    naive_by_step = intervals.step_mae(np.broadcast_to(last[:, None], actual.shape), actual)
    linear_by_step = intervals.step_mae(linear, actual)
    report = StepReport()
    for k, (mae, flat, ridge) in enumerate(
        zip(by_step, naive_by_step, linear_by_step, strict=True), start=1
    ):
        report.rows.append(
            {"step": k, "val_mae": float(mae), "naive_mae": float(flat), "linear_mae": float(ridge)}
        )
    if actual.shape[1] > 1:
        report.metrics.update({f"val_mae_step_{k}": float(v) for k, v in enumerate(by_step, 1)})
    if quantiles and naive_forecast is not None:
        reference = naive_forecast
        offsets = intervals.conformal_offsets(forecast, actual, quantiles)
        fitted = intervals.calibrated(forecast, offsets)
        report.offsets = offsets
        report.metrics.update(
            {
                "val_wql": intervals.weighted_quantile_loss(actual, forecast, quantiles),
                "val_coverage": float(intervals.coverage(actual, forecast)),
                "naive_wql": intervals.weighted_quantile_loss(actual, reference, quantiles),
                "naive_coverage": float(intervals.coverage(actual, reference)),
                "val_coverage_calibrated": float(intervals.coverage(actual, fitted)),
                "val_interval_width": float((forecast[..., -1] - forecast[..., 0]).mean()),
                "val_interval_width_calibrated": float((fitted[..., -1] - fitted[..., 0]).mean()),
            }
        )
        for row, cover in zip(report.rows, intervals.coverage(actual, forecast, True), strict=True):
            row["val_coverage"] = float(cover)
    return report


def calibrate(model: keras.Model, offsets: np.ndarray) -> keras.Model:
    """``model`` with its conformal offsets added and its levels sorted (what is saved)."""
    # on the model's own graph (not the compiled model nested as a layer: a saved model must
    # load with only search.serving's layers registered, without the training loss)
    outputs = SortedQuantiles(offsets.tolist(), name="conformal")(model.outputs[0])
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_calibrated")


def log_report(tracker: Tracker, run_id: str, report: StepReport, unit: str) -> None:
    """The report's metrics, ``mae_by_step.csv`` and ``mae_by_step.png`` in the trial's run."""
    import matplotlib.pyplot as plt

    from search.training.plots import mae_by_step_figure

    tracker.log_metrics(run_id, report.metrics)
    keys = list(report.rows[0])
    buffer = io.StringIO()
    buffer.write(",".join(keys) + "\n")
    for row in report.rows:
        buffer.write(",".join(f"{row[k]:g}" if k != "step" else str(row[k]) for k in keys) + "\n")
    tracker.log_text(run_id, buffer.getvalue(), "mae_by_step.csv")
    if len(report.rows) > 1:
        figure = mae_by_step_figure(report.rows, unit)
        tracker.log_figure(run_id, figure, "mae_by_step.png")
        plt.close(figure)


def trial_step_figures(
    prepared: Prepared,
    spec: WindowSpec,
    quantiles: tuple[float, ...] | None,
    forecast: np.ndarray,
    actual: np.ndarray,
    last_rows: np.ndarray,
    linear_forecast: np.ndarray,
) -> StepReport:
    """:func:`step_report` for a trial's val windows (the naive intervals from its train)."""
    last = np.asarray(prepared.target, np.float64)[last_rows]
    naive = naive_reference(prepared, spec, quantiles).forecast(last) if quantiles else None
    return step_report(forecast, actual, last, linear_forecast, quantiles, naive)


def describe_steps(report: StepReport) -> dict[str, Any]:
    """Trial attributes: the figures a study's summary shows without MLflow."""
    attrs: dict[str, Any] = {}
    for key in ("val_wql", "naive_wql", "val_coverage", "naive_coverage"):
        if key in report.metrics:
            attrs[key] = round(report.metrics[key], 6)
    if len(report.rows) > 1:
        attrs["val_mae_by_step"] = [round(row["val_mae"], 5) for row in report.rows]
    return attrs


@dataclass
class ForecastView:
    """What forecast.png draws of a val forecast: ``arrays`` (times, actual, forecast, naive)
    at the last step, the interval band of a quantile forecast, a few whole multi-step paths."""

    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    band: tuple[np.ndarray, np.ndarray, str] | None
    paths: list[dict[str, Any]] | None


def forecast_view(
    prepared: Prepared, val: Any, output: np.ndarray, quantiles: tuple[float, ...] | None
) -> ForecastView:
    """The :class:`ForecastView` of a model's ``output`` on the val windows ``val``."""
    output = output.reshape(output.shape[0], val.spec.target_steps, -1)
    index = intervals.median_index(quantiles) if quantiles else 0
    median, actual = output[..., index], val.targets().astype(np.float64)
    last_rows = val.last_input_rows()
    naive = prepared.target[last_rows].astype(np.float64)
    rows = val.start_rows() + target_offsets(val.spec)[-1]
    stamps = prepared.times
    times = stamps[rows] if stamps is not None else rows
    band = None
    if quantiles:
        level = f"{100 * (quantiles[-1] - quantiles[0]):g}% interval"
        band = (output[:, -1, 0], output[:, -1, -1], f"{level} (calibrated on val)")
    paths = None
    if val.spec.target_steps > 1 and len(median):
        paths = []
        for i in sorted({0, len(median) // 2, len(median) - 1}):
            path = {
                "issued": str(stamps[last_rows[i]])[:16]
                if stamps is not None
                else str(last_rows[i]),
                "actual": actual[i],
                "forecast": median[i],
                "naive": np.full(val.spec.target_steps, naive[i]),
            }
            if quantiles:
                path.update(lower=output[i, :, 0], upper=output[i, :, -1])
            paths.append(path)
    return ForecastView((times, actual[:, -1], median[:, -1], naive), band, paths)
