"""`search trials STUDY`: list a study's trials."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from search.cli.common import existing_study, storage_flag, unit_of_record, verbose_flag


def add_parser(commands: Any) -> None:
    """`search trials`."""
    trials = commands.add_parser("trials", help="list a study's trials")
    trials.add_argument("study", metavar="STUDY", help="study name")
    storage_flag(trials)
    verbose_flag(trials)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search trials STUDY`."""
    from search.cli.render import trials_table

    engine, record = existing_study(args)
    print(trials_table(args.study, engine.trials(), unit_of_record(record)))
    return 0
