"""The default search, chosen by `benchmarks/bench_engines.py`: its sampler and pruner are the
defaults of a new study, a study made before (no sampler or pruner in its record) keeps the old
default on resume, `tpe-sobol` starts from the book trial plus scrambled Sobol points over the
whole space, and `percentile` keeps the best third from the first epoch."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

import search.engines.optuna as optuna_engine
from search.engines.base import DEFAULT_PRUNER, DEFAULT_SAMPLER
from search.engines.optuna import distributions
from search.engines.samplers import SOBOL_POINTS, make_pruner, sobol_points
from search.spaces import load_space
from search.storage import open_storage, resolve_storage_url
from search.study import run_study
from tests.cli_helpers import quick_request

CHOSEN = ("tpe-sobol", "percentile")  # the benchmark's winner (README, "Search engines")


def test_the_default_search_is_the_one_the_benchmark_chose() -> None:
    assert (DEFAULT_SAMPLER, DEFAULT_PRUNER) == CHOSEN


def test_sobol_points_spread_over_the_whole_space_and_are_seeded() -> None:
    space = load_space("all")
    dists = distributions(space)
    points = sobol_points(dists, SOBOL_POINTS, seed=3)
    assert points == sobol_points(dists, SOBOL_POINTS, seed=3)
    assert points != sobol_points(dists, SOBOL_POINTS, seed=4)
    assert len(points) == SOBOL_POINTS
    for point in points:
        assert set(point) == set(dists)
        for name, value in point.items():
            assert dists[name]._contains(dists[name].to_internal_repr(value)), (name, value)
    # three points, three architectures, and a continuous parameter in three thirds of its range
    assert len({p["architecture"] for p in points}) == SOBOL_POINTS
    lr = dists["learning_rate"]
    thirds = {
        int(3 * (math.log(p["learning_rate"]) - math.log(lr.low)) / math.log(lr.high / lr.low))
        for p in points
    }
    assert len(thirds) >= 2


def test_the_percentile_pruner_keeps_the_best_third_from_the_first_epoch() -> None:
    study = optuna.create_study(pruner=make_pruner("percentile", 3))
    for value in (1.0, 2.0, 3.0):
        trial = study.ask()
        trial.report(value, 0)
        study.tell(trial, value)
    weak, strong = study.ask(), study.ask()
    weak.report(2.0, 0)
    strong.report(1.2, 0)
    assert weak.should_prune()  # not in the best third after one epoch
    assert not strong.should_prune()


def _request(tmp_path: Path, study: str, **kw):
    return quick_request(tmp_path, study, **{"epochs": 1, "seed": 7, **kw})


@pytest.fixture
def made(monkeypatch) -> dict[str, list[str]]:
    """The sampler and pruner names the Optuna engine builds, in order."""
    names: dict[str, list[str]] = {"sampler": [], "pruner": []}
    real_sampler, real_pruner = optuna_engine.make_sampler, optuna_engine.make_pruner

    def sampler(name, seed, conditional, start_points=()):
        names["sampler"].append(name)
        return real_sampler(name, seed, conditional, start_points)

    def pruner(name, max_epochs):
        names["pruner"].append(name)
        return real_pruner(name, max_epochs)

    monkeypatch.setattr(optuna_engine, "make_sampler", sampler)
    monkeypatch.setattr(optuna_engine, "make_pruner", pruner)
    return names


@pytest.mark.slow
def test_a_new_study_starts_with_the_book_trial_then_sobol_points(
    tmp_path: Path, made: dict[str, list[str]]
) -> None:
    # a first run of 2 trials takes one point and leaves none waiting; the resume takes the
    # other two, in order, then TPE samples
    first = run_study(_request(tmp_path, "fresh", trials=2, sampler="tpe-sobol"))
    assert first.record.sampler == "tpe-sobol"
    assert [t.state for t in first.trials if t.state not in ("COMPLETE", "PRUNED")] == []
    outcome = run_study(_request(tmp_path, "fresh", trials=SOBOL_POINTS))
    assert set(made["sampler"]) == {"tpe-sobol"}
    trials = sorted(outcome.trials, key=lambda t: t.number)
    assert len(trials) == SOBOL_POINTS + 2
    assert trials[0].is_book
    space = load_space("quick")
    expected = sobol_points(distributions(space), SOBOL_POINTS, seed=7)
    for trial, point in zip(trials[1 : SOBOL_POINTS + 1], expected, strict=True):
        assert trial.attrs.get("search.start_point") == "sobol"
        assert trial.params == {k: point[k] for k in trial.params}
    assert "search.start_point" not in trials[-1].attrs
    assert {t.state for t in trials} <= {"COMPLETE", "PRUNED"}


@pytest.mark.slow
def test_a_study_made_with_the_old_default_keeps_it_on_resume(
    tmp_path: Path, made: dict[str, list[str]]
) -> None:
    run_study(_request(tmp_path, "old", trials=1, sampler="tpe", pruner="median"))
    # a record written before studies remembered their sampler and pruner: no names in it
    storage = open_storage(resolve_storage_url(f"sqlite:///{tmp_path / 'o.db'}"))
    study = optuna.load_study(study_name="old", storage=storage)
    study.set_user_attr("sampler", None)
    study.set_user_attr("pruner", None)
    outcome = run_study(_request(tmp_path, "old", trials=1))
    assert (made["sampler"][-1], made["pruner"][-1]) == ("tpe", "median")
    assert len(outcome.trials) == 2
    # a new study with no flags gets the default, and remembers it; a run of 2 trials enqueues
    # one Sobol point, not three, so nothing is left WAITING
    new = run_study(_request(tmp_path, "new", trials=2))
    assert (made["sampler"][-1], made["pruner"][-1]) == CHOSEN
    assert (new.record.sampler, new.record.pruner) == CHOSEN
    assert [t.attrs.get("search.start_point") for t in new.trials] == [None, "sobol"]
    assert {t.state for t in new.trials} <= {"COMPLETE", "PRUNED"}


def test_a_space_file_names_the_same_samplers_and_pruners_as_the_flags() -> None:
    from typing import get_args

    from search.engines.base import PRUNERS, SAMPLERS
    from search.spaces.model import SearchSettings

    def names(field: str) -> set[str]:
        literal = get_args(SearchSettings.model_fields[field].annotation)[0]
        return set(get_args(literal))

    assert names("sampler") == set(SAMPLERS)
    assert names("pruner") == set(PRUNERS)
