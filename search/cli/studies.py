"""`search studies`: list the studies in a storage."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from search.cli.common import existing_storage, storage_flag, verbose_flag
from search.redact import redact


def add_parser(commands: Any) -> None:
    """`search studies`."""
    studies = commands.add_parser(
        "studies",
        help="list the studies in a storage",
        description="One line per study of a storage: its trials, COMPLETE trials, best value, "
        "last activity (the latest trial start or end) and engine.",
    )
    storage_flag(studies)
    verbose_flag(studies)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search studies`."""
    from search.engines.studies import list_studies

    storage = existing_storage(args.storage)
    studies = list_studies(storage)
    if not studies:
        print(f"no studies in {redact(storage)}")
        return 0
    header = ("study", "trials", "complete", "best", "last activity", "engine")
    rows = [
        (
            s.name,
            str(s.n_trials),
            str(s.n_complete),
            f"{s.best_value:.4f}" if s.best_value is not None else "-",
            _when(s.last_activity),
            s.engine or "-",
        )
        for s in studies
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.ljust(widths[i]) if i in (0, 4, 5) else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
    return 0


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else "-"
