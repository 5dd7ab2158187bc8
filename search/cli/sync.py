"""`search sync STUDY`: send a study's spooled tracking logs, and back-fill missing runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from search.cli.common import (
    EXIT_ABORTED,
    existing_study,
    plural,
    storage_flag,
    tracking_flag,
    verbose_flag,
)
from search.errors import SearchError
from search.redact import redact


def add_parser(commands: Any) -> None:
    """`search sync`."""
    sync = commands.add_parser(
        "sync",
        help="send a study's spooled tracking logs to the tracking server",
        description="Send what the study's trials logged while the tracking server was "
        "unreachable (kept in the study's spool on this machine) and give every finished trial "
        "that has no MLflow run one rebuilt from its Optuna record. Nothing is sent twice; "
        "running it again changes nothing. `search run` does the first part at its end.",
    )
    sync.add_argument("study", metavar="STUDY", help="study name")
    storage_flag(sync)
    tracking_flag(sync)
    verbose_flag(sync)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search sync STUDY`."""
    from search.local_folders import spool_root
    from search.storage import resolve_storage_url
    from search.study import sync_timeout
    from search.sync import sync_study
    from search.tracking import check_tracking_uri, open_tracker, resolve_tracking_uri
    from search.tracking.spool import Spool

    engine, record = existing_study(args)
    tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
    spool = Spool(spool_root(resolve_storage_url(args.storage), args.study))
    runs, operations = spool.backlog()
    waiting = f"{plural(operations, 'operation')} of {plural(runs, 'run')} in {spool.root}"
    try:
        check_tracking_uri(tracking_uri)
    except SearchError as exc:
        raise SearchError(f"{exc}; the spool keeps {waiting}") from None
    outcome = sync_study(
        engine, record, spool, open_tracker(tracking_uri, args.study), sync_timeout()
    )
    done = (
        f"sync {args.study!r}: sent {plural(outcome.sent, 'spooled operation')}"
        f" ({plural(outcome.runs_created, 'run')} created from the spool)"
    )
    if outcome.backfilled:
        numbers = ", ".join(str(n) for n in outcome.backfilled)
        done += f"; trials {numbers} given a run from their study record"
    print(done, flush=True)
    for refused in outcome.refused:
        print(f"note: the tracking server refused {refused}", flush=True)
    if outcome.duplicates:
        numbers = ", ".join(str(n) for n in outcome.duplicates)
        print(f"note: trials {numbers} have more than one MLflow run", flush=True)
    if outcome.elsewhere:
        numbers = ", ".join(str(n) for n in outcome.elsewhere)
        print(
            f"note: the runs of trials {numbers} are in another tracking store, not in "
            f"{redact(tracking_uri)}",
            flush=True,
        )
    if outcome.error is not None:
        print(
            f"search: the tracking server stopped answering ({outcome.error}); the spool keeps "
            f"{plural(outcome.pending_operations, 'operation')} of "
            f"{plural(outcome.pending_runs, 'run')} in {spool.root}: run `search sync "
            f"{args.study}` again later",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_ABORTED
    print(f"every finished trial of {args.study!r} has its MLflow run", flush=True)
    return 0
