"""The epoch monitor every single-model trial fits with (a Keras callback on every backend)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from search import interrupt
from search.workers import past

__all__ = ["EpochMonitor"]


class EpochMonitor(keras.callbacks.Callback):
    """Per epoch: log, keep the best weights, stop early, and ask ``report(epoch, value)``
    (the engine's handle) whether to stop; True means pruned.

    Works on every Keras backend: it only reads ``logs`` and the model's weights.
    """

    def __init__(
        self,
        report: Callable[[int, float], bool],
        on_epoch: Callable[[int, dict[str, float]], None],
        monitor: str = "val_mae",
        patience: int = 3,
        after_epoch: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.deadline = deadline  # time.monotonic() when --timeout's budget ends
        self.timed_out = False
        self.report = report
        self.on_epoch = on_epoch
        self.monitor = monitor
        self.patience = patience
        self.after_epoch = after_epoch
        self.best = math.inf
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.pruned = False
        self.nan_epoch: int | None = None
        self.interrupted: int | None = None  # the signal that asked the trial to stop
        self.history: list[dict[str, float]] = []

    def resume(
        self,
        history: list[dict[str, float]],
        best: float,
        best_epoch: int,
        best_weights: list[np.ndarray] | None,
    ) -> None:
        """Continue from a checkpoint's epochs."""
        self.history = [dict(row) for row in history]
        self.best, self.best_epoch, self.best_weights = best, best_epoch, best_weights

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append({"epoch": epoch, **logs})
        self.on_epoch(epoch, logs)
        value = logs.get(self.monitor, math.nan)
        if not math.isfinite(value) or not math.isfinite(logs.get("loss", 0.0)):
            self.nan_epoch = epoch
            self.model.stop_training = True
            return
        if value < self.best:
            self.best, self.best_epoch = value, epoch
            self.best_weights = self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True
        if self.report(epoch, value):
            self.pruned = True
            self.model.stop_training = True
        if past(self.deadline) and epoch + 1 < int(self.params.get("epochs") or 0):
            self.timed_out = True  # the study's budget is spent: stop at this epoch's end
            self.model.stop_training = True
        signum = interrupt.requested()
        if signum is not None:  # this epoch is finished: stop here, its checkpoint saved
            self.interrupted = signum
            self.model.stop_training = True
        if self.after_epoch is not None and (
            self.interrupted is not None or not self.model.stop_training
        ):
            self.after_epoch(epoch)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
