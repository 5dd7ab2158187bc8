"""The tracking spool: every trial's logging is durable on local disk first, and a background
writer sends it to the tracking server, so training never waits on the server and an outage
loses nothing.

A spool is a folder per study and machine (``studies.db.spool/STUDY``, or
``~/.cache/search/spool/<storage hash>/STUDY`` for a database server), with one sub-folder per
run being written::

    <entry>/meta.json    the run (its MLflow id, or the spool key of a run not created yet),
                         the writing process (host, pid)
    <entry>/ops.jsonl    the run's logging operations, one JSON object per line, appended
    <entry>/files/N/...  the files those operations upload (models, figures)
    <entry>/sent         how many operations the tracking server has acknowledged
    <entry>/lock         held (``flock``) by the one process sending this entry

Replaying an operation twice never duplicates anything: metrics carry their original
timestamps (MLflow keeps one row per key, step, timestamp and value), params and tags are set to
the same values, artifacts overwrite themselves, and a run created from the spool is tagged
``search.spool_key`` and found by that tag before another is created. An entry is removed once
its run is closed and every operation has been sent.

`SpooledTracker` wraps the MLflow tracker: the calls a trial makes go to the spool (a local
append: no network), a trial's run is created on the server at once when it answers (so its
Optuna attribute holds the real run id) and in the spool when it does not (the attribute then
holds ``spool:<key>`` and `resolve_run` finds the run by its tag once synced). `flush` waits,
bounded, for the spool to drain; `search sync NAME` does the same later, from any process.
"""

from __future__ import annotations

from search.tracking.base import SPOOL_KEY_TAG, SPOOL_PREFIX
from search.tracking.spool.sender import Sender, SyncReport, drain, is_transient
from search.tracking.spool.store import Entry, Spool
from search.tracking.spool.tracker import SpooledTracker

__all__ = [
    "SPOOL_KEY_TAG",
    "SPOOL_PREFIX",
    "Entry",
    "Sender",
    "Spool",
    "SpooledTracker",
    "SyncReport",
    "drain",
    "is_transient",
]
