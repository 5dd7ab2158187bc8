"""References every trial is measured against, computed on exactly the trial's own windows.

- :func:`baseline_mae`: the naive (persistence) forecast, the book's common-sense baseline.
- :func:`linear_reference`: a ridge regression on the (pooled) window, fitted on the trial's own
  train windows with its penalty picked on the val windows: the yardstick a network has to beat
  to have learned more than a linear function of its inputs. ``search.data.stored_references``
  fits each once per data, split and geometry (in a study's memory and on disk).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.data.splits import window_starts
from search.errors import DataError

__all__ = [
    "MAX_BLOCKS",
    "MAX_INPUTS",
    "RELATIVE_GRID",
    "LinearReference",
    "baseline_mae",
    "linear_reference",
]

RELATIVE_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
"""Ridge penalties tried, relative to the mean diagonal of the centred train Gram matrix (for
standardized inputs about the number of train windows): lambda = c * trace(X^T X) / inputs.
The top of the grid shrinks the weights to almost nothing (the forecast is then the naive one
plus the train windows' mean change), so a window that does not generalize to val costs little."""

MAX_BLOCKS = 120
"""At most this many pooled steps per window (the book's own 120 hourly steps)."""

MAX_INPUTS = 1800
"""At most about this many inputs (blocks x features); fewer blocks for wide series."""

CHUNK = 2048  # windows per gathered chunk (2048 x 1680 float64 = 28 MB)
_EPS = 1e-9


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


# ---------------------------------------------------------------------------------------------
# the linear reference


@dataclass(frozen=True)
class _Pooling:
    """How a window of ``length`` steps (``rate`` rows apart) becomes ``blocks`` pooled steps.

    Blocks are counted back from the window's last step: block ``blocks - 1`` (the newest) is the
    mean of the last ``block_steps`` steps, the one before it of the ``block_steps`` steps before
    those, and so on; the oldest block holds the ``first_steps`` (1..block_steps) steps left.
    """

    length: int
    rate: int
    block_steps: int
    blocks: int

    @property
    def first_steps(self) -> int:
        return self.length - (self.blocks - 1) * self.block_steps

    def last_rows(self) -> np.ndarray:
        """Offset of each block's last row from the window's first row, oldest block first."""
        newest = (self.length - 1) * self.rate
        back = np.arange(self.blocks - 1, -1, -1, dtype=np.int64)
        return newest - back * self.block_steps * self.rate

    @staticmethod
    def choose(spec: WindowSpec, n_features: int, max_blocks: int, max_inputs: int) -> _Pooling:
        length, rate = spec.sequence_length, int(spec.sampling_rate)
        hourly = max(1, math.ceil(spec.steps_per_hour / rate - _EPS))  # window steps per hour
        cap = max(1, min(max_blocks, max_inputs // max(n_features, 1)))
        block = hourly * max(1, math.ceil(length / (hourly * cap)))
        block = min(block, length)
        return _Pooling(length, rate, block, math.ceil(length / block))


def _trailing_mean(data: np.ndarray, steps: int, rate: int) -> np.ndarray:
    """``out[t] = mean(data[t - k*rate] for k < steps)`` (float64; rows t < (steps-1)*rate hold
    partial sums and are never read)."""
    out = data.astype(np.float64)
    for k in range(1, steps):
        out[k * rate :] += data[: len(data) - k * rate]
    if steps > 1:
        out /= steps
    return out


class _Design:
    """The pooled inputs and residual targets of a prepared series' windows, gathered in chunks."""

    def __init__(self, prepared: Prepared, spec: WindowSpec, pooling: _Pooling) -> None:
        data = np.asarray(prepared.data)
        self.full = _trailing_mean(data, pooling.block_steps, pooling.rate)
        first = pooling.first_steps
        self.oldest = (
            self.full if first == pooling.block_steps else _trailing_mean(data, first, pooling.rate)
        )
        self.offsets = pooling.last_rows()
        self.features = int(data.shape[1])
        self.width = pooling.blocks * self.features
        self.target = np.asarray(prepared.target, dtype=np.float64)
        self.last = (spec.sequence_length - 1) * int(spec.sampling_rate)
        stride = spec.target_stride if spec.target_steps > 1 else 0
        self.ahead = spec.delay + stride * np.arange(spec.target_steps, dtype=np.int64)

    def chunks(self, starts: np.ndarray) -> list[slice]:
        return [slice(i, i + CHUNK) for i in range(0, len(starts), CHUNK)]

    def inputs(self, starts: np.ndarray) -> np.ndarray:
        rows = starts[:, None] + self.offsets[None, :]
        x = np.empty((len(starts), len(self.offsets), self.features))
        x[:, 0] = self.oldest[rows[:, 0]]
        x[:, 1:] = self.full[rows[:, 1:]]
        return x.reshape(len(starts), self.width)

    def last_values(self, starts: np.ndarray) -> np.ndarray:
        return self.target[starts + self.last]

    def residuals(self, starts: np.ndarray) -> np.ndarray:
        """Targets minus the last observed target value, (windows, target_steps)."""
        future = self.target[starts[:, None] + self.ahead[None, :]]
        return future - self.last_values(starts)[:, None]


@dataclass(frozen=True)
class LinearReference:
    """A ridge regression fitted to one geometry's train windows, its penalty picked on val.

    ``mae(prepared, split)`` scores the same fitted model on any split's windows (in the target's
    units); ``predict`` returns its forecasts. See :func:`linear_reference` for what it sees.
    """

    spec: WindowSpec
    penalty: float
    """The ridge lambda picked on val (absolute, on the centred train Gram matrix)."""
    grid: tuple[float, ...]
    """Every lambda tried, ascending (``RELATIVE_GRID`` times the mean Gram diagonal)."""
    grid_val_mae: tuple[float, ...]
    """Val MAE of each lambda of ``grid``; ``val_mae`` is their minimum."""
    val_mae: float
    """MAE (target units) of the picked model on the val windows."""
    fit_seconds: float
    """Wall time of the whole fit: train Gram, eigendecomposition and the val sweep."""
    inputs: int
    """Input width the model uses: ``blocks * n_features``."""
    blocks: int
    """Pooled steps per window."""
    block_steps: int
    """Window steps averaged into one block (1: the window's own steps, unpooled)."""
    train_windows: int
    val_windows: int
    coef: np.ndarray = field(repr=False, compare=False)
    """(inputs, target_steps) weights on centred inputs."""
    x_mean: np.ndarray = field(repr=False, compare=False)
    y_mean: np.ndarray = field(repr=False, compare=False)

    @property
    def pooled(self) -> bool:
        """Whether the model sees block means instead of the window's own steps."""
        return self.block_steps > 1

    @property
    def block_hours(self) -> float:
        """Hours covered by one block."""
        return self.block_steps * int(self.spec.sampling_rate) / self.spec.steps_per_hour

    def _pooling(self) -> _Pooling:
        return _Pooling(
            self.spec.sequence_length, int(self.spec.sampling_rate), self.block_steps, self.blocks
        )

    def _design(self, prepared: Prepared) -> _Design:
        features = int(np.asarray(prepared.data).shape[1])
        if features * self.blocks != self.inputs:
            raise DataError(
                f"the linear reference was fitted on {self.inputs // self.blocks} features, "
                f"this series has {features}"
            )
        return _Design(prepared, self.spec, self._pooling())

    def predict(self, prepared: Prepared, split: str) -> np.ndarray:
        """Forecasts (target units), float64 (windows, target_steps), windows in split order."""
        design = self._design(prepared)
        starts = window_starts(prepared, self.spec, split)
        out = np.empty((len(starts), self.spec.target_steps))
        for part in design.chunks(starts):
            s = starts[part]
            residual = (design.inputs(s) - self.x_mean) @ self.coef + self.y_mean
            out[part] = residual + design.last_values(s)[:, None]
        return out

    def mae(self, prepared: Prepared, split: str) -> float:
        """MAE (target units) of this fitted model on a split's windows, averaged over steps."""
        design = self._design(prepared)
        starts = window_starts(prepared, self.spec, split)
        total = 0.0
        for part in design.chunks(starts):
            s = starts[part]
            residual = (design.inputs(s) - self.x_mean) @ self.coef + self.y_mean
            total += float(np.abs(residual - design.residuals(s)).sum())
        return total / (len(starts) * self.spec.target_steps)


def _centred_normal_equations(
    design: _Design, train: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X^T X`` and ``X^T Y`` of the train windows, accumulated in chunks and centred on the
    train means; with those means."""
    width = design.width
    gram = np.zeros((width, width))
    cross = np.zeros((width, steps))
    x_sum = np.zeros(width)
    y_sum = np.zeros(steps)
    for part in design.chunks(train):
        s = train[part]
        x, y = design.inputs(s), design.residuals(s)
        gram += x.T @ x
        cross += x.T @ y
        x_sum += x.sum(axis=0)
        y_sum += y.sum(axis=0)
    n = len(train)
    x_mean, y_mean = x_sum / n, y_sum / n
    gram -= n * np.outer(x_mean, x_mean)
    cross -= n * np.outer(x_mean, y_mean)
    return gram, cross, x_mean, y_mean


def _val_maes(
    design: _Design,
    val: np.ndarray,
    coefs: np.ndarray,
    x_mean: np.ndarray,
    y_mean: np.ndarray,
    penalties: int,
    steps: int,
) -> np.ndarray:
    """Val MAE of every penalty's coefficients (``coefs``: (width, penalties * steps))."""
    errors = np.zeros(penalties)
    for part in design.chunks(val):
        s = val[part]
        fitted = (design.inputs(s) - x_mean) @ coefs + np.tile(y_mean, penalties)
        miss = fitted.reshape(len(s), penalties, steps) - design.residuals(s)[:, None, :]
        errors += np.abs(miss).sum(axis=(0, 2))
    return errors / (len(val) * steps)


def linear_reference(
    prepared: Prepared,
    spec: WindowSpec,
    *,
    relative_grid: tuple[float, ...] = RELATIVE_GRID,
    max_blocks: int = MAX_BLOCKS,
    max_inputs: int = MAX_INPUTS,
) -> LinearReference:
    """Ridge regression on the window, fitted on the train windows, penalty picked on val.

    What the model sees: for a window starting at row s, its ``sequence_length`` input steps
    (rows ``s + i*sampling_rate`` of the normalized ``prepared.data``, every feature) averaged in
    blocks of ``block_steps`` consecutive steps counted back from the last step (the oldest block
    may hold fewer), flattened oldest block first, feature-minor: ``blocks * n_features`` inputs.
    ``block_steps`` is the number of window steps per hour (``ceil(steps_per_hour /
    sampling_rate)``, at least 1: never finer than hourly, the book's own sampling), multiplied
    by the smallest whole number that leaves at most ``min(max_blocks, max_inputs //
    n_features)`` blocks. With the defaults on the 14-feature Jena data (cap 120 blocks): up to
    120 h, rate 6 is unpooled (the book's 120 h window is its own 120 x 14 inputs) and rate 3 is
    pooled to hourly blocks; beyond 120 h both rates use 2-hour blocks (240 h at rate 3: 480 steps
    -> 120 blocks of 4 steps -> 1,680 inputs instead of 6,720). Why this is sound: a 24-hour-ahead linear forecast gains next to nothing from
    sub-hourly detail or from hour-to-hour detail days back, while the cost grows with the square
    (accumulating ``X^T X``) and the cube (decomposing it) of the width: 6,720 inputs would take
    16x and 64x the work of 1,680, far beyond a few seconds on two cores.

    What it predicts: every target step's residual, ``target[s + delay + j*stride] -
    target[last input row]`` (so its zero forecast is the naive baseline), all steps at once
    (multi-output ridge, shared penalty). Intercept: inputs and residuals are centred on the train
    windows' means.

    Fit: ``X^T X`` and ``X^T Y`` are accumulated in float64 over chunks of train windows
    (``window_starts(prepared, spec, "train")``, so val/test rows enter only where the split
    lets train windows reach into them), centred, eigendecomposed once; every lambda of the grid,
    ``relative_grid * trace(X^T X) / inputs``, is then a cheap ``V diag(1/(e+lambda)) V^T X^T Y``.
    The lambda with the lowest MAE on the val windows (in the target's units; ties: the smaller
    lambda) is kept. :meth:`LinearReference.mae` scores it on any split.
    """
    began = time.perf_counter()
    grid_rel = tuple(sorted(float(c) for c in relative_grid))
    if not grid_rel or grid_rel[0] <= 0:
        raise DataError(f"the ridge grid must hold penalties > 0, got {relative_grid!r}")
    train = window_starts(prepared, spec, "train")
    val = window_starts(prepared, spec, "val")
    n_features = int(np.asarray(prepared.data).shape[1])
    pooling = _Pooling.choose(spec, n_features, max_blocks, max_inputs)
    design = _Design(prepared, spec, pooling)
    width, steps = design.width, spec.target_steps

    gram, cross, x_mean, y_mean = _centred_normal_equations(design, train, steps)
    n = len(train)

    eigenvalues, vectors = np.linalg.eigh(gram)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    rotated = vectors.T @ cross
    scale = float(np.trace(gram)) / width
    scale = scale if scale > 0 else 1.0
    grid = tuple(c * scale for c in grid_rel)
    coefs = np.concatenate(
        [vectors @ (rotated / (eigenvalues + lam)[:, None]) for lam in grid], axis=1
    )  # (width, len(grid) * steps)

    maes = _val_maes(design, val, coefs, x_mean, y_mean, len(grid), steps)
    best = int(np.argmin(maes))
    return LinearReference(
        spec=spec,
        penalty=grid[best],
        grid=grid,
        grid_val_mae=tuple(float(m) for m in maes),
        val_mae=float(maes[best]),
        fit_seconds=time.perf_counter() - began,
        inputs=width,
        blocks=pooling.blocks,
        block_steps=pooling.block_steps,
        train_windows=n,
        val_windows=len(val),
        coef=np.ascontiguousarray(coefs[:, best * steps : (best + 1) * steps]),
        x_mean=x_mean,
        y_mean=y_mean,
    )
