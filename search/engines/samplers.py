"""Optuna's samplers and pruners by name (``--sampler``, ``--pruner``), and the check that a
sampler's optional package is installed."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from search.engines.base import PRUNERS, SAMPLERS
from search.errors import SearchError

__all__ = [
    "SOBOL_POINTS",
    "START_POINT_ATTR",
    "STARTUP_TRIALS",
    "StartPointSampler",
    "check_sampler_installed",
    "make_pruner",
    "make_sampler",
    "sobol_points",
]

STARTUP_TRIALS = 5
"""Random trials before TPE models the results (the book trial counts as one)."""
SOBOL_POINTS = 3
"""``tpe-sobol``: spread-out configurations run after the book trial, before TPE models."""
START_POINT_ATTR = "search.start_point"
"""The user attribute of a trial that ran a start point (its value: ``sobol``)."""
PERCENTILE_KEPT = 100 / 3
"""``percentile``: the share of trials kept at every epoch (the best third, as Hyperband's
reduction factor 3 keeps)."""


def make_sampler(
    name: str,
    seed: int | None,
    conditional: bool,
    start_points: Sequence[dict[str, Any]] = (),
) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name. TPE is multivariate, and grouped for conditional spaces (each
    architecture's parameters modelled together); ``tpe-sobol`` hands out ``start_points``
    first (:class:`StartPointSampler`); ``gp`` needs PyTorch (the ``gp`` extra)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name in ("tpe", "tpe-sobol"):  # tpe-sobol: the book trial and the Sobol points start it
            tpe = optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=conditional,
                n_startup_trials=STARTUP_TRIALS if name == "tpe" else 1 + SOBOL_POINTS,
                constant_liar=True,
            )
            return StartPointSampler(tpe, start_points) if name == "tpe-sobol" else tpe
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "gp":
            check_sampler_installed(name)
            return optuna.samplers.GPSampler(
                seed=seed, n_startup_trials=STARTUP_TRIALS, warn_independent_sampling=False
            )
        if name == "cmaes":
            check_sampler_installed(name)
            return optuna.samplers.CmaEsSampler(
                seed=seed,
                n_startup_trials=STARTUP_TRIALS,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                warn_independent_sampling=False,
            )
    raise SearchError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")


class StartPointSampler(optuna.samplers.BaseSampler):
    """``base``, after fixed start points: each trial the study does not fix (not the book
    trial, not a re-queued one) takes the first point no earlier trial of the study took, tagged
    ``search.start_point=sobol``; once all are taken, ``base`` samples. A point is taken when
    its trial begins (as Optuna's GridSampler assigns its grid), so a study that stops early
    leaves no point waiting, and a resumed one goes on with the next."""

    def __init__(self, base: optuna.samplers.BaseSampler, points: Sequence[dict[str, Any]]):
        self._base = base
        self._points = list(points)
        self._running: dict[int, dict[str, Any]] = {}  # trial id -> its point, in this process
        self._all_taken = not self._points

    def reseed_rng(self) -> None:
        self._base.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        if self._all_taken or "fixed_params" in trial.system_attrs:
            return
        taken = sum(1 for t in study.get_trials(deepcopy=False) if START_POINT_ATTR in t.user_attrs)
        if taken < len(self._points):
            study._storage.set_trial_user_attr(trial._trial_id, START_POINT_ATTR, "sobol")
            self._running[trial._trial_id] = self._points[taken]
        else:  # taken points stay taken: no more scans of the study's trials
            self._all_taken = True

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if trial._trial_id in self._running:
            return {}  # every parameter of a start point comes from sample_independent
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial._trial_id in self._running:
            return {}
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        point = self._running.get(trial._trial_id)
        if point is not None and param_name in point:
            return point[param_name]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._running.pop(trial._trial_id, None)
        self._base.after_trial(study, trial, state, values)


def check_sampler_installed(name: str) -> None:
    """A one-line error naming the extra when a sampler's package is missing."""
    import importlib.util

    needs = {
        "gp": ("torch", "'search[gp]' (PyTorch; CPU wheels are enough)"),
        "cmaes": (
            "cmaes",
            "cmaes",
        ),
    }.get(name)
    if needs is not None and importlib.util.find_spec(needs[0]) is None:
        raise SearchError(f"--sampler {name} needs {needs[0]}: pip install {needs[1]}")


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """An Optuna pruner by name; epochs are the resource of halving and Hyperband."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "percentile":  # from the first epoch, keep the best third of earlier trials
        return optuna.pruners.PercentilePruner(
            PERCENTILE_KEPT, n_startup_trials=2, n_warmup_steps=0
        )
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SearchError(f"unknown pruner {name!r}; expected one of {', '.join(PRUNERS)}")


def sobol_points(
    distributions: dict[str, optuna.distributions.BaseDistribution], count: int, seed: int | None
) -> list[dict[str, object]]:
    """``count`` configurations spread over the whole space: scrambled Sobol points (seeded),
    one dimension per parameter (a conditional space's every branch, plus ``architecture``),
    mapped through each distribution (log ranges on the log scale, steps rounded, a category
    by its share of [0, 1)). Parameters a point's architecture does not use go unused."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from scipy.stats import qmc

    names = sorted(distributions)
    if not names or count <= 0:
        return []
    with warnings.catch_warnings():  # Sobol's balance warning: we take a prefix on purpose
        warnings.simplefilter("ignore", UserWarning)
        unit = qmc.Sobol(len(names), scramble=True, seed=seed).random(count)
    points: list[dict[str, object]] = []
    for row in unit:
        point: dict[str, object] = {}
        for name, u in zip(names, row, strict=True):
            dist = distributions[name]
            if isinstance(dist, CategoricalDistribution):
                point[name] = dist.choices[min(int(u * len(dist.choices)), len(dist.choices) - 1)]
                continue
            assert isinstance(dist, (FloatDistribution, IntDistribution))
            low, high = float(dist.low), float(dist.high)
            if dist.log:
                value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
            else:
                value = low + u * (high - low)
            if dist.step is not None:
                value = low + round((value - low) / dist.step) * dist.step
            value = round(min(max(value, low), high), 12)
            point[name] = int(round(value)) if isinstance(dist, IntDistribution) else value
        points.append(point)
    return points
