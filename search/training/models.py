"""Model builders: one small function per documented architecture, and a registry.

Every builder takes the input shape ``(sequence_length, n_features)`` and explicit keyword
arguments, and returns an uncompiled ``keras.Model`` whose head is ``Dense(target_steps)``; the
trial compiles it with its optimizer, learning rate and loss. With its default arguments each
builder reproduces the book's layer stack (see ARCHITECTURES.md and the table in the README).

Only ``keras.layers`` and ``keras.ops`` are used, so the models run on TensorFlow, JAX and torch.
Keras itself is imported inside the builders: importing this module (for example to validate a
space file against :func:`builder_parameters`) costs milliseconds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from search.errors import SpaceError
from search.training.model_checks import (
    InputShape,
    check_at_least_one,
    check_common,
    check_conv_length,
    check_rates,
    check_unroll,
    conv_kernel_sizes,
    require,
)

if TYPE_CHECKING:
    import keras

OPTIMIZERS: dict[str, str] = {
    "rmsprop": "RMSprop",
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "nadam": "Nadam",
}
"""Optimizer names a space may fix, and the ``keras.optimizers`` class each one builds."""


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The named optimizer (a key of OPTIMIZERS) with the given learning rate."""
    try:
        cls = getattr(_keras().optimizers, OPTIMIZERS[name.lower()])
    except KeyError:
        raise SpaceError(
            f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}"
        ) from None
    return cls(learning_rate=learning_rate)


def _keras():  # noqa: ANN202 - the module, imported on first use
    import keras

    return keras


def _head(x: Any, head_dropout: float, target_steps: int) -> Any:
    """Optional Dropout, then the Dense(target_steps) regression head."""
    layers = _keras().layers
    if head_dropout > 0:
        x = layers.Dropout(head_dropout)(x)
    return layers.Dense(target_steps)(x)


def _recurrent_stack(
    x: Any,
    cell: Callable[..., Any],
    *,
    units: int,
    layers: int,
    dropout: float,
    recurrent_dropout: float,
    reverse: bool,
    unroll: bool,
) -> Any:
    """``layers`` recurrent layers; all but the last return sequences.

    ``reverse`` makes the first layer read the window newest-first (``go_backwards``); it then
    returns its sequence in that order, so the whole stack sees the reversed window.
    """
    for index in range(layers):
        x = cell(
            units,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            return_sequences=index < layers - 1,
            go_backwards=reverse and index == 0,
            unroll=unroll,
        )(x)
    return x


def _conv_stack(
    x: Any, *, filters: int, kernel_size: int, layers: int, pool_size: int, halve_kernel: bool
) -> Any:
    keras_layers = _keras().layers
    for index, kernel in enumerate(conv_kernel_sizes(kernel_size, layers, halve_kernel)):
        if index:
            x = keras_layers.MaxPooling1D(pool_size)(x)
        x = keras_layers.Conv1D(filters, kernel, activation="relu")(x)
    return x


def build_dense(
    input_shape: InputShape,
    *,
    units: int = 16,
    layers: int = 1,
    dropout: float = 0.0,
    target_steps: int = 1,
) -> keras.Model:
    """Flatten -> ``layers`` x Dense(units, relu) [-> Dropout] -> Dense(target_steps).

    Book (2nd ed.): units=16, layers=1. 1st ed.: units=32.
    """
    check_common("dense", input_shape, target_steps)
    check_at_least_one("dense", units=units, layers=layers)
    check_rates("dense", dropout=dropout)
    require(input_shape[0] is not None, "dense", "Flatten needs a fixed sequence length")
    keras = _keras()
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    for _ in range(layers):
        x = keras.layers.Dense(units, activation="relu")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(target_steps)(x)
    return keras.Model(inputs, outputs, name="dense")


def build_conv1d(
    input_shape: InputShape,
    *,
    filters: int = 8,
    kernel_size: int = 24,
    layers: int = 3,
    pool_size: int = 2,
    halve_kernel: bool = True,
    global_pool: Literal["average", "max"] = "average",
    head_dropout: float = 0.0,
    target_steps: int = 1,
) -> keras.Model:
    """``layers`` x Conv1D(filters, relu) with MaxPooling1D between them -> global pooling -> head.

    Book (2nd ed.): Conv1D(8, 24) -> MaxPool(2) -> Conv1D(8, 12) -> MaxPool(2) -> Conv1D(8, 6)
    -> GlobalAveragePooling1D (the defaults). 1st ed.: filters=32, kernel_size=5, pool_size=3,
    halve_kernel=False, global_pool="max".
    """
    check_common("conv1d", input_shape, target_steps)
    check_at_least_one(
        "conv1d", filters=filters, kernel_size=kernel_size, layers=layers, pool_size=pool_size
    )
    check_rates("conv1d", head_dropout=head_dropout)
    require(
        global_pool in ("average", "max"),
        "conv1d",
        f"global_pool must be 'average' or 'max', got {global_pool!r}",
    )
    conv: dict[str, Any] = dict(
        kernel_size=kernel_size, layers=layers, pool_size=pool_size, halve_kernel=halve_kernel
    )
    check_conv_length("conv1d", input_shape, **conv)
    keras = _keras()
    inputs = keras.Input(shape=tuple(input_shape))
    x = _conv_stack(inputs, filters=filters, **conv)
    pooling = (
        keras.layers.GlobalAveragePooling1D
        if global_pool == "average"
        else keras.layers.GlobalMaxPooling1D
    )
    x = pooling()(x)
    outputs = _head(x, head_dropout, target_steps)
    return keras.Model(inputs, outputs, name="conv1d")


def _build_recurrent(
    name: str,
    cell_name: str,
    input_shape: InputShape,
    *,
    units: int,
    layers: int,
    dropout: float,
    recurrent_dropout: float,
    head_dropout: float,
    reverse: bool,
    unroll: bool,
    target_steps: int,
) -> keras.Model:
    check_common(name, input_shape, target_steps)
    check_at_least_one(name, units=units, layers=layers)
    check_rates(
        name, dropout=dropout, recurrent_dropout=recurrent_dropout, head_dropout=head_dropout
    )
    check_unroll(name, input_shape, unroll)
    keras = _keras()
    inputs = keras.Input(shape=tuple(input_shape))
    x = _recurrent_stack(
        inputs,
        getattr(keras.layers, cell_name),
        units=units,
        layers=layers,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        reverse=reverse,
        unroll=unroll,
    )
    outputs = _head(x, head_dropout, target_steps)
    return keras.Model(inputs, outputs, name=name)


def build_simple_rnn(
    input_shape: InputShape,
    *,
    units: int = 16,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    head_dropout: float = 0.0,
    reverse: bool = False,
    unroll: bool = False,
    target_steps: int = 1,
) -> keras.Model:
    """``layers`` x SimpleRNN(units) [-> Dropout] -> Dense(target_steps). Book: SimpleRNN(16)."""
    return _build_recurrent(
        "simple_rnn",
        "SimpleRNN",
        input_shape,
        units=units,
        layers=layers,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        head_dropout=head_dropout,
        reverse=reverse,
        unroll=unroll,
        target_steps=target_steps,
    )


def build_lstm(
    input_shape: InputShape,
    *,
    units: int = 16,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    head_dropout: float = 0.0,
    reverse: bool = False,
    unroll: bool = False,
    target_steps: int = 1,
) -> keras.Model:
    """``layers`` x LSTM(units) [-> Dropout] -> Dense(target_steps).

    Book (2nd ed.): LSTM(16); with dropout: units=32, recurrent_dropout=0.25, head_dropout=0.5.
    """
    return _build_recurrent(
        "lstm",
        "LSTM",
        input_shape,
        units=units,
        layers=layers,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        head_dropout=head_dropout,
        reverse=reverse,
        unroll=unroll,
        target_steps=target_steps,
    )


def build_gru(
    input_shape: InputShape,
    *,
    units: int = 32,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    head_dropout: float = 0.0,
    reverse: bool = False,
    unroll: bool = False,
    target_steps: int = 1,
) -> keras.Model:
    """``layers`` x GRU(units) [-> Dropout] -> Dense(target_steps).

    Book (1st ed.): GRU(32); stacked (2nd ed.): layers=2, recurrent_dropout=0.5, head_dropout=0.5.
    """
    return _build_recurrent(
        "gru",
        "GRU",
        input_shape,
        units=units,
        layers=layers,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        head_dropout=head_dropout,
        reverse=reverse,
        unroll=unroll,
        target_steps=target_steps,
    )


def build_bidirectional(
    input_shape: InputShape,
    *,
    cell: Literal["lstm", "gru"] = "lstm",
    units: int = 16,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    head_dropout: float = 0.0,
    unroll: bool = False,
    target_steps: int = 1,
) -> keras.Model:
    """``layers`` x Bidirectional(LSTM or GRU(units)) [-> Dropout] -> Dense(target_steps).

    Book (2nd ed.): Bidirectional(LSTM(16)); 1st ed.: cell="gru", units=32.
    """
    check_common("bidirectional", input_shape, target_steps)
    require(cell in ("lstm", "gru"), "bidirectional", f"cell must be 'lstm' or 'gru', got {cell!r}")
    check_at_least_one("bidirectional", units=units, layers=layers)
    check_rates(
        "bidirectional",
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        head_dropout=head_dropout,
    )
    check_unroll("bidirectional", input_shape, unroll)
    keras = _keras()
    recurrent = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for index in range(layers):
        x = keras.layers.Bidirectional(
            recurrent(
                units,
                dropout=dropout,
                recurrent_dropout=recurrent_dropout,
                return_sequences=index < layers - 1,
                unroll=unroll,
            )
        )(x)
    outputs = _head(x, head_dropout, target_steps)
    return keras.Model(inputs, outputs, name="bidirectional")


def build_conv_gru(
    input_shape: InputShape,
    *,
    filters: int = 32,
    kernel_size: int = 5,
    conv_layers: int = 2,
    pool_size: int = 3,
    units: int = 32,
    layers: int = 1,
    dropout: float = 0.1,
    recurrent_dropout: float = 0.5,
    head_dropout: float = 0.0,
    unroll: bool = False,
    target_steps: int = 1,
) -> keras.Model:
    """Conv1D front-end (MaxPooling1D between convs) -> ``layers`` x GRU(units) -> head.

    Book (1st ed. 6.4.4, the defaults): Conv1D(32, 5) -> MaxPool(3) -> Conv1D(32, 5)
    -> GRU(32, dropout=0.1, recurrent_dropout=0.5) -> Dense(1), on 30-minute steps.
    """
    check_common("conv_gru", input_shape, target_steps)
    check_at_least_one(
        "conv_gru",
        filters=filters,
        kernel_size=kernel_size,
        conv_layers=conv_layers,
        pool_size=pool_size,
        units=units,
        layers=layers,
    )
    check_rates(
        "conv_gru", dropout=dropout, recurrent_dropout=recurrent_dropout, head_dropout=head_dropout
    )
    conv: dict[str, Any] = dict(
        kernel_size=kernel_size, layers=conv_layers, pool_size=pool_size, halve_kernel=False
    )
    check_conv_length("conv_gru", input_shape, **conv)
    check_unroll("conv_gru", input_shape, unroll)
    keras = _keras()
    inputs = keras.Input(shape=tuple(input_shape))
    x = _conv_stack(inputs, filters=filters, **conv)
    x = _recurrent_stack(
        x,
        keras.layers.GRU,
        units=units,
        layers=layers,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        reverse=False,
        unroll=unroll,
    )
    outputs = _head(x, head_dropout, target_steps)
    return keras.Model(inputs, outputs, name="conv_gru")


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "dense": build_dense,
    "conv1d": build_conv1d,
    "simple_rnn": build_simple_rnn,
    "lstm": build_lstm,
    "gru": build_gru,
    "bidirectional": build_bidirectional,
    "conv_gru": build_conv_gru,
}
"""Architecture name -> builder."""

ARCHITECTURES: tuple[str, ...] = tuple(BUILDERS)
"""The architecture names a space file may use."""

_NOT_MODEL_PARAMETERS = ("input_shape", "target_steps")


def _builder(architecture: str) -> Callable[..., keras.Model]:
    try:
        return BUILDERS[architecture]
    except KeyError:
        raise SpaceError(
            f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}"
        ) from None


def builder_signature(architecture: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters a builder takes (besides input_shape and target_steps)."""
    parameters = inspect.signature(_builder(architecture)).parameters
    return {name: p for name, p in parameters.items() if name not in _NOT_MODEL_PARAMETERS}


def builder_annotations(architecture: str) -> dict[str, Any]:
    """The declared type of each model argument (int, float, bool or a Literal of strings)."""
    return {
        name: eval(p.annotation, globals())  # noqa: S307 - our own annotations
        for name, p in builder_signature(architecture).items()
    }


def builder_parameters(architecture: str) -> set[str]:
    """Names of the model arguments an architecture's builder accepts."""
    return set(builder_signature(architecture))


def builder_defaults(architecture: str) -> dict[str, Any]:
    """The builder's default arguments: the book's configuration of that architecture."""
    return {name: p.default for name, p in builder_signature(architecture).items()}


def build_model(
    architecture: str, input_shape: InputShape, target_steps: int = 1, **kwargs: Any
) -> keras.Model:
    """Build an uncompiled model of a registered architecture; bad names raise SpaceError."""
    builder = _builder(architecture)
    unknown = sorted(set(kwargs) - builder_parameters(architecture))
    if unknown:
        raise SpaceError(
            f"{architecture}: unknown argument(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(builder_parameters(architecture)))}"
        )
    return builder(tuple(input_shape), target_steps=target_steps, **kwargs)
