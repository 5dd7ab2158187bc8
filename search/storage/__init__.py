"""One resolver for Optuna storage URLs: SQLite, PostgreSQL (or any SQLAlchemy URL) and journal files.

`resolve_storage_url` and `check_storage` are cheap and import nothing heavy, so the CLI can reject a
bad URL before Keras is imported. `open_storage` builds the Optuna storage object.

Accepted forms:
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
- ``postgresql://user:password@host:port/dbname`` (also ``postgresql+psycopg2://``), ``mysql://...``
- ``journal:///absolute/path.log`` or ``journal:relative/path.log``: Optuna's append-only journal file,
  good on a shared file system where no database server is available.

Retrying through a database restart or a locked file, and its errors: :mod:`search.storage.retry`.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from search.errors import StorageError
from search.redact import redact
from search.storage.retry import (
    DB_RETRY_S,
    TIMEOUT_ENV,
    first_line,
    locked,
    locked_message,
    record_gone,
    resilient_rdb_storage,
    storage_timeout,
    unusable_message,
    write_ahead_log,
)

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DB_RETRY_S",
    "DEFAULT_STORAGE",
    "STORAGE_ENV",
    "TIMEOUT_ENV",
    "check_storage",
    "foreign_sqlite",
    "open_storage",
    "record_gone",
    "resolve_storage_url",
    "sqlite_tables",
    "storage_timeout",
]

STORAGE_ENV = "SEARCH_STORAGE"
DEFAULT_STORAGE = "sqlite:///search-studies.db"
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
# Trials whose worker stopped sending heartbeats for this long are marked FAIL (crash recovery).
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
SQLITE_BUSY_TIMEOUT_S = 60
_SCHEMA_RETRIES = 8


def resolve_storage_url(url: str | None) -> str:
    """The storage URL to use: the flag, else ``$SEARCH_STORAGE``, else the embedded SQLite default.

    Relative SQLite and journal paths are made absolute, so a study stays the same study whatever
    directory later commands run from.
    """
    url = url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    scheme = _scheme(url)
    if scheme == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path or path == ":memory:":
            raise StorageError(
                f"storage {url!r}: an in-memory SQLite database cannot hold a study across runs; "
                "give a file, e.g. sqlite:///search-studies.db"
            )
        return "sqlite:///" + str(Path(path).expanduser().resolve())
    if scheme == "journal":
        return "journal:///" + str(_journal_path(url).resolve()).lstrip("/")
    return url


def _scheme(url: str) -> str:
    if ":" not in url:
        raise StorageError(
            f"storage {redact(url)!r} is not a URL; expected sqlite:///FILE.db, postgresql://USER@HOST/DB "
            "or journal:///FILE.log"
        )
    scheme = url.split(":", 1)[0].lower()
    base = scheme.split("+", 1)[0]
    if base not in (*_SQL_SCHEMES, "journal"):
        raise StorageError(
            f"storage {redact(url)!r}: unknown scheme {scheme!r}; expected sqlite, postgresql, mysql or journal"
        )
    return base


def _journal_path(url: str) -> Path:
    rest = url.split(":", 1)[1]
    if rest.startswith("///"):
        rest = "/" + rest.lstrip("/")
    elif rest.startswith("//"):
        raise StorageError(
            f"storage {url!r}: write journal:///ABSOLUTE/PATH.log or journal:RELATIVE/PATH.log"
        )
    if not rest:
        raise StorageError(f"storage {url!r}: the journal file path is empty")
    return Path(rest).expanduser()


def check_storage(url: str, must_exist: bool = False, writable: bool | None = None) -> None:
    """Fail fast, with one line, if the storage cannot be used: a missing folder, a database server
    that does not answer or refuses the credentials; with ``must_exist``, a missing file too
    (reading commands never create an empty database). With ``writable`` (by default: when the
    storage need not exist, i.e. for the commands that may create it and so write to it), a
    SQLite or journal file, or its folder, that this process may not write is refused too: found
    before anything starts rather than when the first trial is stored."""
    if writable is None:
        writable = not must_exist
    scheme = _scheme(url)
    if scheme in ("sqlite", "journal"):
        path = Path(url.split(":///", 1)[1]) if scheme == "sqlite" else _journal_path(url)
        if not path.parent.is_dir():
            raise StorageError(f"storage {url!r}: folder {str(path.parent)!r} does not exist")
        if must_exist and not path.exists():
            raise StorageError(
                f"storage {url!r} does not exist yet: no study has been run with it "
                "(pass the --storage that `search run` used)"
            )
        if path.is_dir():
            raise StorageError(f"storage {url!r}: {str(path)!r} is a folder, not a file")
        if scheme == "sqlite":
            _check_sqlite_file(url, path)
        else:
            _check_journal_file(url, path)
        if writable:
            _check_writable(url, path, scheme)
        return
    if scheme in ("postgresql", "postgres"):
        _check_postgres(url)


SQLITE_HEADER = b"SQLite format 3\x00"
# Optuna's tables; `studies` is created first, so a schema another worker is creating right now
# already has it.
_OPTUNA_TABLES = frozenset(
    (
        "studies",
        "study_directions",
        "study_user_attributes",
        "study_system_attributes",
        "trials",
        "trial_params",
        "trial_values",
        "trial_intermediate_values",
        "trial_heartbeats",
        "trial_user_attributes",
        "trial_system_attributes",
        "version_info",
    )
)


def foreign_sqlite(path: Path, expected: frozenset[str]) -> tuple[str, set[str]] | None:
    """What an existing file is instead of a SQLite database with the ``expected`` tables (or no
    tables yet): ("not a SQLite database", no tables) or ("another program's SQLite database
    (tables ...)", its tables). None when it will do: missing, empty, or ours."""
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_HEADER))
    if not head:
        return None  # an empty file: SQLite treats it as an empty database
    if head != SQLITE_HEADER:
        return "not a SQLite database", set()
    tables = sqlite_tables(path)
    if not tables or tables & expected:
        return None
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    return f"another program's SQLite database (tables {shown})", tables


def sqlite_tables(path: Path, timeout: float = 5.0) -> set[str] | None:
    """The table names of an existing SQLite file, read without writing to it; ``None`` when
    they cannot be read now (locked, or a file that is not SQLite: see :data:`SQLITE_HEADER`)."""
    import sqlite3
    from urllib.parse import quote

    timeout = min(timeout, storage_timeout())
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return {str(name) for (name,) in rows}


def _check_sqlite_file(url: str, path: Path) -> None:
    """An existing file must be a SQLite database holding Optuna's tables (or none yet): never
    another program's database (the MLflow store given as --storage), which Optuna would
    otherwise alter by adding its own tables."""
    problem = foreign_sqlite(path, _OPTUNA_TABLES)
    if problem is None:
        return
    what, tables = problem
    hint = " (it looks like an MLflow tracking store)" if "experiments" in tables else ""
    raise StorageError(
        f"storage {redact(url)!r}: {str(path)!r} is {what}{hint}"
        + (
            ", not an Optuna study storage; give the file `search run` used as --storage"
            if tables
            else ""
        )
    )


def _check_writable(url: str, path: Path, scheme: str) -> None:
    """The file (when it exists) and its folder must be writable by this process: SQLite writes
    its rollback journal (or write-ahead log) beside the database file, and Optuna's journal
    storage its lock file beside the journal. Read-only commands skip this check."""
    shown = redact(url)
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(
            f"storage {shown!r}: {str(path)!r} is read-only; this command records trials in it "
            "(make the file and its folder writable, or copy them to a writable folder); "
            "`search trials`, `search best` and `search export` read it as it is"
        )
    folder = path.parent
    if os.access(folder, os.W_OK | os.X_OK):
        return
    if scheme == "sqlite" and all(
        os.access(f"{path}{suffix}", os.W_OK) for suffix in ("-wal", "-shm")
    ):
        return  # a write-ahead-log database whose log files exist and are writable
    if not path.exists():
        raise StorageError(
            f"storage {shown!r}: folder {str(folder)!r} is read-only; the file cannot be "
            "created there (give a file in a writable folder)"
        )
    if scheme == "sqlite":
        why = "SQLite writes its journal beside the database file"
    else:
        why = "Optuna writes its lock file beside the journal file"
    raise StorageError(
        f"storage {shown!r}: folder {str(folder)!r} is read-only; {why} (make the folder "
        "writable, or copy the file to a writable folder); `search trials`, `search best` and "
        "`search export` read it as it is"
    )


def _check_journal_file(url: str, path: Path) -> None:
    """An existing, non-empty journal file must start with an Optuna journal record."""
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    line, newline, _ = head.partition(b"\n")
    if not head or not newline:
        return  # empty, or a first record still being written by another worker
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise StorageError(
            f"storage {redact(url)!r}: {str(path)!r} is not an Optuna journal file (its first "
            "line is not a journal record)"
        )


def _check_postgres(url: str) -> None:
    import psycopg2

    parts = urlsplit(url)
    if not parts.path.strip("/"):
        raise StorageError(f"storage {redact(url)!r}: no database name after the host")
    try:
        conn = psycopg2.connect(
            dbname=unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            connect_timeout=5,
        )
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot reach PostgreSQL storage {redact(url)!r}: {first}") from None
    conn.close()


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage for a resolved URL, with heartbeats where the backend supports them so a
    crashed worker's RUNNING trials are failed and the study can resume."""
    import optuna

    scheme = _scheme(url)
    if scheme == "journal":
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(_journal_path(url))))
        except Exception as exc:  # a damaged or foreign file: replaying it fails in many ways
            raise StorageError(
                f"cannot open storage {redact(url)!r} as an Optuna journal: "
                f"{type(exc).__name__}: {first_line(exc)}"
            ) from None
    import sqlalchemy.exc

    wait = storage_timeout()
    engine_kwargs: dict[str, Any] = (
        {"pool_pre_ping": True}
        if scheme != "sqlite"
        # wait out another writer (each statement; storage calls retry up to `wait` in all)
        else {"connect_args": {"timeout": min(float(SQLITE_BUSY_TIMEOUT_S), wait)}}
    )
    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        attempt += 1
        try:
            # Heartbeats are "experimental" in Optuna 5; crash recovery relies on them.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = resilient_rdb_storage()(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                )
            if scheme == "sqlite" and os.environ.get("SEARCH_SQLITE_WAL") == "1":
                write_ahead_log(storage)
            return storage
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # Workers opening a fresh database at once race to create Optuna's schema
            # (optuna/optuna#1092); the losers retry and find the tables made.
            if attempt >= _SCHEMA_RETRIES:
                raise StorageError(
                    f"cannot open storage {redact(url)!r}: {first_line(exc)}"
                ) from None
            time.sleep(0.2 * attempt + random.random() * 0.2)
        except sqlalchemy.exc.OperationalError as exc:
            if scheme == "sqlite" and locked(exc):
                if time.monotonic() + 0.5 < deadline:
                    time.sleep(0.25 + random.random() * 0.25)  # busy at once: wait and retry
                    continue
                raise StorageError(locked_message(url, wait, exc)) from None
            raise StorageError(unusable_message(url, exc, "cannot open storage")) from None
        except Exception as exc:  # SQLAlchemy raises many types; the user needs one line
            raise StorageError(f"cannot open storage {redact(url)!r}: {first_line(exc)}") from None
