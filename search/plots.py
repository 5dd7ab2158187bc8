"""Figures people would rather look at than read: learning curves and study summaries (PNG)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def learning_curve(history: list[dict[str, float]], baseline: float | None = None) -> Figure:
    """Training and validation MAE per epoch, with the common-sense baseline as a line."""
    figure, axis = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    epochs = [int(row["epoch"]) + 1 for row in history]
    for key, label in (("mae", "train MAE"), ("val_mae", "val MAE")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            # a missing epoch (None) becomes NaN, drawn as a gap
            axis.plot(epochs, cast("list[float]", values), marker="o", label=label)
    if baseline is not None:
        axis.axhline(baseline, color="grey", linestyle="--", label=f"baseline {baseline:.3f}")
    axis.set_xlabel("epoch")
    axis.set_ylabel("MAE (degC)")
    axis.set_title("Learning curve")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def study_figures(study: Any) -> dict[str, Figure]:
    """Optuna's optimization history and parameter importances as matplotlib figures.

    Importances need at least two finished trials with varying parameters; figures that cannot be
    drawn yet are left out.
    """
    import warnings

    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    figures: dict[str, Figure] = {}
    for name, plot in (
        ("optimization_history.png", optuna_plots.plot_optimization_history),
        ("param_importances.png", optuna_plots.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axis = plot(study)
        except Exception:  # too few trials, a single distinct value...
            continue
        # optuna draws on plt.subplots() and returns the Axes, whose figure is a top-level Figure
        figure = cast("Figure", axis.figure if hasattr(axis, "figure") else axis)
        figure.set_size_inches(7.5, 4.5)
        figure.tight_layout()
        figures[name] = figure
    return figures
