"""Multi-step and quantile forecasts in numbers: per-step MAE, the pinball and weighted quantile
losses, interval coverage, the conformal calibration of a quantile model, and the naive forecast
with intervals that every quantile trial is measured against. Numpy only.

Shapes: ``actual`` is ``(windows, steps)``; a quantile forecast is ``(windows, steps, levels)``
with its levels sorted ascending; a point forecast is ``(windows, steps)``.

- **Weighted quantile loss** (AutoGluon's ``WQL``): ``mean over levels q of 2 * sum(pinball_q)
  / sum(|actual|)``, the sums over every window and step.
- **Coverage** of the central interval: the share of (window, step) whose actual value lies
  between the lowest and the highest level (inclusive).
- **Conformal calibration** (conformalized quantile regression, Romano, Patterson and Candès
  2019, its asymmetric form): per step and per level q other than the median, the offset ``c``
  that moves the level's forecast so that a share q of held-out windows falls at or below it:
  ``c`` is the ``ceil((n + 1) q)``-th smallest score ``actual - forecast_q`` for an upper level
  and the ``floor((n + 1) q)``-th for a lower one (the finite-sample rule: conservative on both
  sides, so the central interval covers at least its nominal share on exchangeable data). The
  median keeps offset 0. Offsets are added in the saved model (``SortedQuantiles``), which
  sorts afterwards, so no quantiles ever cross.
- **The naive reference with intervals**: the last observed value plus the empirical quantiles,
  per step, of the training windows' changes ``actual - last``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "coverage",
    "conformal_offsets",
    "median_index",
    "median_of",
    "naive_quantiles",
    "pinball_loss",
    "step_mae",
    "weighted_quantile_loss",
]


def median_index(quantiles: tuple[float, ...]) -> int:
    """Where the median (0.5) sits among the levels."""
    return min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5))


def median_of(forecast: np.ndarray, quantiles: tuple[float, ...] | None) -> np.ndarray:
    """The point forecast ``(windows, steps)``: the median of a quantile forecast, or itself."""
    forecast = np.asarray(forecast, dtype=np.float64)
    if not quantiles:
        return forecast.reshape(forecast.shape[0], -1)
    return forecast[..., median_index(quantiles)]


def step_mae(point: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """MAE per step ``(steps,)``."""
    return np.abs(np.asarray(point, np.float64) - np.asarray(actual, np.float64)).mean(axis=0)


def pinball_loss(
    actual: np.ndarray, forecast: np.ndarray, quantiles: tuple[float, ...]
) -> np.ndarray:
    """The pinball loss of every (window, step, level): ``max(q e, (q - 1) e)``, ``e = actual -
    forecast_q``."""
    levels = np.asarray(quantiles, dtype=np.float64)
    error = np.asarray(actual, np.float64)[..., None] - np.asarray(forecast, np.float64)
    return np.maximum(levels * error, (levels - 1.0) * error)


def weighted_quantile_loss(
    actual: np.ndarray, forecast: np.ndarray, quantiles: tuple[float, ...]
) -> float:
    """AutoGluon's weighted quantile loss (see the module's docstring); lower is better."""
    losses = pinball_loss(actual, forecast, quantiles)  # (windows, steps, levels)
    scale = float(np.abs(np.asarray(actual, np.float64)).sum())
    if scale <= 0:
        return math.nan
    return float(np.mean(2.0 * losses.sum(axis=(0, 1)) / scale))


def coverage(actual: np.ndarray, forecast: np.ndarray, per_step: bool = False) -> np.ndarray:
    """Share of actual values inside ``[lowest level, highest level]``: one figure, or one per
    step with ``per_step``."""
    actual = np.asarray(actual, np.float64)
    inside = (forecast[..., 0] <= actual) & (actual <= forecast[..., -1])
    return inside.mean(axis=0) if per_step else np.asarray(inside.mean())


def conformal_offsets(
    forecast: np.ndarray, actual: np.ndarray, quantiles: tuple[float, ...]
) -> np.ndarray:
    """Per step and level, the conformal offset ``(steps, levels)`` from held-out windows (see
    the module's docstring); 0 for the median."""
    forecast = np.asarray(forecast, np.float64)
    actual = np.asarray(actual, np.float64)
    n = forecast.shape[0]
    if n < 1:
        raise ValueError("conformal calibration needs at least one held-out window")
    scores = np.sort(actual[..., None] - forecast, axis=0)  # (windows, steps, levels)
    offsets = np.zeros(forecast.shape[1:])
    for j, q in enumerate(quantiles):
        if math.isclose(q, 0.5):
            continue
        if q > 0.5:
            rank = min(math.ceil((n + 1) * q), n)  # 1-based
        else:
            rank = max(math.floor((n + 1) * q), 1)
        offsets[:, j] = scores[rank - 1, :, j]
    return offsets


def calibrated(forecast: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """What the saved model hands out: the forecast plus its offsets, sorted along the levels
    (numpy's twin of ``SortedQuantiles``)."""
    return np.sort(np.asarray(forecast, np.float64) + offsets[None], axis=-1)


@dataclass(frozen=True)
class NaiveQuantiles:
    """The naive forecast with intervals: ``last + shift`` with ``shift`` ``(steps, levels)``
    the training windows' empirical quantiles of ``actual - last`` per step."""

    shift: np.ndarray

    def forecast(self, last: np.ndarray) -> np.ndarray:
        return np.asarray(last, np.float64)[:, None, None] + self.shift[None]


def naive_quantiles(
    train_actual: np.ndarray, train_last: np.ndarray, quantiles: tuple[float, ...]
) -> NaiveQuantiles:
    """Fit :class:`NaiveQuantiles` on the training windows' targets and last values."""
    changes = np.asarray(train_actual, np.float64) - np.asarray(train_last, np.float64)[:, None]
    shift = np.quantile(changes, np.asarray(quantiles), axis=0).T  # (steps, levels)
    return NaiveQuantiles(np.ascontiguousarray(shift))
