"""The `search` command line: run studies, list trials, show the best, browse spaces.

Input is validated before Keras (and so TensorFlow) is imported, so a typo is answered in about a
second. User errors print one line and exit with code 2; `--verbose` adds the traceback and shows
TensorFlow's and Keras' own output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, NoReturn

from search import __version__
from search.errors import SearchError
from search.tracking.redact import redact

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _storage_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: sqlite:///FILE.db, postgresql://USER:PASS@HOST:PORT/DB or "
        "journal:///FILE.log (env SEARCH_STORAGE; default sqlite:///search-studies.db in the "
        "working directory)",
    )


def _tracking_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI: http://HOST:PORT of an `mlflow server`, or a local store such as "
        "sqlite:///mlflow.db (env MLFLOW_TRACKING_URI; default sqlite:///mlflow.db in the working "
        "directory, MLflow's own default)",
    )


def _time_format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-format",
        metavar="FORMAT",
        help='strptime format of the time column, e.g. "%%d/%%m/%%Y %%H:%%M" (default: '
        "YYYY-MM-DD HH:MM[:SS], DD.MM.YYYY HH:MM:SS or M/D/YYYY H:MM, recognised by the values)",
    )


def _verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show TensorFlow/Keras output, per-batch progress bars and tracebacks",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="search",
        description="Hyperparameter search for Keras time-series forecasters: Optuna studies over "
        "the documented architectures, every trial logged to MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"search {__version__}")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show TensorFlow/Keras output and tracebacks"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run or continue a study",
        description="Run an Optuna study (or continue the one of that name) and log every trial to "
        "MLflow. With no flags: space 'quick', 6 trials on the embedded 2020 Jena data, local "
        "storage (sqlite:///search-studies.db) and MLflow's local store (sqlite:///mlflow.db).",
    )
    run.add_argument(
        "--space",
        metavar="NAME|PATH",
        help="a shipped space (see `search spaces`) or a YAML file (default: quick; a resumed "
        "study remembers its space)",
    )
    run.add_argument(
        "--study",
        metavar="NAME",
        help="study name; an existing study of that name is continued (default: the space's name)",
    )
    run.add_argument(
        "--trials", type=_positive_int, default=6, metavar="N", help="trials to run now (default 6)"
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stop starting new trials after this many seconds (default: no limit)",
    )
    _storage_flag(run)
    _tracking_flag(run)
    run.add_argument(
        "--data",
        metavar="SOURCE",
        help="jena-2020 (embedded, default), jena-2009-2016 (downloaded once, checksum-verified, "
        "cached) or the path of a CSV file",
    )
    run.add_argument(
        "--time-column", metavar="NAME", help="CSV time column (default: the first column)"
    )
    _time_format_flag(run)
    run.add_argument("--target", metavar="NAME", help="column to forecast (default: T (degC))")
    run.add_argument(
        "--features",
        metavar="A,B,...",
        help="comma-separated input columns (default: the 14 classic Jena columns, or every "
        "numeric column of a CSV that lacks them)",
    )
    run.add_argument(
        "--max-rows",
        type=_positive_int,
        metavar="N",
        help="use only the first N rows of the data (quick experiments and tests)",
    )
    run.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help="maximum epochs per trial (default: the space's setting)",
    )
    run.add_argument(
        "--seed",
        type=_int,
        metavar="N",
        help="seed of the sampler and of every trial (trial seed = N + trial number; default 42; "
        "give each worker of a distributed study its own)",
    )
    run.add_argument(
        "--split",
        metavar="POLICY",
        help="chronological (the book's 50/25/25, default) or blocked[:DAYS]: blocks of DAYS "
        "days (default 28) assigned train, train, val, test in turn, so every split covers every "
        "season; a resumed study remembers its split",
    )
    run.add_argument(
        "--folds",
        type=_int,
        metavar="K",
        help="cross-validated trials (K >= 2, a blocked split only): the non-test blocks rotate "
        "over K folds, each validating once; a trial's value is the mean over folds and its "
        "model the mean of its K fold models; a resumed study remembers its folds",
    )
    run.add_argument(
        "--engine",
        choices=("optuna", "keras-tuner"),
        help="search engine for a new study (default optuna; a resumed study remembers its "
        "engine); both record every trial in the study's storage",
    )
    run.add_argument(
        "--sampler",
        metavar="NAME",
        help="Optuna sampler: tpe (default; multivariate, grouped for conditional spaces), "
        "random, gp (needs the gp extra: PyTorch) or cmaes; or the space file's search: section",
    )
    run.add_argument(
        "--pruner",
        metavar="NAME",
        help="Optuna pruner: median (default), halving, hyperband or none",
    )
    run.add_argument(
        "--tuner",
        metavar="NAME",
        help="keras-tuner tuner with --engine keras-tuner: hyperband (default), bayesian or random",
    )
    run.add_argument(
        "--backend",
        metavar="NAME",
        help="Keras backend: tensorflow, jax or torch (sets KERAS_BACKEND; default: "
        "KERAS_BACKEND, else TensorFlow, else whichever of JAX or PyTorch is installed)",
    )
    run.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N trials at once as N worker processes on this machine, sharing the study "
        "(--trials is shared out; each worker gets a share of the GPU's memory)",
    )
    run.add_argument(
        "--max-consecutive-failures",
        type=_positive_int,
        default=5,
        metavar="N",
        help="stop the study after N failed trials in a row (default 5)",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="delete the Optuna study of this name and start a new one (MLflow runs are kept, "
        "the old parent run is tagged search.superseded)",
    )
    _verbose_flag(run)

    trials = commands.add_parser("trials", help="list a study's trials")
    trials.add_argument("study", metavar="STUDY", help="study name")
    _storage_flag(trials)
    _verbose_flag(trials)

    best = commands.add_parser("best", help="show the best trial of a study")
    best.add_argument("study", metavar="STUDY", help="study name")
    _storage_flag(best)
    _tracking_flag(best)
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
        type=_positive_int,
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
    _verbose_flag(best)

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
    _time_format_flag(predict)
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
        type=_positive_int,
        metavar="N",
        help="forecast with the study's ensemble of its N best trials (default 10) and the linear "
        "reference (`search best --ensemble`) instead of the best trial's model",
    )
    _storage_flag(predict)
    _tracking_flag(predict)
    _verbose_flag(predict)

    spaces = commands.add_parser("spaces", help="list search spaces, or show one")
    spaces.add_argument("name", nargs="?", metavar="NAME|PATH", help="a space to show in full")
    _verbose_flag(spaces)

    dashboard = commands.add_parser(
        "dashboard",
        help="browse the studies in optuna-dashboard",
        description="Serve optuna-dashboard (the Optuna project's web UI: studies, trials, "
        "intermediate values, plots) for a study storage until Ctrl-C.",
    )
    _storage_flag(dashboard)
    dashboard.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="HOST",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 exposes the "
        "dashboard, which can also delete studies, to the network)",
    )
    dashboard.add_argument(
        "--port",
        type=_int,
        default=8080,
        metavar="N",
        help="port to listen on (default 8080; 0 picks a free one)",
    )
    _verbose_flag(dashboard)

    from search.cli import manage

    manage.add_commands(commands)
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


def _stop_now(signum: int) -> None:
    """A second Ctrl-C (or SIGTERM): one line, and the process ends at once; the trial left
    RUNNING is recognised as a dead worker's and re-queued by the next run on this host."""
    sys.stderr.write(
        "search run: interrupted; the study can be continued (the stopped trial resumes from "
        "its last epoch)\n"
    )
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(128 + signum)


def _dispatch(args: argparse.Namespace, verbose: bool) -> int:
    from search.cli import manage

    if args.command in manage.COMMANDS:
        return manage.dispatch(args, verbose)
    if args.command == "spaces":
        return _cmd_spaces(args)
    if args.command == "trials":
        return _cmd_trials(args)
    if args.command == "best":
        return _cmd_best(args, verbose)
    if args.command == "predict":
        return _cmd_predict(args, verbose)
    if args.command == "dashboard":
        return _cmd_dashboard(args)
    return _cmd_run(args, verbose)


def _choose_backend(backend: str | None) -> None:
    """Choose the Keras backend (imports nothing; Keras reads KERAS_BACKEND when imported)."""
    from search.runtime import select_backend

    choice = select_backend(backend)
    if choice.note:
        print(f"note: {choice.note}", flush=True)


def _prepare_runtime(verbose: bool) -> None:
    """Choose the backend (if not chosen yet) and quieten TensorFlow before Keras is imported
    (unless --verbose)."""
    from search._quiet import quiet_native_stderr, quiet_python_loggers, set_quiet_environment
    from search.data.sources import report_downloads_to

    _choose_backend(None)
    report_downloads_to(_show_download)

    if not verbose:
        set_quiet_environment()
        log = Path(tempfile.gettempdir()) / f"search-native-{os.getuid()}.log"
        quiet_native_stderr(log)
        quiet_python_loggers()


def _show_download(url: str, done: int, total: int, finished: bool) -> None:
    """A download's progress on a terminal's stderr: MB done (of the total)."""
    if not sys.stderr.isatty():
        return
    if finished:
        sys.stderr.write("\n")
        return
    of = f" of {total / 1e6:.1f}" if total else ""
    sys.stderr.write(f"\rdownloading {url}: {done / 1e6:.1f}{of} MB")
    sys.stderr.flush()


def _cmd_run(args: argparse.Namespace, verbose: bool) -> int:
    from search.study import StudyRequest, plan_study

    features = [f.strip() for f in args.features.split(",")] if args.features else None
    request = StudyRequest(
        study=args.study,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        space=args.space,
        data=args.data,
        time_column=args.time_column,
        target=args.target,
        features=features,
        max_rows=args.max_rows,
        trials=args.trials,
        timeout=args.timeout,
        epochs=args.epochs,
        seed=args.seed,
        split=args.split,
        folds=args.folds,
        time_format=args.time_format,
        fresh=args.fresh,
        engine=args.engine,
        sampler=args.sampler,
        pruner=args.pruner,
        tuner=args.tuner,
        max_consecutive_failures=args.max_consecutive_failures,
        verbose=verbose,
        progress=lambda line: print(line, flush=True),
    )
    _choose_backend(args.backend)
    plan = plan_study(request)  # every input checked (contradictions refused) before Keras
    if args.jobs > 1:
        return _run_jobs(args, plan)

    _prepare_runtime(verbose)
    from search import interrupt
    from search.cli.render import outcome_lines

    # a first SIGINT/SIGTERM stops after the current epoch, a second one at once
    interrupt.install(on_second=_stop_now)
    from search.study import run_study

    try:
        outcome = run_study(request, plan)
    except KeyError as exc:
        from search.storage import record_gone

        if not record_gone(exc):
            raise
        raise SearchError(
            f"study {plan.study!r} was deleted from its storage while this worker ran it "
            "(search delete --force); nothing more is recorded"
        ) from None
    for line in outcome_lines(outcome):
        print(line, flush=True)
    return 1 if outcome.stopped_for_failures else 0


def _run_jobs(args: argparse.Namespace, plan: Any) -> int:
    """`--jobs N`: N worker processes of this study, then the study's summary."""
    from search.cli.jobs import run_jobs
    from search.cli.render import outcome_lines
    from search.engines import open_engine
    from search.record import StudyRecord
    from search.study import StudyOutcome

    if plan.record.engine == "keras-tuner":
        raise SearchError("--jobs runs Optuna studies; a keras-tuner study runs one worker")
    old_parent = plan.stored.mlflow_parent_run_id if plan.stored and args.fresh else None

    def parent_ready() -> bool:
        engine = open_engine("optuna", plan.storage)
        if not engine.exists(plan.study):
            return False
        engine.open(plan.study, seed=None, create=False)
        parent = engine.study_attrs().get("mlflow_parent_run_id")
        return bool(parent) and parent != old_parent

    code = run_jobs(args.argv, args.jobs, args.trials, args.seed, parent_ready)
    engine = open_engine("optuna", plan.storage)
    if engine.exists(plan.study):
        engine.open(plan.study, seed=None, create=False)
        record = StudyRecord.from_attrs(engine.study_attrs())
        outcome = StudyOutcome(
            study=plan.study,
            storage=plan.storage,
            tracking_uri=plan.tracking_uri,
            record=record,
            trials=engine.trials(),
            best=engine.best(),
            unit=_unit(record),
        )
        for line in outcome_lines(outcome):
            print(line, flush=True)
    return code


def _cmd_spaces(args: argparse.Namespace) -> int:
    from search.spaces import list_spaces, load_space

    if args.name:
        print(load_space(args.name).describe())
        return 0
    spaces = list_spaces()
    width = max(len(s.name) for s in spaces) if spaces else 0
    for space in spaces:
        print(f"{space.name:<{width}}  {space.description}")
    return 0


def _existing_study(args: argparse.Namespace):  # noqa: ANN202 - (Engine, StudyRecord)
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


def _unit(record) -> str:  # noqa: ANN001
    from search.data.sources import JENA_TARGET, unit_of

    return unit_of(record.target or JENA_TARGET)


def _cmd_trials(args: argparse.Namespace) -> int:
    from search.cli.render import trials_table

    engine, record = _existing_study(args)
    print(trials_table(args.study, engine.trials(), _unit(record)))
    return 0


def _cmd_best(args: argparse.Namespace, verbose: bool) -> int:
    from search.cli.render import best_text, ui_lines
    from search.tracking import check_tracking_uri, resolve_tracking_uri

    if args.export_model:
        from search.predict import check_export_folder

        check_export_folder(args.export_model)
    engine, record = _existing_study(args)
    unit = _unit(record)
    print(best_text(args.study, engine.best(), len(engine.trials()), unit))
    for line in ui_lines(
        resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri),
        record.mlflow_experiment_id,
    ):
        print(line)
    if args.evaluate_test:
        tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
        check_tracking_uri(tracking_uri)
        _prepare_runtime(verbose)
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
    built = _best_ensemble(args, engine, record, verbose) if args.ensemble else None
    if args.register or args.export_model:
        tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
        check_tracking_uri(tracking_uri)
        _prepare_runtime(verbose)
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
    args: argparse.Namespace, engine: Any, record: Any, verbose: bool
) -> tuple[Any, Any]:
    """Build, log and print the study's ensemble (and its test figures); returns it and its
    study context for saving."""
    from search.cli.render import ensemble_lines, ensemble_test_line
    from search.tracking import check_tracking_uri, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
    check_tracking_uri(tracking_uri)
    _prepare_runtime(verbose)
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


def _cmd_predict(args: argparse.Namespace, verbose: bool) -> int:
    from search.data.sources import validate_source
    from search.tracking import check_tracking_uri, resolve_tracking_uri

    validate_source(args.data)
    engine, record = _existing_study(args)
    tracking_uri = resolve_tracking_uri(args.tracking_uri or record.mlflow_tracking_uri)
    check_tracking_uri(tracking_uri)
    _prepare_runtime(verbose)
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


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from search.engines.dashboard import describe, serve

    try:
        serve(
            args.storage,
            host=args.host,
            port=args.port,
            on_ready=lambda dashboard: print(describe(dashboard), flush=True),
        )
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a dashboard stops
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
