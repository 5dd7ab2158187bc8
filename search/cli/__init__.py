"""The `search` command line: run studies, list trials, show the best, browse spaces.

Input is validated before Keras (and so TensorFlow) is imported, so a typo is answered in about a
second. User errors print one line and exit with code 2; `--verbose` adds the traceback and shows
TensorFlow's and Keras' own output.

One module per command (``search/cli/run.py`` for `search run`, ...), each with its
``add_parser`` and its ``command``; what they share is in :mod:`search.cli.common`.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from search._version import __version__
from search.cli import (
    best,
    dashboard,
    delete,
    export,
    import_,
    predict,
    run,
    spaces,
    studies,
    sync,
    trials,
)
from search.cli.common import EXIT_USAGE, Parser
from search.cli.common import prepare_runtime as _prepare_runtime
from search.errors import SearchError
from search.redact import redact

__all__ = ["EXIT_USAGE", "build_parser", "main"]

#: The commands in the order --help lists them, by name.
COMMANDS = {
    "run": run,
    "trials": trials,
    "best": best,
    "predict": predict,
    "spaces": spaces,
    "dashboard": dashboard,
    "studies": studies,
    "delete": delete,
    "export": export,
    "import": import_,
    "sync": sync,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="search",
        description="Hyperparameter search for Keras time-series forecasters: Optuna studies over "
        "the documented architectures, every trial logged to MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"search {__version__}")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show TensorFlow/Keras output and tracebacks"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    verbose = bool(getattr(args, "verbose", False))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _dispatch(args, verbose)
    except SearchError as exc:
        if verbose:
            traceback.print_exc()
        message = redact(" ".join(str(exc).split()))
        sys.stderr.write(f"search {args.command}: error: {message}\n")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        from search.interrupt import Interrupted

        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        what = f"stopped by {exc}" if isinstance(exc, Interrupted) else "interrupted"
        sys.stderr.write(
            f"search {args.command}: {what}; the study can be continued (the stopped trial "
            "resumes from its last epoch)\n"
        )
        return code


def _dispatch(args: argparse.Namespace, verbose: bool) -> int:
    """Run the command; it prepares the Keras runtime (when it needs Keras) with this module's
    ``_prepare_runtime``, looked up now."""
    return int(COMMANDS[args.command].command(args, verbose, _prepare_runtime))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
