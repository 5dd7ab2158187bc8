"""The names every space uses (training parameters, the book's protocol, optimizers,
losses) and how a space's values are compared and shown."""

from __future__ import annotations

import math
from typing import Any

from search.data.geometry import JENA_STEPS_PER_HOUR
from search.training import models

ROWS_PER_HOUR = JENA_STEPS_PER_HOUR
"""Spaces are checked on the Jena grid (one row per 10 minutes); a trial re-checks its windows
on its series' own grid."""

TRAINING_PARAMETERS = ("lookback_hours", "sampling_rate", "learning_rate", "batch_size")
"""Parameters every space sets (sampled or constant) besides the model's own."""

TARGET_SCALINGS = ("none", "standard", "residual")
"""How a trial's model sees its target: raw (the book's), standardized with the training
target's mean/std, or as the change from the last observed value over that change's std."""

OPTIONAL_PARAMETERS: dict[str, Any] = {"target_scaling": "none", "calendar_features": False}
"""Training parameters a space may set (sampled or constant); left out, they take these values."""

BOOK_SETTINGS: dict[str, Any] = {"target_scaling": "none", "calendar_features": False}
"""What the book configuration (trial 0) always uses, whatever the space searches: the book
trains on raw targets without calendar inputs, so its number stays comparable. These are fixed
settings of that trial, never enqueued as choices of the searched parameters."""

SHARED_PARAMETERS = (
    *("lookback_hours", "sampling_rate", "learning_rate", "batch_size"),
    *OPTIONAL_PARAMETERS,
)
"""Parameters that are not the model builder's own (a multi-architecture space shares them)."""

BOOK_PROTOCOL: dict[str, Any] = {
    "lookback_hours": 120,
    "sampling_rate": 6,
    "learning_rate": 1e-3,
    "batch_size": 256,
}
"""The 2nd edition's protocol: used for a book configuration that leaves these out."""

OPTIMIZERS = tuple(models.OPTIMIZERS)
"""Optimizer names a space may fix (those search.training.models.make_optimizer builds)."""
LOSSES = ("mse", "mae", "huber", "log_cosh", "mean_squared_error", "mean_absolute_error")
"""Keras loss names a space may fix."""

_MAX_COMBINATIONS = 1_000_000
_DISTRIBUTION_TYPES = ("int", "float", "categorical")

Scalar = bool | int | float | str


def _is_whole(x: float) -> bool:
    if not math.isfinite(x):
        return False
    return math.isclose(x, round(x), rel_tol=0, abs_tol=1e-9)


def _same(value: Any, reference: Any) -> bool:
    """Equal as a space means it: numbers by value, but booleans and strings only to their kind."""
    numbers = (int, float)
    if isinstance(reference, numbers) and not isinstance(reference, bool):
        return isinstance(value, numbers) and not isinstance(value, bool) and value == reference
    return type(value) is type(reference) and value == reference


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
