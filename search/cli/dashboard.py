"""`search dashboard`: browse the studies in optuna-dashboard."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from search.cli.common import storage_flag, verbose_flag, whole_number


def add_parser(commands: Any) -> None:
    """`search dashboard`."""
    dashboard = commands.add_parser(
        "dashboard",
        help="browse the studies in optuna-dashboard",
        description="Serve optuna-dashboard (the Optuna project's web UI: studies, trials, "
        "intermediate values, plots) for a study storage until Ctrl-C.",
    )
    storage_flag(dashboard)
    dashboard.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 exposes the "
        "dashboard, which can also delete studies, to the network)",
    )
    dashboard.add_argument(
        "--port",
        type=whole_number,
        default=8080,
        metavar="N",
        help="port to listen on (default 8080; 0 picks a free one)",
    )
    verbose_flag(dashboard)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search dashboard`: serve it until Ctrl-C."""
    from search.engines.dashboard import describe, serve

    try:
        serve(
            args.storage,
            host=args.host,
            port=args.port,
            on_ready=lambda dashboard: print(describe(dashboard), flush=True),
        )
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a dashboard stops
    return 0
