"""Several trials at once on one node (`--jobs`), and a study moved to another machine and back
(`export`/`import`) where it resumes on JAX with two jobs: the GPU-node round trip, on CPU."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from search.storage import open_storage, resolve_storage_url
from tests.cli_helpers import run_cli, run_cli_here

ROWS = "9000"


def _study(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage_url(storage)))


def _children(tracking: str, name: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_jobs_run_trials_at_once_on_sqlite(tmp_path: Path) -> None:
    storage, tracking = "sqlite:///studies.db", "sqlite:///mlflow.db"
    result = run_cli(
        "run",
        "--study",
        "jobs",
        "--jobs",
        "2",
        "--trials",
        "4",
        "--epochs",
        "1",
        "--max-rows",
        ROWS,
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[w0]" in result.stdout and "[w1]" in result.stdout
    assert "2 workers, trials [2, 2]" in result.stdout
    study = _study(f"sqlite:///{tmp_path / 'studies.db'}", "jobs")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    assert study.trials[0].user_attrs.get("book_config") is True
    pids = {t.user_attrs["search.pid"] for t in study.trials}
    assert len(pids) == 2  # two processes did the work
    children = _children(f"sqlite:///{tmp_path / 'mlflow.db'}", "jobs")
    runs = sorted(c.info.run_name for c in children)
    assert runs == ["trial-0", "trial-1", "trial-2", "trial-3"]  # one child run each
    assert "study 'jobs': 4 trials" in result.stdout


@pytest.mark.slow
def test_a_study_moves_to_another_machine_resumes_on_jax_and_comes_back(tmp_path: Path) -> None:
    """Laptop (TensorFlow) -> export -> 'GPU node' folder (JAX, --jobs 2) -> export back ->
    import on the laptop: every trial there, and the best model loads on TensorFlow."""
    laptop, node = tmp_path / "laptop", tmp_path / "node"
    laptop.mkdir()
    node.mkdir()
    here = ("--storage", "sqlite:///studies.db", "--tracking-uri", "sqlite:///mlflow.db")
    first = run_cli_here(
        "run", "--study", "moved", "--trials", "2", "--epochs", "1", "--max-rows", ROWS, *here,
        cwd=laptop,
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    out = run_cli_here(
        "export", "moved", "--to", str(tmp_path / "moved.json"), *here[:2], cwd=laptop
    )
    assert out.returncode == 0, out.stderr
    into = run_cli_here("import", str(tmp_path / "moved.json"), *here[:2], cwd=node)
    assert into.returncode == 0, into.stderr
    resumed = run_cli(
        "run", "--study", "moved", "--backend", "jax", "--jobs", "2", "--trials", "2",
        "--epochs", "1", *here[:2], "--tracking-uri", f"sqlite:///{laptop / 'mlflow.db'}",
        cwd=node,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    node_study = _study(f"sqlite:///{node / 'studies.db'}", "moved")
    assert len(node_study.trials) == 4
    back = run_cli_here("export", "moved", "--to", str(tmp_path / "back.json"), *here[:2], cwd=node)
    assert back.returncode == 0, back.stderr
    merged = run_cli_here("import", str(tmp_path / "back.json"), *here[:2], cwd=laptop)
    assert merged.returncode == 0, merged.stderr
    study = _study(f"sqlite:///{laptop / 'studies.db'}", "moved")
    assert len(study.trials) == 4
    backends = {
        r.data.tags.get("search.backend")
        for r in _children(f"sqlite:///{laptop / 'mlflow.db'}", "moved")
    }
    assert backends == {"tensorflow", "jax"}
    best = run_cli_here("best", "moved", "--evaluate-test", *here, cwd=laptop)
    assert best.returncode == 0, best.stdout + best.stderr
    assert "test MAE" in best.stdout
