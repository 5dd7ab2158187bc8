"""Windows of a prepared series as a Keras ``PyDataset`` (no tf.data, every backend).

Geometry (:mod:`search.data.geometry`): for lookback L hours, sampling rate s rows and horizon H
hours::

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
from typing import Any

import keras
import numpy as np

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.data.splits import window_starts
from search.errors import DataError

__all__ = ["WindowDataset", "make_windows"]


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
            # Keras shuffles int32 positions relative to start_index with RandomState(seed); the
            # positions index this split's own starts (contiguous for the chronological split,
            # where this is Keras' order exactly; several blocks for a blocked split or a fold,
            # whose windows in other blocks must never train)
            positions = np.arange(
                self.num_windows, dtype="int32" if self.num_windows < 2**31 - 1 else "int64"
            )
            self._rng: np.random.RandomState | None = np.random.RandomState(seed)
            self._rng.shuffle(positions)
            self._order = starts[positions.astype(np.int64)]
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
    calendar: bool = False,
    **kwargs: Any,
) -> WindowDataset:
    """The windows of one split ("train", "val" or "test") as a Keras PyDataset; with
    ``calendar`` the inputs carry the four calendar columns after the features.

    ``kwargs`` (workers, use_multiprocessing, max_queue_size) go to ``PyDataset``.
    """
    starts = window_starts(prepared, spec, split)
    return WindowDataset(
        prepared.inputs(calendar),
        prepared.target,
        starts,
        spec,
        batch_size,
        shuffle,
        seed,
        **kwargs,
    )
