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


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Result:
    """`python -m search ARGS` in ``cwd`` with a clean MLflow/storage environment."""
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SEARCH_STORAGE")
    }
    full_env.update(env or {})
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "search", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)
