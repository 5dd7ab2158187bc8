"""The engine seam: an engine proposes configurations and records results; everything else
(data, model building, training, tracking) is shared.

An :class:`Engine` opens (creates or joins) one study in a storage, runs an objective on trial
handles, and lists the study's trials as engine-neutral :class:`TrialSummary` values. The
objective sees only a :class:`TrialHandle`: its number, the parameters it proposes for a space,
``report(epoch, value) -> should_stop`` for pruning, and ``set_attrs`` to record results.
Raising :class:`TrialPruned` from the objective ends a trial as PRUNED; any other exception as
FAIL, and the study goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from search.spaces import Space

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "TUNERS",
    "Engine",
    "SearchOptions",
    "StudyRef",
    "TrialHandle",
    "TrialPruned",
    "TrialSummary",
]

STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")


SAMPLERS = ("tpe", "tpe-sobol", "random", "gp", "cmaes")
PRUNERS = ("median", "percentile", "halving", "hyperband", "none")
TUNERS = ("hyperband", "bayesian", "random")


DEFAULT_SAMPLER = "tpe-sobol"
DEFAULT_PRUNER = "percentile"
"""The benchmark's pick (``benchmarks/bench_engines.py``, README "Search engines"): the book
trial and 3 scrambled Sobol points, then TPE, with the best third kept from the first epoch."""
LEGACY_SAMPLER = "tpe"
LEGACY_PRUNER = "median"
"""What a study recorded without a sampler or pruner name (made before studies remembered
them) resumes with: the defaults of that time, whatever today's are."""
DEFAULT_TUNER = "hyperband"


@dataclass(frozen=True)
class SearchOptions:
    """How an engine searches: Optuna's sampler and pruner, or keras-tuner's tuner, and the
    facts of the space they need (its epoch budget, whether it is conditional)."""

    sampler: str = DEFAULT_SAMPLER
    pruner: str = DEFAULT_PRUNER
    tuner: str = DEFAULT_TUNER
    max_epochs: int = 10
    conditional: bool = False


class TrialPruned(Exception):
    """Raised by an objective whose trial was stopped early by the engine's pruner."""


@dataclass(frozen=True)
class TrialSummary:
    """One trial as every engine reports it."""

    number: int
    state: str  # one of STATES
    value: float | None
    params: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None

    @property
    def is_book(self) -> bool:
        """Whether this trial ran the space's book configuration."""
        return bool(self.attrs.get("book_config"))

    @property
    def duration_seconds(self) -> float | None:
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()


@dataclass(frozen=True)
class StudyRef:
    """A study in a storage: its name and how many trials it holds."""

    name: str
    n_trials: int


class TrialHandle(ABC):
    """What an objective may do with the trial it runs."""

    @property
    @abstractmethod
    def number(self) -> int:
        """The trial's number in its study (0, 1, ...)."""

    @property
    def is_book(self) -> bool:
        """Whether this trial runs the space's book configuration (enqueued as trial 0)."""
        return False

    @property
    def engine(self) -> str:
        """The name of the engine that proposed this trial (the ``search.engine`` tag)."""
        return "optuna"

    def epochs(self, planned: int) -> tuple[int, int]:
        """(initial_epoch, epochs) to train, Keras' ``fit`` arguments: by default the planned
        epochs from scratch; a multi-fidelity engine gives its own budget, and a trial that
        continues another one starts at that trial's last epoch."""
        return 0, planned

    def warm_start(self) -> Path | None:
        """Weights (``.weights.h5``) of the trial this one continues, or None."""
        return None

    def checkpoint(self) -> Path | None:
        """Where to save this trial's best weights for trials that continue it, or None."""
        return None

    @property
    def resumed_from(self) -> int | None:
        """The number of the interrupted trial whose configuration this one re-runs (and whose
        epoch checkpoint it continues from, when this machine has it), or None."""
        return None

    @abstractmethod
    def params(self, space: Space) -> dict[str, Any]:
        """This trial's parameters for a space (sampled, or enqueued), by their engine names."""

    @abstractmethod
    def report(self, epoch: int, value: float) -> bool:
        """Record an epoch's objective value; True means the engine wants the trial stopped."""

    @abstractmethod
    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Record facts about the trial (its run id, skill, references...) in the study."""


Objective = Callable[[TrialHandle], float]


class Engine(ABC):
    """One study in one storage, driven by one search method."""

    name: str = "engine"
    options: SearchOptions = SearchOptions()
    space: Space | None = None
    requeues: bool = True
    """Whether an interrupted trial's configuration is queued again by the study (engines that
    retry on their own, like keras-tuner's oracles, say False)."""

    def configure(self, options: SearchOptions) -> None:
        """Choose how to search before :meth:`open` (engines ignore what is not theirs)."""
        self.options = options

    def bind(self, space: Space) -> None:
        """The space this run searches (engines that build their own search space from it)."""
        self.space = space

    def stop(self) -> None:
        """Start no new trial after the running one (called from ``on_trial_end``)."""
        self._stopped = True

    def name_objective(self, name: str) -> None:
        """Name the open study's objective where the engine's own views show it (after
        :meth:`open`; engines without such a name ignore it)."""
        return None

    @abstractmethod
    def open(
        self, study: str, seed: int | None, create: bool = True, join_seed: int | None = None
    ) -> bool:
        """Create the study (returns True; its sampler seeded with ``seed``) or join the existing
        one (returns False; seeded with ``join_seed``, None for a stream of its own). With
        ``create=False`` an absent study is a SearchError."""

    @abstractmethod
    def exists(self, study: str) -> bool:
        """Whether the storage holds a study of that name."""

    @abstractmethod
    def delete(self, study: str) -> None:
        """Delete a study from the storage."""

    @abstractmethod
    def studies(self) -> list[StudyRef]:
        """Every study in the storage."""

    @abstractmethod
    def study_attrs(self) -> dict[str, Any]:
        """The open study's attributes (what :class:`~search.record.StudyRecord` is stored as)."""

    @abstractmethod
    def set_study_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Store attributes on the open study."""

    @abstractmethod
    def enqueue(self, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        """Queue a configuration as the next trial to run."""

    @abstractmethod
    def optimize(
        self,
        objective: Objective,
        n_trials: int | None,
        timeout: float | None,
        on_trial_end: Callable[[TrialSummary], None] | None = None,
    ) -> None:
        """Run trials until ``n_trials`` have run here or ``timeout`` seconds have passed."""

    @abstractmethod
    def trials(self) -> list[TrialSummary]:
        """Every trial of the open study, by number."""

    def best(self) -> TrialSummary | None:
        """The COMPLETE trial with the lowest value, or None."""
        done = [t for t in self.trials() if t.state == "COMPLETE" and t.value is not None]
        return min(done, key=lambda t: (t.value, t.number)) if done else None

    def fail_dead(self, is_dead: Callable[[TrialSummary], bool], reason: str) -> list[TrialSummary]:
        """Mark FAIL (with ``reason``) the RUNNING trials whose worker is provably gone; returns
        them. Engines without such trials return none."""
        return []

    @abstractmethod
    def fail_stale(self) -> list[TrialSummary]:
        """Mark FAIL the RUNNING trials of workers that died; returns the trials failed so."""

    def figures(self) -> dict[str, Figure]:
        """Engine-specific study plots (PNG name -> figure); none by default."""
        return {}
