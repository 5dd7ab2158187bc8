"""The model builders' argument checks and the conv stack's geometry: pure functions, no Keras
(a space file is checked against them before Keras is imported)."""

from __future__ import annotations

from typing import Any

from search.errors import SpaceError

InputShape = tuple[int | None, int]


def require(condition: bool, architecture: str, message: str) -> None:
    if not condition:
        raise SpaceError(f"{architecture}: {message}")


def check_common(architecture: str, input_shape: InputShape, target_steps: int) -> None:
    require(
        len(tuple(input_shape)) == 2,
        architecture,
        f"input_shape must be (sequence_length, n_features), got {input_shape!r}",
    )
    require(target_steps >= 1, architecture, f"target_steps must be >= 1, got {target_steps}")


def check_at_least_one(architecture: str, **values: int) -> None:
    for name, value in values.items():
        require(value >= 1, architecture, f"{name} must be >= 1, got {value}")


def check_rates(architecture: str, **rates: float) -> None:
    for name, rate in rates.items():
        require(0.0 <= rate < 1.0, architecture, f"{name} must be in [0, 1), got {rate}")


def conv_kernel_sizes(kernel_size: int, layers: int, halve_kernel: bool = False) -> list[int]:
    """Kernel size of each Conv1D layer: constant, or halved per layer (the book's 24, 12, 6)."""
    if not halve_kernel:
        return [kernel_size] * layers
    return [max(1, kernel_size // 2**index) for index in range(layers)]


def conv_output_length(
    sequence_length: int,
    *,
    kernel_size: int,
    layers: int,
    pool_size: int,
    halve_kernel: bool = False,
) -> int:
    """Time steps left after the Conv1D/MaxPooling1D stack; below 1 means the window is too short.

    The stack is Conv1D (valid padding), with MaxPooling1D(pool_size) between consecutive
    Conv1D layers, as in both books.
    """
    length = sequence_length
    for index, kernel in enumerate(conv_kernel_sizes(kernel_size, layers, halve_kernel)):
        if index:
            length //= pool_size
            if length < 1:
                return length
        length -= kernel - 1
        if length < 1:
            return length
    return length


def check_conv_length(architecture: str, input_shape: InputShape, **conv: Any) -> None:
    steps = input_shape[0]
    if steps is None:
        return
    left = conv_output_length(steps, **conv)
    require(
        left >= 1,
        architecture,
        f"a window of {steps} steps is too short for the conv stack "
        f"(kernel_size={conv['kernel_size']}, layers={conv['layers']}, "
        f"pool_size={conv['pool_size']}): lengthen the lookback or shrink the stack",
    )


def check_unroll(architecture: str, input_shape: InputShape, unroll: bool) -> None:
    require(
        not unroll or input_shape[0] is not None,
        architecture,
        "unroll=True needs a fixed sequence length (input_shape[0] is None)",
    )
