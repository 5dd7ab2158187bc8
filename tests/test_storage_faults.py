"""A study storage that cannot be written or is held by another process, for real: the CLI
answers with one line (no traceback) and leaves the file as it was; a lock that goes away is
waited out. And four `--jobs` workers on one PostgreSQL study lose and duplicate nothing."""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest

from search.storage import open_storage
from tests.cli_helpers import search_command, wait_until
from tests.test_distributed import worker_env

SEED_TRIALS = 3
TINY = ("--trials", "1", "--epochs", "1", "--max-rows", "9000")


# ------------------------------------------------------------------------------------ helpers


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _seed_study(path: Path, name: str = "seed") -> str:
    """A study file holding ``SEED_TRIALS`` finished trials (made through Optuna: no training)."""
    from optuna.distributions import FloatDistribution

    url = f"sqlite:///{path}"
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage)
    for i in range(SEED_TRIALS):
        study.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": 0.001 * (i + 1)},
                distributions={"learning_rate": FloatDistribution(1e-4, 1e-2, log=True)},
                value=3.0 + i,
            )
        )
    storage.engine.dispose()
    return url


def _assert_intact(path: Path, digest: str, name: str = "seed") -> None:
    """Byte-identical, and Optuna still reads the study with all its trials."""
    assert _sha256(path) == digest, "the study file changed"
    storage = open_storage(f"sqlite:///{path}")
    try:
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert [(t.number, t.state.name) for t in trials] == [
            (i, "COMPLETE") for i in range(SEED_TRIALS)
        ]
    finally:
        storage.engine.dispose()


def _cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        search_command(*args),
        cwd=cwd,
        env={**worker_env(), **(env or {})},  # worker_env: this checkout's code, one thread pool
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux /proc)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if Path(os.readlink(fd)) == path.resolve():
                return True
        except OSError:
            continue
    return False


def _assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------- read-only file

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _without_root_override() -> None:
    """In the child, before exec: root without CAP_DAC_OVERRIDE, so file modes bind it too
    (chmod alone does not stop root; the tests run as root in CI)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


_PROBE = """
import sys
from pathlib import Path
path, folder = Path(sys.argv[1]), sys.argv[2] == "1"
attempts = [lambda: open(path, "r+b").close()]
if folder:
    attempts.append(lambda: (path.parent / "probe").touch())
for attempt in attempts:
    try:
        attempt()
    except PermissionError:
        continue
    sys.exit(f"{path} or its folder is writable by a child process")
"""


@contextmanager
def _read_only(path: Path, folder: bool) -> Iterator[Callable[[], None] | None]:
    """``path`` (0444) and, with ``folder``, its folder (0555) read-only for the CLI's
    process; yields the ``preexec_fn`` that makes it so under root. Skips where it cannot."""
    preexec = _without_root_override if os.geteuid() == 0 else None
    path.chmod(0o444)
    if folder:
        path.parent.chmod(0o555)
    try:
        try:
            probe = subprocess.run(
                [sys.executable, "-c", _PROBE, str(path), "1" if folder else "0"],
                capture_output=True,
                text=True,
                timeout=60,
                preexec_fn=preexec,
            )
        except subprocess.SubprocessError as error:  # prctl refused (no CAP_SETPCAP)
            pytest.skip(f"cannot make a file read-only for root here: {error}")
        if probe.returncode != 0:
            pytest.skip(f"cannot make a file read-only here: {probe.stderr.strip()[-300:]}")
        yield preexec
    finally:
        path.parent.chmod(0o755)
        path.chmod(0o644)


@pytest.mark.parametrize("folder", [True, False], ids=["file-and-folder", "file-only"])
def test_a_read_only_study_file_is_refused_before_anything_starts(
    tmp_path: Path, folder: bool
) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    db = studies / "s.db"
    url = _seed_study(db)
    digest = _sha256(db)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with _read_only(db, folder) as preexec:
        started = time.monotonic()
        run = _cli(
            "run", "--study", "seed", *TINY, "--storage", url, "--tracking-uri", tracking,
            cwd=tmp_path, preexec=preexec,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        _assert_one_line_error(run, "search run: error:", str(db), "is read-only")
        assert elapsed < 30, f"refused only after {elapsed:.0f} s: not before Keras"
        assert "loading data" not in run.stdout
        # Reading commands work on a read-only study.
        listed = _cli("trials", "seed", "--storage", url, cwd=tmp_path, preexec=preexec)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert len(listed.stdout.strip().splitlines()) == 1 + SEED_TRIALS, listed.stdout
    assert not (tmp_path / "mlflow.db").exists(), "nothing may be tracked for a refused run"
    assert sorted(p.name for p in studies.iterdir()) == ["s.db"], "no journal, no checkpoints"
    _assert_intact(db, digest)


def test_a_read_only_folder_refuses_a_new_study_file(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    db = studies / "s.db"
    _seed_study(db)
    with _read_only(db, folder=True) as preexec:
        run = _cli(
            "run", "--study", "new", *TINY, "--storage", f"sqlite:///{studies / 'new.db'}",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path, preexec=preexec,
        )  # fmt: skip
        _assert_one_line_error(run, "is read-only", "cannot be created")
    assert not (studies / "new.db").exists()


# ------------------------------------------------------------------------------- locked file

_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")  # no other connection may read or write
print("locked", flush=True)
if sys.argv[2] == "until-told":
    sys.stdin.readline()
else:
    time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released at", time.time(), flush=True)
"""


@contextmanager
def _locked(db: Path, hold: float | None) -> Iterator[subprocess.Popen]:
    """Another process holding an exclusive write transaction on ``db`` for ``hold`` seconds
    (None: until a line is written to its stdin)."""
    locker = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(db), "until-told" if hold is None else str(hold)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        yield locker
    finally:
        if locker.poll() is None:
            locker.kill()
        locker.wait(timeout=30)


def test_a_lock_held_past_the_wait_fails_with_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    url = _seed_study(db)
    digest = _sha256(db)
    with _locked(db, hold=120):
        started = time.monotonic()
        run = _cli(
            "run", "--study", "seed", *TINY, "--storage", url,
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path,
            env={"SEARCH_STORAGE_TIMEOUT": "1"},
        )  # fmt: skip
        elapsed = time.monotonic() - started
    line = _assert_one_line_error(run, "is locked by another process", "SEARCH_STORAGE_TIMEOUT")
    assert "waited 1 s" in line, line
    assert elapsed < 40, f"the wait is bounded by SEARCH_STORAGE_TIMEOUT=1, took {elapsed:.0f} s"
    _assert_intact(db, digest)


def test_a_lock_released_within_the_wait_is_waited_out(tmp_path: Path) -> None:
    """`search trials` waits where every command opens its storage (`search run` too)."""
    db = tmp_path / "s.db"
    url = _seed_study(db)
    with _locked(db, hold=None) as locker:
        reader = subprocess.Popen(
            search_command("trials", "seed", "--storage", url), cwd=tmp_path,
            env={**worker_env(), "SEARCH_STORAGE_TIMEOUT": "120"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # the lock goes away only once the reader (however slowly it starts) has been held up
            # by it: the locked file open in the reader for 2 s on end
            since: list[float] = []

            def held_up() -> bool:
                if reader.poll() is not None:
                    raise AssertionError(
                        f"`search trials` did not wait for the lock: {reader.communicate()}"
                    )
                if not _has_open(reader.pid, db):
                    since.clear()
                    return False
                since.append(time.monotonic())
                return since[-1] - since[0] >= 2.0

            wait_until(held_up, timeout=240, what="`search trials` waiting on the locked s.db")
            assert locker.stdin is not None and locker.stdout is not None
            locker.stdin.write("release\n")
            locker.stdin.flush()
            released = locker.stdout.read().split()
            stdout, stderr = reader.communicate(timeout=120)
            ended = time.time()
        finally:
            if reader.poll() is None:
                reader.kill()
    result = subprocess.CompletedProcess(reader.args, reader.returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert released[:2] == ["released", "at"] and ended > float(released[2]), "it did not wait"
    assert len(result.stdout.strip().splitlines()) == 1 + SEED_TRIALS, result.stdout
    storage = open_storage(url)
    try:
        seed = optuna.load_study(study_name="seed", storage=storage).trials
        assert len(seed) == SEED_TRIALS
    finally:
        storage.engine.dispose()


# ------------------------------------------------------- four --jobs workers on PostgreSQL

JOBS, TRIALS = 4, 8
TINY_SPACE = """
name: tiny-jobs
description: "A tiny dense space: four workers' trials in seconds"
architecture: dense
params:
  units: {type: int, low: 2, high: 8}
  layers: 1
  lookback_hours: {type: categorical, choices: [12, 24]}
  sampling_rate: 6
  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  batch_size: 256
fixed: {epochs: 1, optimizer: adam, loss: mse, patience: 1, horizon_hours: 24, target_steps: 1}
book:
  source: "a test"
  params: {units: 4, lookback_hours: 24, learning_rate: 0.005}
"""


@pytest.mark.slow
def test_four_jobs_on_one_postgresql_study_lose_and_duplicate_nothing(
    postgres_server, mlflow_server_process, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    storage = postgres_server.create_database(f"optuna_jobs_{uuid.uuid4().hex[:8]}")
    name = f"jobs4-{uuid.uuid4().hex[:6]}"
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    run = _cli(
        "run", "--space", "tiny.yaml", "--study", name, "--jobs", str(JOBS),
        "--trials", str(TRIALS), "--epochs", "1", "--max-rows", "9000", "--storage", storage,
        "--tracking-uri", mlflow_server_process.url, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    assert f"{JOBS} workers, trials [2, 2, 2, 2]" in run.stdout

    trials = optuna.load_study(study_name=name, storage=storage).trials
    # --trials counts the book trial (trial 0 of a new study): 8 trials, numbered 0..7.
    assert sorted(t.number for t in trials) == list(range(TRIALS))
    assert trials[0].user_attrs.get("book_config") is True
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}, [
        (t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials
    ]
    assert len({t.user_attrs["search.pid"] for t in trials}) >= 2, "one worker did everything"

    client = MlflowClient(tracking_uri=mlflow_server_process.url)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    parents = client.search_runs([experiment.experiment_id], "tags.`search.role` = 'study'")
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = client.search_runs(
        [experiment.experiment_id], "tags.`search.role` = 'trial'", max_results=1000
    )
    per_trial = Counter(r.data.tags["search.trial_number"] for r in children)
    assert per_trial == Counter({str(n): 1 for n in range(TRIALS)}), per_trial
    run_ids = {r.data.tags["search.trial_number"]: r.info.run_id for r in children}
    assert len(set(run_ids.values())) == TRIALS  # no run shared by two trials
    for trial in trials:
        assert trial.user_attrs["mlflow_run_id"] == run_ids[str(trial.number)], trial.number
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parents[0].info.run_id}


# ------------------------------------------------------- a password in --storage stays secret


@pytest.mark.slow
def test_a_storage_password_reaches_no_record_and_no_terminal(
    postgres_server, tmp_path: Path
) -> None:
    """The test PostgreSQL accepts any password, so a real study can carry one in --storage: it
    shows in nothing printed, no file the study leaves (MLflow's store and artifacts, the spool,
    checkpoints), no MLflow param or tag and no Optuna attribute."""
    import json

    from mlflow import MlflowClient

    secret = f"pw-{uuid.uuid4().hex}"
    plain = postgres_server.create_database(f"optuna_pw_{uuid.uuid4().hex[:8]}")
    storage = plain.replace(f"//{postgres_server.user}@", f"//{postgres_server.user}:{secret}@")
    assert secret in storage
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # the spool and checkpoints of a server URL
    run = _cli(
        "run", "--study", "secret", *TINY, "--storage", storage, "--tracking-uri", tracking,
        cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    listing = _cli("trials", "secret", "--storage", storage, cwd=tmp_path, env=env)
    for result in (run, listing):
        assert result.returncode == 0, result.stdout + result.stderr
        assert secret not in result.stdout + result.stderr
    assert len(listing.stdout.splitlines()) == 2, listing.stdout  # the header and trial 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files)
    leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert leaked == [], leaked

    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("secret")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    parent = next(r for r in runs if r.data.tags.get("search.role") == "study")
    assert parent.data.params["storage"] == storage.replace(secret, "***")
    for found in runs:
        text = json.dumps([found.data.params, found.data.tags], default=str)
        assert secret not in text, text
    study = optuna.load_study(study_name="secret", storage=open_storage(storage))
    attrs = [
        study.user_attrs,
        study._storage.get_study_system_attrs(study._study_id),
        [(t.user_attrs, t.system_attrs) for t in study.trials],
    ]
    assert secret not in json.dumps(attrs, default=str)
    assert study.trials[0].state.name in ("COMPLETE", "PRUNED")
