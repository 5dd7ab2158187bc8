"""`search run --jobs N`: N trials at once, as N worker processes on this machine sharing the
study's storage (each a plain `search run` of the same study, as on several machines).

The first worker starts (and creates the study when it is new); the others join once the study
has its MLflow parent run. `--trials` is shared out between the workers. Each worker gets a
bounded share of an accelerator's memory (memory growth for TensorFlow, a fraction for JAX), and
on a GPU the log says whether NVIDIA MPS is running: several processes share a GPU far better
with it (see the README). The product never changes a GPU's settings itself.

A first Ctrl-C / SIGTERM is passed on to every worker (each stops after its current epoch and
records its trial); a second one stops them at once. Worker output is prefixed ``[wN]``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["gpu_present", "mps_running", "run_jobs", "worker_argv"]

_VALUED = {"--jobs", "--trials", "--seed"}
JOIN_WAIT_S = 600.0


def worker_argv(argv: list[str], trials: int, seed: int | None, first: bool) -> list[str]:
    """One worker's `search` arguments: the user's, without --jobs, with its share of --trials
    and its own --seed (only the first worker keeps --fresh)."""
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in _VALUED:
            skip = "=" not in token
            continue
        if token == "--fresh" and not first:
            continue
        out.append(token)
    out += ["--trials", str(trials)]
    if seed is not None:
        out += ["--seed", str(seed)]
    return out


def gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists()


def mps_running() -> bool:
    """Whether an NVIDIA MPS control daemon or server runs on this machine."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip().startswith("nvidia-cuda-mps"):
                return True
        except OSError:
            continue
    return False


def _memory_env(jobs: int) -> dict[str, str]:
    """A bounded share of accelerator memory per worker."""
    return {
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / jobs:.3f}",
    }


def _pump(index: int, proc: subprocess.Popen, lock: threading.Lock) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        with lock:
            sys.stdout.write(f"[w{index}] {line}")
            sys.stdout.flush()


def run_jobs(
    argv: list[str],
    jobs: int,
    trials: int,
    seed: int | None,
    parent_ready: Callable[[], bool],
) -> int:
    """Run ``jobs`` workers; returns the worst exit code. ``parent_ready()`` says whether the
    study exists with its parent run (the other workers may join then)."""
    shares = [trials // jobs + (1 if i < trials % jobs else 0) for i in range(jobs)]
    shares = [s for s in shares if s > 0]
    if gpu_present():
        state = "running" if mps_running() else "not running"
        print(
            f"--jobs {len(shares)}: NVIDIA MPS is {state}"
            + ("" if state == "running" else " (several processes share a GPU better with it)"),
            flush=True,
        )
    print(f"--jobs {len(shares)}: {len(shares)} workers, trials {shares}", flush=True)
    env = {**os.environ, **_memory_env(len(shares)), "SEARCH_SQLITE_WAL": "1"}
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    signals: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum if len(signals) == 1 else signal.SIGKILL)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index, share in enumerate(shares):
            if index == 1:  # the first worker creates a new study; the others join it
                deadline = time.monotonic() + JOIN_WAIT_S
                while not parent_ready() and procs[0].poll() is None and not signals:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                if procs[0].poll() not in (None, 0) or signals:
                    break
            worker_seed = None if seed is None else seed + 7919 * index
            command = [
                sys.executable,
                "-m",
                "search",
                *worker_argv(argv, share, worker_seed, first=index == 0),
            ]
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**env, "SEARCH_WORKER": str(index)},
            )
            procs.append(proc)
            pump = threading.Thread(target=_pump, args=(index, proc, lock), daemon=True)
            pump.start()
            pumps.append(pump)
        codes = [proc.wait() for proc in procs]
        for pump in pumps:
            pump.join(timeout=5)
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
    if signals:
        return 128 + signals[0]
    return max(codes, key=lambda code: (code != 0, code)) if codes else 0
