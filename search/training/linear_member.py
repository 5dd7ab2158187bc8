"""The linear reference as a Keras model: an ensemble's linear member, saved and served like
any trial's model.

The ridge (``search.data.references.LinearReference``) becomes standard layers with fixed
weights: its normalization, the block pooling as a Dense over the window's steps, the feature
selection, the coefficients, and the last target value it adds back. Nothing custom: the model
loads in Keras' safe mode and takes the windows the study's saved models take.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from search.errors import DataError

__all__ = ["linear_member_model"]


def linear_member_model(ridges: list[Any], prepared: Any, calendar: bool) -> Any:
    """The linear member as a Keras model (standard layers only: it loads in safe mode) that
    takes the same windows as the study's saved models (``prepared.model_view()``, with the
    calendar columns when the best trial has them) and forecasts in the target's units: for a
    cross-validated study, the mean of its fold ridges, each behind its fold's normalization."""
    import keras

    from search.data.references import _Pooling

    target = prepared.target_index
    if target is None:
        raise DataError("the linear member needs the target among the study's columns")
    folds = prepared.folds()
    views = folds or [prepared]
    spec = ridges[0].spec
    length = spec.sequence_length
    width = len(prepared.feature_names)
    extra = 4 if calendar else 0
    inputs = keras.Input(shape=(length, width + extra), name="window")
    outputs = []
    for k, (ridge, view) in enumerate(zip(ridges, views, strict=True)):
        pooling = _Pooling(length, int(spec.sampling_rate), ridge.block_steps, ridge.blocks)
        pool = np.zeros((length, ridge.blocks))  # window step -> its block's mean
        last = (length - 1) - (ridge.blocks - 1 - np.arange(ridge.blocks)) * ridge.block_steps
        for b, end in enumerate(last):
            begin = 0 if b == 0 else end - ridge.block_steps + 1
            assert b > 0 or end + 1 == pooling.first_steps
            pool[begin : end + 1, b] = 1.0 / (end + 1 - begin)
        if folds:  # raw windows: this fold's normalization inside, the raw target as it is
            mean = np.concatenate([view.mean, np.zeros(extra)])
            variance = np.concatenate([view.std**2, np.ones(extra)])
            normalized = keras.layers.Normalization(
                axis=-1, mean=mean.tolist(), variance=variance.tolist(), name=f"linear_{k}_norm"
            )(inputs)
            scale, shift = 1.0, 0.0
        else:  # windows normalized with the study's statistics: undo it for the raw target
            normalized = inputs
            scale, shift = float(view.std[target]), float(view.mean[target])
        x = keras.layers.Permute((2, 1))(normalized)
        x = _fixed_dense(x, pool, f"linear_{k}_pool")
        x = keras.layers.Permute((2, 1))(x)
        select = np.zeros((width + extra, width))
        select[np.arange(width), np.arange(width)] = 1.0
        x = keras.layers.Flatten()(_fixed_dense(x, select, f"linear_{k}_features"))
        coef = np.asarray(ridge.coef, np.float64)
        bias = np.asarray(ridge.y_mean, np.float64) - np.asarray(ridge.x_mean) @ coef
        residual = _fixed_dense(x, coef, f"linear_{k}_ridge", bias)
        latest = keras.layers.Flatten()(keras.layers.Cropping1D((length - 1, 0))(inputs))
        pick = np.zeros((width + extra, coef.shape[1]))
        pick[target] = scale
        level = _fixed_dense(latest, pick, f"linear_{k}_last", np.full(coef.shape[1], shift))
        outputs.append(keras.layers.Add(name=f"linear_{k}")([residual, level]))
    output = outputs[0] if len(outputs) == 1 else keras.layers.Average()(outputs)
    return keras.Model(inputs, output, name="linear_reference")


def _fixed_dense(x: Any, kernel: np.ndarray, name: str, bias: np.ndarray | None = None) -> Any:
    """A Dense layer with the given weights, not trained."""
    import keras

    layer = keras.layers.Dense(
        kernel.shape[1], use_bias=bias is not None, name=name, trainable=False
    )
    out = layer(x)
    layer.set_weights(
        [kernel.astype("float32")] + ([bias.astype("float32")] if bias is not None else [])
    )
    return out
