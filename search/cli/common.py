"""What the CLI's commands share: the parser class, flag types and flags, the exit code of a
user error, finding a study or storage, and preparing the Keras runtime."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from search.errors import SearchError

EXIT_USAGE = 2
EXIT_ABORTED = 1  # the user said no, or the work is left for later


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def storage_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: sqlite:///FILE.db, postgresql://USER:PASS@HOST:PORT/DB or "
        "journal:///FILE.log (env SEARCH_STORAGE; default sqlite:///search-studies.db in the "
        "working directory)",
    )


def tracking_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI: http://HOST:PORT of an `mlflow server`, or a local store such as "
        "sqlite:///mlflow.db (env MLFLOW_TRACKING_URI; default sqlite:///mlflow.db in the working "
        "directory, MLflow's own default)",
    )


def time_format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-format",
        metavar="FORMAT",
        help='strptime format of the time column, e.g. "%%d/%%m/%%Y %%H:%%M" (default: '
        "YYYY-MM-DD HH:MM[:SS], DD.MM.YYYY HH:MM:SS or M/D/YYYY H:MM, recognised by the values)",
    )


def verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show TensorFlow/Keras output, per-batch progress bars and tracebacks",
    )


def existing_study(args: argparse.Namespace):  # noqa: ANN202 - (Engine, StudyRecord)
    """The engine holding the study named on the command line (never creates one), and the
    study's record."""
    from search.engines import open_engine
    from search.errors import StorageError
    from search.record import StudyRecord, validate_study_name
    from search.storage import check_storage, resolve_storage_url

    validate_study_name(args.study)
    storage = resolve_storage_url(args.storage)
    try:
        check_storage(storage, must_exist=True)
    except StorageError as exc:
        raise SearchError(f"no study named {args.study!r}: {exc}") from None
    engine = open_engine("optuna", storage)
    engine.open(args.study, seed=None, create=False)
    return engine, StudyRecord.from_attrs(engine.study_attrs())


def unit_of_record(record) -> str:  # noqa: ANN001
    from search.data.sources import JENA_TARGET, unit_of

    return unit_of(record.target or JENA_TARGET)


def existing_storage(url: str | None, writable: bool = False) -> str:
    from search.storage import check_storage, resolve_storage_url

    storage = resolve_storage_url(url)
    check_storage(storage, must_exist=True, writable=writable)
    return storage


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def choose_backend(backend: str | None) -> None:
    """Choose the Keras backend (imports nothing; Keras reads KERAS_BACKEND when imported)."""
    from search.runtime import select_backend

    choice = select_backend(backend)
    if choice.note:
        print(f"note: {choice.note}", flush=True)


def prepare_runtime(verbose: bool) -> None:
    """Choose the backend (if not chosen yet) and quieten TensorFlow before Keras is imported
    (unless --verbose)."""
    from search._quiet import quiet_native_stderr, quiet_python_loggers, set_quiet_environment
    from search.data.sources import report_downloads_to

    choose_backend(None)
    report_downloads_to(show_download)

    if not verbose:
        set_quiet_environment()
        log = Path(tempfile.gettempdir()) / f"search-native-{os.getuid()}.log"
        quiet_native_stderr(log)
        quiet_python_loggers()


def show_download(url: str, done: int, total: int, finished: bool) -> None:
    """A download's progress on a terminal's stderr: MB done (of the total)."""
    if not sys.stderr.isatty():
        return
    if finished:
        sys.stderr.write("\n")
        return
    of = f" of {total / 1e6:.1f}" if total else ""
    sys.stderr.write(f"\rdownloading {url}: {done / 1e6:.1f}{of} MB")
    sys.stderr.flush()
