"""`search best STUDY`: show the best trial of a study; evaluate, ensemble, register, export."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from search.cli.common import (
    existing_study,
    positive_int,
    storage_flag,
    tracking_flag,
    unit_of_record,
    verbose_flag,
)
from search.redact import redact


def add_parser(commands: Any) -> None:
    """`search best`."""
    best = commands.add_parser("best", help="show the best trial of a study")
    best.add_argument("study", metavar="STUDY", help="study name")
    storage_flag(best)
    tracking_flag(best)
    best.add_argument(
        "--evaluate-test",
        action="store_true",
        help="evaluate the best trial's saved model once on the test split and log the result to "
        "the study's parent run",
    )
    best.add_argument(
        "--ensemble",
        nargs="?",
        const=10,
        type=positive_int,
        metavar="N",
        help="also build the greedy ensemble of the N best complete trials (default 10) and the "
        "linear reference, weights chosen on out-of-fold val predictions (--folds studies) or on "
        "val (in-sample); logged as an MLflow run under the study's parent; with "
        "--evaluate-test, its test figures beside the best trial's",
    )
    best.add_argument(
        "--register",
        metavar="NAME",
        help="register the best trial's forecaster in MLflow's model registry as NAME: a pyfunc "
        "model from recent raw rows (the time column and the study's columns) to forecasts; "
        "load it with mlflow.pyfunc.load_model('models:/NAME/VERSION') or serve it with "
        "`mlflow models serve -m models:/NAME/VERSION --env-manager local`",
    )
    best.add_argument(
        "--export-model",
        metavar="DIR",
        help="save the same pyfunc model into the new (or empty) folder DIR "
        "(mlflow.pyfunc.load_model(DIR), mlflow models serve -m DIR)",
    )
    verbose_flag(best)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search best STUDY`: the best trial, and on request its test figures, the ensemble, the
    registered or exported forecaster."""
    from search.cli.render import best_text, test_step_lines, ui_lines
    from search.tracking import check_tracking_uri, resolve_tracking_uri

    if args.export_model:
        from search.predict import check_export_folder

        check_export_folder(args.export_model)
    engine, record = existing_study(args)
    unit = unit_of_record(record)
    print(best_text(args.study, engine.best(), len(engine.trials()), unit))
    for line in ui_lines(
        resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri),
        record.mlflow_experiment_id,
    ):
        print(line)
    if args.evaluate_test:
        tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
        check_tracking_uri(tracking_uri)
        prepare_runtime(verbose)
        from search.evaluate import evaluate_best_on_test

        result = evaluate_best_on_test(engine, args.study, tracking_uri)
        print(
            f"test MAE {result['test_mae']:.3f} {result['unit']} "
            f"(naive {result['test_baseline_mae']:.3f}, skill {result['test_skill']:+.1%}; "
            f"linear {result['test_linear_mae']:.3f}, skill {result['test_linear_skill']:+.1%}); "
            f"logged to parent run {result['parent_run_id']}"
        )
        if "selection_gap" in result:
            print(
                f"selection gap {result['selection_gap']:+.1f} points: the estimate's skill "
                f"against naive minus the test skill ({result['test_skill']:+.1%} on test)"
            )
        for line in test_step_lines(result):
            print(line)
    built = (
        _best_ensemble(args, engine, record, verbose, prepare_runtime) if args.ensemble else None
    )
    if args.register or args.export_model:
        tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
        check_tracking_uri(tracking_uri)
        prepare_runtime(verbose)
        from search import predict

        found = predict.serving_ensemble(*built) if built else None  # built once, saved twice
    if args.register:
        if found:
            registered = predict.register_ensemble(found, args.study, args.register)
            what = "the ensemble"
        else:
            registered = predict.register_best(engine, args.study, tracking_uri, args.register)
            what = f"trial {registered['trial']}'s forecaster"
        where = f"as {registered['uri']} in {redact(tracking_uri)}"
        print(f"registered {what} {_use(where, registered['uri'])}")
    if args.export_model:
        if found:
            exported = predict.export_ensemble(found, args.export_model)
            what = "the ensemble"
        else:
            exported = predict.export_best(engine, args.study, tracking_uri, args.export_model)
            what = f"trial {exported['trial']}'s forecaster"
        where = f"to {exported['path']}"
        print(f"saved {what} {_use(where, exported['path'])}")
    return 0


def _best_ensemble(
    args: argparse.Namespace,
    engine: Any,
    record: Any,
    verbose: bool,
    prepare_runtime: Callable[[bool], None],
) -> tuple[Any, Any]:
    """Build, log and print the study's ensemble (and its test figures); returns it and its
    study context for saving."""
    from search.cli.render import ensemble_lines, ensemble_test_line
    from search.tracking import check_tracking_uri, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
    check_tracking_uri(tracking_uri)
    prepare_runtime(verbose)
    from search.ensemble import build_ensemble, evaluate_ensemble_on_test, log_ensemble

    ensemble, context = build_ensemble(engine, args.study, tracking_uri, args.ensemble)
    log_ensemble(ensemble, context)
    for line in ensemble_lines(ensemble):
        print(line)
    if args.evaluate_test:
        print(ensemble_test_line(ensemble, evaluate_ensemble_on_test(engine, ensemble, context)))
    return ensemble, context


def _use(where: str, uri: str) -> str:
    """Where a saved forecaster went, and how to load or serve it."""
    return (
        f"{where}; load it with mlflow.pyfunc.load_model({uri!r}) or serve it with `mlflow "
        f"models serve -m {uri} --env-manager local`"
    )
