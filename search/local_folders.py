"""What a study keeps on this machine's disk, and where: its tracking spool, its epoch
checkpoints and (for --engine keras-tuner) keras-tuner's state, each in a folder beside a SQLite
or journal storage file, else in the user's cache (:func:`search.workers.local_state_dir`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from search.workers import checkpoint_root, local_state_dir

if TYPE_CHECKING:
    from search.tracking.spool import SpooledTracker

__all__ = ["SpoolState", "remove_study_folders", "spool_root", "sync_at_end", "sync_timeout"]


@dataclass
class SpoolState:
    """Tracking logs left in a study's local spool when `search run` ended (the server was
    unreachable): where they are, how many runs and operations, and why they were not sent."""

    folder: str
    runs: int
    operations: int
    reason: str | None


def spool_root(storage_url: str, study: str) -> Path:
    """The local folder of a study's tracking spool on this machine."""
    return local_state_dir(storage_url, study, "spool")


def remove_study_folders(storage_url: str, study: str, engine: str | None) -> int:
    """Remove the local folders a deleted study owns: its epoch checkpoints, its spool (logs for
    runs of a study that is gone) and, for the keras-tuner engine, the oracle's state and
    Hyperband's checkpoints. Returns how many tracking operations the spool held unsent."""
    from search.tracking.spool import Spool

    _remove_tree(checkpoint_root(storage_url, study))  # epoch checkpoints
    spool = Spool(spool_root(storage_url, study))
    unsent = spool.backlog()[1]
    _remove_tree(spool.root)  # logs for runs of a study that is gone
    if engine == "keras-tuner":  # the oracle's state and Hyperband's checkpoints
        from search.engines.keras_tuner import tuner_dir

        _remove_tree(tuner_dir(storage_url, study))
    return unsent


def _remove_tree(folder: Path) -> None:
    """Remove a study's local folder, and the folder holding it when that is left empty
    (``studies.db.checkpoints``)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass  # other studies' folders, or none


def sync_timeout() -> float:
    """How long `search run` and `search sync` keep retrying an unreachable tracking server
    before leaving the logs in the spool (``$SEARCH_SYNC_TIMEOUT`` seconds, default 30)."""
    try:
        return max(0.0, float(os.environ.get("SEARCH_SYNC_TIMEOUT", "30")))
    except ValueError:
        return 30.0


def sync_at_end(tracker: SpooledTracker, short: bool) -> SpoolState | None:
    """`search sync` at the end of `search run`: send what is spooled (bounded); what the
    server could not take stays in the spool, durable, for `search sync NAME`."""
    report = tracker.flush(timeout=min(5.0, sync_timeout()) if short else sync_timeout())
    runs, operations = tracker.spooled
    if operations == 0:
        return None
    return SpoolState(str(tracker.spool.root), runs, operations, report.error)
