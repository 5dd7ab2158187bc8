"""The spool's store on disk: a folder of entries, one per run being written, each with its
pending operations (the layout is in :mod:`search.tracking.spool`)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.errors import TrackingError
from search.tracking.base import SPOOL_PREFIX

try:  # POSIX: one process sends an entry at a time
    import fcntl
except ImportError:  # pragma: no cover - Windows: a single writer per spool is assumed
    fcntl = None  # type: ignore[assignment]


TERMINAL_OPS = frozenset(("end_trial", "terminate", "finish_parent"))


def spool_error(action: str, path: Path, exc: OSError) -> TrackingError:
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
            raise spool_error("write to", self.root, exc) from None
        return entry

    def entries(self) -> list[Entry]:
        """Every entry of the spool, oldest first."""
        found = []
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise spool_error("read", self.root, exc) from None
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
            if not live_others and not mine(entry) and not owner_gone(entry):
                continue
            waiting = len(entry.ops()) - entry.sent()
            if waiting > 0:
                entries += 1
                ops += waiting
        return entries, ops


def mine(entry: Entry) -> bool:
    return (
        entry.meta.get("search.pid") == os.getpid()
        and entry.meta.get("search.host") == socket.gethostname()
    )


def owner_gone(entry: Entry) -> bool:
    from search.workers import worker_is_gone

    return not mine(entry) and worker_is_gone(entry.meta)
