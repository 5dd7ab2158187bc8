"""Which worker runs a trial, whether it is provably gone, and where a trial's local state lives.

Every trial records its worker (host name, process id and the process's start time). A later
`search run` on the same host recognises a RUNNING trial whose process no longer exists (or whose
pid now belongs to a younger process) at once, instead of waiting for Optuna's heartbeat grace;
trials of other hosts wait for the heartbeat (SQLite, PostgreSQL). Optuna's journal-file storage
has no heartbeats: there, a dead worker's trial is recognised when any worker on its own host
starts again, and `search run --study NAME` on that host is the documented way to recover it.

Epoch checkpoints live on the machine that trains (:func:`checkpoint_root`): beside a SQLite or
journal storage file (``studies.db`` -> ``studies.db.checkpoints/STUDY/trial-N``), or under
``~/.cache/search/checkpoints/<storage hash>/STUDY`` for a database server.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["checkpoint_root", "local_state_dir", "worker_attrs", "worker_is_gone"]


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after its closing parenthesis are fixed
    return stat.rsplit(")", 1)[1].split()[19]


def worker_attrs() -> dict[str, Any]:
    """This worker's identity, for a trial's attributes."""
    pid = os.getpid()
    attrs: dict[str, Any] = {"search.host": socket.gethostname(), "search.pid": pid}
    started = _process_start(pid)
    if started is not None:
        attrs["search.pid_started"] = started
    return attrs


def worker_is_gone(attrs: Mapping[str, Any]) -> bool:
    """Whether the worker that ran a trial is provably dead: same host, and its process no
    longer exists (or the pid was reused by another process). False when unknown."""
    if attrs.get("search.host") != socket.gethostname() or "search.pid" not in attrs:
        return False
    pid = int(attrs["search.pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    started = attrs.get("search.pid_started")
    return started is not None and _process_start(pid) not in (None, str(started))


def local_state_dir(storage_url: str, study: str, kind: str) -> Path:
    """A study's local folder of ``kind`` (``checkpoints``, ``keras-tuner``): beside a SQLite or
    journal storage file (``studies.db.<kind>/STUDY``), else under
    ``~/.cache/search/<kind>/<hash of the URL>/STUDY`` for a database server."""
    if storage_url.startswith(("sqlite:///", "journal:///")):
        path = Path(storage_url.split(":///", 1)[1])
        if not path.is_absolute():
            path = Path.cwd() / path
        return path.parent / f"{path.name}.{kind}" / study
    digest = hashlib.sha256(storage_url.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "search" / kind / digest / study


def checkpoint_root(storage_url: str, study: str) -> Path:
    """The local folder of a study's epoch checkpoints (one ``trial-N`` folder per trial)."""
    return local_state_dir(storage_url, study, "checkpoints")


def past(deadline: float | None) -> bool:
    """Whether a ``time.monotonic()`` deadline (a study's ``--timeout`` budget) has passed;
    never, without one."""
    return deadline is not None and time.monotonic() >= deadline
