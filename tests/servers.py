"""Real servers for tests and benchmarks: a throwaway PostgreSQL cluster and an `mlflow server`.

The same topology as `docker-compose.yml`, started natively on 127.0.0.1 without a Docker engine:

* `start_postgres()` runs `initdb` in a fresh temp dir and starts the cluster on a free port
  (listening on 127.0.0.1 only, unix socket in the temp dir, trust auth for one superuser).
  PostgreSQL refuses to run as root, so under root the cluster runs as the `postgres` user
  (created by Debian's `postgresql` package) or, failing that, `nobody`.
* `start_mlflow_server()` runs `mlflow server` backed by a PostgreSQL database, with proxied
  artifacts (`--serve-artifacts --artifacts-destination DIR`), and waits for `/health`.

Both are plain functions returning handles with a `stop()` method, so `benchmarks/` can reuse
them; the pytest fixtures `postgres_server` and `mlflow_server` wrap them (one of each per run,
shared by pytest-xdist's workers).
Binaries are found on PATH, then in `/usr/lib/postgresql/*/bin` (Debian's layout), or in the
folder named by `SEARCH_PG_BIN`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_SUPERUSER = "search"
MLFLOW_DATABASE = "mlflow"
OPTUNA_DATABASE = "optuna"


class ServerError(RuntimeError):
    """A test server could not be started; the message carries the tail of its log."""


# --------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path)) or (0,)


def find_postgres_bin() -> Path | None:
    """The folder holding `initdb`, `pg_ctl` and `postgres`, or None if PostgreSQL is absent."""
    candidates: list[str] = []
    if env := os.environ.get("SEARCH_PG_BIN"):
        candidates.append(env)
    if found := shutil.which("pg_ctl"):
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates += sorted(glob.glob("/usr/pgsql-*/bin"), key=_version_key, reverse=True)
    for folder in candidates:
        if all((Path(folder) / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None if we are not root, else `postgres` or `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerError("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200, the process dies, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(
                f"process exited with code {process.returncode} before {url} answered"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last_error = error
        time.sleep(0.5)
    raise ServerError(f"{url} did not answer within {timeout:.0f} s (last error: {last_error})")


# --------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass
class PostgresServer:
    """A running throwaway PostgreSQL cluster on 127.0.0.1."""

    bin_dir: Path
    root: Path
    port: int
    user: str = PG_SUPERUSER
    host: str = "127.0.0.1"
    _run_as: pwd.struct_passwd | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)
    options: str = field(default="", repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, dbname: str, driver: str = "postgresql") -> str:
        """A SQLAlchemy/libpq URL for `dbname`, e.g. `postgresql://search@127.0.0.1:PORT/optuna`."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create `dbname` (if absent) and return its URL."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            conn.close()
        return self.url(dbname)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run_pg(self._run_as, [str(self.bin_dir / args[0]), *args[1:]], check=check)

    def restart(self, pause: float = 0.0) -> None:
        """Stop the server (fast shutdown: clients are disconnected), wait ``pause`` seconds
        with nothing listening, and start it again on the same port with the same data."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")
        time.sleep(pause)
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", self.options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and delete its files."""
        if self._stopped:
            return
        self._stopped = True
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop", check=False
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _run_pg(
    run_as: pwd.struct_passwd | None, argv: list[str], check: bool = True
) -> subprocess.CompletedProcess:
    kwargs: dict = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = env["LANG"] = "C.UTF-8"
    if run_as is not None:
        kwargs = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}
        env["HOME"] = tempfile.gettempdir()
    result = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),
        **kwargs,
    )
    if check and result.returncode != 0:
        raise ServerError(
            f"{' '.join(argv)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result


def start_postgres(
    databases: tuple[str, ...] = (OPTUNA_DATABASE, MLFLOW_DATABASE),
) -> PostgresServer:
    """initdb a new cluster in a temp dir, start it on a free 127.0.0.1 port, create `databases`.

    Raises FileNotFoundError if the PostgreSQL server binaries are not installed.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, in "
            "/usr/lib/postgresql/*/bin or in $SEARCH_PG_BIN; install them with "
            "`apt-get install -y postgresql`"
        )
    run_as = _unprivileged_user()
    # Not under pytest's tmp_path: that is mode 0700 for root, so `postgres` could not enter it.
    root = Path(tempfile.mkdtemp(prefix="search-pg-"))
    (root / "socket").mkdir()
    if run_as is not None:
        for path in (root, root / "socket"):
            os.chown(path, run_as.pw_uid, run_as.pw_gid)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port(), _run_as=run_as)
    try:
        server._run(
            "initdb",
            "-D",
            str(server.data_dir),
            "-U",
            server.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = (
            f"-p {server.port} -c listen_addresses=127.0.0.1 "
            f"-k {server.socket_dir} -c fsync=off -c max_connections=200"
        )
        for attempt in range(3):
            result = server._run(
                "pg_ctl",
                "-D",
                str(server.data_dir),
                "-l",
                str(server.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
                check=False,
            )
            if result.returncode == 0:
                server.options = options
                break
            if attempt == 2 or "could not bind" not in _tail(server.log_file):
                raise ServerError(
                    f"pg_ctl start failed:\n{result.stderr}\n{_tail(server.log_file)}"
                )
            server.port = free_port()  # someone took the port between probe and bind: retry
            options = re.sub(r"-p \d+", f"-p {server.port}", options)
        for name in databases:
            server.create_database(name)
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------------------------
# MLflow tracking server


@dataclass
class MlflowServer:
    """A running `mlflow server` process (``process`` is None where another xdist worker
    started it: then the controller stops it)."""

    process: subprocess.Popen | None
    port: int
    backend_store_uri: str
    artifacts_dir: Path
    log_file: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Terminate the server and its worker processes."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def mlflow_executable() -> list[str]:
    """The command that runs the `mlflow` CLI of this interpreter's environment."""
    script = Path(sys.executable).parent / "mlflow"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mlflow"]


def start_mlflow_server(
    backend_store_uri: str,
    artifacts_dir: Path,
    log_file: Path | None = None,
    workers: int = 2,
    timeout: float = 180.0,
    port: int | None = None,
    app_name: str | None = None,
    env: dict[str, str] | None = None,
) -> MlflowServer:
    """Start `mlflow server` on a free 127.0.0.1 port (or ``port``: a server restarted where its
    clients expect it), with ``--app-name`` and the environment ``env`` when given (default: this
    one without ``MLFLOW_TRACKING_URI``), and wait until `/health` answers."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_file or artifacts_dir.parent / "mlflow-server.log"
    port = port or free_port()
    argv = [
        *mlflow_executable(),
        "server",
        *(("--app-name", app_name) if app_name else ()),
        "--backend-store-uri",
        backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # The job runner (huey consumers for GenAI scorers) is not used by `search` and costs seven
    # processes on a 2-core machine; the shipped image turns it off the same way.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=artifacts_dir.parent,
            start_new_session=True,
        )
    server = MlflowServer(process, port, backend_store_uri, artifacts_dir, log_file)
    try:
        wait_for_http(f"{server.url}/health", timeout=timeout, process=process)
    except ServerError as error:
        server.stop()
        what = f"mlflow server --app-name {app_name}" if app_name else "mlflow server"
        raise ServerError(f"{what} did not start: {error}\n{_tail(log_file)}") from None
    return server


# --------------------------------------------------------------------------------------------
# pytest fixtures


# Under pytest-xdist the workers share one cluster and one `mlflow server` per run: the first
# worker that needs one starts it under a file lock in the run's shared temp folder (the parent
# of each worker's basetemp) and writes how to reach it to a JSON there; the others read it.
# The controller stops them when the run ends (`stop_shared_servers`, from tests/conftest.py).
# Without xdist the session fixture starts and stops its own, as before.
SHARED = ("mlflow_server", "postgres_server")  # stopped in this order


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return tmp_path_factory.getbasetemp().parent


@contextlib.contextmanager
def _locked(folder: Path, name: str) -> Iterator[Path]:
    """The state file ``folder/name.json``, held under an exclusive lock of ``name.lock``."""
    import fcntl

    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder / f"{name}.json"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _postgres_state(server: PostgresServer) -> dict:
    run_as = server._run_as.pw_name if server._run_as else None
    return {
        "bin_dir": str(server.bin_dir),
        "root": str(server.root),
        "port": server.port,
        "run_as": run_as,
        "options": server.options,
    }


def _postgres_from(state: dict) -> PostgresServer:
    run_as = pwd.getpwnam(state["run_as"]) if state["run_as"] else None
    return PostgresServer(
        bin_dir=Path(state["bin_dir"]), root=Path(state["root"]), port=state["port"],
        _run_as=run_as, options=state["options"],
    )  # fmt: skip


def _stop_pid_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop_shared_servers(folder: Path) -> None:
    """Stop the servers the xdist workers shared (their state files in ``folder``)."""
    import json

    for name in SHARED:
        state_file = folder / f"{name}.json"
        if not state_file.is_file():
            continue
        state = json.loads(state_file.read_text())
        if name == "postgres_server":
            _postgres_from(state).stop()
        else:
            _stop_pid_group(state["pid"])
        state_file.unlink()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster with databases `optuna` and `mlflow` (one per run, shared
    by the xdist workers). Tests create their own databases in it (`create_database`)."""
    import json

    folder = _shared_dir(tmp_path_factory)
    try:
        if folder is None:
            server = start_postgres()
        else:
            with _locked(folder, "postgres_server") as state_file:
                if state_file.is_file():
                    server = _postgres_from(json.loads(state_file.read_text()))
                else:
                    server = start_postgres()
                    state_file.write_text(json.dumps(_postgres_state(server)))
    except FileNotFoundError as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        if folder is None:
            server.stop()


@pytest.fixture(scope="session")
def mlflow_server_process(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """A real `mlflow server` backed by PostgreSQL database `mlflow`, serving artifacts (one per
    run, shared by the xdist workers; only the process that started it holds its Popen)."""
    import json

    folder = _shared_dir(tmp_path_factory)
    if folder is None:
        root = tmp_path_factory.mktemp("mlflow-server")
        server = start_mlflow_server(postgres_server.url(MLFLOW_DATABASE), root / "artifacts")
        try:
            yield server
        finally:
            server.stop()
        return
    with _locked(folder, "mlflow_server") as state_file:
        if state_file.is_file():
            state = json.loads(state_file.read_text())
            wait_for_http(f"http://127.0.0.1:{state['port']}/health", timeout=60)
            server = MlflowServer(
                process=None,
                port=state["port"], backend_store_uri=state["backend_store_uri"],
                artifacts_dir=Path(state["artifacts_dir"]), log_file=Path(state["log_file"]),
            )  # fmt: skip
        else:
            root = folder / "mlflow-server"
            root.mkdir(exist_ok=True)
            server = start_mlflow_server(postgres_server.url(MLFLOW_DATABASE), root / "artifacts")
            assert server.process is not None
            state = {
                "pid": server.process.pid,
                "port": server.port,
                "backend_store_uri": server.backend_store_uri,
                "artifacts_dir": str(server.artifacts_dir),
                "log_file": str(server.log_file),
            }
            state_file.write_text(json.dumps(state))
    yield server  # stopped by the controller at the end of the run


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_process: MlflowServer) -> str:
    """The http URL (`http://127.0.0.1:PORT`) of the session's real `mlflow server`."""
    return mlflow_server_process.url


# --------------------------------------------------------------------------------------------
# MLflow tracking server behind MLflow's basic-auth app


def auth_app_available() -> str | None:
    """None if `mlflow server --app-name basic-auth` can run here, else why not."""
    import importlib.util

    for module in ("flask_wtf", "mlflow.server.auth"):  # flask_wtf is what `mlflow[auth]` adds
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            return f"MLflow's basic-auth app needs `pip install 'mlflow[auth]'` (no {module})"
    return None


def start_mlflow_auth_server(
    root: Path,
    admin_username: str,
    admin_password: str,
    default_permission: str = "READ",
    workers: int = 1,
    timeout: float = 180.0,
) -> MlflowServer:
    """`mlflow server --app-name basic-auth` on a free 127.0.0.1 port, SQLite stores under
    ``root`` (`mlflow.db`, the users in `basic_auth.db`, artifacts in `artifacts/`), the admin
    user created from an auth config file ``root/basic_auth.ini``; waits until `/health` answers
    (MLflow 3 takes about 20 s)."""
    root.mkdir(parents=True, exist_ok=True)
    artifacts_dir = root / "artifacts"
    artifacts_dir.mkdir(exist_ok=True)
    log_file = root / "mlflow-auth-server.log"
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {admin_username}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    config.chmod(0o600)
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "MLFLOW_TRACKING_URI" and not k.startswith(("MLFLOW_AUTH_", "MLFLOW_TRACKING_"))
    }
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = os.urandom(16).hex()  # CSRF, shared by the workers
    return start_mlflow_server(
        f"sqlite:///{root / 'mlflow.db'}",
        artifacts_dir,
        log_file=log_file,
        workers=workers,
        timeout=timeout,
        app_name="basic-auth",
        env=env,
    )
