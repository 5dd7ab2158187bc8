"""What a study keeps on this machine's disk, and where: its tracking spool, its epoch
checkpoints and (for --engine keras-tuner) keras-tuner's state, each in a folder beside a SQLite
or journal storage file, else in the user's cache (:func:`search.workers.local_state_dir`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from search.workers import checkpoint_root, local_state_dir

__all__ = ["remove_study_folders", "spool_root"]


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
