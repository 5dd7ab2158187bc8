"""`search import FILE`: add a study from an export file to a storage."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.cli.common import plural, storage_flag, verbose_flag
from search.cli.export import runs_folder
from search.errors import SearchError
from search.redact import redact


def add_parser(commands: Any) -> None:
    """`search import`."""
    imp = commands.add_parser(
        "import",
        help="add a study from an export file to a storage",
        description="Create the study from a file written by `search export`, or, if a study of "
        "that name exists, add only the trials it lacks (a trial of the same origin with "
        "different data, or another space, data or split, is refused and nothing is written). "
        "Importing the same file again changes nothing.",
    )
    imp.add_argument("file", metavar="FILE", help="a file written by `search export`")
    storage_flag(imp)
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
    verbose_flag(imp)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search import FILE`."""
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
        summary = f"{plural(added, 'trial')} added"
    elif added:
        summary = f"{plural(added, 'trial')} added, {plan.already} already there"
    else:
        summary = f"nothing to add, all {plural(plan.already, 'trial')} already there"
    print(f"imported {args.file} into {where}: {summary}")
    if plan.left_out:
        print(f"note: {plural(plan.left_out, 'RUNNING/WAITING trial')} in the file left out")
    if plan.dropped_attrs:
        print(
            f"note: {plural(plan.dropped_attrs, 'attribute')} left out: sampler state Optuna "
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
        f"MLflow: {plural(copied.copied, 'run')} copied into {redact(tracking_uri)} (parent run "
        f"{copied.parent_run_id}); resume the study with that --tracking-uri"
    )
    return attrs, copied.run_ids, note
