"""Search spaces: YAML files in ``spaces/``, validated once, compiled to Optuna and keras-tuner.

A space file names an architecture, gives each parameter either a distribution (``int``,
``float`` with ``log``/``step``, ``categorical``, as Optuna has them) or a plain constant, fixes
the training settings, and names the book's configuration, which a study enqueues as trial 0::

    name: lstm                      # optional: defaults to the file name
    description: LSTM forecaster    # one line, listed by `search spaces`
    architecture: lstm              # one of search.models.ARCHITECTURES
    params:                         # the builder's arguments + the four training parameters
      units: {type: int, low: 8, high: 128, log: true}
      dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
      reverse: false                # a constant: pinned, not searched
      lookback_hours: {type: categorical, choices: [24, 72, 120]}
      sampling_rate: 6              # rows per step; must divide every lookback's rows (hours * 6)
      learning_rate: {type: float, low: 1e-4, high: 1e-2, log: true}
      batch_size: 256
    fixed: {epochs: 20, optimizer: rmsprop, loss: mse, patience: 3, horizon_hours: 24,
            target_steps: 1}
    book:                           # plain names; left out = the builder's default / BOOK_PROTOCOL
      source: "Deep Learning with Python, 2nd ed., 10.2.5"
      params: {units: 16, dropout: 0.0, lookback_hours: 120, learning_rate: 0.001}

A multi-architecture space replaces ``architecture``/model parameters with ``architectures:``, a
mapping of architecture name to its own parameters (Optuna names ``"lstm.units"``, sampled only
when ``architecture`` is ``lstm``); its ``params`` then hold only the shared training parameters,
which an architecture may override. ``book`` then names its ``architecture`` too.

This module imports neither Keras nor Optuna at import time (the CLI validates a space in about
a second); Optuna and keras-tuner are imported by the methods that compile to them.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    NonNegativeInt,
    PlainValidator,
    PositiveFloat,
    PositiveInt,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from search._resources import spaces_dir
from search.data.geometry import JENA_STEPS_PER_HOUR, WindowSpec, lookback_steps
from search.errors import SpaceError
from search.training import models

ROWS_PER_HOUR = JENA_STEPS_PER_HOUR
"""Spaces are checked on the Jena grid (one row per 10 minutes); a trial re-checks its windows
on its series' own grid."""

TRAINING_PARAMETERS = ("lookback_hours", "sampling_rate", "learning_rate", "batch_size")
"""Parameters every space sets (sampled or constant) besides the model's own."""

TARGET_SCALINGS = ("none", "standard", "residual")
"""How a trial's model sees its target: raw (the book's), standardized with the training
target's mean/std, or as the change from the last observed value over that change's std."""

OPTIONAL_PARAMETERS: dict[str, Any] = {"target_scaling": "none", "calendar_features": False}
"""Training parameters a space may set (sampled or constant); left out, they take these values."""

BOOK_SETTINGS: dict[str, Any] = {"target_scaling": "none", "calendar_features": False}
"""What the book configuration (trial 0) always uses, whatever the space searches: the book
trains on raw targets without calendar inputs, so its number stays comparable. These are fixed
settings of that trial, never enqueued as choices of the searched parameters."""

SHARED_PARAMETERS = (
    *("lookback_hours", "sampling_rate", "learning_rate", "batch_size"),
    *OPTIONAL_PARAMETERS,
)
"""Parameters that are not the model builder's own (a multi-architecture space shares them)."""

BOOK_PROTOCOL: dict[str, Any] = {
    "lookback_hours": 120,
    "sampling_rate": 6,
    "learning_rate": 1e-3,
    "batch_size": 256,
}
"""The 2nd edition's protocol: used for a book configuration that leaves these out."""

OPTIMIZERS = tuple(models.OPTIMIZERS)
"""Optimizer names a space may fix (those search.training.models.make_optimizer builds)."""
LOSSES = ("mse", "mae", "huber", "log_cosh", "mean_squared_error", "mean_absolute_error")
"""Keras loss names a space may fix."""

_MAX_COMBINATIONS = 1_000_000
_DISTRIBUTION_TYPES = ("int", "float", "categorical")

Scalar = bool | int | float | str


# --------------------------------------------------------------------------- distributions


class _Distribution(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def values(self) -> list[Any] | None:
        """Every reachable value, or None for a continuous range."""
        raise NotImplementedError

    def extremes(self) -> list[Any]:
        """Values enough to check a range constraint (endpoints, or every choice)."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def normalize(self, value: Any) -> Any:
        return value


class IntParam(_Distribution):
    """``{type: int, low, high, step: 1, log: false}``: an Optuna IntDistribution."""

    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: PositiveInt = 1
    log: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0, got low={self.low}")
        if self.log and self.step != 1:
            raise ValueError(
                "log and step cannot be combined (Optuna samples log ranges without a step)"
            )
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"high - low ({self.high - self.low}) is not a multiple of step ({self.step})"
            )
        return self

    def values(self) -> list[Any]:
        return list(range(self.low, self.high + 1, self.step))

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )

    def __str__(self) -> str:
        extra = " log" if self.log else (f" step {self.step}" if self.step != 1 else "")
        return f"int [{self.low}, {self.high}]{extra}"


class FloatParam(_Distribution):
    """``{type: float, low, high, step: null, log: false}``: an Optuna FloatDistribution."""

    type: Literal["float"]
    low: FiniteFloat
    high: FiniteFloat
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    log: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError(
                "log and step cannot be combined (Optuna samples log ranges without a step)"
            )
        if self.step is not None and not _is_whole((self.high - self.low) / self.step):
            raise ValueError(
                f"high - low ({self.high - self.low:g}) is not a multiple of step ({self.step:g})"
            )
        return self

    def values(self) -> list[Any] | None:
        if self.step is None:
            return None if self.low != self.high else [self.low]
        count = round((self.high - self.low) / self.step) + 1
        return [round(self.low + k * self.step, 12) for k in range(count)]

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        tolerance = 1e-9 * max(1.0, abs(self.high))
        if not self.low - tolerance <= value <= self.high + tolerance:
            return False
        return self.step is None or _is_whole((value - self.low) / self.step)

    def normalize(self, value: Any) -> Any:
        return float(value)

    def __str__(self) -> str:
        extra = " log" if self.log else (f" step {self.step:g}" if self.step is not None else "")
        return f"float [{self.low:g}, {self.high:g}]{extra}"


def _check_constant(value: Any) -> Scalar:
    if isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"a constant must be a number, a string or a boolean, got {type(value).__name__}; "
        "a distribution is written {type: int|float|categorical, ...}"
    )


Constant = Annotated[Scalar, PlainValidator(_check_constant)]


class CategoricalParam(_Distribution):
    """``{type: categorical, choices: [...]}``: an Optuna CategoricalDistribution."""

    type: Literal["categorical"]
    choices: list[Constant]

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if not self.choices:
            raise ValueError("choices is empty")
        kinds = {type(choice) for choice in self.choices}
        if len(kinds) > 1:
            names = ", ".join(sorted(kind.__name__ for kind in kinds))
            raise ValueError(f"choices mix types ({names}); keras-tuner needs one type")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self

    def values(self) -> list[Any]:
        return list(self.choices)

    def extremes(self) -> list[Any]:
        return list(self.choices)

    def contains(self, value: Any) -> bool:
        return self._match(value) is not None

    def normalize(self, value: Any) -> Any:
        return self._match(value)

    def _match(self, value: Any) -> Any:
        """The choice equal to value (24.0 matches 24; True matches only True), or None."""
        return next((choice for choice in self.choices if _same(value, choice)), None)

    def __str__(self) -> str:
        return "categorical {" + ", ".join(_show(choice) for choice in self.choices) + "}"


def _param_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type"))
    if isinstance(value, _Distribution):
        return value.type  # type: ignore[attr-defined]
    return "constant"


def _check_type_tag(value: Any) -> Any:
    if isinstance(value, dict):
        if "type" not in value:
            raise ValueError("a distribution needs a 'type': int, float or categorical")
        if value["type"] not in _DISTRIBUTION_TYPES:
            raise ValueError(
                f"unknown distribution type {value['type']!r}; expected int, float or categorical"
            )
    return value


ParamSpec = Annotated[
    Annotated[IntParam, Tag("int")]
    | Annotated[FloatParam, Tag("float")]
    | Annotated[CategoricalParam, Tag("categorical")]
    | Annotated[Constant, Tag("constant")],
    Discriminator(_param_kind),
    BeforeValidator(_check_type_tag),
]
"""A parameter in a space file: a distribution, or a plain constant that pins it."""


# --------------------------------------------------------------------------- the space file


class FixedSettings(BaseModel):
    """Training settings a space keeps constant for all its trials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveInt = 20
    optimizer: Literal[OPTIMIZERS] = "rmsprop"  # type: ignore[valid-type]
    loss: Literal[LOSSES] = "mse"  # type: ignore[valid-type]
    patience: NonNegativeInt = 3
    horizon_hours: PositiveFloat = 24
    target_steps: PositiveInt = 1
    quantiles: tuple[StrictFloat, ...] | None = None
    """Quantile levels of a probabilistic forecast (one output per level and step, trained with
    the pinball loss); None: a point forecast."""

    @model_validator(mode="after")
    def _check(self) -> FixedSettings:
        if not _is_whole(self.horizon_hours * ROWS_PER_HOUR):
            raise ValueError(
                f"horizon_hours ({self.horizon_hours:g}) is not a whole number of 10-minute rows"
            )
        if self.quantiles is not None:
            problem = quantile_problem(self.quantiles)
            if problem:
                raise ValueError(f"quantiles {list(self.quantiles)}: {problem}")
        return self


def quantile_problem(levels: Any) -> str | None:
    """Why a list of quantile levels is unusable (None when it is fine): every level in (0, 1),
    sorted, none repeated, and 0.5 among them (the median is the point forecast)."""
    values = list(levels)
    if not values:
        return "give at least one level (and 0.5 among them)"
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return "every level must be a number"
    if any(not 0.0 < float(v) < 1.0 for v in values):
        return "every level must lie strictly between 0 and 1"
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        if len(set(values)) < len(values):
            return "a level is repeated"
        return "levels must be sorted in increasing order"
    if not any(math.isclose(float(v), 0.5) for v in values):
        return "0.5 must be among them (the median is the point forecast)"
    return None


class SearchSettings(BaseModel):
    """A space's preferred search method (``search:`` in the file); the CLI's ``--sampler``,
    ``--pruner`` and ``--tuner`` override it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["tpe", "random", "gp", "cmaes"] | None = None
    pruner: Literal["median", "halving", "hyperband", "none"] | None = None
    tuner: Literal["hyperband", "bayesian", "random"] | None = None


class BookConfig(BaseModel):
    """The book's configuration of a space: enqueued as a study's first trial.

    ``params`` uses the plain parameter names of ``architecture``; a parameter left out takes the
    builder's default (the book's value) or, for the training parameters, ``BOOK_PROTOCOL``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = ""
    architecture: str | None = None
    params: dict[str, Constant] = Field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    """One parameter of one architecture's branch of a space."""

    name: str  # plain name, as the builder / TrialConfig knows it
    optuna_name: str  # unique name in the Optuna study and keras-tuner HyperParameters
    where: str  # location in the file, for messages: "params.units"
    spec: Any  # a _Distribution or a constant

    @property
    def constant(self) -> bool:
        return not isinstance(self.spec, _Distribution)

    def values(self) -> list[Any] | None:
        return [self.spec] if self.constant else self.spec.values()

    def extremes(self) -> list[Any]:
        return [self.spec] if self.constant else self.spec.extremes()

    def contains(self, value: Any) -> bool:
        if self.constant:
            return _same(value, self.spec)
        return self.spec.contains(value)


class Space(BaseModel):
    """A validated search space; build one with :func:`load_space`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    path: Path | None = None
    architecture: str | None = None
    architectures: dict[str, dict[str, ParamSpec]] | None = None
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    fixed: FixedSettings = Field(default_factory=FixedSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    book: BookConfig

    # ------------------------------------------------------------------ validation

    @field_validator("description")
    @classmethod
    def _one_line(cls, description: str) -> str:
        return " ".join(description.split())  # `search spaces` lists it on one line

    @model_validator(mode="after")
    def _validate_space(self) -> Space:
        if (self.architecture is None) == (self.architectures is None):
            raise ValueError(
                "architecture: give either 'architecture: NAME' or 'architectures:' "
                "(a mapping of names to their parameters), not both or neither"
            )
        for name in self.candidate_architectures:
            if name not in models.ARCHITECTURES:
                where = "architecture" if self.architectures is None else f"architectures.{name}"
                raise ValueError(
                    f"{where}: unknown architecture {name!r}; known: {', '.join(models.ARCHITECTURES)}"
                )
        if self.architectures is not None:
            if not self.architectures:
                raise ValueError("architectures: empty; list at least one architecture")
            for name in self.params:
                if name not in SHARED_PARAMETERS:
                    raise ValueError(
                        f"params.{name}: shared parameters of a multi-architecture space are "
                        f"{', '.join(SHARED_PARAMETERS)}; put model parameters under "
                        "architectures.<name>"
                    )
        for architecture in self.candidate_architectures:
            _validate_branch(architecture, self.branch(architecture))
        self._validate_book()
        return self

    def _validate_book(self) -> None:
        architecture = self.book.architecture or self.architecture
        if architecture is None:
            raise ValueError("book.architecture: missing (required in a multi-architecture space)")
        if architecture not in self.candidate_architectures:
            raise ValueError(
                f"book.architecture: {architecture!r} is not in this space "
                f"({', '.join(self.candidate_architectures)})"
            )
        branch = self.branch(architecture)
        by_name = {entry.name: entry for entry in branch.values()}
        for name, value in self.book.params.items():
            if name in BOOK_SETTINGS:
                raise ValueError(
                    f"book.params.{name}: the book configuration always uses "
                    f"{name}={_show(BOOK_SETTINGS[name])} (the book's protocol); leave it out"
                )
            if name not in by_name:
                raise ValueError(
                    f"book.params.{name}: not a parameter of this space's {architecture} "
                    f"(it has: {', '.join(sorted(by_name))})"
                )
            entry = by_name[name]
            if entry.constant and not entry.contains(value):
                raise ValueError(
                    f"book.params.{name}: {_show(value)} differs from the constant "
                    f"{entry.where} = {_show(entry.spec)}"
                )
        for entry in branch.values():
            if entry.constant or entry.name in BOOK_SETTINGS:
                continue
            value = self._book_value(architecture, entry.name)
            if not entry.contains(value):
                origin = "" if entry.name in self.book.params else " (the default)"
                raise ValueError(
                    f"book.params.{entry.name}: {_show(value)}{origin} is outside "
                    f"{entry.where} = {entry.spec}"
                )
        values = {
            entry.name: self._book_value(architecture, entry.name) for entry in branch.values()
        }
        problem = _combination_problem(architecture, values)
        if problem:
            raise ValueError(f"book.params: {problem}")

    def _book_value(self, architecture: str, name: str) -> Any:
        if name in BOOK_SETTINGS:
            return BOOK_SETTINGS[name]
        entry = next(e for e in self.branch(architecture).values() if e.name == name)
        if entry.constant:
            return entry.spec
        if name in self.book.params:
            value = self.book.params[name]
        elif name in BOOK_PROTOCOL:
            value = BOOK_PROTOCOL[name]
        else:
            value = models.builder_defaults(architecture)[name]
        return entry.spec.normalize(value) if entry.spec.contains(value) else value

    # ------------------------------------------------------------------ structure

    @property
    def candidate_architectures(self) -> tuple[str, ...]:
        """The architectures this space can build (one, or the categorical's choices)."""
        if self.architectures is not None:
            return tuple(self.architectures)
        return (self.architecture,) if self.architecture is not None else ()

    @property
    def conditional(self) -> bool:
        """Whether the architecture itself is searched (parameters conditional on it)."""
        return self.architectures is not None

    def branch(self, architecture: str) -> dict[str, _Entry]:
        """The parameters of one architecture, keyed by Optuna name."""
        entries = {
            name: _Entry(name, name, f"params.{name}", spec) for name, spec in self.params.items()
        }
        if self.architectures is not None:
            for name, spec in self.architectures[architecture].items():
                entries.pop(name, None)  # an architecture's own setting overrides a shared one
                optuna_name = f"{architecture}.{name}"
                entries[optuna_name] = _Entry(
                    name, optuna_name, f"architectures.{architecture}.{name}", spec
                )
        return entries

    def sampled(self) -> Iterator[tuple[str, _Entry, str]]:
        """(optuna_name, entry, architecture) of every sampled parameter, each name once."""
        seen: set[str] = set()
        for architecture in self.candidate_architectures:
            for optuna_name, entry in self.branch(architecture).items():
                if not entry.constant and optuna_name not in seen:
                    seen.add(optuna_name)
                    yield optuna_name, entry, architecture

    def users(self, optuna_name: str) -> list[str]:
        return [a for a in self.candidate_architectures if optuna_name in self.branch(a)]

    def _label(self) -> str:
        return str(self.path) if self.path is not None else f"space {self.name!r}"

    # ------------------------------------------------------------------ book

    def book_params(self) -> dict[str, Any]:
        """The book configuration as a trial's parameters (engine names), for enqueueing."""
        architecture = self.book.architecture or self.architecture
        assert architecture is not None
        params: dict[str, Any] = {}
        if self.architectures is not None:
            params["architecture"] = architecture
        for optuna_name, entry in self.branch(architecture).items():
            if not entry.constant and entry.name not in BOOK_SETTINGS:
                params[optuna_name] = self._book_value(architecture, entry.name)
        return params

    def reach_hours(self) -> float:
        """The longest window any trial of this space can use, from its first input to its
        last target, in hours (a blocked split scores every trial on the targets this reach
        leaves in each block)."""
        longest = 0.0
        for architecture in self.candidate_architectures:
            for entry in self.branch(architecture).values():
                if entry.name == "lookback_hours":
                    longest = max(longest, *(float(v) for v in entry.extremes()))
        return longest + self.fixed.horizon_hours + (self.fixed.target_steps - 1)

    def widest_windows(self) -> list[tuple[float, int]]:
        """(lookback_hours, sampling_rate) of the longest lookback at every reachable sampling
        rate: a split that holds a window of each of these holds one of every trial's."""
        widest: dict[int, float] = {}
        for architecture in self.candidate_architectures:
            by_name = {entry.name: entry for entry in self.branch(architecture).values()}
            lookbacks = by_name["lookback_hours"].values() or []
            for rate in by_name["sampling_rate"].values() or []:
                longest = max(float(hours) for hours in lookbacks)
                widest[int(rate)] = max(widest.get(int(rate), 0.0), longest)
        return sorted((hours, rate) for rate, hours in widest.items())

    def book_fixed(self) -> set[str]:
        """Engine names of the searched parameters the book trial does not sample (it uses
        BOOK_SETTINGS for them instead)."""
        return {name for name, entry, _ in self.sampled() if entry.name in BOOK_SETTINGS}

    # ------------------------------------------------------------------ resolution

    def resolve(self, params: dict[str, Any], book: bool = False) -> TrialConfig:
        """One explicit configuration from sampled values (Optuna params or keras-tuner values).

        Names of other architectures' parameters (inactive conditionals) are ignored; a missing
        or out-of-range value raises SpaceError. ``book`` marks the book configuration's trial,
        which uses BOOK_SETTINGS (raw targets, no calendar inputs) whatever the space searches.
        """
        label = self._label()
        if self.architectures is not None:
            architecture = params.get("architecture")
            if architecture not in self.architectures:
                raise SpaceError(
                    f"{label}: architecture: {architecture!r} is not one of "
                    f"{', '.join(self.architectures)}"
                )
        else:
            architecture = self.architecture
        assert architecture is not None
        known = {"architecture"} | {name for name, _, _ in self.sampled()}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SpaceError(f"{label}: {', '.join(unknown)}: not a parameter of this space")
        values: dict[str, Any] = dict(OPTIONAL_PARAMETERS)
        for optuna_name, entry in self.branch(architecture).items():
            if book and entry.name in BOOK_SETTINGS:
                values[entry.name] = BOOK_SETTINGS[entry.name]
                continue
            if entry.constant:
                values[entry.name] = entry.spec
                continue
            if optuna_name not in params:
                raise SpaceError(f"{label}: {optuna_name}: missing a value")
            value = params[optuna_name]
            if not entry.contains(value):
                raise SpaceError(f"{label}: {optuna_name}: {_show(value)} is outside {entry.spec}")
            values[entry.name] = entry.spec.normalize(value)
        problem = _combination_problem(architecture, values)
        if problem:
            raise SpaceError(f"{label}: {problem}")
        model_kwargs = models.builder_defaults(architecture)
        model_kwargs.update({k: v for k, v in values.items() if k not in SHARED_PARAMETERS})
        return TrialConfig(
            architecture=architecture,
            model_kwargs=model_kwargs,
            lookback_hours=values["lookback_hours"],
            sampling_rate=values["sampling_rate"],
            learning_rate=float(values["learning_rate"]),
            batch_size=values["batch_size"],
            epochs=self.fixed.epochs,
            optimizer=self.fixed.optimizer,
            loss=self.fixed.loss,
            patience=self.fixed.patience,
            horizon_hours=self.fixed.horizon_hours,
            target_steps=self.fixed.target_steps,
            quantiles=self.fixed.quantiles,
            target_scaling=str(values["target_scaling"]),
            calendar_features=bool(values["calendar_features"]),
        )

    # ------------------------------------------------------------------ text

    def describe(self) -> str:
        """Multi-line text for ``search spaces NAME``: parameters, fixed settings, book config."""
        lines = [f"{self.name}: {self.description.strip()}"]
        if self.path is not None:
            lines.append(f"file: {self.path}")
        if self.architectures is not None:
            lines.append(
                "architecture: categorical {" + ", ".join(self.architectures) + "}"
                " (each architecture's parameters apply only to it)"
            )
        else:
            lines.append(f"architecture: {self.architecture}")
        sampled = list(self.sampled())
        width = max([len(name) for name, _, _ in sampled] + [len("architecture"), 12])
        lines.append("searched parameters (Optuna name: distribution):")
        for optuna_name, entry, _ in sampled:
            note = ""
            if self.architectures is not None and "." not in optuna_name:
                skipped = [a for a in self.architectures if a not in self.users(optuna_name)]
                note = f"  (not for {', '.join(skipped)})" if skipped else ""
            lines.append(f"  {optuna_name:<{width}}  {entry.spec}{note}")
        if not sampled:
            lines.append("  (none)")
        constants = [
            (optuna_name, entry)
            for a in self.candidate_architectures
            for optuna_name, entry in self.branch(a).items()
            if entry.constant
        ]
        if constants:
            lines.append("constants:")
            shown: set[str] = set()
            for optuna_name, entry in constants:
                if optuna_name not in shown:
                    shown.add(optuna_name)
                    lines.append(f"  {optuna_name:<{width}}  = {_show(entry.spec)}")
        fixed = self.fixed
        lines.append(
            f"fixed: epochs={fixed.epochs} optimizer={fixed.optimizer} loss={fixed.loss} "
            f"patience={fixed.patience} horizon_hours={fixed.horizon_hours:g} "
            f"target_steps={fixed.target_steps}"
            + (f" quantiles={list(fixed.quantiles)}" if fixed.quantiles else "")
        )
        source = f" ({self.book.source})" if self.book.source else ""
        lines.append(f"book configuration{source}, enqueued as trial 0:")
        config = self.resolve(self.book_params(), book=True)
        items = {
            "architecture": config.architecture,
            **config.model_kwargs,
            "lookback_hours": config.lookback_hours,
            "sampling_rate": config.sampling_rate,
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
        }
        lines.append("  " + " ".join(f"{k}={_show(v)}" for k, v in items.items()))
        return "\n".join(lines)


@dataclass(frozen=True)
class TrialConfig:
    """One explicit trial configuration: what to build, how to window the data, how to train."""

    architecture: str
    model_kwargs: dict[str, Any]
    lookback_hours: float
    sampling_rate: int
    learning_rate: float
    batch_size: int
    epochs: int
    optimizer: str
    loss: str
    patience: int
    horizon_hours: float
    target_steps: int
    target_scaling: str = "none"
    calendar_features: bool = False
    quantiles: tuple[float, ...] | None = None

    @property
    def loss_name(self) -> str:
        """The loss a trial trains with: the pinball loss for a quantile forecast."""
        return "pinball" if self.quantiles else self.loss

    @property
    def outputs_per_step(self) -> int:
        """Model outputs per target step: one per quantile level, or one point forecast."""
        return len(self.quantiles) if self.quantiles else 1

    def window(self, steps_per_hour: float) -> WindowSpec:
        """This configuration's window geometry on a series with ``steps_per_hour`` rows per
        hour (validated: a DataError if it does not window cleanly there)."""
        spec = WindowSpec(
            self.lookback_hours,
            self.sampling_rate,
            self.horizon_hours,
            self.target_steps,
            steps_per_hour,
        )
        spec.validate()
        return spec

    def as_dict(self, steps_per_hour: float) -> dict[str, Any]:
        """Flat name -> value (model arguments under their plain names), for MLflow params;
        ``sequence_length`` is the window's on a series with ``steps_per_hour`` rows per hour."""
        flat: dict[str, Any] = {
            "architecture": self.architecture,
            "lookback_hours": self.lookback_hours,
            "sampling_rate": self.sampling_rate,
            "sequence_length": self.window(steps_per_hour).sequence_length,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "optimizer": self.optimizer,
            "loss": self.loss,
            "patience": self.patience,
            "horizon_hours": self.horizon_hours,
            "target_steps": self.target_steps,
            "target_scaling": self.target_scaling,
            "calendar_features": self.calendar_features,
        }
        if self.quantiles:
            flat["quantiles"] = ",".join(f"{q:g}" for q in self.quantiles)
        flat.update(self.model_kwargs)
        return flat


# --------------------------------------------------------------------------- checks


def _is_whole(x: float) -> bool:
    if not math.isfinite(x):
        return False
    return math.isclose(x, round(x), rel_tol=0, abs_tol=1e-9)


def _same(value: Any, reference: Any) -> bool:
    """Equal as a space means it: numbers by value, but booleans and strings only to their kind."""
    numbers = (int, float)
    if isinstance(reference, numbers) and not isinstance(reference, bool):
        return isinstance(value, numbers) and not isinstance(value, bool) and value == reference
    return type(value) is type(reference) and value == reference


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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
    left = models.conv_output_length(shortest, **worst)
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
    if models.conv_output_length(steps, **arguments) < 1:
        return f"lookback_hours: a window of {steps} steps is too short for the conv stack"
    return None


# --------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

_UNION_TAGS = {"int", "float", "categorical", "constant"}


def _format_errors(error: ValidationError) -> str:
    messages: list[str] = []
    for item in error.errors():
        parts = [
            str(p)
            for p in item["loc"]
            if str(p) not in _UNION_TAGS and not str(p).startswith("function-")
        ]
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if item["type"] == "missing":
            message = "missing (required)"
        elif item["type"] == "extra_forbidden":
            message = "unknown key"
        text = f"{'.'.join(parts)}: {message}" if parts else message
        if text not in messages:
            messages.append(text.replace("\n", " "))
    shown = "; ".join(messages[:3])
    if len(messages) > 3:
        shown += f" (and {len(messages) - 3} more)"
    return shown


def parse_space(data: Any, path: Path | None = None) -> Space:
    """Validate an already-parsed space (a mapping) into a Space; errors raise SpaceError."""
    label = str(path) if path is not None else "space"
    if not isinstance(data, dict):
        raise SpaceError(
            f"{label}: expected a mapping of keys (name, description, ...), "
            f"got {type(data).__name__}"
        )
    data = dict(data)
    if "path" in data:  # set from where the file was read, never by the file itself
        raise SpaceError(f"{label}: path: unknown key")
    if path is not None:
        data.setdefault("name", path.stem)
        data["path"] = path
    try:
        return Space.model_validate(data)
    except ValidationError as error:
        raise SpaceError(f"{label}: {_format_errors(error)}") from None


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpaceError(f"{path}: cannot read the space file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise SpaceError(
            f"{path}: not a text (UTF-8) file: byte {error.object[error.start]:#04x} at offset "
            f"{error.start}; a space file is YAML text"
        ) from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, label: str) -> Any:
    """The YAML document in ``text``; anything PyYAML cannot read is a one-line SpaceError."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).strip() or type(error).__name__
        raise SpaceError(f"{label}: malformed YAML{where}: {problem}") from None
    except Exception as error:
        # PyYAML's constructors let other errors through on some malformed scalars (a timestamp
        # with month 13, an empty `!!int`, a nesting too deep to build): bad input, not a crash.
        problem = f"{type(error).__name__}: {error}".strip()
        raise SpaceError(f"{label}: malformed YAML: {problem}") from None


def space_from_text(text: str, path: Path | None = None) -> Space:
    """Validate a space file's text (a study's snapshot of its space); errors raise SpaceError."""
    label = str(path) if path is not None else "space"
    return parse_space(_parse_yaml(text, label), path)


def _shipped() -> dict[str, Path]:
    return {path.stem: path for path in sorted(spaces_dir().glob("*.yaml"))}


def names_a_file(name_or_path: str | Path) -> bool:
    """The one rule for what ``--space`` names: a file when it is a Path, ends with ``.yaml`` or
    ``.yml``, or holds a path separator; else a shipped space (whatever the current folder holds:
    an entry named ``quick`` there does not hide the shipped space)."""
    text = str(name_or_path)
    return (
        isinstance(name_or_path, Path)
        or text.endswith((".yaml", ".yml"))
        or "/" in text
        or (os.sep in text)
    )


def load_space(name_or_path: str | Path) -> Space:
    """Load and validate a shipped space by name (``"lstm"``) or a space file by path."""
    text = str(name_or_path)
    if names_a_file(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise SpaceError(f"{path}: no such space file")
    else:
        shipped = _shipped()
        if text not in shipped:
            raise SpaceError(
                f"unknown space {text!r}; available: {', '.join(shipped) or '(none)'} "
                "(or give the path of a YAML file)"
            )
        path = shipped[text]
    return parse_space(_read_yaml(path), path)


def list_spaces() -> list[Space]:
    """Every shipped space, sorted by name."""
    return [load_space(path) for path in _shipped().values()]
