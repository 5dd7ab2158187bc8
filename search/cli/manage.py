"""Study management commands: list, move (export/import) and delete studies.

``add_commands`` adds their subparsers to the CLI; ``dispatch`` runs one. Printing happens here
and in the rest of ``search.cli`` only.

- ``search studies [--storage URL]``: one line per study (trials, COMPLETE trials, best value,
  last activity, engine).
- ``search delete STUDY [--storage URL] [--yes]``: delete a study from its storage after a
  confirmation; its MLflow runs are kept.
- ``search export STUDY --to FILE [--storage URL] [--with-runs [--tracking-uri URI]]``: the study
  and its finished trials as one JSON file (see :mod:`search.engines.transfer`); with
  ``--with-runs`` its MLflow runs too, in the folder ``FILE.runs`` beside it.
- ``search import FILE [--storage URL] [--study NAME] [--tracking-uri URI]``: create the study
  from a file, or add to the study of that name the trials it lacks (a conflict is refused,
  nothing written); with ``--tracking-uri``, the file's MLflow runs are copied into that store.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from search.cli import EXIT_USAGE, _storage_flag, _tracking_flag, _verbose_flag
from search.errors import SearchError
from search.tracking.redact import redact

COMMANDS: tuple[str, ...] = ("studies", "delete", "export", "import", "sync")
EXIT_ABORTED = 1


def add_commands(commands: Any) -> None:
    """Add the management subcommands to the CLI's subparsers."""
    studies = commands.add_parser(
        "studies",
        help="list the studies in a storage",
        description="One line per study of a storage: its trials, COMPLETE trials, best value, "
        "last activity (the latest trial start or end) and engine.",
    )
    _storage_flag(studies)
    _verbose_flag(studies)

    delete = commands.add_parser(
        "delete",
        help="delete a study (asks first)",
        description="Delete a study, with every trial, from its storage, after asking for "
        "confirmation on the terminal. Its MLflow experiment and runs are kept.",
    )
    delete.add_argument("study", metavar="STUDY", help="study name")
    _storage_flag(delete)
    delete.add_argument(
        "--yes", "-y", action="store_true", help="do not ask (needed when stdin is not a terminal)"
    )
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete it even while a worker runs one of its trials (that worker then stops with "
        "an error: its study is gone)",
    )
    _verbose_flag(delete)

    export = commands.add_parser(
        "export",
        help="write a study to a JSON file (to import elsewhere)",
        description="Write a study and its finished trials (parameters, distributions, values, "
        "intermediate values, attributes, times) to one JSON file, written atomically. RUNNING "
        "and WAITING trials are left out, and so is sampler state Optuna keeps pickled "
        "(CMA-ES). Nothing is written to the study.",
    )
    export.add_argument("study", metavar="STUDY", help="study name")
    export.add_argument("--to", required=True, metavar="FILE", help="the JSON file to write")
    _storage_flag(export)
    export.add_argument(
        "--with-runs",
        action="store_true",
        help="also write the study's MLflow runs (parent and trial runs: params, tags, metric "
        "histories, artifacts) into the folder FILE.runs beside FILE",
    )
    _tracking_flag(export)
    _verbose_flag(export)

    imp = commands.add_parser(
        "import",
        help="add a study from an export file to a storage",
        description="Create the study from a file written by `search export`, or, if a study of "
        "that name exists, add only the trials it lacks (a trial of the same origin with "
        "different data, or another space, data or split, is refused and nothing is written). "
        "Importing the same file again changes nothing.",
    )
    imp.add_argument("file", metavar="FILE", help="a file written by `search export`")
    _storage_flag(imp)
    imp.add_argument(
        "--study", metavar="NAME", help="import under this name (default: the name in the file)"
    )
    imp.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="copy the MLflow runs the file carries (exported --with-runs) into this tracking "
        "store and point the study at them; without it the study keeps its record's tracking "
        "URI and parent run",
    )
    _verbose_flag(imp)

    sync = commands.add_parser(
        "sync",
        help="send a study's spooled tracking logs to the tracking server",
        description="Send what the study's trials logged while the tracking server was "
        "unreachable (kept in the study's spool on this machine) and give every finished trial "
        "that has no MLflow run one rebuilt from its Optuna record. Nothing is sent twice; "
        "running it again changes nothing. `search run` does the first part at its end.",
    )
    sync.add_argument("study", metavar="STUDY", help="study name")
    _storage_flag(sync)
    _tracking_flag(sync)
    _verbose_flag(sync)


def dispatch(args: argparse.Namespace, verbose: bool) -> int:
    """Run one management command; returns its exit code."""
    if args.command == "studies":
        return _cmd_studies(args)
    if args.command == "delete":
        return _cmd_delete(args)
    if args.command == "export":
        return _cmd_export(args)
    if args.command == "import":
        return _cmd_import(args)
    if args.command == "sync":
        return _cmd_sync(args)
    raise NotImplementedError(args.command)


def _existing_storage(url: str | None, writable: bool = False) -> str:
    from search.storage import check_storage, resolve_storage_url

    storage = resolve_storage_url(url)
    check_storage(storage, must_exist=True, writable=writable)
    return storage


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- sync


def _cmd_sync(args: argparse.Namespace) -> int:
    from search.cli import _existing_study
    from search.local_folders import spool_root
    from search.storage import resolve_storage_url
    from search.study import sync_timeout
    from search.sync import sync_study
    from search.tracking import check_tracking_uri, open_tracker, resolve_tracking_uri
    from search.tracking.spool import Spool

    engine, record = _existing_study(args)
    tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
    spool = Spool(spool_root(resolve_storage_url(args.storage), args.study))
    runs, operations = spool.backlog()
    waiting = f"{_plural(operations, 'operation')} of {_plural(runs, 'run')} in {spool.root}"
    try:
        check_tracking_uri(tracking_uri)
    except SearchError as exc:
        raise SearchError(f"{exc}; the spool keeps {waiting}") from None
    outcome = sync_study(
        engine, record, spool, open_tracker(tracking_uri, args.study), sync_timeout()
    )
    done = (
        f"sync {args.study!r}: sent {_plural(outcome.sent, 'spooled operation')}"
        f" ({_plural(outcome.runs_created, 'run')} created from the spool)"
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
            f"{_plural(outcome.pending_operations, 'operation')} of "
            f"{_plural(outcome.pending_runs, 'run')} in {spool.root}: run `search sync "
            f"{args.study}` again later",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_ABORTED
    print(f"every finished trial of {args.study!r} has its MLflow run", flush=True)
    return 0


# --------------------------------------------------------------------------- studies


def _cmd_studies(args: argparse.Namespace) -> int:
    from search.engines.studies import list_studies

    storage = _existing_storage(args.storage)
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


# --------------------------------------------------------------------------- delete


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


def _cmd_delete(args: argparse.Namespace) -> int:
    from search.engines.studies import delete_study, describe_study
    from search.local_folders import remove_study_folders
    from search.record import StudyRecord, validate_study_name

    validate_study_name(args.study)
    storage = _existing_storage(args.storage, writable=True)
    n_trials, attrs = describe_study(storage, args.study)
    where = redact(storage)
    running = _running_elsewhere(storage, args.study)
    if running and not args.force:
        number, worker = running[0]
        more = f" (and {_plural(len(running) - 1, 'more trial')})" if len(running) > 1 else ""
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
            f"delete study {args.study} ({_plural(n_trials, 'trial')}) from {where}? [y/N] "
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
        kept += f"; {_plural(unsent, 'tracking operation')} never sent from its spool discarded"
    print(f"deleted study {args.study!r} ({_plural(deleted, 'trial')}) from {where}; {kept}")
    for number, worker in running:
        print(
            f"note: trial {number} was RUNNING {worker}: that worker stops with the error "
            f'"study {args.study!r} was deleted from its storage while this worker ran it"'
        )
    return 0


# --------------------------------------------------------------------------- export


def runs_folder(file: Path) -> Path:
    """Where ``--with-runs`` puts a study's MLflow runs: ``FILE.runs`` beside the file."""
    return file.with_name(file.name + ".runs")


def _cmd_export(args: argparse.Namespace) -> int:
    from search.engines.transfer import export_study, write_export
    from search.record import validate_study_name

    validate_study_name(args.study)
    target = Path(args.to).expanduser()
    if not target.parent.is_dir():
        raise SearchError(f"cannot write {args.to!r}: folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise SearchError(f"cannot write {args.to!r}: it is a folder")
    storage = _existing_storage(args.storage)
    result = export_study(storage, args.study)
    record = result.record
    runs_note = None
    if args.with_runs:
        result.payload["runs"], runs_note = _export_runs(args, result, target)
    write_export(result.payload, target)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    total = sum(result.counts.values())
    print(
        f"exported study {args.study!r} from {redact(storage)} to {args.to}: "
        f"{_plural(total, 'trial')}" + (f" ({counts})" if counts else "")
    )
    if result.left_out:
        print(
            f"note: {_plural(result.left_out, 'RUNNING/WAITING trial')} left out; export again "
            f"once {'it has' if result.left_out == 1 else 'they have'} finished"
        )
    if result.dropped_attrs:
        print(
            f"note: {_plural(result.dropped_attrs, 'attribute')} left out: sampler state Optuna "
            "keeps pickled (CMA-ES) or values that are not JSON"
        )
    if runs_note:
        print(runs_note)
    elif record.mlflow_parent_run_id:
        print(
            f"MLflow runs stay in {redact(record.mlflow_tracking_uri or '?')} (parent run "
            f"{record.mlflow_parent_run_id}); an imported copy resumed with that --tracking-uri "
            "continues there (or export --with-runs to carry them)"
        )
    return 0


def _export_runs(args: argparse.Namespace, result: Any, target: Path) -> tuple[dict, str]:
    from search.tracking import check_tracking_uri, resolve_tracking_uri
    from search.tracking.transfer import export_runs

    record = result.record
    if not record.mlflow_parent_run_id:
        raise SearchError(
            f"study {args.study!r} has no MLflow parent run to export; leave out --with-runs"
        )
    tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
    check_tracking_uri(tracking_uri)
    run_ids = [
        str(t["user_attrs"]["mlflow_run_id"])
        for t in result.trials
        if t["user_attrs"].get("mlflow_run_id")
    ]
    folder = runs_folder(target)
    manifest = export_runs(tracking_uri, record.mlflow_parent_run_id, run_ids, folder)
    note = (
        f"MLflow: {_plural(1 + len(manifest['trials']), 'run')} from {redact(tracking_uri)} "
        f"written to {folder}"
    )
    if manifest.get("missing"):
        note += f" ({_plural(len(manifest['missing']), 'trial run')} not found there"
        if any(str(run).startswith("spool:") for run in manifest["missing"]):
            note += (
                f"; some were created while the tracking server was down: run `search sync "
                f"{args.study}` on the machine that ran them, then export again"
            )
        note += ")"
    return manifest, note


# --------------------------------------------------------------------------- import


def _cmd_import(args: argparse.Namespace) -> int:
    from search.engines.transfer import apply_import, plan_import, read_export
    from search.storage import check_storage, resolve_storage_url

    file = Path(args.file).expanduser()
    payload = read_export(file)
    storage = resolve_storage_url(args.storage)
    check_storage(storage)
    runs = payload.get("runs")
    copy_runs = _prepare_runs(args, file, runs) if args.tracking_uri else None
    plan = plan_import(storage, payload, args.file, args.study)
    study_attrs: dict[str, Any] = {}
    run_ids: dict[str, str] = {}
    runs_note = None
    if copy_runs is not None and isinstance(runs, dict) and (plan.to_add or plan.create):
        study_attrs, run_ids, runs_note = _import_runs(copy_runs, plan, runs)
    added = apply_import(plan, study_attrs=study_attrs, run_ids=run_ids)
    where = f"{'new ' if plan.create else ''}study {plan.study!r} in {redact(storage)}"
    if plan.create:
        summary = f"{_plural(added, 'trial')} added"
    elif added:
        summary = f"{_plural(added, 'trial')} added, {plan.already} already there"
    else:
        summary = f"nothing to add, all {_plural(plan.already, 'trial')} already there"
    print(f"imported {args.file} into {where}: {summary}")
    if plan.left_out:
        print(f"note: {_plural(plan.left_out, 'RUNNING/WAITING trial')} in the file left out")
    if plan.dropped_attrs:
        print(
            f"note: {_plural(plan.dropped_attrs, 'attribute')} left out: sampler state Optuna "
            "keeps pickled (CMA-ES) or values that are not JSON"
        )
    if runs_note:
        print(runs_note)
    else:
        record = plan.record
        if record.mlflow_parent_run_id:
            print(
                f"MLflow: the study's runs are in {redact(record.mlflow_tracking_uri or '?')} "
                f"(parent run {record.mlflow_parent_run_id}); resume it with that --tracking-uri "
                "to go on logging there"
            )
        if isinstance(runs, dict) and args.tracking_uri is None:
            print(
                "note: the file carries MLflow runs; pass --tracking-uri URI to copy them into "
                "that tracking store"
            )
    return 0


def _prepare_runs(args: argparse.Namespace, file: Path, runs: Any) -> tuple[str, Path]:
    """The resolved tracking URI to copy the file's runs into, and their folder."""
    from search.tracking import check_tracking_uri, resolve_tracking_uri

    if not isinstance(runs, dict):
        raise SearchError(
            f"{args.file!r} carries no MLflow runs (export it with --with-runs); leave out "
            "--tracking-uri"
        )
    folder = runs_folder(file)
    if not folder.is_dir():
        raise SearchError(
            f"{args.file!r} carries MLflow runs but their folder {str(folder)!r} is missing; "
            "copy it along with the file"
        )
    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_uri(tracking_uri)
    return tracking_uri, folder


def _import_runs(
    copy_runs: tuple[str, Path], plan: Any, runs: dict
) -> tuple[dict[str, Any], dict[str, str], str]:
    """Copy the runs of the trials to add (and, for a new study, its parent run) into the
    tracking store; returns the study attributes and run ids to rewrite, and a line to show."""
    from search.tracking.transfer import import_runs

    tracking_uri, folder = copy_runs
    record = plan.record
    parent = None if plan.create else record.mlflow_parent_run_id
    if not plan.create and record.mlflow_tracking_uri != tracking_uri:
        raise SearchError(
            f"study {plan.study!r} logs to {redact(record.mlflow_tracking_uri or 'no tracking store')}"
            f", not {redact(tracking_uri)}: import its new trials' runs with that --tracking-uri, "
            "or leave --tracking-uri out"
        )
    copied = import_runs(
        tracking_uri, runs, folder, plan.study, parent_run_id=parent, run_ids=plan.run_ids()
    )
    attrs: dict[str, Any] = {}
    if plan.create:
        attrs = {
            "mlflow_tracking_uri": tracking_uri,
            "mlflow_experiment_id": copied.experiment_id,
            "mlflow_parent_run_id": copied.parent_run_id,
        }
    note = (
        f"MLflow: {_plural(copied.copied, 'run')} copied into {redact(tracking_uri)} (parent run "
        f"{copied.parent_run_id}); resume the study with that --tracking-uri"
    )
    return attrs, copied.run_ids, note


__all__ = ["COMMANDS", "EXIT_USAGE", "add_commands", "dispatch", "runs_folder"]
