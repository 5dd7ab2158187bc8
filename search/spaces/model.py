"""The Space model: a validated space file (its settings, its book configuration, its
branches) and what it answers (the book's parameters, a trial's resolved configuration)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictFloat,
    field_validator,
    model_validator,
)

from search.errors import SpaceError
from search.spaces.builders import _combination_problem, _validate_branch
from search.spaces.distributions import Constant, ParamSpec, _Entry
from search.spaces.names import (
    BOOK_PROTOCOL,
    BOOK_SETTINGS,
    LOSSES,
    OPTIMIZERS,
    OPTIONAL_PARAMETERS,
    ROWS_PER_HOUR,
    SHARED_PARAMETERS,
    _is_whole,
    _show,
)
from search.spaces.trial_config import TrialConfig
from search.training import models


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

    sampler: Literal["tpe", "tpe-sobol", "random", "gp", "cmaes"] | None = None
    pruner: Literal["median", "percentile", "halving", "hyperband", "none"] | None = None
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
