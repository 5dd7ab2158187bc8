"""Several `search run` workers share one study through PostgreSQL and one `mlflow server`.

The topology of docker-compose.yml, started natively: a fresh PostgreSQL database (so the workers
also race to create Optuna's schema, as a new compose deployment's workers do), a real tracking
server with proxied artifacts, and worker processes launched at the same moment through the CLI.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from tests.cli_helpers import Lines, cli_env, search_command

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
TRIALS_PER_WORKER = 2
WORKER_TIMEOUT_S = 600  # below the suite's per-test timeout (pyproject)


def worker_command(study: str, storage: str, tracking_uri: str, seed: int) -> list[str]:
    """One worker, exactly as a user on another machine would start it (tiny and fast)."""
    return search_command(
        "run",
        "--space",
        "quick",
        "--study",
        study,
        "--trials",
        str(TRIALS_PER_WORKER),
        "--storage",
        storage,
        "--tracking-uri",
        tracking_uri,
        "--data",
        "jena-2020",
        "--max-rows",
        "9000",
        "--epochs",
        "1",
        "--seed",
        str(seed),
    )


def worker_env() -> dict[str, str]:
    env = cli_env()
    # Two workers on a 2-core machine: one thread pool each, so they do not fight for cores.
    env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_workers(
    study: str, storage: str, tracking_uri: str, workdir: Path, count: int
) -> list[str]:
    """Start `count` workers at once; wait for all; return their outputs (fail if any failed)."""
    procs = []
    for seed in range(count):
        folder = workdir / f"worker-{seed}"
        folder.mkdir()
        procs.append(
            subprocess.Popen(
                worker_command(study, storage, tracking_uri, seed),
                cwd=folder,
                env=worker_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for proc in procs:
        try:
            output, _ = proc.communicate(timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        outputs.append(output)
    for seed, (proc, output) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"worker {seed} exited {proc.returncode}:\n{output[-4000:]}"
    return outputs


_OPEN_AT_ONCE = """
import sys, traceback
from search.storage import open_storage
from search.tracking.mlflow import MlflowTracker
import mlflow.store.tracking.sqlalchemy_store  # everything imported before the start signal
print("ready", flush=True)
for line in sys.stdin:  # a round: every worker is released at the same instant
    storage_url, tracking_uri = line.split()
    try:
        if storage_url != "-":
            open_storage(storage_url)
        if tracking_uri != "-":
            MlflowTracker(tracking_uri, "race").open()
        print("opened", flush=True)
    except BaseException:
        traceback.print_exc(file=sys.stdout)
    print("end of round", flush=True)
"""


def open_at_once(count: int, rounds: list[tuple[str, str]]) -> list[str]:
    """``count`` processes, each with everything imported, released together to open a fresh
    study storage and/or tracking store ("-": not that one), once per round (the same processes
    round after round: each round's stores are new); the output of each worker's failed round."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT_ONCE],
            env=worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        outputs = [Lines(proc) for proc in procs]
        for output in outputs:  # ready: imported, waiting for the start (however slow the start)
            output.wait_for("ready", timeout=240)
        failures = []
        for storage_url, tracking_uri in rounds:
            for proc in procs:
                assert proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):  # a dead worker: seen just below
                    proc.stdin.write(f"{storage_url} {tracking_uri}\n")
                    proc.stdin.flush()
            for output in outputs:
                before = len(output.seen)
                try:
                    output.wait_for("end of round", timeout=240)
                    text = "".join(output.seen[before:-1])  # without the round's end
                except AssertionError as error:  # the worker died or hung: a failure too
                    text = str(error)
                if "opened" not in text:
                    failures.append(text)
        for proc in procs:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        for proc, output in zip(procs, outputs, strict=True):
            proc.wait(timeout=60)
            if proc.returncode != 0:
                failures.append(f"exit {proc.returncode}: " + output.rest(timeout=30)[-3000:])
        return failures
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_workers_opening_a_fresh_database_at_once_all_succeed(postgres_server):
    """`docker compose up --scale worker=4` on a new volume: every worker creates Optuna's schema
    at the same instant (plain Optuna fails there, optuna/optuna#1092); none may crash."""
    # the race is timing-dependent: give it several chances
    rounds = [
        (postgres_server.create_database(f"optuna_race_{uuid.uuid4().hex[:8]}"), "-")
        for _ in range(3)
    ]
    failures = open_at_once(4, rounds)
    assert not failures, "workers crashed opening a fresh storage together:\n" + (
        "\n----\n".join(out[-1500:] for out in failures)
    )


@pytest.mark.slow
def test_workers_opening_a_fresh_tracking_database_at_once_all_succeed(postgres_server):
    """Four workers on a fresh PostgreSQL database used directly as MLflow's tracking store (no
    `mlflow server`): they race to create MLflow's schema (a UniqueViolation on alembic_version
    crashed two of four in use); none may crash."""
    rounds = [  # both stores fresh, as in a new deployment
        (
            postgres_server.create_database(f"optuna_race_{uuid.uuid4().hex[:8]}"),
            postgres_server.create_database(f"mlflow_race_{uuid.uuid4().hex[:8]}"),
        )
        for _ in range(2)
    ]
    failures = open_at_once(4, rounds)
    assert not failures, "workers crashed opening a fresh tracking store together:\n" + (
        "\n----\n".join(out[-3000:] for out in failures)
    )


@pytest.fixture(scope="module")
def distributed_study(postgres_server, mlflow_server_process, tmp_path_factory):
    """Run the workers once for every check below; yield what the checks need."""
    import optuna

    storage = postgres_server.create_database(f"optuna_dist_{uuid.uuid4().hex[:8]}")
    study_name = f"distributed-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    outputs = run_workers(
        study_name, storage, mlflow_server_process.url, tmp_path_factory.mktemp("workers"), WORKERS
    )
    elapsed = time.monotonic() - started
    study = optuna.load_study(study_name=study_name, storage=storage)
    return {
        "name": study_name,
        "study": study,
        "trials": study.get_trials(deepcopy=False),
        "outputs": outputs,
        "elapsed": elapsed,
        "server": mlflow_server_process,
    }


def _client(server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url)


def _runs(client, experiment_id: str):
    return client.search_runs([experiment_id], max_results=1000)


@pytest.mark.slow
def test_trial_count_is_the_sum_requested(distributed_study):
    import optuna

    trials = distributed_study["trials"]
    assert len(trials) == WORKERS * TRIALS_PER_WORKER
    # every trial trained to its end (or was pruned): a FAIL is a broken distributed study
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert all(t.state in finished for t in trials), [
        (t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials
    ]
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_no_trial_number_is_duplicated_or_lost(distributed_study):
    numbers = [t.number for t in distributed_study["trials"]]
    assert sorted(numbers) == list(range(WORKERS * TRIALS_PER_WORKER))


@pytest.mark.slow
def test_workers_really_ran_at_the_same_time(distributed_study):
    spans = sorted((t.datetime_start, t.datetime_complete) for t in distributed_study["trials"])
    overlapping = any(
        later_start < earlier_end
        for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False)
    )
    assert overlapping, f"no two trials overlapped in time: {spans}"


@pytest.mark.slow
def test_one_parent_run_and_one_child_run_per_trial(distributed_study):
    name, study = distributed_study["name"], distributed_study["study"]
    client = _client(distributed_study["server"])
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment named {name!r}"
    runs = _runs(client, experiment.experiment_id)

    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    assert parent.info.run_name == name
    assert parent.data.tags.get("search.study") == name
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 1 + len(children), "every run in the experiment is the parent or a trial"
    by_name = {}
    for run in children:
        assert run.info.run_name not in by_name, f"two child runs named {run.info.run_name}"
        by_name[run.info.run_name] = run
    trials = distributed_study["trials"]
    assert set(by_name) == {f"trial-{t.number}" for t in trials}
    for trial in trials:
        run = by_name[f"trial-{trial.number}"]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["search.trial_number"] == str(trial.number)
        assert run.data.tags["search.state"] == trial.state.name
        for tag in ("search.architecture", "search.backend", "search.device"):
            assert run.data.tags.get(tag), (trial.number, tag)
        if trial.state.name == "COMPLETE":
            history = _client(distributed_study["server"]).get_metric_history(
                run.info.run_id, "val_mae"
            )
            assert [m.step for m in history] == [0]  # --epochs 1: one epoch, step 0
            for metric in ("best_val_mae", "baseline_mae", "skill", "train_seconds"):
                assert metric in run.data.metrics, (trial.number, metric)


@pytest.mark.slow
def test_artifacts_are_retrievable_through_the_server(distributed_study, tmp_path):
    import mlflow

    server = distributed_study["server"]
    client = _client(server)
    complete = [t for t in distributed_study["trials"] if t.state.name == "COMPLETE"]
    for trial in complete:
        run_id = trial.user_attrs["mlflow_run_id"]
        listed = {a.path for a in client.list_artifacts(run_id)}
        assert {"learning_curve.png", "history.csv", "model_summary.txt", "model"} <= listed
        folder = tmp_path / run_id
        history = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path="history.csv",
                dst_path=str(folder),
                tracking_uri=server.url,
            )
        )
        header = history.read_text().splitlines()[0]
        assert "val_mae" in header
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="model", dst_path=str(folder), tracking_uri=server.url
            )
        )
        assert (model_dir / "model.keras").stat().st_size > 0
        # Proxied: the bytes sit in the server's --artifacts-destination, not with the worker.
        assert list(server.artifacts_dir.rglob(f"*{run_id}*/artifacts/history.csv"))


def test_a_tracking_database_that_cannot_be_opened_is_one_line(
    postgres_server, tmp_path, monkeypatch
):
    """A PostgreSQL tracking store that cannot be opened (here: no such database) is one line
    naming it, exit 2, whatever the driver raised, with no study left half-made in the study
    storage: in a `python -m search` process, and before Keras is imported (in this process,
    with the trial module unimportable)."""
    from tests.cli_helpers import run_cli, run_cli_here

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    missing = postgres_server.url(f"no_such_{uuid.uuid4().hex[:6]}")
    args = (
        "run", "--study", "x", "--trials", "1", "--epochs", "1", "--max-rows", "9000",
        "--storage", storage, "--tracking-uri", missing,
    )  # fmt: skip
    in_a_process = run_cli(*args, cwd=tmp_path, timeout=300)
    monkeypatch.setitem(sys.modules, "search.training.trial", None)  # Keras' way in, shut
    here = run_cli_here(*args, cwd=tmp_path)
    for result in (in_a_process, here):
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "does not exist" in lines[0], result.stderr
        assert missing.rsplit("/", 1)[1] in lines[0], lines[0]
        assert optuna.study.get_all_study_names(storage) == []  # no half-made study left
