"""Run the `search` CLI in a subprocess, the way a user does."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@functools.cache
def _migrated_template() -> Path:
    """An empty MLflow SQLite store that MLflow created and migrated, once per process."""
    import atexit
    import shutil
    import tempfile

    from mlflow import MlflowClient

    folder = tempfile.mkdtemp(prefix="search-test-mlflow-")
    atexit.register(shutil.rmtree, folder, True)
    template = Path(folder) / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
    return template


def migrated_store(path: Path) -> str:
    """``sqlite:///PATH``, an MLflow SQLite store: a copy of one this process had MLflow create
    and migrate once, unless ``path`` exists already. A new store costs MLflow about 1.3 CPU-s
    of schema migrations (2 on a loaded machine), a copy 0.04: the tests of what a study does
    start from the copy, those of a first run on a new store (tests/test_e2e.py,
    tests/test_distributed.py) leave MLflow to make it."""
    import shutil

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_template(), path)
    return f"sqlite:///{path}"


def quick_request(tmp_path: Path, study: str, **kw):
    """A small in-process study request on the ``quick`` space (9,000 rows, 2 trials of 2
    epochs, seed 5, SQLite storage and tracking in ``tmp_path``, the tracking store a
    :func:`migrated_store`); ``kw`` overrides any field."""
    from search.study import StudyRequest

    settings = {
        "study": study,
        "storage": f"sqlite:///{tmp_path / 'o.db'}",
        "tracking_uri": kw.get("tracking_uri") or migrated_store(tmp_path / "mlflow.db"),
        "space": "quick",
        "max_rows": 9000,
        "trials": 2,
        "epochs": 2,
        "seed": 5,
    }
    return StudyRequest(**{**settings, **kw})


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def search_command(*args: str) -> list[str]:
    """The `search` command line as a user runs it (``python -m search ARGS``), the one way tests
    and benchmarks start it."""
    return [sys.executable, "-m", "search", *args]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without a user's MLflow/storage settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "SEARCH_STORAGE", "MLFLOW_EXPERIMENT_NAME")
    }
    env.update(extra or {})
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Result:
    """`python -m search ARGS` in ``cwd`` with a clean MLflow/storage environment."""
    started = time.perf_counter()
    proc = subprocess.run(
        search_command(*args),
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)


def run_cli_here(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """`search ARGS` through the CLI's own entry point (``search.cli.main``) in this process,
    with ``cwd`` and a clean environment as :func:`run_cli` gives them: no interpreter start-up
    or TensorFlow import per call. For commands whose process behaviour (signals, native stderr,
    the exit itself) is not what the test checks; its stdout and stderr are the CLI's own
    writes (native libraries' lines are not in them)."""
    import contextlib
    import io

    import search._quiet as quiet
    from search.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    redirect = quiet.quiet_native_stderr
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    try:
        quiet.quiet_native_stderr = lambda path: path  # type: ignore[assignment]  # keep fd 2
        os.environ.clear()
        os.environ.update(cli_env(env))
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        quiet.quiet_native_stderr = redirect  # type: ignore[assignment]
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Result(code, out.getvalue(), err.getvalue(), time.perf_counter() - started)


class Lines:
    """A running process's stdout read line by line on a thread, so that a test waits for a line
    with a deadline (a worker that falls silent fails the test instead of hanging it)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        import queue
        import threading

        assert proc.stdout is not None
        self.proc = proc
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self._queue.put(line)
            self._queue.put(None)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()
        self._ended = False
        self._errors: list[str] = []
        self._err_thread: threading.Thread | None = None
        if proc.stderr is not None:  # drained too, so a chatty stderr never blocks the process
            stderr = proc.stderr
            self._err_thread = threading.Thread(
                target=lambda: self._errors.extend(stderr), daemon=True
            )
            self._err_thread.start()

    def stderr(self) -> str:
        """What the process wrote to its stderr pipe (complete once :meth:`rest` returned)."""
        return "".join(self._errors)

    def wait_for(self, text: str, timeout: float) -> str:
        """The first line from now on holding ``text``; AssertionError (with what the process
        printed) when it ends or ``timeout`` seconds pass first."""
        import queue

        deadline = time.monotonic() + timeout
        while not self._ended:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._ended = True
                break
            self.seen.append(line)
            if text in line:
                return line
        why = "ended" if self._ended else f"printed nothing like it for {timeout:.0f} s"
        raise AssertionError(
            f"waiting for {text!r}: the process {why}:\n" + "".join(self.seen)[-4000:]
        )

    def rest(self, timeout: float) -> str:
        """Everything the process prints until it exits (within ``timeout`` seconds, else
        TimeoutExpired), including what was read so far."""
        self.proc.wait(timeout=timeout)
        self._thread.join(timeout=30)
        if self._err_thread is not None:
            self._err_thread.join(timeout=30)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.seen.append(line)
        return "".join(self.seen)


def wait_until(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition()`` until it returns something true (returned); AssertionError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
