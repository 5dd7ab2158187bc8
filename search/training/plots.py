"""Figures people would rather look at than read: learning curves and study summaries (PNG)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def learning_curve(
    history: list[dict[str, float]], baseline: float | None = None, unit: str = "degC"
) -> Figure:
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
    axis.set_ylabel(f"MAE ({unit})")
    axis.set_title("Learning curve")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure
