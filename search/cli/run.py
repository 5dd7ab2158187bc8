"""`search run`: run or continue a study."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from search.cli.common import (
    choose_backend,
    positive_float,
    positive_int,
    storage_flag,
    time_format_flag,
    tracking_flag,
    unit_of_record,
    verbose_flag,
    whole_number,
)
from search.errors import SearchError


def add_parser(commands: Any) -> None:
    """`search run`: its flags, in the order --help shows them."""
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
        "--trials", type=positive_int, default=6, metavar="N", help="trials to run now (default 6)"
    )
    run.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="a budget counted from the start of optimization in this process: when it is "
        "spent, the running trial stops at its next epoch's end (PRUNED, "
        "search.stopped_by=timeout, its best epoch logged) and the run ends; a re-run "
        "continues the study (default: no limit)",
    )
    storage_flag(run)
    tracking_flag(run)
    _data_flags(run)
    _training_flags(run)
    _engine_flags(run)
    _process_flags(run)


def _data_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--data",
        metavar="SOURCE",
        help="jena-2020 (embedded, default), jena-2009-2016 (downloaded once, checksum-verified, "
        "cached) or the path of a CSV file",
    )
    run.add_argument(
        "--time-column", metavar="NAME", help="CSV time column (default: the first column)"
    )
    time_format_flag(run)
    run.add_argument("--target", metavar="NAME", help="column to forecast (default: T (degC))")
    run.add_argument(
        "--features",
        metavar="A,B,...",
        help="comma-separated input columns (default: the 14 classic Jena columns, or every "
        "numeric column of a CSV that lacks them)",
    )
    run.add_argument(
        "--max-rows",
        type=positive_int,
        metavar="N",
        help="use only the first N rows of the data (quick experiments and tests)",
    )


def _training_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--epochs",
        type=positive_int,
        metavar="N",
        help="maximum epochs per trial (default: the space's setting)",
    )
    run.add_argument(
        "--seed",
        type=whole_number,
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
        type=whole_number,
        metavar="K",
        help="cross-validated trials (K >= 2, a blocked split only): the non-test blocks rotate "
        "over K folds, each validating once; a trial's value is the mean over folds and its "
        "model the mean of its K fold models; a resumed study remembers its folds",
    )


def _engine_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--engine",
        choices=("optuna", "keras-tuner"),
        help="search engine for a new study (default optuna; a resumed study remembers its "
        "engine); both record every trial in the study's storage",
    )
    run.add_argument(
        "--sampler",
        metavar="NAME",
        help="Optuna sampler for a new study: tpe-sobol (default: the book trial and 3 "
        "scrambled Sobol points, then TPE), tpe (5 random start-up trials), random, gp "
        "(needs the gp extra: PyTorch) or cmaes; or the space file's search: section",
    )
    run.add_argument(
        "--pruner",
        metavar="NAME",
        help="Optuna pruner for a new study: percentile (default: keep the best third from "
        "the first epoch), median, halving, hyperband or none",
    )
    run.add_argument(
        "--tuner",
        metavar="NAME",
        help="keras-tuner tuner with --engine keras-tuner: hyperband (default), bayesian or random",
    )


def _process_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--backend",
        metavar="NAME",
        help="Keras backend: tensorflow, jax or torch (sets KERAS_BACKEND; default: "
        "KERAS_BACKEND, else TensorFlow, else whichever of JAX or PyTorch is installed)",
    )
    run.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="run N trials at once as N worker processes on this machine, sharing the study "
        "(--trials is shared out; each worker gets a share of the GPU's memory)",
    )
    run.add_argument(
        "--max-consecutive-failures",
        type=positive_int,
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
    verbose_flag(run)


def command(
    args: argparse.Namespace, verbose: bool, prepare_runtime: Callable[[bool], None]
) -> int:
    """`search run`: plan the study (every input checked before Keras), then run it here or in
    --jobs worker processes."""
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
    choose_backend(args.backend)
    plan = plan_study(request)  # every input checked (contradictions refused) before Keras
    if args.jobs > 1:
        return _run_jobs(args, plan)

    prepare_runtime(verbose)
    from search import interrupt
    from search.cli.render import outcome_lines

    # a first SIGINT/SIGTERM stops after the current epoch, a second one at once
    interrupt.install(on_second=_stop_now, on_first=_stopping)
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
            unit=unit_of_record(record),
        )
        for line in outcome_lines(outcome):
            print(line, flush=True)
    return code


def _stopping(signum: int) -> None:
    """The first Ctrl-C (or SIGTERM), acknowledged at once: the epoch may take a while. Inside
    the signal handler, so written with ``os.write`` (a buffered stream may be mid-write)."""
    from search.interrupt import signal_name

    os.write(
        sys.stdout.fileno(),
        f"{signal_name(signum)}: stopping after this epoch (its checkpoint saved); "
        "send it again (Ctrl-C) to stop at once\n".encode(),
    )


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
