"""`search predict STUDY --data FILE`: forecast a new file with a study's best model (or ensemble)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.cli.common import (
    existing_study,
    positive_int,
    storage_flag,
    time_format_flag,
    tracking_flag,
    verbose_flag,
)


def add_parser(commands: Any) -> None:
    """`search predict`."""
    predict = commands.add_parser(
        "predict",
        help="forecast a new file with a study's best model",
        description="Forecast with the best trial's model on every complete window of a new "
        "file. The study's columns, window geometry and normalization statistics (from its own "
        "training split) are applied to the new rows.",
    )
    predict.add_argument("study", metavar="STUDY", help="study name")
    predict.add_argument("--data", required=True, metavar="FILE", help="the CSV to forecast from")
    predict.add_argument(
        "--time-column", metavar="NAME", help="its time column (default: the first column)"
    )
    time_format_flag(predict)
    predict.add_argument(
        "--to",
        metavar="OUT.csv",
        help="write the forecasts here (one row per forecast: the time it is for, and the "
        "forecast in the target's units); default: standard output",
    )
    predict.add_argument(
        "--ensemble",
        nargs="?",
        const=10,
        type=positive_int,
        metavar="N",
        help="forecast with the study's ensemble of its N best trials (default 10) and the linear "
        "reference (`search best --ensemble`) instead of the best trial's model",
    )
    storage_flag(predict)
    tracking_flag(predict)
    verbose_flag(predict)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search predict STUDY --data FILE`."""
    from search.data.sources import validate_source
    from search.tracking import check_tracking_uri, resolve_tracking_uri

    validate_source(args.data)
    engine, record = existing_study(args)
    tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
    check_tracking_uri(tracking_uri)
    prepare_runtime(verbose)
    from search.predict import predict_ensemble_file, predict_file, serving_ensemble

    if args.ensemble:
        from search.ensemble import build_ensemble, log_ensemble

        ensemble, context = build_ensemble(engine, args.study, tracking_uri, args.ensemble)
        log_ensemble(ensemble, context)
        forecasts = predict_ensemble_file(
            serving_ensemble(ensemble, context),
            args.study,
            args.data,
            args.time_column,
            args.time_format,
        )
    else:
        forecasts = predict_file(
            engine, args.study, tracking_uri, args.data, args.time_column, args.time_format
        )
    text = forecasts.to_csv(Path(args.to) if args.to else None)
    if args.to:
        print(
            f"{len(forecasts.values):,} forecasts of {forecasts.target} by "
            f"{_by(forecasts.trial)} written to {args.to}"
        )
    else:
        sys.stdout.write(text)
    score = forecasts.score()
    if score is not None:  # the file holds the actual values: how good were the forecasts?
        count, mae, naive = score
        line = (
            f"on the {count:,} forecasts whose time the file holds: MAE {mae:.3f} "
            f"{forecasts.unit}, naive {naive:.3f} ({1 - mae / naive:+.1%} skill)"
            if naive > 0
            else f"on the {count:,} forecasts whose time the file holds: MAE {mae:.3f}"
        )
        print(line, file=sys.stdout if args.to else sys.stderr)
    return 0


def _by(trial: int | str) -> str:
    return trial if isinstance(trial, str) else f"trial {trial}'s model"
