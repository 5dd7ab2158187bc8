"""`search export STUDY --to FILE`: write a study (and with --with-runs its MLflow runs) to a file."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.cli.common import existing_storage, plural, storage_flag, tracking_flag, verbose_flag
from search.errors import SearchError
from search.redact import redact


def add_parser(commands: Any) -> None:
    """`search export`."""
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
    storage_flag(export)
    export.add_argument(
        "--with-runs",
        action="store_true",
        help="also write the study's MLflow runs (parent and trial runs: params, tags, metric "
        "histories, artifacts) into the folder FILE.runs beside FILE",
    )
    tracking_flag(export)
    verbose_flag(export)


def runs_folder(file: Path) -> Path:
    """Where ``--with-runs`` puts a study's MLflow runs: ``FILE.runs`` beside the file."""
    return file.with_name(file.name + ".runs")


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search export STUDY --to FILE`."""
    from search.engines.export import export_study, write_export
    from search.record import validate_study_name

    validate_study_name(args.study)
    target = Path(args.to).expanduser()
    if not target.parent.is_dir():
        raise SearchError(f"cannot write {args.to!r}: folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise SearchError(f"cannot write {args.to!r}: it is a folder")
    storage = existing_storage(args.storage)
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
        f"{plural(total, 'trial')}" + (f" ({counts})" if counts else "")
    )
    if result.left_out:
        print(
            f"note: {plural(result.left_out, 'RUNNING/WAITING trial')} left out; export again "
            f"once {'it has' if result.left_out == 1 else 'they have'} finished"
        )
    if result.dropped_attrs:
        print(
            f"note: {plural(result.dropped_attrs, 'attribute')} left out: sampler state Optuna "
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
        f"MLflow: {plural(1 + len(manifest['trials']), 'run')} from {redact(tracking_uri)} "
        f"written to {folder}"
    )
    if manifest.get("missing"):
        note += f" ({plural(len(manifest['missing']), 'trial run')} not found there"
        if any(str(run).startswith("spool:") for run in manifest["missing"]):
            note += (
                f"; some were created while the tracking server was down: run `search sync "
                f"{args.study}` on the machine that ran them, then export again"
            )
        note += ")"
    return manifest, note
