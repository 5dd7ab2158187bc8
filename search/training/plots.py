"""Figures people would rather look at than read: learning curves and study summaries (PNG)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def learning_curve(
    history: list[dict[str, float]],
    baseline: float | None = None,
    unit: str = "degC",
    linear: float | None = None,
) -> Figure:
    """Training and validation MAE per epoch, with the naive and linear references as lines."""
    figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    epochs = [int(row["epoch"]) + 1 for row in history]
    for key, label in (("mae", "train MAE"), ("val_mae", "val MAE")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            # a missing epoch (None) becomes NaN, drawn as a gap
            axis.plot(epochs, cast("list[float]", values), marker="o", label=label)
    folds = sorted({k for row in history for k in row if k.startswith("val_mae_fold_")})
    for key in folds:  # a cross-validated trial: every fold's val MAE (the mean is "val MAE")
        values = [row.get(key) for row in history]
        axis.plot(
            epochs,
            cast("list[float]", values),
            linewidth=0.9,
            alpha=0.6,
            linestyle="-.",
            label=f"val MAE, fold {key.rsplit('_', 1)[1]}",
        )
    if baseline is not None:
        axis.axhline(baseline, color="grey", linestyle="--", label=f"naive {baseline:.3f}")
    if linear is not None:
        axis.axhline(linear, color="tab:purple", linestyle=":", label=f"linear {linear:.3f}")
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"MAE ({unit})")
    axis.set_title("Learning curve")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def forecast_figure(
    times: Any,
    actual: np.ndarray,
    forecast: np.ndarray,
    naive: np.ndarray,
    unit: str,
    steps_per_hour: float,
    days: float = 14,
) -> Figure:
    """Top: two weeks of the validation series, the model's forecast and the naive forecast
    (the first contiguous stretch of val windows). Bottom: the distribution of the errors of
    both over every val window."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9.0, 6.5), dpi=100)
    times = np.asarray(times)
    stretch = int(days * 24 * steps_per_hour)
    end = min(len(actual), stretch)
    if np.issubdtype(times.dtype, np.datetime64) and len(times) > 1:
        gaps = np.nonzero(np.diff(times[:end]) != np.diff(times[:2])[0])[0]
        if len(gaps):
            end = int(gaps[0]) + 1  # stay inside one contiguous block of windows
    shown = slice(0, max(end, 1))
    top.plot(times[shown], actual[shown], color="black", linewidth=1.2, label="actual")
    top.plot(times[shown], forecast[shown], color="tab:blue", linewidth=1.0, label="model")
    top.plot(times[shown], naive[shown], color="grey", linewidth=0.9, linestyle="--", label="naive")
    top.set_ylabel(unit)
    top.set_title("Validation forecast, best epoch (first two weeks)")
    top.grid(alpha=0.3)
    top.legend(loc="upper right")
    top.tick_params(axis="x", labelrotation=20)
    model_err, naive_err = forecast - actual, naive - actual
    limit = float(np.nanpercentile(np.abs(np.concatenate([model_err, naive_err])), 99.5)) or 1.0
    bins = np.linspace(-limit, limit, 61)
    bottom.hist(
        naive_err,
        bins=bins,
        alpha=0.5,
        color="grey",
        label=f"naive, MAE {np.nanmean(np.abs(naive_err)):.3f}",
    )
    bottom.hist(
        model_err,
        bins=bins,
        alpha=0.6,
        color="tab:blue",
        label=f"model, MAE {np.nanmean(np.abs(model_err)):.3f}",
    )
    bottom.set_xlabel(f"error ({unit}), every val window")
    bottom.set_ylabel("windows")
    bottom.grid(alpha=0.3)
    bottom.legend()
    figure.tight_layout()
    return figure


def architecture_chart(rows: list[dict[str, Any]], unit: str) -> Figure:
    """Best val MAE per architecture (bars), each against its trial's naive and linear
    references (markers). ``rows``: architecture, best, naive, linear."""
    figure, axis = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    names = [row["architecture"] for row in rows]
    positions = np.arange(len(rows))
    axis.bar(positions, [row["best"] for row in rows], color="tab:blue", label="best val MAE")
    axis.scatter(
        positions, [row["naive"] for row in rows], color="black", marker="_", s=900, label="naive"
    )
    axis.scatter(
        positions,
        [row["linear"] for row in rows],
        color="tab:purple",
        marker="_",
        s=900,
        label="linear",
    )
    for x, row in zip(positions, rows, strict=True):
        axis.annotate(f"{row['best']:.3f}", (x, row["best"]), ha="center", va="bottom", fontsize=8)
    axis.set_xticks(positions, names)
    axis.set_ylabel(f"val MAE ({unit})")
    axis.set_title("Best trial per architecture against the references")
    low = float(np.nanmin([[r["best"], r["naive"], r["linear"]] for r in rows]))
    axis.set_ylim(bottom=max(0.0, low * 0.9))
    axis.grid(alpha=0.3, axis="y")
    axis.legend()
    figure.tight_layout()
    return figure
