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

import contextlib
import json
import os
import queue
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.errors import SearchError, TrackingError
from search.tracking.base import SPOOL_KEY_TAG, SPOOL_PREFIX, Tracker
from search.tracking.redact import redact, redact_value

try:  # POSIX: one process sends an entry at a time
    import fcntl
except ImportError:  # pragma: no cover - Windows: a single writer per spool is assumed
    fcntl = None  # type: ignore[assignment]

__all__ = ["Spool", "SpooledTracker", "SyncReport", "SPOOL_PREFIX", "is_transient"]

TERMINAL_OPS = frozenset(("end_trial", "terminate", "finish_parent"))
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


def _spool_error(action: str, path: Path, exc: OSError) -> TrackingError:
    reason = exc.strerror or type(exc).__name__
    return TrackingError(f"cannot {action} the tracking spool {str(path)!r}: {reason}")


@dataclass
class Entry:
    """One run's pending operations in the spool."""

    folder: Path
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def run_id(self) -> str | None:
        return self.meta.get("run_id")

    @property
    def ref(self) -> str:
        return self.run_id or SPOOL_PREFIX + self.key

    def ops(self) -> list[dict[str, Any]]:
        """The operations written so far; a last line cut short (a full disk, a crash in the
        middle of a write) is not an operation."""
        try:
            data = (self.folder / "ops.jsonl").read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        ops = []
        for line in lines[:-1]:  # the part after the last newline is unfinished
            try:
                ops.append(json.loads(line))
            except ValueError:
                continue
        return ops

    def sent(self) -> int:
        try:
            return int((self.folder / "sent").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def mark_sent(self, count: int) -> None:
        _write_atomic(self.folder / "sent", str(count))

    def save_meta(self) -> None:
        _write_atomic(self.folder / "meta.json", json.dumps(self.meta))

    @contextlib.contextmanager
    def locked(self) -> Iterator[bool]:
        """Hold this entry's lock (True) or learn that another process holds it (False)."""
        if fcntl is None:
            yield True
            return
        try:
            handle = open(self.folder / "lock", "a+")  # noqa: SIM115
        except OSError:
            yield False
            return
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class Spool:
    """A study's spool folder on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def new_entry(self, run_id: str | None, extra: Mapping[str, Any] | None = None) -> Entry:
        from search.workers import worker_attrs

        folder = self.root / uuid.uuid4().hex[:16]
        meta = {
            "key": uuid.uuid4().hex,
            "run_id": run_id,
            "created": time.time(),
            **worker_attrs(),
            **(extra or {}),
        }
        try:
            (folder / "files").mkdir(parents=True)
            entry = Entry(folder, meta)
            entry.save_meta()
        except OSError as exc:
            raise _spool_error("write to", self.root, exc) from None
        return entry

    def entries(self) -> list[Entry]:
        """Every entry of the spool, oldest first."""
        found = []
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _spool_error("read", self.root, exc) from None
        for folder in folders:
            try:
                meta = json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError):
                continue  # being created, or not ours
            found.append(Entry(folder, meta))
        return sorted(found, key=lambda e: e.meta.get("created", 0))

    def find(self, key: str) -> Entry | None:
        return next((e for e in self.entries() if e.key == key), None)

    def backlog(self, live_others: bool = True) -> tuple[int, int]:
        """(entries, operations) not yet sent; without ``live_others``, not counting those of
        other processes still running (a ``--jobs`` sibling's trial its own writer will send)."""
        entries = ops = 0
        for entry in self.entries():
            if not live_others and not _mine(entry) and not _owner_gone(entry):
                continue
            waiting = len(entry.ops()) - entry.sent()
            if waiting > 0:
                entries += 1
                ops += waiting
        return entries, ops


def _mine(entry: Entry) -> bool:
    return (
        entry.meta.get("search.pid") == os.getpid()
        and entry.meta.get("search.host") == socket.gethostname()
    )


def _owner_gone(entry: Entry) -> bool:
    from search.workers import worker_is_gone

    return not _mine(entry) and worker_is_gone(entry.meta)


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
                    report.error = redact(_first_line(exc))
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
                why = redact(_first_line(exc))
                report.refused.append(f"{op['op']} on {entry.ref}: {why}")
                with contextlib.suppress(OSError):
                    with open(entry.folder / "refused.jsonl", "a") as fh:
                        fh.write(json.dumps({"op": op, "error": why}) + "\n")
            entry.mark_sent(index + 1)
            report.sent += 1
        # the same snapshot of the operations: one appended since is not sent yet
        closed = bool(ops) and ops[-1]["op"] in TERMINAL_OPS
        if len(ops) == entry.sent() and (closed or _owner_gone(entry)):
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
                if not _owner_gone(entry):
                    raise NotReady(str(path))
                raise TrackingError(f"{path.name} was not drawn before its worker stopped")
            self.inner.log_file(run_id, path, op.get("artifact_path"))
        elif kind == "end_trial":
            self.inner.end_trial_run(run_id, op["state"], op.get("reason"))
        elif kind in ("terminate", "finish_parent"):
            self.inner.terminate(run_id, op["status"])
        else:
            raise TrackingError(f"unknown spool operation {kind!r}")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


class SpooledTracker(Tracker):
    """A tracker whose logging goes through the spool and a background writer.

    The calls a trial makes (params, metrics, tags, artifacts, closing its run) return after a
    local append; `blocked_seconds` adds up the time the caller spent in them. Calls that need an
    answer (finding the experiment, the parent run, downloads, the model registry) go straight
    to the wrapped tracker.
    """

    def __init__(
        self,
        inner: Tracker,
        spool: Spool,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.inner = inner
        self.spool = spool
        self.tracking_uri = inner.tracking_uri
        self.study_name = inner.study_name
        self.say = say
        self.blocked_seconds = 0.0
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self._sender = Sender(spool, inner)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._down: str | None = None  # why the server was last unreachable
        self._thread: threading.Thread | None = None
        self._renders: queue.Queue[tuple[Any, Path]] = queue.Queue()
        self._renderer: threading.Thread | None = None
        self._files = 0

    @property
    def parent_run_id(self) -> str | None:  # type: ignore[override]
        return self.inner.parent_run_id

    @parent_run_id.setter
    def parent_run_id(self, value: str | None) -> None:
        self.inner.parent_run_id = value

    # -- straight to the server ------------------------------------------------------------------
    def open(self) -> str:
        experiment = self.inner.open()
        self._start_writer()
        return experiment

    def create_parent_run(self, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        return self.inner.create_parent_run(params, tags)

    def attach_parent_run(self, run_id: str) -> None:
        self.inner.attach_parent_run(run_id)

    def run_tags(self, run_id: str) -> dict[str, str]:
        resolved = self.resolve_run(run_id)
        return self.inner.run_tags(resolved) if resolved else {}

    def download(self, run_id: str, artifact_path: str) -> Path:
        return self.inner.download(self._must_resolve(run_id), artifact_path)

    def register_model(self, run_id: str, folder: Path, name: str, description: str) -> str:
        return self.inner.register_model(self._must_resolve(run_id), folder, name, description)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        return self.inner.run_metrics(self._must_resolve(run_id))

    def find_run(self, tag: str, value: str) -> str | None:
        return self.inner.find_run(tag, value)

    def trial_runs(self) -> dict[int, list[str]]:
        return self.inner.trial_runs()

    def resolve_run(self, ref: str) -> str | None:
        if not ref.startswith(SPOOL_PREFIX):
            return ref
        key = ref[len(SPOOL_PREFIX) :]
        entry = self.spool.find(key)
        if entry is not None and entry.run_id:
            return entry.run_id
        return self.inner.find_run(SPOOL_KEY_TAG, key)

    def _must_resolve(self, ref: str) -> str:
        resolved = self.resolve_run(ref)
        if resolved is None:
            raise TrackingError(
                f"run {ref} is still in the tracking spool {str(self.spool.root)!r}: run "
                f"`search sync {self.study_name}` when the tracking server is reachable"
            )
        return resolved

    # -- through the spool -----------------------------------------------------------------------
    def create_trial_run(
        self, number: int, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        started = time.perf_counter()
        try:
            parent = parent_run_id or self.parent_run_id
            if self._down is None:
                try:
                    run_id = self.inner.create_trial_run(number, tags, parent_run_id=parent)
                except Exception as exc:  # noqa: BLE001
                    if not is_transient(exc):
                        raise
                    self._server_down(exc)
                else:
                    with self._lock:
                        self._entries[run_id] = self.spool.new_entry(run_id)
                    return run_id
            tags = {str(k): str(v) for k, v in tags.items()}
            with self._lock:
                entry = self.spool.new_entry(None)
                self._append(
                    entry,
                    {"op": "create_trial", "number": number, "tags": tags, "parent": parent},
                )
                self._entries[entry.ref] = entry
            return entry.ref
        finally:
            self.blocked_seconds += time.perf_counter() - started

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from search.tracking.mlflow import stringify

        self._op(
            run_id, {"op": "params", "params": {str(k): stringify(v) for k, v in params.items()}}
        )

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int = 0,
        timestamp: int | None = None,
    ) -> None:
        values = {str(k): float(v) for k, v in metrics.items() if v is not None}
        if values:
            now = timestamp if timestamp is not None else int(time.time() * 1000)
            self._op(run_id, {"op": "metrics", "metrics": values, "step": int(step), "ts": now})

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from search.tracking.mlflow import stringify

        self._op(run_id, {"op": "tags", "tags": {str(k): stringify(v) for k, v in tags.items()}})

    def log_dict(self, run_id: str, payload: Any, artifact_file: str) -> None:
        payload = json.loads(json.dumps(redact_value(payload), default=str))
        self._op(run_id, {"op": "dict", "payload": payload, "artifact_file": artifact_file})

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._op(run_id, {"op": "text", "text": text, "artifact_file": artifact_file})

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """Queue the figure for the render thread: drawing a PNG takes 0.1-0.3 s, which the
        trial does not wait for. Its operation is in the spool at once; the sender waits for
        the file (a worker killed before it is drawn loses that figure, nothing else)."""

        def write(path: Path) -> None:
            self._start_renderer()
            self._renders.put((figure, path))

        self._file_op(run_id, Path(artifact_file).name, write, str(Path(artifact_file).parent))

    def _start_renderer(self) -> None:
        if self._renderer is None:
            self._renderer = threading.Thread(
                target=self._render, name="search-figure-renderer", daemon=True
            )
            self._renderer.start()

    def _render(self) -> None:
        while True:
            figure, path = self._renders.get()
            try:
                temporary = path.with_name(f".{path.name}.tmp")
                figure.savefig(temporary, format=path.suffix.lstrip(".") or "png")
                os.replace(temporary, path)
            except Exception as exc:  # noqa: BLE001 - the sender skips this figure, says why
                with contextlib.suppress(OSError):
                    path.with_name(path.name + ".failed").write_text(_first_line(exc))
            finally:
                self._renders.task_done()
                self._wake.set()

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        source = Path(path)

        def write(target: Path) -> None:
            try:  # the caller's file may be a temporary one: a link is free, a copy is safe
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)

        self._file_op(run_id, source.name, write, artifact_path)

    def end_trial_run(self, run_id: str, state: str, reason: str | None = None) -> None:
        """Close a trial's run, durably: the spool is on disk (fsync) when this returns."""
        self._op(run_id, {"op": "end_trial", "state": state, "reason": reason}, sync=True)

    def terminate(self, run_id: str, status: str) -> None:
        self._op(run_id, {"op": "terminate", "status": status}, sync=True)

    def finish_parent_run(self, status: str = "FINISHED") -> None:
        if self.parent_run_id:
            self._op(self.parent_run_id, {"op": "finish_parent", "status": status}, sync=True)

    # -- the spool's side ------------------------------------------------------------------------
    def _entry(self, ref: str) -> Entry | None:
        entry = self._entries.get(ref)
        if entry is not None and entry.folder.is_dir():
            return entry
        if ref.startswith(SPOOL_PREFIX):  # another process's run not created yet
            found = self.spool.find(ref[len(SPOOL_PREFIX) :])
            if found is None:
                resolved = self.resolve_run(ref) if self._down is None else None
                if resolved is None:
                    self.say(f"note: run {ref} is in no spool on this machine; not logged")
                    return None
                return self._entry(resolved)
            entry = found
        else:
            entry = self.spool.new_entry(ref)
        self._entries[ref] = entry
        return entry

    def _op(self, ref: str, op: dict[str, Any], sync: bool = False) -> None:
        started = time.perf_counter()
        try:
            with self._lock:
                entry = self._entry(ref)
                if entry is not None:
                    self._append(entry, op, sync=sync)
                    if op["op"] in TERMINAL_OPS:
                        self._entries.pop(ref, None)
            self._wake.set()
        finally:
            self.blocked_seconds += time.perf_counter() - started

    def _file_op(
        self, ref: str, name: str, write: Callable[[Path], None], artifact_path: str | None
    ) -> None:
        started = time.perf_counter()
        try:
            with self._lock:
                entry = self._entry(ref)
                if entry is None:
                    return
                self._files += 1
                relative = Path("files") / str(self._files) / name
                target = entry.folder / relative
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    write(target)
                except OSError as exc:
                    raise _spool_error("write to", self.spool.root, exc) from None
                where = artifact_path if artifact_path not in (None, "", ".") else None
                self._append(entry, {"op": "file", "path": str(relative), "artifact_path": where})
            self._wake.set()
        finally:
            self.blocked_seconds += time.perf_counter() - started

    def _append(self, entry: Entry, op: dict[str, Any], sync: bool = False) -> None:
        line = json.dumps(op, default=str) + "\n"
        try:
            with open(entry.folder / "ops.jsonl", "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise _spool_error("write to", self.spool.root, exc) from None

    # -- the background writer -------------------------------------------------------------------
    def _start_writer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run_writer, name="search-tracking-writer", daemon=True
            )
            self._thread.start()

    def _run_writer(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            if delay:
                self._wake.wait(timeout=delay)
            else:
                self._wake.wait(timeout=5.0)
            self._wake.clear()
            self._idle.clear()
            try:
                report = self._sender.send_all()
            except Exception as exc:  # noqa: BLE001 - a refused operation is recorded, go on
                report = SyncReport(error=redact(_first_line(exc)))
            finally:
                self._idle.set()
            for refused in report.refused:
                self.say(f"note: the tracking server refused {refused}")
            if report.error is None:
                if self._down is not None:
                    self.say("tracking server reachable again: sending the spooled logs")
                self._down = None
                delay = 0.0
            else:
                if self._down is None:
                    self._server_down_reason(report.error)
                delay = min(MAX_BACKOFF_S, max(1.0, delay * 2))

    def _server_down(self, exc: BaseException) -> None:
        self._server_down_reason(redact(_first_line(exc)))

    def _server_down_reason(self, reason: str) -> None:
        self._down = reason
        self.say(
            f"tracking server unreachable ({reason[:160]}); training goes on, logs are kept in "
            f"{self.spool.root} and sent when it is back"
        )

    def flush(self, timeout: float = 30.0) -> SyncReport:
        """Stop the background writer and send what is spooled, retrying with a bounded backoff
        for at most ``timeout`` seconds while the server stays unreachable."""
        if self._renderer is not None:
            self._renders.join()  # every queued figure drawn into the spool
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            # a server that accepts connections but never answers holds the writer in a request
            # (MLflow's timeout); it is a daemon thread and dies with the process
            self._thread.join(timeout=max(1.0, timeout))
            self._thread = None
        return drain(self._sender, timeout)

    @property
    def spooled(self) -> tuple[int, int]:
        """(runs, operations) this process (or a dead one) left unsent in the spool."""
        return self.spool.backlog(live_others=False)


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
