"""Tracking: the :class:`Tracker` interface, its MLflow implementation, and the redaction rule.

`resolve_tracking_uri`, `check_tracking_uri` and `ui_command` import nothing heavy, so the CLI
answers in about a second when a tracking server is unreachable. Only
:mod:`search.tracking.mlflow` imports mlflow.
"""

from __future__ import annotations

import os
import urllib.error
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
    "ui_command",
]

TRACKING_ENV = "MLFLOW_TRACKING_URI"


def resolve_tracking_uri(uri: str | None) -> str:
    """The flag, else ``$MLFLOW_TRACKING_URI``, else MLflow's local default ``sqlite:///mlflow.db``
    in the working directory (made absolute so later commands find it from anywhere)."""
    uri = uri or os.environ.get(TRACKING_ENV) or "sqlite:///mlflow.db"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).expanduser().resolve())
    if "://" not in uri and not uri.startswith("databricks"):
        # A bare path: MLflow's (deprecated) file store. Keep it working, absolute.
        return str(Path(uri).expanduser().resolve())
    return uri


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """One-line `TrackingError` if an HTTP tracking server does not answer its health check, or a
    local store's folder does not exist."""
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout) as response:  # noqa: S310
                if response.status != 200:
                    raise TrackingError(
                        f"MLflow tracking server {redact(uri)} answered {response.status} on /health"
                    )
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {redact(uri)} is unreachable: {reason}"
            ) from None
        return
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir():
            raise TrackingError(
                f"tracking URI {redact(uri)!r}: folder {str(folder)!r} does not exist"
            )
        return
    scheme = uri.split("://", 1)[0] if "://" in uri else "file"
    if scheme not in ("file", "postgresql", "mysql", "mssql", "databricks", "sqlite"):
        raise TrackingError(
            f"tracking URI {redact(uri)!r}: unknown scheme {scheme!r}; expected http(s)://HOST:PORT, "
            "sqlite:///FILE.db or a folder"
        )


def ui_command(uri: str) -> str:
    """The exact command (or address) that shows these results in the MLflow UI."""
    if uri.startswith(("http://", "https://")):
        return f"open {redact(uri)} in a browser"
    return f"mlflow ui --backend-store-uri {redact(uri)}"


def open_tracker(tracking_uri: str, study_name: str) -> Tracker:
    """The tracker for a resolved tracking URI (MLflow); nothing is contacted until ``open()``."""
    from search.tracking.mlflow import MlflowTracker

    return MlflowTracker(tracking_uri, study_name)
