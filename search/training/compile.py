"""What every trial builds: its compiled model (the space's architecture behind the target's
inverse scaling), and the error a trial fails with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.serving.layers import SortedQuantiles
from search.training.intervals import median_index
from search.training.models import build_model, make_optimizer
from search.training.scaling import MedianMAE, TargetScaling, compile_loss, scaled_model

if TYPE_CHECKING:
    from search.spaces import TrialConfig

__all__ = ["TrialFailed", "compiled_model"]


class TrialFailed(Exception):
    """A trial could not produce a usable model (NaN loss, a builder error...)."""


def compiled_model(
    prepared: Prepared, spec: WindowSpec, config: TrialConfig, scaling: TargetScaling
) -> keras.Model:
    """The trial's architecture on ``prepared``'s inputs, predicting in the target's units,
    compiled with the space's optimizer and loss (on scaled targets) and MAE.

    With quantile levels the head has ``target_steps x levels`` outputs, reshaped to ``(steps,
    levels)``, scaled back and sorted along the levels (:class:`SortedQuantiles`); the loss is
    the pinball loss and ``mae`` is the median's."""
    quantiles = config.quantiles
    outputs = config.target_steps * (len(quantiles) if quantiles else 1)
    base = build_model(
        config.architecture,
        (spec.sequence_length, prepared.inputs(config.calendar_features).shape[1]),
        target_steps=outputs,
        **config.model_kwargs,
    )
    if quantiles:
        shape = (config.target_steps, len(quantiles))
        flat = keras.Input(shape=base.input_shape[1:], name="window")
        grid = keras.layers.Reshape(shape, name="steps_by_level")(base(flat))
        base = keras.Model(flat, grid, name=f"{base.name}_quantiles")
    model = scaled_model(base, scaling)
    if quantiles:
        inputs = keras.Input(shape=model.input_shape[1:], name="window")
        sorted_ = SortedQuantiles(name="sorted_quantiles")(model(inputs))
        model = keras.Model(inputs, sorted_, name=f"{model.name}_sorted")
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate),
        loss=compile_loss(config.loss, scaling, quantiles),
        metrics=[MedianMAE(median_index(quantiles))] if quantiles else ["mae"],
    )
    return model
