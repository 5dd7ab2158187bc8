"""Optuna as an engine: the study lives in an Optuna storage (SQLite, PostgreSQL, journal file),
TPE samples, the median pruner (or another by name) stops weak trials, heartbeats let a study
outlive its workers.

Also the space-to-Optuna translation (``suggest``, ``distributions``) and Optuna's study plots;
the samplers and pruners by name are in :mod:`search.engines.samplers` (re-exported here).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import optuna
from optuna.trial import TrialState

from search.engines.base import (
    Engine,
    Objective,
    StudyRef,
    TrialHandle,
    TrialPruned,
    TrialSummary,
)
from search.engines.samplers import (
    SOBOL_POINTS,
    STARTUP_TRIALS,
    check_sampler_installed,
    make_pruner,
    make_sampler,
    sobol_points,
)
from search.errors import SearchError
from search.spaces import FloatParam, IntParam
from search.storage import open_storage
from search.workers import worker_attrs

_WORKER_KEY = "search.worker:"
_WORKER_FIELDS = ("search.host", "search.pid", "search.pid_started")

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from search.spaces import Space

__all__ = [
    "STARTUP_TRIALS",
    "OptunaEngine",
    "check_sampler_installed",
    "distributions",
    "make_pruner",
    "make_sampler",
    "suggest",
]


# --------------------------------------------------------------------------- space translation


def suggest(space: Space, trial: optuna.Trial) -> dict[str, Any]:
    """Sample one configuration with ``trial.suggest_*``; returns Optuna name -> value."""
    params: dict[str, Any] = {}
    architecture: str | None
    if space.architectures is not None:
        architecture = trial.suggest_categorical("architecture", list(space.architectures))
        params["architecture"] = architecture
    else:
        architecture = space.architecture
    assert architecture is not None
    skip = space.book_fixed() if trial.user_attrs.get("book_config") else set()
    for optuna_name, entry in space.branch(architecture).items():
        if entry.constant or optuna_name in skip:
            continue
        spec = entry.spec
        value: Any
        if isinstance(spec, IntParam):
            value = trial.suggest_int(
                optuna_name, spec.low, spec.high, step=spec.step, log=spec.log
            )
        elif isinstance(spec, FloatParam):
            value = trial.suggest_float(
                optuna_name, spec.low, spec.high, step=spec.step, log=spec.log
            )
        else:
            value = trial.suggest_categorical(optuna_name, spec.choices)
        params[optuna_name] = value
    return params


def distributions(space: Space) -> dict[str, optuna.distributions.BaseDistribution]:
    """Every sampled parameter (conditional ones under their Optuna names) as a distribution."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    result: dict[str, Any] = {}
    if space.architectures is not None:
        result["architecture"] = CategoricalDistribution(list(space.architectures))
    for optuna_name, entry, _ in space.sampled():
        spec = entry.spec
        if isinstance(spec, IntParam):
            result[optuna_name] = IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
        elif isinstance(spec, FloatParam):
            result[optuna_name] = FloatDistribution(
                spec.low, spec.high, log=spec.log, step=spec.step
            )
        else:
            result[optuna_name] = CategoricalDistribution(spec.choices)
    return result


# --------------------------------------------------------------------------- trials


def summary(trial: optuna.trial.FrozenTrial) -> TrialSummary:
    """An Optuna trial as an engine-neutral summary."""
    return TrialSummary(
        number=trial.number,
        state=trial.state.name,
        value=trial.value,
        params=dict(trial.params),
        attrs=dict(trial.user_attrs),
        intermediate_values=dict(trial.intermediate_values),
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
    )


class OptunaTrialHandle(TrialHandle):
    """A running ``optuna.Trial`` as the objective sees it."""

    def __init__(self, trial: optuna.Trial, engine: str = "optuna") -> None:
        self.trial = trial
        self._engine = engine

    @property
    def engine(self) -> str:
        return self._engine

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def is_book(self) -> bool:
        return bool(self.trial.user_attrs.get("book_config"))

    def params(self, space: Space) -> dict[str, Any]:
        return suggest(space, self.trial)

    def report(self, epoch: int, value: float) -> bool:
        self.trial.report(value, epoch)
        return self.trial.should_prune()

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        for key, value in attrs.items():
            self.trial.set_user_attr(key, value)

    @property
    def resumed_from(self) -> int | None:
        number = self.trial.user_attrs.get("search.resumed_from_trial")
        return int(number) if number is not None else None


MIN_TRIALS_FOR_IMPORTANCE = 10
"""Complete trials the parameter-importance plot needs before it is drawn."""

# --------------------------------------------------------------------------- the engine


class OptunaEngine(Engine):
    """An Optuna study in the storage at ``storage_url``."""

    name = "optuna"

    def __init__(self, storage_url: str) -> None:
        self.storage_url = storage_url
        self.storage = open_storage(storage_url)
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            raise RuntimeError("open a study first")
        return self._study

    def _pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.options.pruner, self.options.max_epochs)

    def _sampler(self, seed: int | None, study_seed: int | None) -> optuna.samplers.BaseSampler:
        """The sampler, seeded with ``seed``; ``tpe-sobol``'s start points come from the
        study's own seed, the same in every worker and every resume."""
        points = (
            sobol_points(distributions(self.space), SOBOL_POINTS, study_seed)
            if self.options.sampler == "tpe-sobol" and self.space is not None
            else []
        )
        return make_sampler(self.options.sampler, seed, self.options.conditional, points)

    def stop(self) -> None:
        if self._study is not None:
            self._study.stop()

    def open(
        self, study: str, seed: int | None, create: bool = True, join_seed: int | None = None
    ) -> bool:
        if create:
            try:
                self._study = optuna.create_study(
                    storage=self.storage,
                    study_name=study,
                    direction="minimize",
                    sampler=self._sampler(seed, seed),
                    pruner=self._pruner(),
                )
                return True
            except optuna.exceptions.DuplicatedStudyError:
                pass
        elif not self.exists(study):
            names = [s.name for s in self.studies()]
            listed = ", ".join(names[:20]) if names else "none"
            raise SearchError(
                f"no study named {study!r} in storage {self.storage_url} (studies there: {listed})"
            )
        # Joining or resuming: an explicit seed is honoured; otherwise each worker samples on its
        # own random stream so simultaneous workers do not propose the same parameters.
        self._study = optuna.load_study(
            study_name=study,
            storage=self.storage,
            sampler=self._sampler(join_seed, seed),
            pruner=self._pruner(),
        )
        return False

    def name_objective(self, name: str) -> None:
        # optuna-dashboard shows this instead of "Objective 0"
        if self.study.metric_names != [name]:
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2, still there in 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names([name])

    def exists(self, study: str) -> bool:
        try:
            self.storage.get_study_id_from_name(study)
        except KeyError:
            return False
        return True

    def delete(self, study: str) -> None:
        optuna.delete_study(study_name=study, storage=self.storage)
        if self._study is not None and self._study.study_name == study:
            self._study = None

    def studies(self) -> list[StudyRef]:
        return [
            StudyRef(s.study_name, s.n_trials)
            for s in optuna.get_all_study_summaries(self.storage, include_best_trial=False)
        ]

    def study_attrs(self) -> dict[str, Any]:
        return dict(self.study.user_attrs)

    def set_study_attrs(self, attrs: Mapping[str, Any]) -> None:
        for key, value in attrs.items():
            self.study.set_user_attr(key, value)

    def enqueue(self, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
        self.study.enqueue_trial(dict(params), user_attrs=dict(attrs))

    def optimize(
        self,
        objective: Objective,
        n_trials: int | None,
        timeout: float | None,
        on_trial_end: Callable[[TrialSummary], None] | None = None,
    ) -> None:
        worker = worker_attrs()

        def run(trial: optuna.Trial) -> float:
            for key, value in worker.items():  # first thing: a later run can tell if we died
                trial.set_user_attr(key, value)
            trial.set_user_attr("search.engine", self.name)
            try:
                return objective(OptunaTrialHandle(trial))
            except TrialPruned as exc:
                raise optuna.TrialPruned(str(exc)) from None

        callbacks = []
        if on_trial_end is not None:
            callbacks.append(lambda _study, trial: on_trial_end(summary(trial)))
        self._announce(worker, worker)
        try:
            self.study.optimize(
                run,
                n_trials=n_trials,
                timeout=timeout,
                catch=(Exception,),
                callbacks=callbacks,
                gc_after_trial=False,  # the objective frees each trial's model (clear_session)
            )
        finally:
            self._announce(worker, None)  # a clean end: no trial of ours is left unattributed

    # -- the workers that may create trials (a trial killed between its creation and the
    # recording of its worker has no attributes: the announced workers tell whether it is dead)

    def _study_id(self) -> int:
        return self.storage.get_study_id_from_name(self.study.study_name)

    def _announce(self, worker: Mapping[str, Any], value: Any) -> None:
        key = _WORKER_KEY + ":".join(str(worker.get(k)) for k in _WORKER_FIELDS)
        with contextlib.suppress(Exception):  # bookkeeping: never the reason a study fails
            self.storage.set_study_system_attr(self._study_id(), key, value)

    def _announced(self) -> list[dict[str, Any]]:
        attrs = self.storage.get_study_system_attrs(self._study_id())
        return [dict(v) for k, v in attrs.items() if k.startswith(_WORKER_KEY) and v]

    # -- trials driven one by one (another engine's proposals, recorded here)

    def has_waiting(self) -> bool:
        """Whether an enqueued configuration waits to run."""
        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def run_one(self, objective: Objective, engine: str) -> TrialSummary:
        """Run the next enqueued configuration (or a sampled one) to its end, like one trial of
        ``optimize``: pruned and failing trials are recorded, never raised."""
        trial = self.study.ask()
        trial.set_user_attr("search.engine", engine)
        handle = OptunaTrialHandle(trial, engine)
        try:
            value = objective(handle)
        except TrialPruned:
            return self.finish_trial(handle, "PRUNED", None)
        except Exception:
            return self.finish_trial(handle, "FAIL", None)
        return self.finish_trial(handle, "COMPLETE", value)

    def start_trial(
        self, space: Space, params: Mapping[str, Any], attrs: Mapping[str, Any]
    ) -> OptunaTrialHandle:
        """A new RUNNING trial holding a configuration proposed elsewhere (its parameters set
        with the space's distributions, so Optuna's plots and the dashboard read it)."""
        study = self.study
        study_id = self.storage.get_study_id_from_name(study.study_name)
        trial_id = self.storage.create_new_trial(study_id)
        known = distributions(space)
        for name, value in params.items():
            if name in known:
                distribution = known[name]
                self.storage.set_trial_param(
                    trial_id, name, distribution.to_internal_repr(value), distribution
                )
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        return OptunaTrialHandle(optuna.Trial(study, trial_id), str(attrs.get("search.engine")))

    def finish_trial(self, handle: TrialHandle, state: str, value: float | None) -> TrialSummary:
        """Record a trial's end (COMPLETE with its value, PRUNED or FAIL)."""
        assert isinstance(handle, OptunaTrialHandle)
        trial = handle.trial
        if state == "COMPLETE":
            frozen = self.study.tell(trial, value)
        elif state == "PRUNED":
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = self.study.tell(trial, state=TrialState.FAIL)
        return summary(frozen)

    def fail_dead(self, is_dead: Callable[[TrialSummary], bool], reason: str) -> list[TrialSummary]:
        failed = []
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        workers: list[dict[str, Any]] | None = None
        unattributed = 0
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            found = summary(trial)
            if not any(key in found.attrs for key in _WORKER_FIELDS):
                # killed between its creation and the recording of its worker: dead when every
                # worker that may have created it (those announced and not ended cleanly) is
                workers = self._announced() if workers is None else workers
                if not workers or not all(
                    is_dead(replace(found, attrs=worker)) for worker in workers
                ):
                    unattributed += 1
                    continue
            elif not is_dead(found):
                continue
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            try:
                self.storage.set_trial_user_attr(trial_id, "fail_reason", reason)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except RuntimeError:  # another worker failed it first
                continue
            failed.append(summary(self.storage.get_trial(trial_id)))
        if workers and not unattributed:  # forget the dead workers' announcements
            for worker in workers:
                if is_dead(TrialSummary(-1, "RUNNING", None, {}, attrs=worker)):
                    self._announce(worker, None)
        return failed

    def fail_running(self) -> list[TrialSummary]:
        """Mark FAIL every RUNNING trial (for single-worker engines, whose RUNNING trials at
        start belong to a worker that died); returns them."""
        failed = []
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study_id = self.storage.get_study_id_from_name(self.study.study_name)
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            failed.append(summary(self.storage.get_trial(trial_id)))
        return failed

    def trials(self) -> list[TrialSummary]:
        return [summary(t) for t in self.study.get_trials(deepcopy=False)]

    def best(self) -> TrialSummary | None:
        try:
            return summary(self.study.best_trial)
        except ValueError:
            return None

    def fail_stale(self) -> list[TrialSummary]:
        """Optuna's heartbeat check (a no-op on storages without heartbeats); returns the FAIL
        trials that carry no failure reason of ours, i.e. those failed for a dead worker."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        return [
            summary(t)
            for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
            if "fail_reason" not in t.user_attrs
        ]

    def figures(self) -> dict[str, Figure]:
        """Optuna's optimization history and parameter importances as matplotlib figures.

        Importances are drawn from MIN_TRIALS_FOR_IMPORTANCE (10) complete trials on: fewer
        give confident-looking bars out of noise. Figures that cannot be drawn yet are left out.
        """
        import matplotlib
        from optuna.visualization import matplotlib as optuna_plots

        import search.training.plots  # noqa: F401  (selects the Agg backend first)

        figures: dict[str, Figure] = {}
        plots: list[tuple[str, Callable[..., Any]]] = [
            ("optimization_history.png", optuna_plots.plot_optimization_history)
        ]
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) >= MIN_TRIALS_FOR_IMPORTANCE:  # fewer: noise read as importance
            plots.append(("param_importances.png", optuna_plots.plot_param_importances))
        for name, plot in plots:
            try:
                # optuna's plots switch the whole process to its "ggplot" style; the context
                # gives its figures that look and restores matplotlib's settings after, so the
                # figures drawn later in this process (the next trial's, the next study's) keep
                # their own
                with warnings.catch_warnings(), matplotlib.rc_context():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    axis = plot(self.study)
            except Exception:  # too few trials, a single distinct value...
                continue
            # optuna draws on plt.subplots() and returns the Axes, whose figure is a Figure
            figure = cast("Figure", axis.figure if hasattr(axis, "figure") else axis)
            figure.set_size_inches(7.5, 4.5)
            figure.set_layout_engine("tight")  # laid out as the save draws it, as in plots.py
            figures[name] = figure
        return figures
