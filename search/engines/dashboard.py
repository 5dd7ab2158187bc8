"""optuna-dashboard, the Optuna project's own web UI, over a study storage.

The storage object comes from :func:`search.storage.open_storage`, so every storage a study can
live in (SQLite, PostgreSQL, our ``journal:`` files) can be browsed. The app is served by the
standard library's wsgiref server, one thread per request, without its per-request log lines.

Nothing here prints: :func:`serve` hands the bound :class:`Dashboard` to ``on_ready`` (the CLI
prints its address) and then serves until interrupted.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.errors import SearchError
from search.redact import redact
from search.storage import check_storage, open_storage, resolve_storage_url

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Dashboard", "describe", "serve", "start"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # Ctrl-C does not wait for a browser's open connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a browser that closed its tab mid-response
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Dashboard:
    """optuna-dashboard bound to ``host:port`` (listening, not yet answering) for one storage."""

    def __init__(self, storage_url: str, server: WSGIServer, host: str) -> None:
        self.storage_url = storage_url
        self._server = server
        self.host = host
        self.port: int = server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        """Answer requests until interrupted (KeyboardInterrupt propagates) or :meth:`shutdown`."""
        self._server.serve_forever()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` from another thread."""
        self._server.shutdown()

    def close(self) -> None:
        self._server.server_close()


def start(storage_url: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Dashboard:
    """Open the storage (which must exist: browsing never creates a database) and bind the
    dashboard to ``host:port`` (port 0: any free port). Call :meth:`Dashboard.serve_forever` next."""
    if not 0 <= port <= 65535:
        raise SearchError(f"port {port} is out of range; expected 1-65535 (or 0 for any free port)")
    url = resolve_storage_url(storage_url)
    check_storage(url, must_exist=True)
    storage = open_storage(url)

    from search.engines import quiet_logging

    quiet_logging()
    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage)
    server_class = _Server6 if ":" in host else _Server
    try:
        server = make_server(
            host, port, app, server_class=server_class, handler_class=_QuietHandler
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SearchError(
                f"cannot serve the dashboard on {host}:{port}: the port is in use "
                "(pick another with --port)"
            ) from None
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SearchError(f"cannot serve the dashboard on {host}:{port}: {reason}") from None
    return Dashboard(url, server, host)


def serve(
    storage_url: str | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_ready: Callable[[Dashboard], None] | None = None,
) -> None:
    """Serve optuna-dashboard for the storage (``None``: ``$SEARCH_STORAGE`` or the default)
    until interrupted; ``on_ready`` is called once the port is listening."""
    dashboard = start(storage_url, host, port)
    try:
        if on_ready is not None:
            on_ready(dashboard)
        dashboard.serve_forever()
    finally:
        dashboard.close()


def describe(dashboard: Dashboard) -> str:
    """The one line that tells a person where the dashboard is (credentials redacted)."""
    return (
        f"optuna-dashboard for {redact(dashboard.storage_url)}: {dashboard.url}  (Ctrl-C to stop)"
    )
