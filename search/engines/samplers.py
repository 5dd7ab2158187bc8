"""Optuna's samplers and pruners by name (``--sampler``, ``--pruner``), and the check that a
sampler's optional package is installed."""

from __future__ import annotations

import math
import warnings

import optuna

from search.engines.base import PRUNERS, SAMPLERS
from search.errors import SearchError

__all__ = [
    "SOBOL_POINTS",
    "STARTUP_TRIALS",
    "check_sampler_installed",
    "make_pruner",
    "make_sampler",
    "sobol_points",
]

STARTUP_TRIALS = 5
"""Random trials before TPE models the results (the book trial counts as one)."""
SOBOL_POINTS = 3
"""``tpe-sobol``: spread-out configurations run after the book trial, before TPE models."""
PERCENTILE_KEPT = 100 / 3
"""``percentile``: the share of trials kept at every epoch (the best third, as Hyperband's
reduction factor 3 keeps)."""


def make_sampler(name: str, seed: int | None, conditional: bool) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name. TPE is multivariate, and grouped for conditional spaces (each
    architecture's parameters modelled together); ``gp`` needs PyTorch (the ``gp`` extra)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name in ("tpe", "tpe-sobol"):  # tpe-sobol: the book trial and the Sobol points start it
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=conditional,
                n_startup_trials=STARTUP_TRIALS if name == "tpe" else 1 + SOBOL_POINTS,
                constant_liar=True,
            )
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
