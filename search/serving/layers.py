"""The custom Keras layers of a trial's saved model, registered for loading in Keras' safe mode.

Imports only keras: the saved MLflow model carries this module (see ``search/serving``).
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["InverseTargetScaling", "SortedQuantiles"]


@keras.saving.register_keras_serializable(package="search")
class InverseTargetScaling(keras.layers.Layer):
    """Maps a model's scaled output back to the target's units: ``[inputs, y_scaled] -> y``."""

    def __init__(
        self,
        mode: str = "none",
        center: float = 0.0,
        scale: float = 1.0,
        target_index: int = -1,
        input_mean: float = 0.0,
        input_std: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.center = float(center)
        self.scale = float(scale)
        self.target_index = int(target_index)
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)

    def call(self, inputs: Any) -> Any:
        x, y = inputs
        y = y * self.scale
        if self.mode == "residual":
            last = x[:, -1, self.target_index] * self.input_std + self.input_mean
            # one last value per window, against every step (and quantile level) of its output
            return y + keras.ops.reshape(last, (-1,) + (1,) * (len(y.shape) - 1))
        return y + self.center

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[1]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mode": self.mode,
            "center": self.center,
            "scale": self.scale,
            "target_index": self.target_index,
            "input_mean": self.input_mean,
            "input_std": self.input_std,
        }


@keras.saving.register_keras_serializable(package="search")
class SortedQuantiles(keras.layers.Layer):
    """A quantile forecast ``(batch, steps, levels)`` plus its conformal ``offsets`` (``(steps,
    levels)``, zero before calibration), sorted along the levels: what is handed out never has
    crossing quantiles (a sort is the monotone rearrangement of Chernozhukov et al. 2010, which
    never increases the pinball loss)."""

    def __init__(self, offsets: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.offsets = None if offsets is None else [[float(v) for v in row] for row in offsets]

    def call(self, y: Any) -> Any:
        if self.offsets is not None:
            y = y + keras.ops.convert_to_tensor(self.offsets, dtype=y.dtype)
        return keras.ops.sort(y, axis=-1)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "offsets": self.offsets}
