"""The shipped deployment: docker-compose.yml, the two images and their start-up scripts.

There is no Docker engine here, so the compose file is checked statically (and by
`docker-compose config` where that validator is installed), and the scripts the images run
(`mlflow/entrypoint.sh`, `deploy/postgres/init-databases.sh`) are run natively against the real
servers of `tests/servers.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.servers import free_port, mlflow_executable, wait_for_http

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


# --------------------------------------------------------------------------------------------
# helpers


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose `.env` file (comments and blanks skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip().strip("'\"")
    return env


_VAR = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


def interpolate(value, env: dict[str, str]):
    """Compose-style `${VAR}`, `${VAR:-default}`, `${VAR:?error}` substitution, recursively."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        current = env.get(name)
        unset = current is None or (current == "" and op is not None and op.startswith(":"))
        if op and op.endswith("-"):
            return arg if unset else current
        if op and op.endswith("?") and unset:
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(substitute, value)


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    """The compose file as Compose sees it with `.env` copied from `.env.example`."""
    return interpolate(raw_compose, read_env_file(ENV_EXAMPLE))


def _gpu_services(compose: dict) -> dict:
    return {n: s for n, s in compose["services"].items() if "gpu" in s.get("profiles", [])}


def _dockerfile(service: dict) -> Path:
    build = service["build"]
    context = REPO / (build if isinstance(build, str) else build["context"])
    name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return context / name


# --------------------------------------------------------------------------------------------
# the compose file


def test_compose_services_exist(compose):
    services = compose["services"]
    assert {"postgres", "mlflow", "worker"} <= set(services)
    assert "profiles" not in services["worker"]  # `docker compose up` starts the CPU worker
    assert _gpu_services(compose), "a worker under the `gpu` profile"


def test_gpu_worker_reserves_an_nvidia_gpu(compose):
    for name, service in _gpu_services(compose).items():
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert any(
            d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices
        ), name
        assert service["command"] == compose["services"]["worker"]["command"]
        assert service["environment"] == compose["services"]["worker"]["environment"]


def test_worker_is_scalable(compose):
    worker = compose["services"]["worker"]
    # `--scale worker=4` needs no fixed container name and no published host port.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_health_checks_and_start_order(compose):
    services = compose["services"]
    for name in ("postgres", "mlflow"):
        assert services[name]["healthcheck"]["test"], f"{name} has a health check"
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ["worker", *_gpu_services(compose)]:
        depends = services[name]["depends_on"]
        for needed in ("postgres", "mlflow"):
            assert depends[needed]["condition"] == "service_healthy", (name, needed)


def test_named_volumes_hold_the_databases_and_artifacts(compose):
    named = set(compose["volumes"])

    def mounts(service: str) -> dict[str, str]:
        found = {}
        for volume in compose["services"][service]["volumes"]:
            source, target = volume.split(":")[:2]
            found[target] = source
        return found

    postgres, mlflow = mounts("postgres"), mounts("mlflow")
    assert postgres["/var/lib/postgresql/data"] in named
    destination = compose["services"]["mlflow"]["environment"]["MLFLOW_ARTIFACTS_DESTINATION"]
    assert mlflow[destination] in named
    init = postgres["/docker-entrypoint-initdb.d/init-databases.sh"]
    assert (REPO / init).resolve() == REPO / "deploy" / "postgres" / "init-databases.sh"


def test_ports_are_published_on_loopback_only(compose):
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
            published.append(port)
    assert "127.0.0.1:5000:5000" in published  # the MLflow UI


def test_credentials_come_from_the_env_file(raw_compose, compose):
    text = COMPOSE_FILE.read_text()
    example = read_env_file(ENV_EXAMPLE)
    assert example["POSTGRES_PASSWORD"] not in text  # interpolated, never written in
    assert (
        "${POSTGRES_PASSWORD"
        in raw_compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    )
    assert "change-me" in example["POSTGRES_PASSWORD"]  # a placeholder, not a secret
    # Without .env, Compose refuses to start with a message saying what to do.
    with pytest.raises(KeyError, match="in .env"):
        interpolate(raw_compose, {})
    # The same credentials reach the database, the tracking server and the workers.
    user, password = example["POSTGRES_USER"], example["POSTGRES_PASSWORD"]
    services = compose["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for url in (
        services["worker"]["environment"]["SEARCH_STORAGE"],
        services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
    ):
        assert url.startswith(f"postgresql://{user}:{password}@postgres:5432/")
    ignored = (REPO / ".gitignore").read_text().split()
    assert ".env" in ignored
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_workers_reach_the_servers_by_service_name(compose):
    env = compose["services"]["worker"]["environment"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["SEARCH_STORAGE"].endswith("@postgres:5432/optuna")


def test_build_contexts_exist(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            assert _dockerfile(service).is_file(), name
    assert not (REPO / "mlflow" / "__init__.py").exists()


def test_worker_image_installs_the_project_and_runs_search_run(compose):
    dockerfile = _dockerfile(compose["services"]["worker"]).read_text()
    assert 'pip install ".[tensorflow]"' in dockerfile
    assert 'ENTRYPOINT ["search", "run"]' in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    for needed in ("search", "data", "spaces", "pyproject.toml", "README.md"):
        assert needed not in ignored


def test_worker_command_uses_only_documented_flags(compose):
    result = subprocess.run(
        [sys.executable, "-m", "search", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    documented = set(FLAG.findall(result.stdout))
    for name in ["worker", *_gpu_services(compose)]:
        used = {arg for arg in compose["services"][name]["command"] if arg.startswith("--")}
        assert used, name
        assert used <= documented, f"{name} uses undocumented flags {used - documented}"


def test_mlflow_image_uses_only_real_server_flags():
    entrypoint = (REPO / "mlflow" / "entrypoint.sh").read_text()
    used = set(FLAG.findall(entrypoint))
    assert {
        "--backend-store-uri",
        "--serve-artifacts",
        "--artifacts-destination",
        "--host",
        "--allowed-hosts",
    } <= used
    result = subprocess.run(
        [*mlflow_executable(), "server", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert used <= set(FLAG.findall(result.stdout))
    dockerfile = (REPO / "mlflow" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert "COPY entrypoint.sh" in dockerfile
    assert os.access(REPO / "mlflow" / "entrypoint.sh", os.X_OK)


def _compose_validators() -> list[list[str]]:
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            found.append(["docker", "compose"])
    return found


def test_compose_file_validates_with_docker_compose(tmp_path):
    validators = _compose_validators()
    if not validators:
        pytest.skip("no compose validator installed (`apt-get install -y docker-compose`)")
    env_file = tmp_path / ".env"
    shutil.copy(ENV_EXAMPLE, env_file)
    for validator in validators:
        for profile in ([], ["--profile", "gpu"]):
            command = [
                *validator,
                "-f",
                str(COMPOSE_FILE),
                "--env-file",
                str(env_file),
                *profile,
                "config",
                "-q",
            ]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
            assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr}"


# --------------------------------------------------------------------------------------------
# the images' start-up scripts, run natively against real servers


def _pg_env(postgres_server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PATH=f"{postgres_server.bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PGHOST=postgres_server.host,
        PGPORT=str(postgres_server.port),
        POSTGRES_USER=postgres_server.user,
        POSTGRES_DB="postgres",
        **extra,
    )
    return env


def test_init_script_creates_both_databases_idempotently(postgres_server):
    import psycopg2

    suffix = uuid.uuid4().hex[:8]
    wanted = {f"optuna_{suffix}", f"mlflow_{suffix}"}
    env = _pg_env(postgres_server, OPTUNA_DB=f"optuna_{suffix}", MLFLOW_DB=f"mlflow_{suffix}")
    for _ in range(2):  # a second run keeps what exists
        result = subprocess.run(
            ["bash", str(REPO / "deploy" / "postgres" / "init-databases.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    conn = psycopg2.connect(postgres_server.url("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            assert wanted <= {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def _get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_mlflow_entrypoint_serves_other_hosts_but_not_strangers(postgres_server, tmp_path):
    """The image's start-up: PostgreSQL store, proxied artifacts, service-name Host accepted."""
    backend = postgres_server.create_database(f"mlflow_entrypoint_{uuid.uuid4().hex[:8]}")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        PATH=f"{Path(mlflow_executable()[0]).parent}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_BACKEND_STORE_URI=backend,
        MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
        MLFLOW_HOST="127.0.0.1",  # the image binds 0.0.0.0; a test has no business doing so
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",
        MLFLOW_EXTRA_ALLOWED_HOSTS="mlflow.example.org:*",
    )
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        ["sh", str(REPO / "mlflow" / "entrypoint.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=180, process=process)
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(api) == 200
        assert _get(api, host=f"mlflow:{port}") == 200  # a worker in the compose network
        assert _get(api, host=f"10.1.2.3:{port}") == 200  # a worker on the LAN
        assert _get(api, host=f"mlflow.example.org:{port}") == 200  # MLFLOW_EXTRA_ALLOWED_HOSTS
        assert _get(api, host="attacker.example:80") == 403  # DNS-rebinding protection stays on
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--serve-artifacts" in command
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
