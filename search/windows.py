"""Split, normalize and window a :class:`~search.datasets.Dataset`; the common-sense baseline.

The protocol is the book's (ARCHITECTURES.md): a chronological 50/25/25 split, mean/std of the
training part only, and for lookback L hours, sampling rate s rows and horizon H hours::

    sequence_length = L * steps_per_hour / s          (must be a whole number)
    delay           = (sequence_length - 1) * s + H * steps_per_hour

With one target step, :func:`make_windows` yields exactly the batches of::

    keras.utils.timeseries_dataset_from_array(
        data[:-delay], targets=target[delay:], sampling_rate=s, sequence_length=sequence_length,
        batch_size=..., start_index=..., end_index=...)

with start/end (0, num_train) for "train", (num_train, num_train + num_val) for "val" and
(num_train + num_val, None) for "test". Window k of a split starts at row ``start + p_k``;
its inputs are rows ``start + p_k + i*s`` (i < sequence_length) of the normalized data, and its
target is the raw target at row ``start + p_k + delay``.

With ``target_steps = N > 1`` (the sequence-to-vector setup of seed 002) y holds the next N
hourly values: column j is the target ``H + j`` hours after the last input step, i.e. at row
``start + p_k + delay + j * steps_per_hour``. Windows whose last target would fall past the end
of the series are left out; everything else is unchanged.

Shuffling: the first epoch visits the windows in the order of Keras' own first shuffle
(``np.random.RandomState(seed).shuffle`` of the start positions); later epochs draw new
permutations from the same generator, so a seed fixes every epoch. Keras' tf.data path adds a
second, buffered shuffle driven by TensorFlow's RNG (``Dataset.shuffle(8 * batch_size, seed)``)
that cannot be reproduced without TensorFlow; shuffled batches therefore hold the same windows
per epoch as Keras', in Keras' first-stage order, not in its final order.

Windows are gathered per batch from the one normalized array with numpy; nothing here needs
TensorFlow or tf.data, so it runs under every Keras backend. Memory: the normalized array plus
one int64 per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from search.datasets import Dataset
from search.errors import DataError

__all__ = [
    "SPLITS",
    "Prepared",
    "WindowDataset",
    "WindowSpec",
    "baseline_mae",
    "make_windows",
    "prepare",
    "window_starts",
]

SPLITS = ("train", "val", "test")
_EPS = 1e-6


def _whole(value: float, what: str, hint: str) -> int:
    rounded = round(value)
    if abs(value - rounded) > _EPS:
        raise DataError(f"{what} = {value:g} is not a whole number of rows; {hint}")
    return int(rounded)


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry in hours, converted to rows with ``steps_per_hour`` (6 for 10-minute data)."""

    lookback_hours: float
    sampling_rate: int
    horizon_hours: float
    target_steps: int = 1
    steps_per_hour: float = 6

    @property
    def lookback_rows(self) -> int:
        return _whole(
            self.lookback_hours * self.steps_per_hour,
            f"lookback {self.lookback_hours:g} h x {self.steps_per_hour:g} rows/h",
            "choose a lookback that is a whole number of time steps",
        )

    @property
    def sequence_length(self) -> int:
        """Input steps per window: lookback rows / sampling rate."""
        rows = self.lookback_rows
        return _whole(
            rows / self.sampling_rate,
            f"lookback {rows} rows / sampling rate {self.sampling_rate}",
            "the lookback must be a multiple of the sampling rate",
        )

    @property
    def horizon_rows(self) -> int:
        """Rows from the last input step to the (first) target."""
        return _whole(
            self.horizon_hours * self.steps_per_hour,
            f"horizon {self.horizon_hours:g} h x {self.steps_per_hour:g} rows/h",
            "choose a horizon that is a whole number of time steps",
        )

    @property
    def target_stride(self) -> int:
        """Rows between two successive targets when target_steps > 1: one hour."""
        return _whole(
            self.steps_per_hour,
            f"{self.steps_per_hour:g} rows per hour",
            "several hourly target steps need a whole number of rows per hour",
        )

    @property
    def delay(self) -> int:
        """Rows from a window's first input step to its (first) target."""
        return (self.sequence_length - 1) * self.sampling_rate + self.horizon_rows

    @property
    def span(self) -> int:
        """Rows from a window's first input step to its last target, inclusive."""
        extra = (self.target_steps - 1) * self.target_stride if self.target_steps > 1 else 0
        return self.delay + extra + 1

    def validate(self) -> None:
        """Raise DataError for nonsense geometry (checked before any data is touched)."""
        if not self.steps_per_hour > 0 or not math.isfinite(self.steps_per_hour):
            raise DataError(f"steps_per_hour must be > 0, got {self.steps_per_hour}")
        if not self.lookback_hours > 0 or not math.isfinite(self.lookback_hours):
            raise DataError(f"lookback must be > 0 hours, got {self.lookback_hours:g}")
        if (
            isinstance(self.sampling_rate, bool)
            or not float(self.sampling_rate).is_integer()
            or self.sampling_rate < 1
        ):
            raise DataError(
                f"sampling rate must be a whole number of rows >= 1, got {self.sampling_rate}"
            )
        if not math.isfinite(self.horizon_hours) or self.horizon_hours <= 0:
            raise DataError(
                f"horizon must be > 0 hours, got {self.horizon_hours:g} (0 would make the target "
                "the last input step itself)"
            )
        if (
            isinstance(self.target_steps, bool)
            or int(self.target_steps) != self.target_steps
            or self.target_steps < 1
        ):
            raise DataError(f"target_steps must be a whole number >= 1, got {self.target_steps}")
        rows = self.lookback_rows
        if self.sampling_rate > rows:
            raise DataError(
                f"sampling rate {self.sampling_rate} rows is larger than the lookback of "
                f"{self.lookback_hours:g} h = {rows} rows; a window needs at least one step"
            )
        self.sequence_length  # noqa: B018  (raises when not whole)
        self.horizon_rows  # noqa: B018
        if self.target_steps > 1:
            self.target_stride  # noqa: B018

    def describe(self) -> dict[str, Any]:
        """Plain dict of the geometry in hours and rows (for logging)."""
        self.validate()
        return {
            "lookback_hours": self.lookback_hours,
            "sampling_rate": int(self.sampling_rate),
            "horizon_hours": self.horizon_hours,
            "target_steps": int(self.target_steps),
            "steps_per_hour": self.steps_per_hour,
            "sequence_length": self.sequence_length,
            "delay": self.delay,
        }


@dataclass
class Prepared:
    """Normalized inputs (float32) and raw targets, with the split sizes and train statistics."""

    data: np.ndarray
    target: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    num_train: int
    num_val: int
    num_test: int
    feature_names: list[str] = field(default_factory=list)
    target_name: str = ""
    steps_per_hour: float = 6.0
    times: np.ndarray | None = None

    @property
    def target_index(self) -> int | None:
        """Column of the target among the features (None if the target is not a feature)."""
        try:
            return self.feature_names.index(self.target_name)
        except ValueError:
            return None

    def spec(
        self, lookback_hours: float, sampling_rate: int, horizon_hours: float, target_steps: int = 1
    ) -> WindowSpec:
        """A validated WindowSpec with this series' steps_per_hour."""
        spec = WindowSpec(
            lookback_hours, sampling_rate, horizon_hours, target_steps, self.steps_per_hour
        )
        spec.validate()
        return spec


def prepare(dataset: Dataset, train_fraction: float = 0.5, val_fraction: float = 0.25) -> Prepared:
    """Chronological train/val/test split and normalization with the training part's mean/std.

    ``num_train = int(train_fraction * n)``, ``num_val = int(val_fraction * n)``, the rest is
    test (the book's arithmetic). A feature that is constant over the training part keeps
    std 1 (it is only centred) instead of dividing by zero.
    """
    if not (0 < train_fraction < 1 and 0 < val_fraction < 1 and train_fraction + val_fraction < 1):
        raise DataError(
            f"split fractions must be > 0 and leave a test part: train {train_fraction:g}, "
            f"val {val_fraction:g}, test {1 - train_fraction - val_fraction:g}"
        )
    values = np.asarray(dataset.values)
    n = int(values.shape[0])
    num_train = int(train_fraction * n)
    num_val = int(val_fraction * n)
    num_test = n - num_train - num_val
    if num_train < 2 or num_val < 1 or num_test < 1:
        raise DataError(
            f"series too short to split: {n} rows give train {num_train}, val {num_val}, "
            f"test {num_test} rows (need at least 2, 1 and 1)"
        )
    train = values[:num_train].astype(np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    data = np.empty(values.shape, dtype=np.float32)
    np.subtract(values, mean, out=data, casting="unsafe")
    data /= std.astype(np.float32)
    return Prepared(
        data=data,
        target=np.ascontiguousarray(dataset.target, dtype=np.float32),
        mean=mean,
        std=std,
        num_train=num_train,
        num_val=num_val,
        num_test=num_test,
        feature_names=list(dataset.feature_names),
        target_name=dataset.target_name,
        steps_per_hour=float(dataset.steps_per_hour),
        times=dataset.times,
    )


def _split_bounds(prepared: Prepared, split: str) -> tuple[int, int | None]:
    if split == "train":
        return 0, prepared.num_train
    if split == "val":
        return prepared.num_train, prepared.num_train + prepared.num_val
    if split == "test":
        return prepared.num_train + prepared.num_val, None
    raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def window_starts(prepared: Prepared, spec: WindowSpec, split: str) -> np.ndarray:
    """First input row of every window of a split, in chronological order (int64).

    Mirrors the index arithmetic and argument checks of ``timeseries_dataset_from_array``; a
    split with no complete window is a DataError giving the numbers.
    """
    spec.validate()
    if spec.steps_per_hour and abs(spec.steps_per_hour - prepared.steps_per_hour) > _EPS:
        raise DataError(
            f"window spec assumes {spec.steps_per_hour:g} rows per hour but the series has "
            f"{prepared.steps_per_hour:g}; build the spec with steps_per_hour="
            f"{prepared.steps_per_hour:g}"
        )
    n = int(prepared.data.shape[0])
    start, end = _split_bounds(prepared, split)
    length, rate, delay = spec.sequence_length, int(spec.sampling_rate), spec.delay
    data_len = n - delay  # len(data[:-delay])
    geometry = (
        f"lookback {spec.lookback_hours:g} h (sequence_length {length} x sampling rate {rate}) "
        f"+ horizon {spec.horizon_hours:g} h = a span of {spec.span} rows"
    )
    stop = data_len if end is None else end
    last_row = (n if end is None else end) - 1
    if data_len <= 0 or rate >= data_len or start >= data_len or stop >= data_len + (end is None):
        # Keras: start_index and end_index must be < len(data[:-delay]), sampling_rate too.
        raise DataError(
            f"series too short for {geometry}: the {split} split covers rows {start}..{last_row} "
            f"of {n}, and each window's target lies {delay} rows after the window's first row "
            f"(only rows before {max(data_len, 0)} can start one), so it has no complete "
            "window; use a shorter lookback/horizon or more data"
        )
    num = stop - start - (length - 1) * rate
    num = min(num, data_len)
    if spec.target_steps > 1:
        num = min(num, n - (spec.span - 1) - start)
    if num <= 0:
        raise DataError(
            f"series too short for {geometry}: the {split} split has {last_row - start + 1} rows "
            f"(rows {start}..{last_row} of {n}), which hold no complete window; use a "
            "shorter lookback/horizon or more data"
        )
    return np.arange(start, start + num, dtype=np.int64)


class WindowDataset(keras.utils.PyDataset):
    """Batches ``(x, y)``: x float32 (batch, sequence_length, n_features), y float32 (batch, target_steps).

    Gathers each batch from the normalized array with ``np.take``; never holds all windows.
    """

    def __init__(
        self,
        data: np.ndarray,
        target: np.ndarray,
        starts: np.ndarray,
        spec: WindowSpec,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise DataError(f"batch size must be a whole number >= 1, got {batch_size}")
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.target = np.ascontiguousarray(target, dtype=np.float32)
        self.spec = spec
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.num_windows = int(len(starts))
        rate = int(spec.sampling_rate)
        self._offsets = np.arange(spec.sequence_length, dtype=np.int64) * rate
        stride = spec.target_stride if spec.target_steps > 1 else 0
        self._target_offsets = spec.delay + np.arange(spec.target_steps, dtype=np.int64) * stride
        self._n_features = int(self.data.shape[1])
        starts = np.asarray(starts, dtype=np.int64)
        if self.shuffle:
            if seed is None:
                seed = int(np.random.randint(1_000_000))  # what Keras does without a seed
            base = int(starts[0]) if self.num_windows else 0
            # Keras shuffles int32 positions relative to start_index with RandomState(seed).
            positions = np.arange(
                self.num_windows, dtype="int32" if self.num_windows < 2**31 - 1 else "int64"
            )
            self._rng: np.random.RandomState | None = np.random.RandomState(seed)
            self._rng.shuffle(positions)
            self._order = positions.astype(np.int64) + base
        else:
            self._rng = None
            self._order = starts
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.num_windows / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range (0..{len(self) - 1})")
        starts = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rows = (starts[:, None] + self._offsets[None, :]).ravel()
        x = np.take(self.data, rows, axis=0).reshape(len(starts), -1, self._n_features)
        y = np.take(self.target, starts[:, None] + self._target_offsets[None, :])
        return x, y

    def on_epoch_end(self) -> None:
        """Next epoch: a fresh permutation from the seeded generator (when shuffling)."""
        self.epoch += 1
        if self._rng is not None:
            self._rng.shuffle(self._order)

    def start_rows(self) -> np.ndarray:
        """First input row of every window, in iteration order (a copy)."""
        return self._order.copy()

    def targets(self) -> np.ndarray:
        """All targets (num_windows, target_steps) in iteration order, without building any x."""
        return np.take(self.target, self._order[:, None] + self._target_offsets[None, :])

    def last_input_rows(self) -> np.ndarray:
        """Row of every window's last input step, in iteration order."""
        return self._order + int(self._offsets[-1])


def make_windows(
    prepared: Prepared,
    spec: WindowSpec,
    split: str,
    batch_size: int = 256,
    shuffle: bool = False,
    seed: int | None = None,
    **kwargs: Any,
) -> WindowDataset:
    """The windows of one split ("train", "val" or "test") as a Keras PyDataset.

    ``kwargs`` (workers, use_multiprocessing, max_queue_size) go to ``PyDataset``.
    """
    starts = window_starts(prepared, spec, split)
    return WindowDataset(
        prepared.data, prepared.target, starts, spec, batch_size, shuffle, seed, **kwargs
    )


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
