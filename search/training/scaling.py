"""Target scaling: what a trial's model learns, and how its saved model answers in the target's
own units.

- ``none``: the book's raw targets (a model must first learn the target's offset).
- ``standard``: ``(y - mean) / std`` with the mean and std of the target over the training rows.
- ``residual``: ``(y - last) / std`` where ``last`` is the last observed target value of the
  window and ``std`` the training windows' std of that change (every step of a multi-step
  target is relative to the same last value). The output layer starts at zero, so an untrained
  model is exactly the naive forecast.

The model learns in the scaled space (its loss is the space's loss on scaled values), but the
inverse scaling is the model's last layer (:class:`InverseTargetScaling`, in
``search/serving/layers.py`` so that it travels with the served model; registered and
serializable, so a saved ``model.keras`` loads in Keras' safe mode and predicts in the target's
units). Every MAE logged, printed, pruned on or compared is therefore in the target's units.
Statistics come from the training split only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.data.splits import window_starts
from search.errors import DataError
from search.serving.layers import InverseTargetScaling  # the layer travels with served models

__all__ = [
    "InverseTargetScaling",
    "MedianMAE",
    "PinballLoss",
    "ScaledLoss",
    "TargetScaling",
    "fit_scaling",
    "scaled_model",
]


@dataclass(frozen=True)
class TargetScaling:
    """A fitted target scaling: ``y = y_scaled * scale + (center | last observed value)``."""

    mode: str
    center: float = 0.0
    scale: float = 1.0
    target_index: int = -1  # column of the target among the (normalized) inputs
    input_mean: float = 0.0  # that column's normalization, to read the raw last value back
    input_std: float = 1.0

    def describe(self) -> dict[str, Any]:
        """Plain figures for logging."""
        return {
            "target_scaling": self.mode,
            "target_center": self.center,
            "target_scale": self.scale,
        }


def fit_scaling(mode: str, prepared: Prepared, spec: WindowSpec) -> TargetScaling:
    """The scaling's statistics from the training split only (rows for ``standard``, windows
    for ``residual``)."""
    if mode == "none":
        return TargetScaling("none")
    target = prepared.target.astype(np.float64)
    if mode == "standard":
        train = target[prepared.layout.mask("train")]
        std = float(train.std())
        return TargetScaling("standard", float(train.mean()), std if std > 0 else 1.0)
    if mode == "residual":
        index = prepared.target_index
        if index is None:
            raise DataError(
                f"target_scaling residual needs the target {prepared.target_name!r} among the "
                "input features (the model reads its last observed value from its inputs)"
            )
        starts = window_starts(prepared, spec, "train")
        last = target[starts + (spec.sequence_length - 1) * int(spec.sampling_rate)]
        stride = spec.target_stride if spec.target_steps > 1 else 0
        changes = np.stack(
            [target[starts + spec.delay + j * stride] - last for j in range(spec.target_steps)]
        )
        std = float(changes.std())
        return TargetScaling(
            "residual",
            0.0,
            std if std > 0 else 1.0,
            index,
            float(prepared.mean[index]),
            float(prepared.std[index]),
        )
    raise DataError(f"unknown target_scaling {mode!r}; expected none, standard or residual")


@keras.saving.register_keras_serializable(package="search")
class ScaledLoss(keras.losses.Loss):
    """A Keras loss computed on scaled values: ``loss(y / scale, y_pred / scale)``.

    For both scalings the offset cancels in ``y - y_pred``, so this is exactly the loss of the
    model's own scaled output against the scaled target.
    """

    def __init__(self, loss: str = "mse", scale: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("name", f"scaled_{loss}")
        super().__init__(**kwargs)
        self.loss = loss
        self.scale = float(scale)
        self._fn = keras.losses.get(loss)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self._fn(y_true / self.scale, y_pred / self.scale)

    def get_config(self) -> dict[str, Any]:
        return {"loss": self.loss, "scale": self.scale, "name": self.name}


def _head_layer(model: keras.Model) -> Any:
    """The last layer with weights, looking inside nested models (a quantile model wraps its
    architecture's model and reshapes its output)."""
    layer = next(layer for layer in reversed(model.layers) if layer.weights)
    return _head_layer(layer) if isinstance(layer, keras.Model) else layer


def scaled_model(base: keras.Model, scaling: TargetScaling) -> keras.Model:
    """``base`` (which outputs scaled values) followed by the inverse scaling; ``none`` returns
    ``base`` itself. With ``residual``, ``base``'s output layer starts at zero."""
    if scaling.mode == "none":
        return base
    if scaling.mode == "residual":
        head = _head_layer(base)
        for weight in head.weights:
            weight.assign(keras.ops.zeros(weight.shape, dtype=weight.dtype))
    inputs = keras.Input(shape=base.input_shape[1:], name="window")
    outputs = InverseTargetScaling(
        scaling.mode,
        scaling.center,
        scaling.scale,
        scaling.target_index,
        scaling.input_mean,
        scaling.input_std,
        name="inverse_target_scaling",
    )([inputs, base(inputs)])
    return keras.Model(inputs, outputs, name=f"{base.name}_in_target_units")


def compile_loss(
    loss: str, scaling: TargetScaling, quantiles: tuple[float, ...] | None = None
) -> Any:
    """The loss to compile with: the space's loss, on scaled values when the target is scaled;
    with quantile levels, the pinball loss on scaled values (the space's loss is not used)."""
    if quantiles:
        return PinballLoss(quantiles, scaling.scale if scaling.mode != "none" else 1.0)
    return loss if scaling.mode == "none" else ScaledLoss(loss, scaling.scale)


@keras.saving.register_keras_serializable(package="search")
class PinballLoss(keras.losses.Loss):
    """The pinball (quantile) loss of a ``(batch, steps, levels)`` forecast against ``(batch,
    steps)`` targets, averaged over windows, steps and levels, on values divided by ``scale``:
    ``max(q * e, (q - 1) * e)`` with ``e = y - y_q``."""

    def __init__(self, quantiles: Any = (0.5,), scale: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("name", "pinball")
        super().__init__(**kwargs)
        self.quantiles = tuple(float(q) for q in quantiles)
        self.scale = float(scale)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        levels = ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        error = (ops.expand_dims(ops.cast(y_true, y_pred.dtype), -1) - y_pred) / self.scale
        return ops.mean(ops.maximum(levels * error, (levels - 1.0) * error), axis=(-2, -1))

    def get_config(self) -> dict[str, Any]:
        return {"quantiles": list(self.quantiles), "scale": self.scale, "name": self.name}


@keras.saving.register_keras_serializable(package="search")
class MedianMAE(keras.metrics.MeanMetricWrapper):
    """``mae`` of a quantile forecast: the absolute error of its median (level ``index``),
    averaged over windows and steps, in the target's units."""

    def __init__(self, index: int = 0, name: str = "mae", **kwargs: Any) -> None:
        self.index = int(index)
        super().__init__(fn=self._median_error, name=name, **kwargs)

    def _median_error(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        median = y_pred[..., self.index]
        return ops.mean(ops.abs(ops.cast(y_true, median.dtype) - median), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name}


def loss_label(loss: str, mode: str, unit: str) -> str:
    """What a trial's training loss is measured on: its size changes with the target scaling
    (a loss of 17 on raw degrees and 0.5 on a standardized target can be the same fit)."""
    scaled = {"standard": "standardized target", "residual": "scaled change of the target"}
    return f"{loss} on the {scaled.get(mode, f'target in {unit}')}"
