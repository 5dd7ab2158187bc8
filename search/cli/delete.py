"""`search delete STUDY`: delete a study from its storage, and what it owns on this machine."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from search.cli.common import EXIT_ABORTED, existing_storage, plural, storage_flag, verbose_flag
from search.errors import SearchError
from search.redact import redact


def add_parser(commands: Any) -> None:
    """`search delete`."""
    delete = commands.add_parser(
        "delete",
        help="delete a study (asks first)",
        description="Delete a study, with every trial, from its storage, after asking for "
        "confirmation on the terminal. Its MLflow experiment and runs are kept.",
    )
    delete.add_argument("study", metavar="STUDY", help="study name")
    storage_flag(delete)
    delete.add_argument(
        "--yes", "-y", action="store_true", help="do not ask (needed when stdin is not a terminal)"
    )
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete it even while a worker runs one of its trials (that worker then stops with "
        "an error: its study is gone)",
    )
    verbose_flag(delete)


def _running_elsewhere(storage: str, study: str) -> list[tuple[int, str]]:
    """The study's RUNNING trials whose worker is recorded and not provably gone: (number,
    "on HOST (pid PID)")."""
    from search.engines.studies import running_trials
    from search.workers import worker_is_gone

    return [
        (number, f"on {attrs['search.host']} (pid {attrs.get('search.pid', '?')})")
        for number, attrs in running_trials(storage, study)
        if attrs.get("search.host") and not worker_is_gone(attrs)
    ]


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search delete STUDY`: asks first (unless --yes), refuses while a live worker runs one
    of its trials (unless --force)."""
    from search.engines.studies import delete_study, describe_study
    from search.local_folders import remove_study_folders
    from search.record import StudyRecord, validate_study_name

    validate_study_name(args.study)
    storage = existing_storage(args.storage, writable=True)
    n_trials, attrs = describe_study(storage, args.study)
    where = redact(storage)
    running = _running_elsewhere(storage, args.study)
    if running and not args.force:
        number, worker = running[0]
        more = f" (and {plural(len(running) - 1, 'more trial')})" if len(running) > 1 else ""
        raise SearchError(
            f"not deleting study {args.study!r}: trial {number} is RUNNING {worker}{more}; stop "
            "that worker first, or pass --force (the worker then stops with an error: its study "
            "was deleted)"
        )
    if not args.yes:
        if not sys.stdin.isatty():
            raise SearchError(
                f"not deleting study {args.study!r}: standard input is not a terminal to confirm "
                "on; pass --yes"
            )
        sys.stdout.write(
            f"delete study {args.study} ({plural(n_trials, 'trial')}) from {where}? [y/N] "
        )
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line.endswith("\n"):
            print()  # end of input (Ctrl-D): finish the prompt's line
        if line.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return EXIT_ABORTED
    deleted = delete_study(storage, args.study)
    record = StudyRecord.from_attrs(attrs)
    unsent = remove_study_folders(storage, args.study, record.engine)
    kept = "its MLflow runs are kept"
    if record.mlflow_tracking_uri:
        kept += f" (experiment {args.study!r} in {redact(record.mlflow_tracking_uri)})"
    if unsent:
        kept += f"; {plural(unsent, 'tracking operation')} never sent from its spool discarded"
    print(f"deleted study {args.study!r} ({plural(deleted, 'trial')}) from {where}; {kept}")
    for number, worker in running:
        print(
            f"note: trial {number} was RUNNING {worker}: that worker stops with the error "
            f'"study {args.study!r} was deleted from its storage while this worker ran it"'
        )
    return 0
