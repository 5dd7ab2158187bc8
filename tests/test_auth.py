"""A tracking server behind MLflow's basic-auth app (`mlflow server --app-name basic-auth`).

A study runs against it with the credentials in MLflow's own environment variables
(`MLFLOW_TRACKING_USERNAME`, `MLFLOW_TRACKING_PASSWORD`); without them, or with a wrong password,
`search run` stops before anything starts with one line that says authentication failed. The
password never shows in what the program prints or stores, nor on a command line (`ps`): the
image's start-up script (`mlflow/entrypoint.sh`, `MLFLOW_AUTH=basic-auth`) is run natively too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli, run_cli_here
from tests.servers import (
    MlflowServer,
    auth_app_available,
    free_port,
    mlflow_executable,
    start_mlflow_auth_server,
    wait_for_http,
)

pytestmark = pytest.mark.slow  # two MLflow 3 servers (about 20 s each to start) and a study

REPO = Path(__file__).resolve().parent.parent
ADMIN = "admin"
# Strong (MLflow wants 12+ characters), new for every session, and distinctive enough that a
# substring search in any output proves it leaked.
PASSWORD = f"Sx-{secrets.token_hex(12)}-auth"
WRONG = f"Wx-{secrets.token_hex(12)}-nope"
CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": PASSWORD}
STUDY_FLAGS = ("--trials", "1", "--epochs", "1", "--max-rows", "9000")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    if reason := auth_app_available():
        pytest.skip(reason)
    server = start_mlflow_auth_server(tmp_path_factory.mktemp("mlflow-auth"), ADMIN, PASSWORD)
    try:
        yield server
    finally:
        server.stop()


def _status(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        import base64

        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _api(url: str) -> str:
    return f"{url}/api/2.0/mlflow/experiments/search?max_results=1"


def _study_count(storage: Path) -> int:
    """Optuna studies in a SQLite storage file (0 if the file or its schema does not exist)."""
    if not storage.exists():
        return 0
    conn = sqlite3.connect(storage)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "studies" not in tables:
            return 0
        return int(conn.execute("SELECT count(*) FROM studies").fetchone()[0])
    finally:
        conn.close()


def _admin_client(server: MlflowServer, monkeypatch: pytest.MonkeyPatch):
    from mlflow import MlflowClient

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return MlflowClient(tracking_uri=server.url)


def test_server_refuses_requests_without_credentials(auth_server: MlflowServer) -> None:
    """The fixture really is behind basic auth (else the tests below prove nothing)."""
    assert _status(f"{auth_server.url}/health") == 200
    assert _status(_api(auth_server.url)) == 401
    assert _status(_api(auth_server.url), ADMIN, WRONG) == 401
    assert _status(_api(auth_server.url), ADMIN, PASSWORD) == 200


def test_study_runs_with_credentials_from_the_environment(
    auth_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = "auth-ok"
    result = run_cli_here(  # the credentials reach MLflow's client from the environment
        "run",
        "--study",
        study,
        *STUDY_FLAGS,
        "--storage",
        "sqlite:///studies.db",
        "--tracking-uri",
        auth_server.url,
        cwd=tmp_path,
        env=CREDENTIALS,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert PASSWORD not in result.stdout + result.stderr
    assert _study_count(tmp_path / "studies.db") == 1

    client = _admin_client(auth_server, monkeypatch)
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("search.role") == "study"]
    children = [r for r in runs if r.data.tags.get("search.role") == "trial"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    assert len(children) == 1
    assert children[0].data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert children[0].info.status == "FINISHED"
    # Artifacts go through the server (--serve-artifacts) with the same credentials.
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} >= {"data_report.json"}
    for run in (*parents, *children):
        stored = " ".join(
            [*run.data.params.values(), *run.data.tags.values(), *run.data.params.keys()]
        )
        assert PASSWORD not in stored, run.info.run_name


@pytest.mark.parametrize(
    ("case", "env", "tracking"),
    [
        (
            "no-credentials",
            {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""},
            "{url}",
        ),
        (
            "wrong-password",
            {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": WRONG},
            "{url}",
        ),
        ("wrong-password-in-uri", {}, "http://{user}:{wrong}@{host}"),
    ],
    ids=["no-credentials", "wrong-password", "wrong-password-in-uri"],
)
def test_refused_credentials_stop_the_run_before_anything_starts(
    auth_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    env: dict[str, str],
    tracking: str,
) -> None:
    study = f"auth-refused-{case}"
    home = tmp_path / "home"  # no ~/.mlflow/credentials of the machine's user
    home.mkdir()
    tracking_uri = tracking.format(
        url=auth_server.url,
        user=ADMIN,
        wrong=WRONG,
        host=f"{auth_server.host}:{auth_server.port}",
    )
    result = run_cli(
        "run",
        "--study",
        study,
        *STUDY_FLAGS,
        "--storage",
        "sqlite:///studies.db",
        "--tracking-uri",
        tracking_uri,
        cwd=tmp_path,
        env={
            "HOME": str(home),
            "MLFLOW_TRACKING_USERNAME": "",
            "MLFLOW_TRACKING_PASSWORD": "",
            "MLFLOW_TRACKING_TOKEN": "",
            **env,
        },
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "Traceback" not in output
    assert "authentication failed" in line
    assert "MLFLOW_TRACKING_USERNAME" in line and "MLFLOW_TRACKING_PASSWORD" in line
    assert PASSWORD not in output and WRONG not in output
    if case == "wrong-password-in-uri":
        assert f"{ADMIN}:***@" in line
    assert _study_count(tmp_path / "studies.db") == 0  # checked before Optuna was touched
    client = _admin_client(auth_server, monkeypatch)
    assert client.get_experiment_by_name(study) is None


# --------------------------------------------------------------------------------------------
# the image's start-up script with logins on


def _entrypoint_env(tmp_path: Path, port: int, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        PATH=f"{Path(mlflow_executable()[0]).parent}{os.pathsep}{env.get('PATH', '')}",
        TMPDIR=str(tmp_path),  # where the script writes its auth config
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",
        MLFLOW_AUTH="basic-auth",
        MLFLOW_AUTH_ADMIN_USERNAME=ADMIN,
        MLFLOW_AUTH_ADMIN_PASSWORD=password,
        MLFLOW_AUTH_DATABASE_URI=f"sqlite:///{tmp_path / 'basic_auth.db'}",
    )
    return env


def test_entrypoint_refuses_the_placeholder_password(tmp_path: Path) -> None:
    from tests.test_compose import ENV_EXAMPLE, read_env_file

    placeholder = read_env_file(ENV_EXAMPLE)["MLFLOW_AUTH_ADMIN_PASSWORD"]
    for password in ("", placeholder):
        result = subprocess.run(
            ["sh", str(REPO / "mlflow" / "entrypoint.sh")],
            env=_entrypoint_env(tmp_path, free_port(), password),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "MLFLOW_AUTH_ADMIN_PASSWORD" in result.stderr


def test_entrypoint_turns_logins_on_without_the_password_in_ps(tmp_path: Path) -> None:
    if reason := auth_app_available():
        pytest.skip(reason)
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        ["sh", str(REPO / "mlflow" / "entrypoint.sh")],
        env=_entrypoint_env(tmp_path, port, PASSWORD),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/health", timeout=180, process=process)
        assert _status(_api(url)) == 401
        assert _status(_api(url), ADMIN, WRONG) == 401
        assert _status(_api(url), ADMIN, PASSWORD) == 200
        # No command line on the machine holds the password (it is in the environment only)...
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                assert PASSWORD.encode() not in cmdline.read_bytes(), cmdline
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--app-name" in command and b"basic-auth" in command
        # ... nor the auth config the script wrote.
        configs = list(tmp_path.glob("mlflow-basic-auth.*"))
        assert len(configs) == 1
        text = configs[0].read_text()
        assert f"admin_username = {ADMIN}" in text and PASSWORD not in text
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
