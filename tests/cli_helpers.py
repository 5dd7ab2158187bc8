"""Run the `search` CLI in a subprocess, the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


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
