"""Two engines, one space: keras-tuner studies through the CLI land in MLflow and in the study's
storage exactly like Optuna studies; every sampler and pruner runs; bad choices are one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mlflow
import optuna
import pytest

from search.errors import SearchError
from search.storage import open_storage, resolve_storage_url
from search.study import run_study
from tests.cli_helpers import quick_request, run_cli, run_cli_here

ROWS = "9000"


def _run(workdir: Path, study: str, *extra: str):
    return run_cli_here(
        "run",
        "--study",
        study,
        "--trials",
        "3",
        "--epochs",
        "2",
        "--max-rows",
        ROWS,
        "--storage",
        "sqlite:///studies.db",
        "--tracking-uri",
        "sqlite:///mlflow.db",
        *extra,
        cwd=workdir,
    )


def _runs(workdir: Path, study: str) -> tuple[list, list]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def _schema(client: mlflow.MlflowClient, run) -> tuple[set, set, set, set]:
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    return set(run.data.params), set(run.data.metrics), set(run.data.tags), artifacts


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Path:
    """One tiny study per engine in the same storage and tracking store."""
    workdir = tmp_path_factory.mktemp("engines")
    optuna_run = _run(workdir, "opt")
    assert optuna_run.returncode == 0, optuna_run.stdout + optuna_run.stderr
    kt_run = _run(workdir, "kt", "--engine", "keras-tuner", "--tuner", "hyperband")
    assert kt_run.returncode == 0, kt_run.stdout + kt_run.stderr
    assert "Traceback" not in kt_run.stdout + kt_run.stderr
    return workdir


def test_a_keras_tuner_study_lands_in_mlflow_like_an_optuna_study(both: Path) -> None:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{both / 'mlflow.db'}")
    opt_parents, opt_children = _runs(both, "opt")
    kt_parents, kt_children = _runs(both, "kt")
    assert len(opt_parents) == len(kt_parents) == 1
    assert len(kt_children) == 3
    assert kt_parents[0].data.params["engine"] == "keras-tuner"
    assert opt_parents[0].data.params["engine"] == "optuna"
    # the same parent schema (params, tags, artifacts)
    opt_parent, kt_parent = _schema(client, opt_parents[0]), _schema(client, kt_parents[0])
    assert opt_parent[0] == kt_parent[0]
    assert opt_parent[3] == kt_parent[3]
    # every child run: the same params, metrics, tags and artifacts as an Optuna child run
    reference = _schema(client, next(r for r in opt_children if r.info.status == "FINISHED"))
    for run in kt_children:
        params, metrics, tags, artifacts = _schema(client, run)
        assert run.data.tags["search.engine"] == "keras-tuner"
        # every keras-tuner trial trains: a failing one must not pass as "same schema"
        assert run.data.tags["search.state"] == "COMPLETE", run.data.tags
        assert params == reference[0]
        assert metrics == reference[1]
        assert tags == reference[2]
        assert artifacts == reference[3]
    for run in opt_children:
        assert run.data.tags["search.engine"] == "optuna"


def test_keras_tuner_trials_are_finished_trials_of_the_study(both: Path) -> None:
    storage = open_storage(resolve_storage_url("sqlite:///" + str(both / "studies.db")))
    study = optuna.load_study(study_name="kt", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert study.trials[0].user_attrs.get("book_config") is True
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
        assert trial.user_attrs["search.engine"] == "keras-tuner"
        assert trial.value == min(trial.intermediate_values.values())
        assert trial.params and trial.distributions.keys() == trial.params.keys()
    assert all("keras_tuner.trial_id" in t.user_attrs for t in study.trials[1:])
    assert (both / "studies.db.keras-tuner" / "kt" / "oracle.json").exists()
    listing = run_cli_here("trials", "kt", "--storage", "sqlite:///studies.db", cwd=both)
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 4, listing.stderr


def test_a_keras_tuner_study_continues_on_rerun(both: Path) -> None:
    again = _run(both, "kt")  # no --engine: the study remembers it
    assert again.returncode == 0, again.stdout + again.stderr
    assert "continuing study 'kt'" in again.stdout
    storage = open_storage(resolve_storage_url("sqlite:///" + str(both / "studies.db")))
    study = optuna.load_study(study_name="kt", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4, 5]
    kt_ids = [t.user_attrs["keras_tuner.trial_id"] for t in study.trials[1:]]
    assert len(set(kt_ids)) == len(kt_ids), kt_ids  # no keras-tuner trial ran twice
    parents, children = _runs(both, "kt")
    assert len(parents) == 1 and len(children) == 6
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{both / 'mlflow.db'}")
    # a Hyperband trial that continues another one logs its epochs at their true steps
    for trial in study.trials[1:]:
        initial = int(trial.user_attrs.get("keras_tuner.initial_epoch", 0))
        assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
        steps = [
            m.step for m in client.get_metric_history(trial.user_attrs["mlflow_run_id"], "val_mae")
        ]
        assert steps and min(steps) == initial, (trial.number, steps, initial)
        assert sorted(trial.intermediate_values) == sorted(steps)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--engine", "keras-tuner", "--tuner", "nope"], "unknown --tuner 'nope'"),
        (["--engine", "ray"], "invalid choice"),
        (["--sampler", "annealing"], "unknown --sampler 'annealing'"),
        (["--pruner", "wilcoxon"], "unknown --pruner 'wilcoxon'"),
        (["--tuner", "hyperband"], "--tuner is a keras-tuner setting"),
        (["--engine", "keras-tuner", "--sampler", "tpe"], "--sampler is an Optuna setting"),
        (["--engine", "keras-tuner", "--space", "missing.yaml"], "missing.yaml"),
    ],
    ids=["tuner", "engine", "sampler", "pruner", "tuner-on-optuna", "sampler-on-kt", "space"],
)
def test_bad_engine_choices_are_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_cli("run", "--study", "x", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    # refused before any study is stored (a bad --space before the storage is even opened;
    # an engine setting is checked against the study's remembered engine, so after)
    db = tmp_path / "search-studies.db"
    if "--space" in args:
        assert not db.exists()
    elif db.exists():
        assert optuna.get_all_study_summaries(f"sqlite:///{db}") == []
    assert not (tmp_path / "mlflow.db").exists()


def test_switching_engine_or_tuner_on_resume_is_refused(both: Path) -> None:
    for args, expected in (
        (["--engine", "keras-tuner"], "runs on the optuna engine"),
        (["--engine", "optuna"], None),
    ):
        result = _run(both, "opt" if expected else "kt", *args)
        if expected:
            assert result.returncode == 2 and expected in result.stderr, result.stderr
        else:
            assert result.returncode == 2 and "runs on the keras-tuner engine" in result.stderr
    tuner = _run(both, "kt", "--tuner", "random")
    assert tuner.returncode == 2 and "--tuner hyperband" in tuner.stderr, tuner.stderr


@pytest.mark.parametrize(
    "choice",
    [
        {"sampler": "tpe", "pruner": "median"},
        {"sampler": "random", "pruner": "halving"},
        {"sampler": "cmaes", "pruner": "hyperband"},
        pytest.param(
            {"sampler": "gp", "pruner": "none"},
            marks=pytest.mark.skipif(
                importlib.util.find_spec("torch") is None, reason="the gp extra (PyTorch)"
            ),
        ),
        {"sampler": "tpe", "pruner": "none"},
        {"engine": "keras-tuner", "tuner": "bayesian"},
        {"engine": "keras-tuner", "tuner": "random"},
    ],
    ids=lambda choice: "-".join(str(v) for v in choice.values()),
)
def test_every_search_method_runs_a_two_trial_study(tmp_path: Path, choice: dict) -> None:
    """Every sampler and every pruner (paired, to keep CI short) and every tuner; Hyperband is
    the keras-tuner default, run by the CLI tests above."""
    name = "-".join(str(v) for v in choice.values())
    outcome = run_study(quick_request(tmp_path, name, epochs=1, **choice))
    assert len(outcome.trials) == 2
    assert {t.state for t in outcome.trials} <= {"COMPLETE", "PRUNED"}, [
        t.attrs.get("fail_reason") for t in outcome.trials
    ]
    for option, value in choice.items():
        assert getattr(outcome.record, option) == value


def test_gp_without_pytorch_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(SearchError, match=r"search\[gp\]"):
        run_study(quick_request(tmp_path, "gp", sampler="gp"))


def test_the_study_stops_after_consecutive_failures(tmp_path: Path, monkeypatch) -> None:
    import search.training.compile

    def broken(*args, **kwargs):
        raise ValueError("the builder is broken")

    monkeypatch.setattr(search.training.compile, "build_model", broken)
    outcome = run_study(quick_request(tmp_path, "broken", trials=6, max_consecutive_failures=2))
    assert [t.state for t in outcome.trials] == ["FAIL", "FAIL"]
    assert outcome.stopped_for_failures == 2
    assert "the builder is broken" in outcome.trials[-1].attrs["fail_reason"]


def test_a_space_file_can_choose_the_search_method(tmp_path: Path) -> None:
    from search.spaces import load_space

    text = load_space("quick").path.read_text() + "search: {sampler: random, pruner: none}\n"
    space = tmp_path / "mine.yaml"
    space.write_text(text.replace("name: quick", "name: mine"))
    outcome = run_study(
        quick_request(tmp_path, "mine", space=str(space), epochs=1, pruner="median")
    )
    assert (outcome.record.sampler, outcome.record.pruner) == ("random", "median")  # flag wins
