"""Choosing the Keras backend: --backend > KERAS_BACKEND > TensorFlow > JAX > PyTorch by what is
installed, one line when none is; the backend and device of each trial, the versions of each
machine. Unit tests fake what is installed; the CLI tests hide packages from a real subprocess."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import textwrap
import types
from importlib import metadata
from pathlib import Path

import mlflow
import optuna
import pytest

import search
from search import runtime
from search.errors import SearchError
from search.runtime import machine_versions, runtime_tags, select_backend, versions_tag
from tests.cli_helpers import run_cli

ROWS = "9000"  # quick's longest lookback (168 h) needs a test window: > 8,596 rows
STUDY = "jax-backend"
_real_find_spec = importlib.util.find_spec
_BACKEND_MODULES = {"tensorflow", "jax", "jaxlib", "torch"}


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch):
    """``installed("jax", "jaxlib")``: only those backend modules can be found; no KERAS_BACKEND,
    no Keras imported yet."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delitem(sys.modules, "keras", raising=False)

    def only(*names: str) -> None:
        def find_spec(name: str, package: str | None = None):
            if name.partition(".")[0] in _BACKEND_MODULES:
                return _real_find_spec("json") if name in names else None
            return _real_find_spec(name, package)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return only


def _fake_keras(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    keras = types.ModuleType("keras")
    keras.backend = types.SimpleNamespace(backend=lambda: backend)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keras", keras)


ALL = ("tensorflow", "jax", "jaxlib", "torch")


# --- select_backend: precedence ---------------------------------------------------------------


def test_the_flag_wins_over_the_environment(installed, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(*ALL)
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert select_backend("jax") == runtime.BackendChoice("jax")
    assert runtime.os.environ["KERAS_BACKEND"] == "jax"


def test_the_environment_wins_over_the_default(installed, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(*ALL)
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert select_backend(None) == runtime.BackendChoice("torch")


def test_tensorflow_is_the_default_when_installed(installed) -> None:
    installed(*ALL)
    assert select_backend(None) == runtime.BackendChoice("tensorflow")
    assert runtime.os.environ["KERAS_BACKEND"] == "tensorflow"


def test_without_tensorflow_jax_is_used_and_said(installed) -> None:
    installed("jax", "jaxlib", "torch")
    choice = select_backend(None)
    assert choice.name == "jax"
    assert choice.note == "TensorFlow is not installed; training on JAX (pass --backend to choose)"
    assert runtime.os.environ["KERAS_BACKEND"] == "jax"


def test_without_tensorflow_and_jax_pytorch_is_used_and_said(installed) -> None:
    installed("jax", "torch")  # jax without jaxlib cannot run
    choice = select_backend(None)
    assert choice.name == "torch"
    assert choice.note is not None and "PyTorch" in choice.note and "--backend" in choice.note


def test_names_are_case_and_space_insensitive(installed) -> None:
    installed(*ALL)
    assert select_backend(" JAX ").name == "jax"


# --- select_backend: errors -------------------------------------------------------------------


def _one_line(excinfo: pytest.ExceptionInfo[SearchError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_an_unknown_flag_lists_the_backends(installed) -> None:
    installed(*ALL)
    with pytest.raises(SearchError) as excinfo:
        select_backend("numpy")
    message = _one_line(excinfo)
    assert "'numpy'" in message and "--backend" in message
    assert "tensorflow, jax or torch" in message


def test_an_unknown_environment_value_names_the_variable(
    installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(*ALL)
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    with pytest.raises(SearchError) as excinfo:
        select_backend(None)
    message = _one_line(excinfo)
    assert "KERAS_BACKEND" in message and "tensorflow, jax or torch" in message


def test_an_explicit_backend_that_is_missing_names_its_extra(installed) -> None:
    installed("tensorflow")
    with pytest.raises(SearchError) as excinfo:
        select_backend("torch")
    message = _one_line(excinfo)
    assert "--backend torch" in message and "pip install 'search[torch]'" in message


def test_a_missing_backend_from_the_environment_names_the_variable_and_extra(
    installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed("tensorflow")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(SearchError) as excinfo:
        select_backend(None)
    message = _one_line(excinfo)
    assert "KERAS_BACKEND=jax" in message and "pip install 'search[jax]'" in message


def test_no_backend_installed_is_one_line_naming_the_extras(installed) -> None:
    installed()
    with pytest.raises(SearchError) as excinfo:
        select_backend(None)
    assert _one_line(excinfo) == (
        "no Keras backend installed: pip install 'search[tensorflow]' "
        "(or search[jax] / search[torch])"
    )


def test_a_keras_already_imported_on_another_backend_is_refused(
    installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(*ALL)
    _fake_keras(monkeypatch, "tensorflow")
    with pytest.raises(SearchError) as excinfo:
        select_backend("jax")
    message = _one_line(excinfo)
    assert "already imported" in message and "tensorflow" in message


def test_a_keras_already_imported_is_kept_when_nothing_is_asked(
    installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed(*ALL)
    _fake_keras(monkeypatch, "jax")
    assert select_backend(None) == runtime.BackendChoice("jax")
    assert select_backend("jax") == runtime.BackendChoice("jax")


# --- runtime_tags and machine_versions --------------------------------------------------------


def test_runtime_tags_name_backend_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jax")
    _fake_keras(monkeypatch, "jax")
    tags = runtime_tags()
    assert set(tags) == {"search.backend", "search.device"}
    assert tags["search.backend"] == "jax"
    assert tags["search.device"] == "cpu" or re.fullmatch(r"(gpu|tpu):.+", tags["search.device"])


def test_runtime_tags_never_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_keras(monkeypatch, "torch")

    def broken(backend: str) -> str:
        raise RuntimeError("no driver")

    monkeypatch.setattr(runtime, "_device", broken)
    assert runtime_tags() == {"search.backend": "torch", "search.device": "unknown"}


def test_machine_versions_name_the_machine_and_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    versions = machine_versions()
    assert all(isinstance(v, str) and v for v in versions.values()), versions
    assert {"host", "platform", "python", "search", "keras", "optuna", "mlflow", "numpy"} <= set(
        versions
    )
    assert versions["search"] == search.__version__
    assert versions["backend"] == "jax"
    assert versions["jax"] == metadata.version("jax")
    assert "tensorflow" not in versions  # only the backend in use


def test_machine_versions_leave_out_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name == "mlflow":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(runtime.metadata, "version", version)
    assert "mlflow" not in machine_versions()


def test_versions_tag_is_one_json_tag_per_host() -> None:
    ((key, value),) = versions_tag().items()
    versions = json.loads(value)
    host = re.sub(r"[^\w.\- ]", "_", versions["host"])
    assert key == "search.machine." + host
    assert versions["keras"] == metadata.version("keras")


# --- the CLI ----------------------------------------------------------------------------------

HIDE = textwrap.dedent(
    """\
    # Test helper: make these top-level packages look uninstalled (find_spec -> None, import ->
    # ModuleNotFoundError), as in an install without them.
    import os
    import sys
    from importlib.machinery import PathFinder

    _HIDDEN = frozenset(os.environ.get("SEARCH_TEST_HIDE", "").split(","))


    class _HidingPathFinder(PathFinder):
        @classmethod
        def find_spec(cls, fullname, path=None, target=None):
            if fullname.partition(".")[0] in _HIDDEN:
                return None
            return PathFinder.find_spec(fullname, path, target)


    sys.meta_path[:] = [_HidingPathFinder if f is PathFinder else f for f in sys.meta_path]
    """
)


def _hiding_env(tmp_path: Path, *packages: str) -> dict[str, str]:
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE)
    return {"PYTHONPATH": str(site), "SEARCH_TEST_HIDE": ",".join(packages)}


def test_a_bogus_backend_flag_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run_cli("run", "--backend", "nope", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "'nope'" in lines[0] and "tensorflow, jax or torch" in lines[0]
    assert "Traceback" not in result.stderr


def test_the_hiding_helper_hides(tmp_path: Path) -> None:
    import subprocess

    from tests.cli_helpers import cli_env

    code = (
        "import importlib.util as u\n"
        "assert u.find_spec('jax') is None and u.find_spec('numpy') is not None\n"
        "try:\n    import jax\nexcept ModuleNotFoundError:\n    print('hidden')\n"
    )
    env = cli_env(_hiding_env(tmp_path, "jax"))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "hidden", proc.stderr


def test_an_install_without_any_backend_says_which_extras_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)  # run_cli copies this environment
    result = run_cli(
        "run",
        "--trials",
        "1",
        cwd=tmp_path,
        env=_hiding_env(tmp_path, "tensorflow", "jax", "jaxlib", "torch"),
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "search run: error: no Keras backend installed: pip install 'search[tensorflow]' "
        "(or search[jax] / search[torch])"
    ], result.stderr


@pytest.fixture(scope="module")
def jax_study(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("jax", reason="jax is not installed (pip install 'search[jax]')")
    workdir = tmp_path_factory.mktemp("jax-backend")
    storage = f"sqlite:///{workdir / 'studies.db'}"
    tracking = f"sqlite:///{workdir / 'runs.db'}"
    result = run_cli(
        "run",
        "--backend",
        "jax",
        "--study",
        STUDY,
        "--trials",
        "1",
        "--epochs",
        "1",
        "--max-rows",
        ROWS,
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        cwd=workdir,
        env={"KERAS_BACKEND": "tensorflow"},  # the flag wins
    )
    return result, storage, tracking


def test_a_study_runs_with_backend_jax(jax_study) -> None:
    result, storage, _ = jax_study
    assert result.returncode == 0, result.stdout + result.stderr
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]


def _runs(tracking: str):
    client = mlflow.MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    children = [r for r in runs if r.data.tags.get("search.role") == "trial"]
    return parents, children


def test_the_trial_run_is_tagged_with_backend_and_device(jax_study) -> None:
    result, _, tracking = jax_study
    assert result.returncode == 0, result.stdout + result.stderr
    _, (child,) = _runs(tracking)
    assert child.data.tags["search.backend"] == "jax"
    device = child.data.tags["search.device"]
    assert device == "cpu" or re.fullmatch(r"(gpu|tpu):.+", device), device


def test_the_parent_run_records_the_machines_versions(jax_study) -> None:
    result, _, tracking = jax_study
    assert result.returncode == 0, result.stdout + result.stderr
    (parent,), _ = _runs(tracking)
    machines = [
        json.loads(v) for k, v in parent.data.tags.items() if k.startswith("search.machine.")
    ]
    assert len(machines) == 1, parent.data.tags
    versions = machines[0]
    assert versions["backend"] == "jax"
    for package in ("search", "keras", "jax", "optuna", "mlflow"):
        assert versions[package] == metadata.version(package), package


def test_an_install_without_tensorflow_trains_on_jax_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The measured failure: `pip install .` without TensorFlow died with a TF traceback."""
    pytest.importorskip("jax", reason="jax is not installed (pip install 'search[jax]')")
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    result = run_cli(
        "run",
        "--study",
        "no-tf",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--max-rows",
        ROWS,
        cwd=tmp_path,
        env=_hiding_env(tmp_path, "tensorflow", "torch"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    note = "note: TensorFlow is not installed; training on JAX (pass --backend to choose)"
    assert result.stdout.splitlines()[0] == note, result.stdout
    noise = [line for line in result.stderr.splitlines() if line.strip()]
    assert noise == [], noise[:5]
