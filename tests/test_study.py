"""Study mechanics in-process: failing trials, storage forms, resume rules."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import optuna
import pytest

from search.errors import SearchError, StorageError
from search.storage import open_storage, resolve_storage_url
from search.study import StudyRequest, run_study
from tests.cli_helpers import Lines, cli_env, migrated_store, search_command


def _options(tmp_path: Path, storage: str, **kw) -> StudyRequest:
    lines: list[str] = []
    defaults = dict(
        study="s",
        storage=resolve_storage_url(storage),
        tracking_uri=migrated_store(tmp_path / "mlflow.db"),
        space="quick",
        max_rows=9000,
        trials=2,
        epochs=1,
        seed=3,
        progress=lines.append,
    )
    defaults.update(kw)
    return StudyRequest(**defaults)


def _study(storage: str, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage_url(storage)))


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, monkeypatch) -> None:
    import search.training.compile

    real = search.training.compile.build_model
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("simulated out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(search.training.compile, "build_model", flaky)
    url = f"sqlite:///{tmp_path / 'o.db'}"
    run_study(_options(tmp_path, url))
    study = _study(url)
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL
    assert "simulated out of memory" in study.trials[0].user_attrs["fail_reason"]
    assert states[1] in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert run.data.tags["search.state"] == "FAIL"
    assert "simulated out of memory" in run.data.tags["search.fail_reason"]
    assert run.info.status == "FAILED"


def test_the_heap_before_the_trials_is_set_aside_and_each_trials_garbage_is_freed(
    tmp_path: Path, monkeypatch
) -> None:
    """While the trials run, what was alive before them is frozen (a trial's collection scans
    only what the trials made); a trial's cyclic garbage is not set aside with it but freed
    before the next trial; the heap is handed back when the study ends."""
    import gc
    import weakref

    import search.training.compile

    class Cycle:
        pass

    seen: list[dict] = []

    def failing_build(*args, **kwargs):
        previous = seen[-1]["garbage"] if seen else None
        garbage = Cycle()
        garbage.itself = garbage  # only the cyclic collector frees it
        seen.append(
            {
                "frozen": gc.get_freeze_count(),
                "previous_freed": previous is not None and previous() is None,
                "garbage": weakref.ref(garbage),
            }
        )
        del garbage  # not kept alive by the traceback
        raise ValueError("no model today")

    monkeypatch.setattr(search.training.compile, "build_model", failing_build)
    assert gc.get_freeze_count() == 0
    alive_before = len(gc.get_objects())
    run_study(_options(tmp_path, f"sqlite:///{tmp_path / 'o.db'}", trials=3))
    assert len(seen) == 3
    assert all(s["frozen"] >= alive_before // 2 for s in seen), [s["frozen"] for s in seen]
    assert [s["previous_freed"] for s in seen] == [False, True, True]
    assert gc.get_freeze_count() == 0


def test_a_heap_set_aside_by_the_caller_is_left_as_it_is() -> None:
    import gc

    from search.study import heap_set_aside

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with heap_set_aside():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_journal_storage_runs_and_resumes(tmp_path: Path) -> None:
    url = f"journal:///{tmp_path / 'study.log'}"
    run_study(_options(tmp_path, url, trials=1))
    run_study(_options(tmp_path, url, trials=1, space=None))  # resumed: space remembered
    study = _study(url)
    assert [t.number for t in study.trials] == [0, 1]
    assert isinstance(open_storage(resolve_storage_url(url)), optuna.storages.JournalStorage)


def test_fresh_starts_over_and_keeps_old_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    run_study(_options(tmp_path, url, trials=1))
    old_parent = _study(url).user_attrs["mlflow_parent_run_id"]
    run_study(_options(tmp_path, url, trials=1, fresh=True))
    second = _study(url)
    assert [t.number for t in second.trials] == [0]
    assert second.user_attrs["mlflow_parent_run_id"] != old_parent
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(old_parent).data.tags["search.superseded"] == "true"


def test_resume_with_other_data_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    run_study(_options(tmp_path, url, trials=1))
    other = tmp_path / "other.csv"
    other.write_text("date,x\n")
    with pytest.raises(SearchError, match="--fresh"):
        run_study(_options(tmp_path, url, trials=1, data=str(other)))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel.db", "sqlite:////"),
        ("journal:rel.log", "journal:///"),
        ("postgresql://u:p@h:5432/db", "postgresql://u:p@h:5432/db"),
    ],
)
def test_storage_urls_resolve(url: str, expected: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_url(url).startswith(expected)


def test_storage_env_var_and_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    assert resolve_storage_url(None) == f"sqlite:///{tmp_path / 'search-studies.db'}"
    monkeypatch.setenv("SEARCH_STORAGE", "journal:///x/y.log")
    assert resolve_storage_url(None) == "journal:///x/y.log"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "ftp://x", "journal://host/x"])
def test_bad_storage_urls(url: str) -> None:
    with pytest.raises(StorageError):
        resolve_storage_url(url)


@pytest.mark.slow
def test_resume_after_a_crash_on_another_host_waits_for_the_heartbeat(
    tmp_path: Path, monkeypatch
) -> None:
    import signal
    import subprocess
    import time

    import search.storage

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    worker = subprocess.Popen(
        search_command(
            "run",
            "--study",
            "crash",
            "--trials",
            "3",
            "--epochs",
            "30",
            "--max-rows",
            "9000",
            "--storage",
            storage,
            "--tracking-uri",
            tracking,
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    printed = Lines(worker)
    try:  # wait until trial 0 is training, then kill the worker hard
        printed.wait_for("trial 0 epoch 1/", timeout=300)
    finally:
        worker.send_signal(signal.SIGKILL)
        printed.rest(timeout=30)
    crashed = optuna.load_study(study_name="crash", storage=storage)
    assert crashed.trials[0].state == optuna.trial.TrialState.RUNNING

    monkeypatch.setattr(search.storage, "GRACE_PERIOD_S", 1)  # don't wait two minutes here
    # as if the worker had run on another host: only its missing heartbeats can tell
    import search.workers

    monkeypatch.setattr(search.workers, "worker_is_gone", lambda attrs: False)
    time.sleep(2)
    lines: list[str] = []
    run_study(
        StudyRequest(
            study="crash",
            storage=storage,
            tracking_uri=tracking,
            trials=1,
            epochs=1,
            progress=lines.append,
        )
    )
    study = _study(storage, "crash")
    assert any("marked FAIL" in line for line in lines), lines
    assert [t.state.name for t in study.trials][0] == "FAIL"
    assert study.trials[1].state.name in ("COMPLETE", "PRUNED")
    from search.engines.optuna import distributions
    from search.spaces import load_space

    # the space remembered: quick's parameters
    assert study.trials[1].params.keys() <= set(distributions(load_space("quick")))
    client = mlflow.MlflowClient(tracking_uri=tracking)
    dead = client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert dead.data.tags["search.state"] == "FAIL"
    assert "heartbeats" in dead.data.tags["search.fail_reason"]


def test_a_space_whose_longest_lookback_leaves_no_test_window_is_refused(tmp_path: Path) -> None:
    """quick samples lookbacks up to 168 h; 7,000 rows leave a test split (1,750 rows) too short
    for one such window (the book's arithmetic needs 2,149), so `best --evaluate-test` could
    never score such a trial: the study is refused before anything is stored."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    with pytest.raises(SearchError) as caught:
        run_study(_options(tmp_path, url, max_rows=7000))
    message = str(caught.value)
    assert "lookback_hours 168" in message and "test split" in message, message
    # it says why 1,750 rows hold no window of a 1,147-row span (the book's arithmetic keeps the
    # delay of 167 x 6 + 144 = 1,146 rows out of the inputs: 1,003 input rows + 1,146 = 2,149),
    # and how many rows of data would do: the fewest whose test quarter holds 2,149 rows
    assert "the test split has 1750 rows" in message, message
    assert "1003 input rows plus that delay of 1146 rows inside the split, 2149 rows" in message
    assert "399 more than it has" in message, message
    enough = int(re.search(r"\(([\d,]+) rows would do\)", message).group(1).replace(",", ""))

    def test_rows(n: int) -> int:
        return n - int(0.5 * n) - int(0.25 * n)

    assert test_rows(enough) >= 2149 > test_rows(enough - 1), enough
    assert "\n" not in message
    assert optuna.get_all_study_summaries(open_storage(resolve_storage_url(url))) == []
