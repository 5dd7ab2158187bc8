"""Tracking: the :class:`Tracker` interface, its MLflow implementation, and the redaction rule.

`resolve_tracking_uri`, `check_tracking_uri` and `ui_command` import nothing heavy, so the CLI
answers in about a second when a tracking server is unreachable. Only
:mod:`search.tracking.mlflow` imports mlflow.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from search.errors import TrackingError
from search.tracking.base import Tracker
from search.tracking.redact import redact

__all__ = [
    "Tracker",
    "check_tracking_uri",
    "open_tracker",
    "redact",
    "resolve_tracking_uri",
    "runs_link",
    "ui_command",
]

TRACKING_ENV = "MLFLOW_TRACKING_URI"


# URL schemes a tracking URI may be written in; "scheme:" without "//" is a mistyped URL of one
# of these (http:/host), not a folder to create.
_URL_SCHEMES = ("http", "https", "sqlite", "postgresql", "postgres", "mysql", "mssql")
_SCHEME_PREFIX = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+):(?!//)")
# MLflow's own tables (`experiments` is among the first it creates).
_MLFLOW_TABLES = frozenset(("experiments", "runs", "metrics", "params", "tags", "latest_metrics"))


def resolve_tracking_uri(uri: str | None) -> str:
    """The flag, else ``$MLFLOW_TRACKING_URI``, else MLflow's local default ``sqlite:///mlflow.db``
    in the working directory (made absolute so later commands find it from anywhere)."""
    uri = uri or os.environ.get(TRACKING_ENV) or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:"):
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not path.strip() or path == ":memory:":
            raise TrackingError(
                f"tracking URI {redact(uri)!r}: give a database file, e.g. sqlite:///mlflow.db "
                "(an in-memory or unnamed SQLite store keeps nothing)"
            )
        if uri.startswith("sqlite:////"):
            return uri
        return "sqlite:///" + str(Path(path).expanduser().resolve())
    prefix = _SCHEME_PREFIX.match(uri)
    if prefix and prefix["scheme"].lower().split("+", 1)[0] in _URL_SCHEMES:
        scheme = prefix["scheme"]
        raise TrackingError(
            f"tracking URI {redact(uri)!r} is not a valid URL: write {scheme}://..., e.g. "
            "http://HOST:PORT of an MLflow server or sqlite:///FILE.db"
        )
    if "://" not in uri and not uri.startswith(("databricks", "file:")):
        # A bare path: MLflow's (deprecated) file store. Keep it working, absolute.
        return str(Path(uri).expanduser().resolve())
    return uri


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """One-line `TrackingError` if an HTTP tracking server does not answer its health check like
    MLflow does, or a local store's folder does not exist, or its file is not an MLflow store."""
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout)
        return
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.parent.is_dir():
            raise TrackingError(
                f"tracking URI {redact(uri)!r}: folder {str(path.parent)!r} does not exist"
            )
        _check_sqlite_store(uri, path)
        return
    scheme = uri.split("://", 1)[0] if "://" in uri else "file"
    if scheme not in ("file", "postgresql", "mysql", "mssql", "databricks", "sqlite"):
        raise TrackingError(
            f"tracking URI {redact(uri)!r}: unknown scheme {scheme!r}; expected http(s)://HOST:PORT, "
            "sqlite:///FILE.db or a folder"
        )


def _check_server(uri: str, timeout: float) -> None:
    """MLflow's tracking server answers ``GET /health`` with 200 and ``OK``; then one read of its
    REST API with the credentials MLflow will send proves they are accepted (``/health`` is open
    even on a server behind ``--app-name basic-auth``)."""
    shown = redact(uri)
    try:
        parts = urllib.parse.urlsplit(uri)
        _ = parts.port  # ValueError for a port that is not a number in 0-65535
        netloc = parts.netloc.rpartition("@")[2]  # urllib cannot take user:password@ itself
        base = parts.path.rstrip("/")
        health = urllib.parse.urlunsplit((parts.scheme, netloc, base + "/health", "", ""))
        authorization, user, checkable = _authorization(parts)
        request = urllib.request.Request(health)
        if authorization is not None:
            request.add_header("Authorization", authorization)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
            body = response.read(256)
    except (ValueError, http.client.InvalidURL) as exc:  # a bad port, an unclosed [IPv6 address
        raise TrackingError(f"tracking URI {shown!r} is not a valid URL: {exc}") from None
    except urllib.error.HTTPError as exc:
        if exc.code == 401:  # a proxy that guards every path
            raise _refused(shown, user, parts, sent=authorization is not None) from None
        raise TrackingError(
            f"MLflow tracking server {shown} answered {exc.code} on /health; is it an MLflow "
            "server (`mlflow server`)?"
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow tracking server {shown} is unreachable: {reason}") from None
    except http.client.HTTPException as exc:  # something that does not speak HTTP
        reason = str(exc).strip() or type(exc).__name__
        raise TrackingError(
            f"{shown} is not an MLflow tracking server: it does not answer HTTP ({reason})"
        ) from None
    if status != 200:
        raise TrackingError(f"MLflow tracking server {shown} answered {status} on /health")
    if body.strip() != b"OK":
        answer = body[:40].decode("utf-8", errors="replace")
        raise TrackingError(
            f"{shown} is not an MLflow tracking server: it answered /health with {answer!r}, "
            "not MLflow's 'OK'; give the address of `mlflow server`"
        )
    if checkable:
        api = urllib.parse.urlunsplit(
            (parts.scheme, netloc, base + _AUTH_PROBE, "max_results=1", "")
        )
        _check_credentials(api, authorization, shown, user, parts, timeout)


# A read every MLflow server answers to any authenticated user (the results are filtered by
# permission): 401 means no or wrong credentials, whatever the user may see.
_AUTH_PROBE = "/api/2.0/mlflow/experiments/search"
AUTH_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _authorization(parts: urllib.parse.SplitResult) -> tuple[str | None, str | None, bool]:
    """The ``Authorization`` header MLflow's client sends to this server (None: none), the user
    name in it, and whether this check can tell if the server accepts it. The header comes from
    ``user:password@`` in the URI, else ``$MLFLOW_TRACKING_USERNAME`` and
    ``$MLFLOW_TRACKING_PASSWORD`` (or ``~/.mlflow/credentials``), else a bearer
    ``$MLFLOW_TRACKING_TOKEN``. A plug-in that signs requests (``$MLFLOW_TRACKING_AUTH``, AWS
    SigV4) is left to MLflow itself."""
    if parts.username is not None:
        login = urllib.parse.unquote(parts.username)
        return _basic(login, urllib.parse.unquote(parts.password or "")), login, True
    if os.environ.get("MLFLOW_TRACKING_AUTH") or os.environ.get(
        "MLFLOW_TRACKING_AWS_SIGV4", ""
    ).lower() in ("true", "1"):
        return None, None, False
    user, secret = (os.environ.get(name) or None for name in AUTH_ENV)
    if not (user and secret):
        stored = _stored_credentials()
        user = user or stored.get("mlflow_tracking_username") or None
        secret = secret or stored.get("mlflow_tracking_password") or None
    if user and secret:
        return _basic(user, secret), user, True
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return f"Bearer {token}", None, True
    return None, None, True


def _stored_credentials() -> dict[str, str]:
    """The ``[mlflow]`` section of ``~/.mlflow/credentials`` (MLflow's credentials file)."""
    import configparser

    config = configparser.ConfigParser()
    try:
        config.read(Path("~/.mlflow/credentials").expanduser())
        return dict(config["mlflow"]) if config.has_section("mlflow") else {}
    except (configparser.Error, OSError, UnicodeError):
        return {}


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


def _check_credentials(
    api: str,
    authorization: str | None,
    shown: str,
    user: str | None,
    parts: urllib.parse.SplitResult,
    timeout: float,
) -> None:
    """One-line `TrackingError` if the server refuses the credentials (401) or the request
    (403: a user without permission, or a Host header outside its ``--allowed-hosts``). Any other
    answer is left to the requests that follow."""
    request = urllib.request.Request(api)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise _refused(shown, user, parts, sent=authorization is not None) from None
        if exc.code == 403:
            try:
                answer = exc.read(200).decode("utf-8", errors="replace").strip()
            except (OSError, http.client.HTTPException):
                answer = ""
            who = f" for user {user!r}" if user else ""
            raise TrackingError(
                f"MLflow tracking server {shown} refused access{who} (403"
                f"{': ' + redact(answer[:120]) if answer else ''})"
            ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return  # it answered /health a moment ago: what goes wrong next is reported there


def _refused(
    shown: str, user: str | None, parts: urllib.parse.SplitResult, sent: bool = True
) -> TrackingError:
    variables = " and ".join(f"${name}" for name in AUTH_ENV)
    if parts.username is not None:
        return TrackingError(
            f"MLflow tracking server {shown}: authentication failed for user {user!r} (the "
            f"user:password in the tracking URI); check them, or better leave them out of the "
            f"URI and set {variables} in the environment"
        )
    if user:
        return TrackingError(
            f"MLflow tracking server {shown}: authentication failed for user {user!r}; check "
            f"{variables}"
        )
    if sent:  # a token
        return TrackingError(
            f"MLflow tracking server {shown}: authentication failed for $MLFLOW_TRACKING_TOKEN; "
            f"check it, or set {variables} instead"
        )
    return TrackingError(
        f"MLflow tracking server {shown}: authentication failed, it requires a user name and "
        f"password; set {variables} in the environment (not on the command line)"
    )


def _check_sqlite_store(uri: str, path: Path) -> None:
    """An existing file must be a SQLite database with MLflow's tables (or none yet), never
    another program's database (the Optuna storage given as --tracking-uri), which MLflow would
    otherwise alter by adding its own tables."""
    from search.storage import foreign_sqlite

    if path.is_dir():
        raise TrackingError(f"tracking URI {redact(uri)!r}: {str(path)!r} is a folder, not a file")
    problem = foreign_sqlite(path, _MLFLOW_TABLES)
    if problem is None:
        return
    what, tables = problem
    hint = " (it looks like an Optuna study storage)" if "studies" in tables else ""
    raise TrackingError(
        f"tracking URI {redact(uri)!r}: {str(path)!r} is {what}{hint}"
        + (", not an MLflow tracking store" if tables else "")
    )


# The MLflow UI (3.x) picks its landing view from the `workflowType` query parameter (else the
# browser's last choice, GenAI by default): `machine_learning` opens the classic runs table, not
# the GenAI overview. The experiment's `mlflow.experimentKind` tag does the same where the UI has
# no workflow switch.
UI_PORT = 5000
RUNS_VIEW = "#/experiments/{id}/runs?workflowType=machine_learning"


def ui_command(uri: str, mlflow: str = "mlflow") -> str:
    """The exact command (or address) that shows these results in the MLflow UI; ``mlflow`` is
    how the MLflow script is called from the user's shell."""
    if uri.startswith(("http://", "https://")):
        return f"open {redact(uri)} in a browser"
    return f"{mlflow} ui --backend-store-uri {redact(uri)} --port {UI_PORT}"


def runs_link(uri: str, experiment_id: str) -> str:
    """The address of a study's runs table in the MLflow UI that serves ``uri`` (a local store's
    UI is the one `ui_command` starts)."""
    base = f"http://127.0.0.1:{UI_PORT}"
    if uri.startswith(("http://", "https://")):  # the server's address, without credentials
        parts = urllib.parse.urlsplit(uri)
        host = parts.netloc.rpartition("@")[2]
        base = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return f"{base}/{RUNS_VIEW.format(id=experiment_id)}"


def open_tracker(tracking_uri: str, study_name: str) -> Tracker:
    """The tracker for a resolved tracking URI (MLflow); nothing is contacted until ``open()``."""
    from search.tracking.mlflow import MlflowTracker

    return MlflowTracker(tracking_uri, study_name)
