"""Optuna's samplers and pruners by name (``--sampler``, ``--pruner``), and the check that a
sampler's optional package is installed."""

from __future__ import annotations

import warnings

import optuna

from search.engines.base import PRUNERS, SAMPLERS
from search.errors import SearchError

__all__ = ["STARTUP_TRIALS", "check_sampler_installed", "make_pruner", "make_sampler"]

STARTUP_TRIALS = 5
"""Random trials before TPE models the results (the book trial counts as one)."""


def make_sampler(name: str, seed: int | None, conditional: bool) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name. TPE is multivariate, and grouped for conditional spaces (each
    architecture's parameters modelled together); ``gp`` needs PyTorch (the ``gp`` extra)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=conditional,
                n_startup_trials=STARTUP_TRIALS,
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
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(max_epochs, 1), reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SearchError(f"unknown pruner {name!r}; expected one of {', '.join(PRUNERS)}")
