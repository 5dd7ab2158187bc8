"""A parameter's distribution in a space file (``int``, ``float``, ``categorical``) or a
constant that pins it, and one parameter of one architecture's branch (``_Entry``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    PlainValidator,
    PositiveInt,
    StrictBool,
    StrictInt,
    Tag,
    model_validator,
)

from search.spaces.names import _DISTRIBUTION_TYPES, Scalar, _is_whole, _same, _show


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
