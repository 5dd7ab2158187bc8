"""References every trial is measured against, computed on exactly the trial's own windows."""

from __future__ import annotations

import numpy as np

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.data.splits import window_starts

__all__ = ["baseline_mae"]


def baseline_mae(prepared: Prepared, spec: WindowSpec, split: str) -> float:
    """Common-sense MAE (raw target units): predict the target's value at the last input step.

    Computed on exactly the windows of ``make_windows(prepared, spec, split)`` from the raw
    target column (identical to de-normalizing the target feature, as the book does, and also
    defined when the target is not a feature); with several target steps, the last value is the
    prediction for each of them and the MAE averages over all.
    """
    starts = window_starts(prepared, spec, split)
    target = prepared.target.astype(np.float64)
    last = target[starts + (spec.sequence_length - 1) * int(spec.sampling_rate)]
    stride = spec.target_stride if spec.target_steps > 1 else 0
    total = 0.0
    for j in range(spec.target_steps):
        total += float(np.abs(target[starts + spec.delay + j * stride] - last).sum())
    return total / (len(starts) * spec.target_steps)
