"""One trial's explicit configuration, resolved from a space and its sampled parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search.data.geometry import WindowSpec


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
