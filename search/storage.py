"""One resolver for Optuna storage URLs: SQLite, PostgreSQL (or any SQLAlchemy URL) and journal files.

`resolve_storage_url` and `check_storage` are cheap and import nothing heavy, so the CLI can reject a
bad URL before Keras is imported. `open_storage` builds the Optuna storage object.

Accepted forms:
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
- ``postgresql://user:password@host:port/dbname`` (also ``postgresql+psycopg2://``), ``mysql://...``
- ``journal:///absolute/path.log`` or ``journal:relative/path.log``: Optuna's append-only journal file,
  good on a shared file system where no database server is available.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from search.errors import StorageError
from search.tracking.redact import redact

if TYPE_CHECKING:
    import optuna

STORAGE_ENV = "SEARCH_STORAGE"
DEFAULT_STORAGE = "sqlite:///search-studies.db"
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
# Trials whose worker stopped sending heartbeats for this long are marked FAIL (crash recovery).
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
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


def check_storage(url: str, must_exist: bool = False) -> None:
    """Fail fast, with one line, if the storage cannot be used: a missing folder, a database server
    that does not answer or refuses the credentials; with ``must_exist``, a missing file too
    (reading commands never create an empty database)."""
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
        return
    if scheme in ("postgresql", "postgres"):
        _check_postgres(url)


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

        return optuna.storages.JournalStorage(JournalFileBackend(str(_journal_path(url))))
    import sqlalchemy.exc

    engine_kwargs = {"pool_pre_ping": True} if scheme != "sqlite" else {}
    for attempt in range(_SCHEMA_RETRIES):
        try:
            # Heartbeats are "experimental" in Optuna 5; crash recovery relies on them.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # Workers opening a fresh database at once race to create Optuna's schema
            # (optuna/optuna#1092); the losers retry and find the tables made.
            if attempt == _SCHEMA_RETRIES - 1:
                raise StorageError(
                    f"cannot open storage {redact(url)!r}: {_first_line(exc)}"
                ) from None
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.2)
        except Exception as exc:  # SQLAlchemy raises many types; the user needs one line
            raise StorageError(f"cannot open storage {redact(url)!r}: {_first_line(exc)}") from None
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
