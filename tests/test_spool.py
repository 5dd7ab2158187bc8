"""The tracking spool: a trial's logging is durable locally first, sent in the background, and
an outage of the tracking server loses nothing and duplicates nothing.

The unit tests drive `SpooledTracker` against a recording stand-in for the server that can be
switched off; the slow test stops and restarts a real `mlflow server` under a running study.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from search.errors import TrackingError
from search.tracking.base import Tracker
from search.tracking.spool import (
    SPOOL_KEY_TAG,
    SPOOL_PREFIX,
    Sender,
    Spool,
    SpooledTracker,
    drain,
)


class ServerDown(Exception):
    """What MLflow's client raises when nothing answers (it carries no permanent error code)."""


class Refused(Exception):
    error_code = "INVALID_PARAMETER_VALUE"


class FakeServer(Tracker):
    """Records every call that reaches 'the server'; raises ServerDown while ``up`` is False."""

    def __init__(self) -> None:
        self.tracking_uri = "http://127.0.0.1:1"
        self.study_name = "demo"
        self.parent_run_id: str | None = "parent"
        self.up = True
        self.calls: list[tuple[str, str, Any]] = []
        self.runs: dict[str, dict[str, str]] = {"parent": {}}
        self.refuse: set[str] = set()

    def _call(self, name: str, run_id: str, payload: Any = None) -> None:
        if not self.up:
            raise ServerDown("API request to http://127.0.0.1:1 failed: Connection refused")
        if name in self.refuse:
            raise Refused(f"{name} refused")
        self.calls.append((name, run_id, payload))

    def open(self) -> str:
        return "0"

    def create_parent_run(self, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        return "parent"

    def attach_parent_run(self, run_id: str) -> None:
        self.parent_run_id = run_id

    def finish_parent_run(self, status: str = "FINISHED") -> None:
        self.terminate("parent", status)

    def create_trial_run(
        self, number: int, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        run_id = f"run-{len(self.runs)}"
        self._call("create", run_id, dict(tags))
        self.runs[run_id] = dict(tags)
        return run_id

    def end_trial_run(self, run_id: str, state: str, reason: str | None = None) -> None:
        self._call("end", run_id, state)

    def run_tags(self, run_id: str) -> dict[str, str]:
        return self.runs[run_id]

    def terminate(self, run_id: str, status: str) -> None:
        self._call("terminate", run_id, status)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._call("params", run_id, dict(params))

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None
    ) -> None:
        self._call("metrics", run_id, (dict(metrics), step, timestamp))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._call("tags", run_id, dict(tags))
        self.runs.setdefault(run_id, {}).update({k: str(v) for k, v in tags.items()})

    def log_dict(self, run_id: str, payload: Any, artifact_file: str) -> None:
        self._call("dict", run_id, (payload, artifact_file))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._call("text", run_id, (text, artifact_file))

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        raise AssertionError("figures reach the server as files")

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._call("file", run_id, (path.name, artifact_path, path.read_bytes()))

    def find_run(self, tag: str, value: str) -> str | None:
        if not self.up:
            raise ServerDown("Connection refused")
        return next((r for r, tags in self.runs.items() if tags.get(tag) == value), None)

    def trial_runs(self) -> dict[int, list[str]]:
        return {}

    def register_model(self, run_id: str, folder: Path, name: str, description: str) -> str:
        raise NotImplementedError

    def run_metrics(self, run_id: str) -> dict[str, float]:
        raise NotImplementedError

    def download(self, run_id: str, artifact_path: str) -> Path:
        raise NotImplementedError


def _tracker(tmp_path: Path) -> tuple[SpooledTracker, FakeServer]:
    server = FakeServer()
    return SpooledTracker(server, Spool(tmp_path / "spool")), server


def _log_a_trial(tracker: SpooledTracker, number: int, model: Path) -> str:
    run = tracker.create_trial_run(number, {"search.architecture": "gru"})
    tracker.log_params(run, {"units": 16, "password_url": "postgresql://u:secret@h/db"})
    for epoch in range(3):
        tracker.log_metrics(run, {"val_mae": 1.0 - 0.1 * epoch}, step=epoch)
    tracker.log_text(run, "epoch,val_mae\n", "history.csv")
    tracker.log_file(run, model, "model")
    tracker.end_trial_run(run, "COMPLETE")
    return run


def test_an_outage_spools_everything_and_the_sync_sends_it_once(tmp_path: Path) -> None:
    tracker, server = _tracker(tmp_path)
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights")
    first = _log_a_trial(tracker, 0, model)  # the server answers: a real run id at once
    assert not first.startswith(SPOOL_PREFIX)
    server.up = False
    second = _log_a_trial(tracker, 1, model)  # down: the run itself waits in the spool
    assert second.startswith(SPOOL_PREFIX)
    assert tracker.blocked_seconds < 5  # appends, not network retries
    model.unlink()  # the caller's temporary file is gone; the spool kept its own copy
    report = tracker.flush(timeout=0.2)
    assert report.error is not None and "Connection refused" in report.error
    runs, operations = tracker.spooled
    assert runs == 2 and operations >= 7  # trial 0's logs (never sent) and trial 1's

    server.up = True
    report = drain(Sender(tracker.spool, server), timeout=1)
    assert report.error is None and report.runs_created == 1
    created = [c for c in server.calls if c[0] == "create"]
    assert len(created) == 2
    assert created[1][2][SPOOL_KEY_TAG] == second[len(SPOOL_PREFIX) :]
    run_1 = server.find_run(SPOOL_KEY_TAG, second[len(SPOOL_PREFIX) :])
    assert tracker.resolve_run(second) == run_1
    for run in (first, run_1):
        calls = [c for c in server.calls if c[1] == run]
        assert [c[0] for c in calls] == [
            "create", "params", "metrics", "metrics", "metrics", "text", "file", "end",
        ]  # fmt: skip
        assert [c[2][1] for c in calls if c[0] == "metrics"] == [0, 1, 2]  # true steps
        assert next(c for c in calls if c[0] == "file")[2] == ("model.keras", "model", b"weights")
        params = next(c for c in calls if c[0] == "params")[2]
        assert "secret" not in json.dumps(params)  # redacted before it touched the disk
    assert not list(tracker.spool.root.iterdir())  # every entry sent and removed

    before = len(server.calls)
    assert drain(Sender(tracker.spool, server), timeout=1).sent == 0
    assert len(server.calls) == before


def test_a_sync_cut_off_after_creating_the_run_does_not_create_it_twice(tmp_path: Path) -> None:
    tracker, server = _tracker(tmp_path)
    server.up = False
    ref = tracker.create_trial_run(3, {})
    tracker.log_metrics(ref, {"loss": 1.0}, step=0)
    tracker.end_trial_run(ref, "COMPLETE")
    server.up = True
    # the run was created, then the process died before the spool recorded its id
    server.create_trial_run(3, {SPOOL_KEY_TAG: ref[len(SPOOL_PREFIX) :]})
    drain(Sender(tracker.spool, server), timeout=1)
    assert len([c for c in server.calls if c[0] == "create"]) == 1
    assert [c[0] for c in server.calls[1:]] == ["metrics", "end"]


def test_metrics_replayed_after_a_crash_keep_their_first_timestamps(tmp_path: Path) -> None:
    tracker, server = _tracker(tmp_path)
    server.up = False
    ref = tracker.create_trial_run(0, {})
    tracker.log_metrics(ref, {"loss": 1.0}, step=0)
    entry = tracker.spool.entries()[0]
    stamp = entry.ops()[1]["ts"]
    server.up = True
    drain(Sender(tracker.spool, server), timeout=1)
    entry.mark_sent(1)  # as if the process died before recording that the metric was sent
    drain(Sender(tracker.spool, server), timeout=1)
    sent = [c[2] for c in server.calls if c[0] == "metrics"]
    assert sent == [({"loss": 1.0}, 0, stamp)] * 2  # MLflow keeps one row for the same
    # (key, step, timestamp, value); a fresh timestamp would have made a second point


def test_a_line_cut_short_by_a_crash_is_not_an_operation(tmp_path: Path) -> None:
    tracker, server = _tracker(tmp_path)
    server.up = False
    ref = tracker.create_trial_run(0, {})
    tracker.log_metrics(ref, {"loss": 1.0}, step=0)
    entry = tracker.spool.entries()[0]
    with open(entry.folder / "ops.jsonl", "a") as fh:
        fh.write('{"op": "metrics", "metrics": {"loss": 2')  # the write a full disk cut off
    assert [op["op"] for op in entry.ops()] == ["create_trial", "metrics"]
    server.up = True
    assert drain(Sender(tracker.spool, server), timeout=1).sent == 2


def test_an_operation_the_server_refuses_is_recorded_and_skipped(tmp_path: Path) -> None:
    tracker, server = _tracker(tmp_path)
    server.refuse = {"params"}
    messages: list[str] = []
    tracker.say = messages.append
    tracker.open()  # starts the background writer
    model = tmp_path / "model.keras"
    model.write_bytes(b"w")
    run = _log_a_trial(tracker, 0, model)
    report = tracker.flush(timeout=1)
    assert report.error is None
    assert [c[0] for c in server.calls if c[1] == run][-1] == "end"
    assert any("params" in m and "refused" in m for m in messages), messages


def test_a_full_disk_under_the_spool_is_a_clear_error_and_keeps_what_was_written(
    tmp_path: Path,
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    tracker, server = _tracker(tmp_path)
    server.up = False
    ref = tracker.create_trial_run(0, {})
    tracker.log_metrics(ref, {"loss": 1.0}, step=0)
    entry = tracker.spool.entries()[0]
    kept = (entry.folder / "ops.jsonl").read_bytes()
    (entry.folder / "ops.jsonl").rename(entry.folder / "kept.jsonl")
    (entry.folder / "ops.jsonl").symlink_to("/dev/full")  # every write: ENOSPC, for real
    with pytest.raises(TrackingError, match="No space left on device") as error:
        tracker.log_metrics(ref, {"loss": 0.5}, step=1)
    assert "\n" not in str(error.value) and str(tracker.spool.root) in str(error.value)
    (entry.folder / "ops.jsonl").unlink()
    (entry.folder / "kept.jsonl").rename(entry.folder / "ops.jsonl")
    assert (entry.folder / "ops.jsonl").read_bytes() == kept
    server.up = True
    assert drain(Sender(tracker.spool, server), timeout=1).sent == 2


def test_figures_are_drawn_off_the_trial_thread_and_sent(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracker, server = _tracker(tmp_path)
    tracker.open()
    run = tracker.create_trial_run(0, {})
    figure, axes = plt.subplots()
    axes.plot(range(1000))
    tracker.log_figure(run, figure, "plots/curve.png")
    plt.close(figure)
    tracker.end_trial_run(run, "COMPLETE")
    assert tracker.flush(timeout=5).error is None
    sent = next(c for c in server.calls if c[0] == "file")
    assert sent[2][:2] == ("curve.png", "plots") and sent[2][2].startswith(b"\x89PNG")


# -- the real thing -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tracking_server_outage_mid_study_loses_nothing(tmp_path: Path) -> None:
    """Stop a real `mlflow server` after the study's first trial, let the study finish, start
    the server again on its port, `search sync`: every trial has exactly one complete run."""
    from mlflow import MlflowClient

    from search.engines import open_engine
    from tests.cli_helpers import Lines, cli_env, run_cli, search_command
    from tests.servers import start_mlflow_server

    backend = f"sqlite:///{tmp_path / 'server.db'}"
    artifacts = tmp_path / "artifacts"
    server = start_mlflow_server(backend, artifacts, workers=1)
    port = server.port
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    env = cli_env({"SEARCH_SYNC_TIMEOUT": "2"})
    try:
        worker = subprocess.Popen(
            search_command(
                "run", "--study", "outage", "--space", "quick", "--trials", "4", "--epochs",
                "2", "--max-rows", "9000", "--storage", storage, "--tracking-uri", server.url,
            ),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        lines = Lines(worker)
        try:
            lines.wait_for("trial 1 (", timeout=300)  # trial 0 is done and logged
        except AssertionError:
            worker.kill()
            raise
        server.stop()
        output = lines.rest(timeout=600)
        assert worker.returncode == 0, output
        assert "Traceback" not in output
        assert "tracking server unreachable" in output
        assert f"search sync outage --storage {storage}" in output

        engine = open_engine("optuna", storage)
        engine.open("outage", seed=None, create=False)
        trials = engine.trials()
        assert [t.number for t in trials] == [0, 1, 2, 3]
        assert {t.state for t in trials} <= {"COMPLETE", "PRUNED"}, output  # training went on
        assert any(str(t.attrs["mlflow_run_id"]).startswith(SPOOL_PREFIX) for t in trials)

        down = run_cli("sync", "outage", "--storage", storage, cwd=tmp_path, env=env)
        assert down.returncode == 2, down.stdout + down.stderr
        assert "unreachable" in down.stderr and "spool keeps" in down.stderr
        assert len(down.stderr.strip().splitlines()) == 1

        server = start_mlflow_server(backend, artifacts, workers=1, port=port)
        synced = run_cli("sync", "outage", "--storage", storage, cwd=tmp_path, env=env)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert "every finished trial of 'outage' has its MLflow run" in synced.stdout
        again = run_cli("sync", "outage", "--storage", storage, cwd=tmp_path, env=env)
        assert again.returncode == 0 and "sent 0 spooled operations" in again.stdout

        client = MlflowClient(tracking_uri=server.url)
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id])
        trial_runs = [r for r in runs if r.data.tags.get("search.role") == "trial"]
        numbers = sorted(int(r.data.tags["search.trial_number"]) for r in trial_runs)
        assert numbers == [0, 1, 2, 3]  # one run per trial: none lost, none twice
        for run in trial_runs:
            trial = trials[int(run.data.tags["search.trial_number"])]
            assert run.data.tags["search.state"] == trial.state
            assert run.info.status == "FINISHED"  # COMPLETE and PRUNED runs both end FINISHED
            epochs = list(range(int(trial.attrs["epochs_run"])))
            for key in ("loss", "mae", "val_loss", "val_mae"):  # every epoch's metrics, once
                history = client.get_metric_history(run.info.run_id, key)
                assert sorted(m.step for m in history) == epochs, (key, history)
            if trial.state == "COMPLETE":
                assert run.data.metrics["best_val_mae"] == pytest.approx(trial.value)
            assert run.data.params["architecture"] == trial.attrs["architecture"]
            files = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"forecast.png", "learning_curve.png", "history.csv", "model"} <= files
        parent = next(r for r in runs if r.data.tags.get("search.role") == "study")
        assert parent.info.status == "FINISHED"
        assert (
            parent.data.metrics["trials_complete"] + parent.data.metrics.get("trials_pruned", 0)
            == 4
        )
        spool = tmp_path / "studies.db.spool" / "outage"
        assert not list(spool.iterdir())
    finally:
        server.stop()
