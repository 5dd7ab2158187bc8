"""What every trial builds: its compiled model (the space's architecture behind the target's
inverse scaling), and the error a trial fails with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.training.models import build_model, make_optimizer
from search.training.scaling import TargetScaling, compile_loss, scaled_model

if TYPE_CHECKING:
    from search.spaces import TrialConfig

__all__ = ["TrialFailed", "compiled_model"]


class TrialFailed(Exception):
    """A trial could not produce a usable model (NaN loss, a builder error...)."""


def compiled_model(
    prepared: Prepared, spec: WindowSpec, config: TrialConfig, scaling: TargetScaling
) -> keras.Model:
    """The trial's architecture on ``prepared``'s inputs, predicting in the target's units,
    compiled with the space's optimizer and loss (on scaled targets) and MAE."""
    base = build_model(
        config.architecture,
        (spec.sequence_length, prepared.inputs(config.calendar_features).shape[1]),
        target_steps=config.target_steps,
        **config.model_kwargs,
    )
    model = scaled_model(base, scaling)
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate),
        loss=compile_loss(config.loss, scaling),
        metrics=["mae"],
    )
    return model
