"""The spool's tracker: `SpooledTracker`, whose logging goes to the spool first and a background
writer sends it (see :mod:`search.tracking.spool`)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from search.errors import TrackingError
from search.tracking.base import SPOOL_KEY_TAG, SPOOL_PREFIX, Tracker
from search.tracking.redact import redact, redact_value
from search.tracking.spool.sender import (
    MAX_BACKOFF_S,
    Sender,
    SyncReport,
    drain,
    first_line,
    is_transient,
)
from search.tracking.spool.store import TERMINAL_OPS, Entry, Spool, spool_error


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
                    path.with_name(path.name + ".failed").write_text(first_line(exc))
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
                    raise spool_error("write to", self.spool.root, exc) from None
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
            raise spool_error("write to", self.spool.root, exc) from None

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
                report = SyncReport(error=redact(first_line(exc)))
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
        self._server_down_reason(redact(first_line(exc)))

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
