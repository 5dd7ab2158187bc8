"""The spool's sender: sends entries to the tracking server through the real (MLflow) tracker,
and retries a server that does not answer (:func:`drain`)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from search.errors import SearchError, TrackingError
from search.tracking.base import SPOOL_KEY_TAG, Tracker
from search.tracking.redact import redact
from search.tracking.spool.store import TERMINAL_OPS, Entry, Spool, owner_gone

# MLflow error codes that no retry can cure: the operation is recorded as refused and skipped.
PERMANENT_CODES = frozenset(
    (
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_STATE",
        "BAD_REQUEST",
        "MALFORMED_REQUEST",
    )
)
MAX_BACKOFF_S = 30.0


def is_transient(exc: BaseException) -> bool:
    """Whether a failed tracking call may succeed later (a server down, restarting, overloaded,
    a timeout, a busy database) rather than being refused for good."""
    if isinstance(exc, SearchError):  # ours: a file not drawn, an answer we cannot use
        return False
    code = getattr(exc, "error_code", None)
    return not (isinstance(code, str) and code in PERMANENT_CODES)


@dataclass
class SyncReport:
    """What one pass over the spool did."""

    sent: int = 0  # operations acknowledged by the server
    runs_created: int = 0  # runs created from the spool (their trial's server was down)
    refused: list[str] = field(default_factory=list)  # operations the server refused for good
    error: str | None = None  # why sending stopped (the server is unreachable...), or None


class NotReady(Exception):
    """An operation's file is still being written (a figure being drawn): try again later."""


class Sender:
    """Sends spool entries to the tracking server through the real (MLflow) tracker."""

    def __init__(self, spool: Spool, inner: Tracker) -> None:
        self.spool = spool
        self.inner = inner

    def send_all(self, only: Callable[[Entry], bool] | None = None) -> SyncReport:
        report = SyncReport()
        for entry in self.spool.entries():
            if only is not None and not only(entry):
                continue
            with entry.locked() as mine:
                if not mine:
                    continue
                try:
                    self._send(entry, report)
                except Exception as exc:  # noqa: BLE001 - any failure: try again later
                    if not is_transient(exc):
                        raise
                    report.error = redact(first_line(exc))
                    return report
        return report

    def _send(self, entry: Entry, report: SyncReport) -> None:
        ops = entry.ops()
        done = entry.sent()
        for index in range(done, len(ops)):
            op = ops[index]
            try:
                self._apply(entry, op, report)
            except NotReady:
                return  # this entry waits for its file; the others go on
            except Exception as exc:  # noqa: BLE001
                if is_transient(exc):
                    raise
                why = redact(first_line(exc))
                report.refused.append(f"{op['op']} on {entry.ref}: {why}")
                with contextlib.suppress(OSError):
                    with open(entry.folder / "refused.jsonl", "a") as fh:
                        fh.write(json.dumps({"op": op, "error": why}) + "\n")
            entry.mark_sent(index + 1)
            report.sent += 1
        # the same snapshot of the operations: one appended since is not sent yet
        closed = bool(ops) and ops[-1]["op"] in TERMINAL_OPS
        if len(ops) == entry.sent() and (closed or owner_gone(entry)):
            shutil.rmtree(entry.folder, ignore_errors=True)

    def _apply(self, entry: Entry, op: dict[str, Any], report: SyncReport) -> None:
        kind = op["op"]
        if kind == "create_trial":
            run_id = self.inner.find_run(SPOOL_KEY_TAG, entry.key)
            if run_id is None:
                run_id = self.inner.create_trial_run(
                    int(op["number"]),
                    {**op["tags"], SPOOL_KEY_TAG: entry.key},
                    parent_run_id=op["parent"],
                )
                report.runs_created += 1
            entry.meta["run_id"] = run_id
            entry.save_meta()
            return
        run_id = entry.run_id
        if run_id is None:  # pragma: no cover - a create_trial op always comes first
            raise TrackingError(f"spool entry {entry.folder} has no run")
        if kind == "params":
            self.inner.log_params(run_id, op["params"])
        elif kind == "metrics":
            self.inner.log_metrics(run_id, op["metrics"], step=op["step"], timestamp=op["ts"])
        elif kind == "tags":
            self.inner.set_tags(run_id, op["tags"])
        elif kind == "dict":
            self.inner.log_dict(run_id, op["payload"], op["artifact_file"])
        elif kind == "text":
            self.inner.log_text(run_id, op["text"], op["artifact_file"])
        elif kind == "file":
            path = entry.folder / op["path"]
            if not path.exists():
                failed = path.with_name(path.name + ".failed")
                if failed.exists():
                    raise TrackingError(f"{path.name} was not drawn: {failed.read_text()}")
                if not owner_gone(entry):
                    raise NotReady(str(path))
                raise TrackingError(f"{path.name} was not drawn before its worker stopped")
            self.inner.log_file(run_id, path, op.get("artifact_path"))
        elif kind == "end_trial":
            self.inner.end_trial_run(run_id, op["state"], op.get("reason"))
        elif kind in ("terminate", "finish_parent"):
            self.inner.terminate(run_id, op["status"])
        else:
            raise TrackingError(f"unknown spool operation {kind!r}")


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


def drain(sender: Sender, timeout: float) -> SyncReport:
    """Send everything in the spool; on an unreachable server retry (1, 2, 4... s) for at most
    ``timeout`` seconds after the last progress. Returns the totals."""
    total = SyncReport()
    deadline = time.monotonic() + timeout
    delay = 1.0
    while True:
        report = sender.send_all()
        total.sent += report.sent
        total.runs_created += report.runs_created
        total.refused += report.refused
        total.error = report.error
        if report.error is None:
            return total
        if report.sent:
            deadline = time.monotonic() + timeout
        if time.monotonic() + delay > deadline:
            return total
        time.sleep(delay)
        delay = min(MAX_BACKOFF_S, delay * 2)
