"""`search spaces [NAME|PATH]`: list the search spaces, or show one."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from search.cli.common import verbose_flag


def add_parser(commands: Any) -> None:
    """`search spaces`."""
    spaces = commands.add_parser("spaces", help="list search spaces, or show one")
    spaces.add_argument("name", nargs="?", metavar="NAME|PATH", help="a space to show in full")
    verbose_flag(spaces)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search spaces [NAME|PATH]`."""
    from search.spaces import list_spaces, load_space

    if args.name:
        print(load_space(args.name).describe())
        return 0
    spaces = list_spaces()
    width = max(len(s.name) for s in spaces) if spaces else 0
    for space in spaces:
        print(f"{space.name:<{width}}  {space.description}")
    return 0
