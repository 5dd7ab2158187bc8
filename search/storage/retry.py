"""How the storage outlives a database restart or a locked SQLite file: bounded retries of
Optuna's RDBStorage calls (``$SEARCH_STORAGE_TIMEOUT``), and the one-line errors when waiting
does not cure it."""

from __future__ import annotations

import os
import random
import time
from typing import Any

from search.errors import StorageError
from search.redact import redact

TIMEOUT_ENV = "SEARCH_STORAGE_TIMEOUT"
DB_RETRY_S = 180.0
"""How long a storage call keeps waiting while its database is unreachable (a restart) or its
SQLite file is locked by another process; ``$SEARCH_STORAGE_TIMEOUT`` seconds overrides it."""


def storage_timeout() -> float:
    """Seconds a storage call waits for a locked SQLite file or an unreachable database server
    before it fails with one line: ``$SEARCH_STORAGE_TIMEOUT``, else :data:`DB_RETRY_S`."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DB_RETRY_S))
    except ValueError:
        return DB_RETRY_S
    return value if value > 0 else DB_RETRY_S


_RETRIED = (
    "create_new_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "get_best_trial",
)
_storage_class: Any = None


def record_gone(exc: BaseException) -> bool:
    """Whether Optuna refused because the study (or trial) is no longer in the storage: it was
    deleted (`search delete --force`) while this worker ran it."""
    return isinstance(exc, KeyError) and "Record does not exist" in str(exc)


def _connection_lost(exc: BaseException) -> bool:
    """Whether an error means the database went away (a restart, a dropped connection, a busy
    SQLite file) rather than a bad request."""
    import optuna
    import sqlalchemy.exc

    if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sqlalchemy.exc.PendingRollbackError, sqlalchemy.exc.DisconnectionError)):
        return True  # a session left over from the dropped connection: rolled back, retry
    if not isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        return False
    text = str(exc).lower()
    return not any(lasting in text for lasting in _LASTING)


_LASTING = (
    "readonly",
    "read-only",
    "no such",
    "disk i/o",
    "malformed",
    "not a database",
    "unable to open",
    "permission denied",
    "authentication",
    "does not exist",
    "disk is full",
    "database or disk is full",
)
"""Operational errors that waiting does not cure: reported at once."""


def _retrying(method: Any) -> Any:
    import functools

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        wait = storage_timeout()
        deadline = time.monotonic() + wait
        delay = 0.25
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                lost = _connection_lost(exc)
                if lost and time.monotonic() + delay <= deadline:
                    time.sleep(delay + random.random() * delay / 2)
                    delay = min(delay * 2, 8.0)
                    continue
                error = storage_error(str(getattr(self, "url", "")), exc, wait if lost else None)
                if error is None:
                    raise  # not the database's state: Optuna's own errors, bugs
                raise error from exc

    return call


def _db_error(exc: BaseException) -> BaseException:
    """The SQLAlchemy error under an Optuna StorageInternalError (which says only "an exception
    is raised during the commit")."""
    import optuna

    if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def locked(exc: BaseException) -> bool:
    return "database is locked" in str(_db_error(exc)).lower()


def locked_message(url: str, wait: float, exc: BaseException) -> str:
    return (
        f"storage {redact(url)!r} is locked by another process: waited {wait:.0f} s for it "
        f"(set {TIMEOUT_ENV}=SECONDS to wait longer); {db_detail(exc)}"
    )


def unusable_message(url: str, exc: BaseException, what: str = "storage") -> str:
    detail = db_detail(exc)
    text = detail.lower()
    if "readonly" in text or "read-only" in text:
        return (
            f"cannot write to storage {redact(url)!r}: it is read-only ({detail}); make the "
            "file and its folder writable, or copy them to a writable folder"
        )
    return f"{what} {redact(url)!r}: {first_line(_db_error(exc))}"


def storage_error(url: str, exc: BaseException, waited: float | None) -> StorageError | None:
    """A one-line error for a database that cannot be used now: read-only, full, locked or away
    past the wait (``waited`` seconds); None for anything else (re-raised as it is)."""
    import sqlalchemy.exc

    error = _db_error(exc)
    if waited is not None:
        if locked(error):
            return StorageError(locked_message(url, waited, error))
        return StorageError(
            f"storage {redact(url)!r} unreachable: waited {waited:.0f} s for it "
            f"(set {TIMEOUT_ENV}=SECONDS to wait longer); {db_detail(error)}"
        )
    if isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        return StorageError(unusable_message(url, error))
    return None


def resilient_rdb_storage() -> Any:
    """Optuna's RDBStorage that outlives a database restart: calls retry with a bounded
    backoff while the connection is lost (``pool_pre_ping`` then reconnects), and a failed
    heartbeat does not stop the heartbeat thread for good (Optuna's does, after which a live
    trial is later failed as stale)."""
    global _storage_class
    if _storage_class is not None:
        return _storage_class
    import optuna

    class ResilientRDBStorage(optuna.storages.RDBStorage):  # type: ignore[misc]
        def record_heartbeat(self, trial_id: int) -> None:
            try:
                super().record_heartbeat(trial_id)
            except Exception:  # the database is away: the next beat tries again
                pass

    for name in _RETRIED:
        setattr(ResilientRDBStorage, name, _retrying(getattr(optuna.storages.RDBStorage, name)))
    _storage_class = ResilientRDBStorage
    return _storage_class


def write_ahead_log(storage: Any) -> None:
    """SQLite's write-ahead log, so the workers of `search run --jobs N` read while one writes
    (the file stays in WAL mode; a read-only file keeps its mode)."""
    try:
        with storage.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    except Exception:
        pass


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def db_detail(exc: BaseException) -> str:
    """The database's own words: the first line of a SQLAlchemy error without its
    ``(sqlite3.OperationalError)`` prefix."""
    line = first_line(_db_error(exc))
    if line.startswith("(") and ") " in line:
        line = line.split(") ", 1)[1].strip() or line
    return line
