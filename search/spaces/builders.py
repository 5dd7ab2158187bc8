"""Checks of a space against the model builders' signatures: each parameter's type, the
windows it can make, and the combinations a builder refuses."""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal, get_args, get_origin

from search.data.geometry import lookback_steps
from search.spaces.distributions import FloatParam, _Entry
from search.spaces.names import _MAX_COMBINATIONS, SHARED_PARAMETERS, TRAINING_PARAMETERS, _show
from search.training import models
from search.training.model_checks import conv_output_length


def _expected_type(architecture: str, name: str) -> Any:
    if name == "target_scaling":
        return Literal["none", "standard", "residual"]
    if name == "calendar_features":
        return bool
    if name in ("lookback_hours", "learning_rate"):
        return float
    if name in ("sampling_rate", "batch_size"):
        return int
    return models.builder_annotations(architecture)[name]


def _type_problem(expected: Any, value: Any) -> str | None:
    if get_origin(expected) is Literal:
        allowed = get_args(expected)
        return (
            None
            if value in allowed and isinstance(value, str)
            else (f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        )
    if expected is bool:
        return None if isinstance(value, bool) else f"takes true/false, got {value!r}"
    if expected is int:
        return (
            None
            if isinstance(value, int) and not isinstance(value, bool)
            else (f"takes an integer, got {value!r}")
        )
    if expected is float:
        return (
            None
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            else (f"takes a finite number, got {value!r}")
        )
    return None


_RANGES: dict[str, tuple[Any, str]] = {
    "units": (lambda v: v >= 1, ">= 1"),
    "layers": (lambda v: v >= 1, ">= 1"),
    "conv_layers": (lambda v: v >= 1, ">= 1"),
    "filters": (lambda v: v >= 1, ">= 1"),
    "kernel_size": (lambda v: v >= 1, ">= 1"),
    "pool_size": (lambda v: v >= 1, ">= 1"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "recurrent_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "head_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "lookback_hours": (lambda v: v > 0, "> 0"),
    "sampling_rate": (lambda v: v >= 1, ">= 1"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
}


def _validate_branch(architecture: str, branch: dict[str, _Entry]) -> None:
    """Names, types, ranges and combinations of one architecture's parameters."""
    accepted = models.builder_parameters(architecture)
    by_name: dict[str, _Entry] = {}
    for entry in branch.values():
        if entry.name not in accepted and entry.name not in SHARED_PARAMETERS:
            raise ValueError(
                f"{entry.where}: architecture {architecture!r} does not take {entry.name!r} "
                f"(it takes: {', '.join(sorted(accepted | set(SHARED_PARAMETERS)))})"
            )
        expected = _expected_type(architecture, entry.name)
        for value in entry.extremes():
            problem = _type_problem(expected, value)
            if problem:
                raise ValueError(f"{entry.where}: {entry.name} {problem}")
            check, wanted = _RANGES.get(entry.name, (lambda v: True, ""))
            if not check(value):
                raise ValueError(
                    f"{entry.where}: {entry.name} must be {wanted}, got {_show(value)}"
                )
        if not entry.constant and isinstance(entry.spec, FloatParam) and expected is int:
            raise ValueError(f"{entry.where}: {entry.name} takes integers; use an int distribution")
        by_name[entry.name] = entry
    for name in TRAINING_PARAMETERS:
        if name not in by_name:
            raise ValueError(
                f"params.{name}: missing for {architecture} (every space sets "
                f"{', '.join(TRAINING_PARAMETERS)}, sampled or constant)"
            )
    _validate_windows(architecture, by_name)


def _validate_windows(architecture: str, by_name: dict[str, _Entry]) -> None:
    """Every reachable lookback/sampling-rate pair gives whole rows and fits the conv stack."""
    lookback, rate = by_name["lookback_hours"], by_name["sampling_rate"]
    lookbacks, rates = lookback.values(), rate.values()
    if lookbacks is None:
        raise ValueError(
            f"{lookback.where}: a continuous float cannot guarantee whole 10-minute rows; "
            "use int, categorical, or a float with a step"
        )
    assert rates is not None  # sampling_rate is an int parameter
    if len(lookbacks) * len(rates) > _MAX_COMBINATIONS:
        raise ValueError(f"{lookback.where}: too many lookback/sampling_rate combinations to check")
    shortest: int | None = None
    for hours, step in itertools.product(lookbacks, rates):
        steps, problem = lookback_steps(hours, step)
        if steps is None:
            where = (
                rate.where if problem and problem.startswith("sampling_rate") else lookback.where
            )
            raise ValueError(f"{where}: {problem}")
        shortest = steps if shortest is None else min(shortest, steps)
    conv = _conv_arguments(architecture)
    if conv is None or shortest is None:
        return
    defaults = models.builder_defaults(architecture)
    worst: dict[str, Any] = {}
    for key, parameter in conv.items():  # the output length is monotone in each argument
        entry = by_name.get(parameter)
        values = entry.extremes() if entry is not None else [defaults[parameter]]
        worst[key] = all(values) if key == "halve_kernel" else max(values)
    left = conv_output_length(shortest, **worst)
    if left < 1:
        settings = ", ".join(f"{k}={_show(v)}" for k, v in worst.items())
        raise ValueError(
            f"{lookback.where}: the shortest window ({shortest} steps) is too short for the "
            f"conv stack at {settings}; lengthen the lookback or shrink the stack's ranges"
        )


def _conv_arguments(architecture: str) -> dict[str, str] | None:
    """conv_output_length argument -> builder parameter, for architectures with a conv stack."""
    if architecture == "conv1d":
        return {
            "kernel_size": "kernel_size",
            "layers": "layers",
            "pool_size": "pool_size",
            "halve_kernel": "halve_kernel",
        }
    if architecture == "conv_gru":
        return {"kernel_size": "kernel_size", "layers": "conv_layers", "pool_size": "pool_size"}
    return None


def _combination_problem(architecture: str, values: dict[str, Any]) -> str | None:
    """Why one concrete configuration cannot be windowed or built, or None."""
    steps, problem = lookback_steps(values["lookback_hours"], values["sampling_rate"])
    if steps is None:
        assert problem is not None
        if problem.startswith("sampling_rate"):
            return "sampling_rate: " + problem.removeprefix("sampling_rate ")
        return f"lookback_hours: {problem}"
    conv = _conv_arguments(architecture)
    if conv is None:
        return None
    defaults = models.builder_defaults(architecture)
    arguments = {key: values.get(parameter, defaults[parameter]) for key, parameter in conv.items()}
    if conv_output_length(steps, **arguments) < 1:
        return f"lookback_hours: a window of {steps} steps is too short for the conv stack"
    return None
