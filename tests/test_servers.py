"""The distributed topology without our CLI: PostgreSQL, Optuna on it, `mlflow server` on it.

Everything runs against real server processes on 127.0.0.1 (see `tests/servers.py`); nothing here
imports `search`, so a failure points at the deployment, not at the product code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parent.parent


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_postgres_listens_on_loopback_only(postgres_server):
    conn = psycopg2.connect(postgres_server.url("optuna"))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
            cur.execute("SELECT datname FROM pg_database")
            names = {row[0] for row in cur.fetchall()}
    finally:
        conn.close()
    assert {"optuna", "mlflow"} <= names


def test_plain_postgresql_url_has_a_driver(postgres_server):
    """Users write `postgresql://...`; SQLAlchemy 2.1 maps it to psycopg (v3), which must be installed."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_server.url("optuna"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


_OPTUNA_WORKER = textwrap.dedent(
    """
    import sys, optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 1) ** 2, n_trials=4)
    """
)


def test_optuna_study_shared_by_two_processes(postgres_server):
    """Two processes join one study on PostgreSQL at the same moment; no trial is lost or doubled."""
    import optuna

    storage_url = postgres_server.url("optuna")
    name = _unique("shared")
    # Plain Optuna cannot create its schema from two processes at once (optuna/optuna#1092);
    # create it first, as Optuna documents. `search run` must survive that race by itself:
    # tests/test_distributed.py starts its workers on a fresh database.
    optuna.storages.RDBStorage(storage_url).engine.dispose()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPTUNA_WORKER, storage_url, name, str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output

    study = optuna.load_study(study_name=name, storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert study.best_value < 25


def test_mlflow_server_tracks_nested_runs_and_serves_artifacts(
    mlflow_server_process, postgres_server, tmp_path
):
    """Experiment, parent run, nested child runs with stepped metrics, an artifact round trip."""
    import mlflow
    from mlflow import MlflowClient

    url = mlflow_server_process.url
    assert url.startswith("http://127.0.0.1:")
    client = MlflowClient(tracking_uri=url)
    experiment_id = client.create_experiment(_unique("study"))
    experiment = client.get_experiment(experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server

    parent = client.create_run(experiment_id, run_name="study", tags={"search.role": "study"})
    children = []
    for number in range(2):
        child = client.create_run(
            experiment_id,
            run_name=f"trial-{number}",
            tags={"mlflow.parentRunId": parent.info.run_id, "search.trial_number": str(number)},
        )
        for epoch in range(3):
            client.log_metric(child.info.run_id, "val_mae", 1.0 / (epoch + 1 + number), step=epoch)
        client.set_terminated(child.info.run_id)
        children.append(child.info.run_id)

    note = tmp_path / "history.csv"
    note.write_text("epoch,val_mae\n0,1.0\n")
    client.log_artifact(children[0], str(note))
    client.set_terminated(parent.info.run_id)

    found = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in found) == ["trial-0", "trial-1"]
    history = client.get_metric_history(children[1], "val_mae")
    assert [m.step for m in history] == [0, 1, 2]

    downloaded = mlflow.artifacts.download_artifacts(
        run_id=children[0],
        artifact_path="history.csv",
        dst_path=str(tmp_path / "back"),
        tracking_uri=url,
    )
    assert Path(downloaded).read_text() == note.read_text()
    # The bytes live under the server's --artifacts-destination, not in the client's directory.
    # (The server is shared by the session's tests: look for this run's file only.)
    stored = [
        p for p in mlflow_server_process.artifacts_dir.rglob("history.csv") if children[0] in str(p)
    ]
    assert len(stored) == 1

    # ... and the run records live in PostgreSQL.
    conn = psycopg2.connect(postgres_server.url("mlflow"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", (int(experiment_id),))
            assert cur.fetchone()[0] == 3
    finally:
        conn.close()


def test_repo_mlflow_folder_does_not_shadow_the_library():
    """`mlflow/` (the server image) sits at the repo root; `import mlflow` must still get the library."""
    assert not (REPO / "mlflow" / "__init__.py").exists()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, mlflow; print(json.dumps([sys.path[0], mlflow.__file__]))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    first_path, module_file = json.loads(result.stdout.strip().splitlines()[-1])
    assert first_path in ("", str(REPO))  # the repo root really is first on sys.path here
    assert module_file is not None  # a namespace package (the bare folder) has no __file__
    assert Path(module_file).resolve().parent != (REPO / "mlflow").resolve()
