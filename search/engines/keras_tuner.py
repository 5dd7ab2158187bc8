"""keras-tuner as an engine: its oracles (Hyperband, Bayesian optimization, random search)
propose configurations; our trial trains them; the study's Optuna storage stays the one record.

The oracle is keras-tuner's sampler-and-scheduler (``create_trial`` / ``update_trial`` /
``end_trial``); we drive it directly instead of through ``Tuner.search``, so data, model
building, training and tracking are the same code as for Optuna. Every keras-tuner trial is
also an Optuna trial in the study's storage (RUNNING while it trains, then COMPLETE or FAIL, with
its parameters, intermediate values and ``search.engine``), so ``search trials``/``best``, the
dashboard and export read both engines' studies the same way.

keras-tuner's own state (``oracle.json``, one ``trial_*`` folder per trial with the weights that
Hyperband continues from) lives in :func:`tuner_dir`: beside a SQLite or journal storage file
(``studies.db`` -> ``studies.db.keras-tuner/STUDY``), or under
``~/.cache/search/keras-tuner/<storage hash>/STUDY`` for a database server. A keras-tuner study
runs on one worker at a time; re-running it continues the oracle where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.engines.base import (
    TUNERS,
    Engine,
    Objective,
    SearchOptions,
    StudyRef,
    TrialHandle,
    TrialPruned,
    TrialSummary,
)
from search.errors import SearchError
from search.spaces import FloatParam, IntParam
from search.workers import local_state_dir

if TYPE_CHECKING:
    import keras_tuner
    from matplotlib.figure import Figure

    from search.spaces import Space

__all__ = ["KerasTunerEngine", "hyperparameters", "tuner_dir"]

HYPERBAND_FACTOR = 3
CHECKPOINT = "checkpoint.weights.h5"
_TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round")


def hyperparameters(space: Space) -> keras_tuner.HyperParameters:
    """The space as keras-tuner ``HyperParameters``; defaults are the book configuration.

    In a multi-architecture space, each architecture's parameters live in a
    ``conditional_scope`` on ``architecture``.
    """
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    book = space.book_params()
    if space.architectures is not None:
        hp.Choice("architecture", list(space.architectures), default=book.get("architecture"))
    for name, entry, _ in space.sampled():
        users = space.users(name)
        if space.architectures is not None and len(users) < len(space.architectures):
            with hp.conditional_scope("architecture", users):
                _register(hp, name, entry.spec, book.get(name))
        else:
            _register(hp, name, entry.spec, book.get(name))
    return hp


def _register(hp: Any, name: str, spec: Any, default: Any) -> None:
    if isinstance(spec, IntParam):
        hp.Int(
            name,
            spec.low,
            spec.high,
            step=None if spec.log else spec.step,
            sampling="log" if spec.log else "linear",
            default=default,
        )
    elif isinstance(spec, FloatParam):
        hp.Float(
            name,
            spec.low,
            spec.high,
            step=spec.step,
            sampling="log" if spec.log else "linear",
            default=default,
        )
    elif isinstance(spec.choices[0], bool):  # Choice would turn booleans into 0/1
        if len(spec.choices) == 2:
            hp.Boolean(name, default=bool(default) if default is not None else spec.choices[0])
        else:
            hp.Fixed(name, spec.choices[0])
    else:
        hp.Choice(name, list(spec.choices), default=default)


# --------------------------------------------------------------------------- where its state lives


def tuner_dir(storage_url: str, study: str) -> Path:
    """keras-tuner's folder for a study: beside a storage file, or in the user's cache for a
    database server (keyed by a hash of the URL, which holds no secret)."""
    return local_state_dir(storage_url, study, "keras-tuner")


def _oracle(options: SearchOptions, space: Space, seed: int) -> Any:
    import keras_tuner

    objective = keras_tuner.Objective("val_mae", direction="min")
    hp = hyperparameters(space)
    common = {
        "objective": objective,
        "hyperparameters": hp,
        "seed": seed,
        # our --max-consecutive-failures rule stops the study, not keras-tuner's own
        "max_consecutive_failed_trials": 10**9,
    }
    if options.tuner == "hyperband":
        return keras_tuner.oracles.HyperbandOracle(
            max_epochs=max(options.max_epochs, 2),
            factor=HYPERBAND_FACTOR,
            hyperband_iterations=None,  # as many brackets as --trials/--timeout allow
            **common,
        )
    if options.tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=None, **common)
    if options.tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=None, **common)
    raise SearchError(f"unknown tuner {options.tuner!r}; expected one of {', '.join(TUNERS)}")


# --------------------------------------------------------------------------- the trial handle


class KerasTunerTrialHandle(TrialHandle):
    """A keras-tuner trial, mirrored by an Optuna trial in the study's storage."""

    def __init__(self, mirror: TrialHandle, kt_trial: Any, oracle: Any, folder: Path) -> None:
        self.mirror = mirror  # the Optuna trial: number, attrs, intermediate values
        self.kt_trial = kt_trial
        self.oracle = oracle
        self.folder = folder
        values = dict(kt_trial.hyperparameters.values)
        self.schedule = {key: values.pop(key) for key in _TUNER_KEYS if key in values}
        self.continues = values.pop("tuner/trial_id", None)
        self.values = values

    @property
    def number(self) -> int:
        return self.mirror.number

    @property
    def engine(self) -> str:
        return "keras-tuner"

    def params(self, space: Space) -> dict[str, Any]:
        return self.mirror.params(space)

    def report(self, epoch: int, value: float) -> bool:
        if math.isfinite(value):
            self.oracle.update_trial(self.kt_trial.trial_id, {"val_mae": value}, step=epoch)
        self.mirror.report(epoch, value)
        return False  # keras-tuner schedules epochs up front; it never stops a trial midway

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        self.mirror.set_attrs(attrs)

    def epochs(self, planned: int) -> tuple[int, int]:
        if "tuner/epochs" in self.schedule:
            return int(self.schedule.get("tuner/initial_epoch", 0)), int(
                self.schedule["tuner/epochs"]
            )
        return 0, planned

    def warm_start(self) -> Path | None:
        if self.continues is None:
            return None
        path = self.folder / f"trial_{self.continues}" / CHECKPOINT
        return path if path.exists() else None

    def checkpoint(self) -> Path | None:
        return self.folder / f"trial_{self.kt_trial.trial_id}" / CHECKPOINT


# --------------------------------------------------------------------------- the engine


class KerasTunerEngine(Engine):
    """keras-tuner's oracles over a study kept in an Optuna storage."""

    name = "keras-tuner"
    requeues = False  # the oracle retries a trial its dead worker left running

    def __init__(self, storage_url: str) -> None:
        from search.engines.optuna import OptunaEngine

        self.storage_url = storage_url
        self.record = OptunaEngine(storage_url)  # the study's one record
        self.record.configure(SearchOptions(sampler="random", pruner="none"))
        self._study_name: str | None = None
        self._seed = 0
        self._stopped = False

    @property
    def folder(self) -> Path:
        assert self._study_name is not None
        return tuner_dir(self.storage_url, self._study_name)

    def open(
        self, study: str, seed: int | None, create: bool = True, join_seed: int | None = None
    ) -> bool:
        created = self.record.open(study, seed=seed, create=create, join_seed=join_seed)
        self._study_name = study
        self._seed = seed if seed is not None else (join_seed or 0)
        return created

    def exists(self, study: str) -> bool:
        return self.record.exists(study)

    def delete(self, study: str) -> None:
        import shutil

        self.record.delete(study)
        shutil.rmtree(tuner_dir(self.storage_url, study), ignore_errors=True)

    def studies(self) -> list[StudyRef]:
        return self.record.studies()

    def study_attrs(self) -> dict[str, Any]:
        return self.record.study_attrs()

    def set_study_attrs(self, attrs: Mapping[str, Any]) -> None:
        self.record.set_study_attrs(attrs)

    def enqueue(self, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        self.record.enqueue(params, attrs)

    def trials(self) -> list[TrialSummary]:
        return self.record.trials()

    def best(self) -> TrialSummary | None:
        return self.record.best()

    def figures(self) -> dict[str, Figure]:
        return self.record.figures()

    def fail_stale(self) -> list[TrialSummary]:
        """A keras-tuner study has one worker: at start, every RUNNING trial is a dead one's
        (keras-tuner's oracle retries it)."""
        return self.record.fail_running()

    def stop(self) -> None:
        self._stopped = True

    def _load_oracle(self) -> Any:
        if self.space is None:
            raise RuntimeError("bind a space first")
        oracle = _oracle(self.options, self.space, self._seed)
        oracle.verbose = 0  # no keras-tuner tables on the terminal
        folder = self.folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        oracle._set_project_dir(str(folder.parent), folder.name)
        if (folder / "oracle.json").exists():
            oracle.reload()  # overwrite=False: continue where the study stopped
        return oracle

    def optimize(
        self,
        objective: Objective,
        n_trials: int | None,
        timeout: float | None,
        on_trial_end: Callable[[TrialSummary], None] | None = None,
    ) -> None:
        import time

        from keras_tuner.engine.trial import TrialStatus

        oracle = self._load_oracle()
        started = time.monotonic()
        ran = 0
        self._stopped = False
        while not self._stopped and (n_trials is None or ran < n_trials):
            if timeout is not None and time.monotonic() - started > timeout:
                break
            if self.record.has_waiting():  # the book configuration, enqueued at the start
                summary = self.record.run_one(objective, engine=self.name)
            else:
                kt_trial = oracle.create_trial("search")
                if kt_trial.status != TrialStatus.RUNNING:
                    break  # the space is exhausted (or the oracle is done)
                summary = self._run_kt_trial(objective, oracle, kt_trial)
            ran += 1
            if on_trial_end is not None:
                on_trial_end(summary)

    def _run_kt_trial(self, objective: Objective, oracle: Any, kt_trial: Any) -> TrialSummary:
        from keras_tuner.engine.trial import TrialStatus

        assert self.space is not None
        values = {
            k: v for k, v in kt_trial.hyperparameters.values.items() if not k.startswith("tuner/")
        }
        mirror = self.record.start_trial(
            self.space,
            values,
            {
                "search.engine": self.name,
                "keras_tuner.trial_id": kt_trial.trial_id,
                **{
                    f"keras_tuner.{k.removeprefix('tuner/')}": v
                    for k, v in kt_trial.hyperparameters.values.items()
                    if k.startswith("tuner/")
                },
            },
        )
        handle = KerasTunerTrialHandle(mirror, kt_trial, oracle, self.folder)
        try:
            value = objective(handle)
        except TrialPruned:
            kt_trial.status = TrialStatus.FAILED
            kt_trial.message = "pruned"
            _end(oracle, kt_trial)
            return self.record.finish_trial(mirror, "PRUNED", None)
        except Exception as exc:
            kt_trial.status = TrialStatus.FAILED
            kt_trial.message = str(exc)[:500]
            _end(oracle, kt_trial)
            return self.record.finish_trial(mirror, "FAIL", None)
        kt_trial.status = TrialStatus.COMPLETED
        _end(oracle, kt_trial)
        return self.record.finish_trial(mirror, "COMPLETE", value)


def _end(oracle: Any, kt_trial: Any) -> None:
    """End a trial in the oracle and save its state again: keras-tuner saves before it drops
    the trial from its ongoing ones, so a reload would otherwise run the trial a second time."""
    oracle.end_trial(kt_trial)
    oracle.save()
