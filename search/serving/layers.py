"""The custom Keras layers of a trial's saved model, registered for loading in Keras' safe mode.

Imports only keras: the saved MLflow model carries this module (see ``search/serving``).
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["InverseTargetScaling"]


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
            return y + keras.ops.expand_dims(last, -1)
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
