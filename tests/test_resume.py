"""Resume anywhere: a worker killed with `kill -9` or stopped with SIGTERM loses no finished
trial, and the interrupted trial is re-run from its last finished epoch (epoch checkpoints),
with its first epochs' metrics copied to the new child run at their true steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import optuna
import pytest

from search.storage import open_storage, resolve_storage_url
from search.workers import checkpoint_root, worker_attrs, worker_is_gone
from tests.cli_helpers import (
    Lines,
    cli_env,
    migrated_store,
    run_cli,
    run_cli_here,
    search_command,
    wait_until,
)

ROWS = "9000"
LONG_EPOCH = {"space": "lstm", "rows": "20000"}  # an epoch that outlasts a signal's round trip
EPOCHS = "4"  # the resumed trial needs epochs after the stop (at 2); more only cost time


def _args(
    workdir: Path,
    study: str,
    trials: str,
    rows: str = ROWS,
    space: str = "quick",
    epochs: str = EPOCHS,
) -> list[str]:
    return [
        "run",
        "--space",
        space,
        "--study",
        study,
        "--trials",
        trials,
        "--epochs",
        epochs,
        "--max-rows",
        rows,
        "--storage",
        f"sqlite:///{workdir / 'studies.db'}",
        "--tracking-uri",
        migrated_store(workdir / "mlflow.db"),
    ]


def _start_and_stop(
    workdir: Path, study: str, sig: int, epoch: int, rows: str = ROWS, space: str = "quick"
) -> Lines:
    """Start a worker, wait until trial 0's checkpoint holds ``epoch`` finished epochs, signal
    it. The epoch's line is printed before its checkpoint is saved: wait for the file."""
    worker = subprocess.Popen(
        search_command(*_args(workdir, study, "3", rows, space)),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    lines = Lines(worker)
    try:
        lines.wait_for(f"trial 0 epoch {epoch}/", timeout=300)
        state = checkpoint_root(f"sqlite:///{workdir / 'studies.db'}", study) / "trial-0"

        def saved() -> bool:
            try:
                return json.loads((state / "state.json").read_text())["next_epoch"] >= epoch
            except (OSError, ValueError, KeyError):
                return False

        wait_until(saved, timeout=120, what=f"trial 0's checkpoint of epoch {epoch}")
    except BaseException:
        worker.kill()
        worker.wait(timeout=30)
        raise
    worker.send_signal(sig)
    return lines


def _study(workdir: Path, study: str) -> optuna.Study:
    storage = open_storage(resolve_storage_url(f"sqlite:///{workdir / 'studies.db'}"))
    return optuna.load_study(study_name=study, storage=storage)


def _steps(workdir: Path, run_id: str) -> list[int]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    return sorted(m.step for m in client.get_metric_history(run_id, "val_mae"))


def _check_resumed(workdir: Path, study: optuna.Study, dead: int, resumed: int) -> int:
    """The re-run of trial ``dead`` continues it: same configuration, epochs counted on."""
    first, again = study.trials[dead], study.trials[resumed]
    assert again.user_attrs["search.resumed_from_trial"] == dead
    assert again.params == first.params
    assert again.user_attrs.get("book_config") is True  # trial 0 was the book configuration
    start = again.user_attrs["search.resumed_from_epoch"]
    assert start >= 1, again.user_attrs
    assert again.user_attrs["search.optimizer_restored"] is True
    steps = _steps(workdir, again.user_attrs["mlflow_run_id"])
    assert steps == list(range(len(steps))) and len(steps) > start, steps  # true, unbroken steps
    assert sorted(again.intermediate_values) == steps
    dead_steps = _steps(workdir, first.user_attrs["mlflow_run_id"])
    assert steps[:start] == dead_steps[:start]  # the dead trial's epochs, copied
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run = client.get_run(again.user_attrs["mlflow_run_id"])
    assert run.data.tags["search.resumed_from_trial"] == str(dead)
    assert run.data.tags["search.resumed_from_epoch"] == str(start)
    folder = checkpoint_root(f"sqlite:///{workdir / 'studies.db'}", study.study_name)
    assert not (folder / f"trial-{dead}").exists()  # finished: checkpoints removed
    assert not (folder / f"trial-{resumed}").exists()
    assert not folder.parent.exists()  # and no empty folder left behind
    return start


def test_kill_9_then_resume_continues_the_dead_trial_at_its_epoch(tmp_path: Path) -> None:
    _start_and_stop(tmp_path, "killed", signal.SIGKILL, epoch=2).rest(timeout=30)
    before = _study(tmp_path, "killed")
    assert [t.state.name for t in before.trials] == ["RUNNING"]
    folder = checkpoint_root(f"sqlite:///{tmp_path / 'studies.db'}", "killed")
    assert (folder / "trial-0" / "state.json").exists()

    started = time.monotonic()
    again = run_cli_here(*_args(tmp_path, "killed", "1"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    # recognised at once (same host, process gone), not after the 120 s heartbeat grace
    assert "1 trial(s) of a stopped worker marked FAIL and re-queued" in again.stdout
    assert time.monotonic() - started < 110
    assert "trial 1 resumes trial 0 after its epoch" in again.stdout

    study = _study(tmp_path, "killed")
    assert [t.state.name for t in study.trials][:1] == ["FAIL"]
    assert study.trials[1].state.name in ("COMPLETE", "PRUNED")
    assert "process is gone" in study.trials[0].user_attrs["fail_reason"]
    _check_resumed(tmp_path, study, dead=0, resumed=1)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    dead_run = client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and dead_run.data.tags["search.state"] == "FAIL"
    experiment = client.get_experiment_by_name("killed")
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    assert sorted(r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags) == [
        "trial-0",
        "trial-1",
    ]

    # nothing re-queued twice (one epoch: what the new trial learns is not the point)
    third = run_cli_here(*_args(tmp_path, "killed", "1", epochs="1"), cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    study = _study(tmp_path, "killed")
    assert len(study.trials) == 3
    assert "search.resumed_from_trial" not in study.trials[2].user_attrs


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_stop_signal_records_the_trial_and_it_resumes(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """SIGTERM (a scheduler) or SIGINT (Ctrl-C): the trial stops after its epoch, is recorded and
    re-queued; the exit code is 128 + the signal (143, 130)."""
    worker = _start_and_stop(tmp_path, "stopped", sig, epoch=2)
    worker.rest(timeout=120)
    stderr = worker.stderr()
    assert worker.proc.returncode == code, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("search ")]
    assert len(lines) == 1 and f"stopped by {sig.name}" in lines[0], stderr
    assert "Traceback" not in stderr

    study = _study(tmp_path, "stopped")
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"], states  # recorded, and re-queued to resume
    assert f"interrupted by {sig.name}" in study.trials[0].user_attrs["fail_reason"]
    assert study.trials[1].user_attrs["search.resumed_from_trial"] == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    child = client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert child.info.status == "KILLED" and child.data.tags["search.state"] == "FAIL"
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "KILLED"

    again = run_cli_here(*_args(tmp_path, "stopped", "1"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    study = _study(tmp_path, "stopped")
    assert study.trials[1].state.name in ("COMPLETE", "PRUNED")
    _check_resumed(tmp_path, study, dead=0, resumed=1)


def test_a_worker_is_gone_only_when_provably_dead() -> None:
    mine = worker_attrs()
    assert not worker_is_gone(mine)  # this process
    child = subprocess.Popen(["sleep", "30"])
    try:
        alive = {**mine, "search.pid": child.pid, "search.pid_started": None}
        alive.pop("search.pid_started")
        assert not worker_is_gone(alive)
    finally:
        child.kill()
        child.wait()
    assert worker_is_gone({**mine, "search.pid": child.pid})  # exited: gone
    assert not worker_is_gone({**mine, "search.host": "elsewhere", "search.pid": child.pid})
    assert not worker_is_gone({})  # unknown: never assumed dead


@pytest.mark.parametrize("pid_reused", [True])
def test_a_reused_pid_is_not_mistaken_for_the_worker(pid_reused: bool) -> None:
    mine = worker_attrs()
    if "search.pid_started" not in mine:
        pytest.skip("no /proc on this system")
    other = subprocess.Popen(["sleep", "30"])
    try:
        # the trial's worker started at another time than the process now holding its pid
        attrs = {**mine, "search.pid": other.pid, "search.pid_started": "1"}
        assert worker_is_gone(attrs) is pid_reused
    finally:
        other.kill()
        other.wait()


_KILL_AT_FIRST_TRIAL_WRITE = """
import os, signal
import optuna.trial
def _die(self, key, value):  # the trial exists (RUNNING), nothing of it is recorded yet
    os.kill(os.getpid(), signal.SIGKILL)
optuna.trial.Trial.set_user_attr = _die
"""


def test_a_trial_killed_before_its_worker_is_recorded_is_recognised_dead(tmp_path: Path) -> None:
    """`kill -9` between a trial's creation and the recording of its worker leaves a RUNNING
    trial with no attributes at all: the next `search run` on this host fails it at once (the
    study's announced workers are all provably gone) instead of reporting "1 RUNNING" forever."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_KILL_AT_FIRST_TRIAL_WRITE)
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    killed = run_cli(*_args(tmp_path, "window", "2"), cwd=tmp_path, env={"PYTHONPATH": path})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    before = _study(tmp_path, "window")
    assert [t.state.name for t in before.trials] == ["RUNNING"]
    assert not any(key.startswith("search.") for key in before.trials[0].user_attrs)

    again = run_cli_here(*_args(tmp_path, "window", "1", epochs="1"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 trial(s) of a stopped worker marked FAIL" in again.stdout, again.stdout
    assert "RUNNING" not in again.stdout, again.stdout
    study = _study(tmp_path, "window")
    assert study.trials[0].state.name == "FAIL"
    assert "process is gone" in study.trials[0].user_attrs["fail_reason"]
    assert [t.state.name for t in study.trials[1:]] in (["COMPLETE"], ["PRUNED"])
    # the dead worker's announcement is forgotten once nothing unattributed is left
    announced = study._storage.get_study_system_attrs(study._study_id)
    assert not any(key.startswith("search.worker:") and value for key, value in announced.items())


def test_a_second_sigint_stops_at_once(tmp_path: Path) -> None:
    """Ctrl-C twice: the first asks the trial to stop after its epoch, the second stops the
    process at once (the plain KeyboardInterrupt path, not the polite stop), still exit 130,
    one line, no traceback."""
    worker = _start_and_stop(tmp_path, "twice", signal.SIGINT, epoch=1, **LONG_EPOCH)
    # the first signal is acknowledged at once (not after the epoch), on stdout: only then is
    # the second one a second one (two signals before the handler runs would count as one)
    worker.wait_for("SIGINT: stopping after this epoch", timeout=30)
    worker.proc.send_signal(signal.SIGINT)
    second = time.monotonic()
    worker.rest(timeout=120)
    waited = time.monotonic() - second
    stderr = worker.stderr()
    assert worker.proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("search ")]
    assert len(lines) == 1 and "search run: interrupted;" in lines[0], (worker.seen, stderr)
    assert "stopped by SIGINT" not in stderr  # not the first signal's stop after the epoch
    assert waited < 60, waited
