"""What a user sees (issue 20): run statuses in the MLflow UI, the objective's name, one vocabulary.

Fast tests: the tracker and the engine in-process, against SQLite stores in the test's tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from search.tracking.mlflow import MlflowTracker
from tests.cli_helpers import migrated_store


def test_a_trial_run_ends_with_the_status_of_its_state(tmp_path: Path) -> None:
    uri = migrated_store(tmp_path / "mlflow.db")
    tracker = MlflowTracker(uri, "states")
    tracker.create_parent_run({}, {})
    expected = {  # Optuna's state -> (MLflow status, search.state tag)
        "COMPLETE": ("FINISHED", "COMPLETE"),
        "PRUNED": ("FINISHED", "PRUNED"),  # stopped early as asked: not a crash, no red cross
        "FAIL": ("FAILED", "FAIL"),
        "INTERRUPTED": ("KILLED", "FAIL"),  # Ctrl-C / SIGTERM: a FAIL in the study
    }
    client = mlflow.MlflowClient(tracking_uri=uri)
    for number, (state, want) in enumerate(expected.items()):
        run_id = tracker.create_trial_run(number, {})
        tracker.end_trial_run(run_id, state)
        run = client.get_run(run_id)
        assert (run.info.status, run.data.tags["search.state"]) == want, state


def _pruned_study() -> list:
    """Two Optuna trials as a study leaves them: trial 0 the book configuration (its fixed
    settings in its attributes, not its parameters), trial 1 pruned after its third epoch, whose
    best epoch (the second) beat its last."""
    import optuna

    from search.engines.optuna import summary

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    book = study.ask()
    book.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    book.set_user_attr("target_scaling", "none")
    book.set_user_attr("calendar_features", False)
    study.tell(book, 3.5)
    pruned = study.ask()
    pruned.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    pruned.suggest_categorical("target_scaling", ["none", "standard"])
    for epoch, value in enumerate([4.5, 4.140, 4.304]):
        pruned.report(value, epoch)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    return [summary(t) for t in study.trials]


def test_trials_shows_a_pruned_trials_best_value_and_every_parameter() -> None:
    from search.cli.render import trials_table

    trials = _pruned_study()
    assert trials[1].value == pytest.approx(4.304)  # what Optuna keeps: the last epoch's
    lines = trials_table("s", trials, "degC").splitlines()
    assert lines[0].split()[:4] == ["trial", "state", "val", "MAE"]
    book, pruned = lines[1], lines[2]
    assert pruned.split()[:3] == ["1", "PRUNED", "4.140"], pruned
    assert "target_scaling=none" in book and "calendar_features=False" in book, book


def test_trials_and_best_print_a_parameter_alike() -> None:
    from search.cli.render import best_text, trials_table

    trials = _pruned_study()
    book = trials[0]
    book.params["learning_rate"] = 0.0004576418837415782
    table = trials_table("s", trials, "degC").splitlines()[1]
    best = best_text("s", book, 2, "degC").splitlines()
    assert "learning_rate=0.000458" in table, table
    assert any(line.split() == ["learning_rate", "0.000458"] for line in best), best
    assert any(line.split() == ["target_scaling", "none"] for line in best), best


def test_epochs_count_from_1_on_the_terminal_in_history_csv_and_best_epoch(tmp_path: Path) -> None:
    """One trial of 3 epochs: the terminal's `epoch N/3`, history.csv's `epoch` column and the
    run's `best_epoch` count from 1; MLflow's steps (and Optuna's) are the epoch less one, the
    same values at both. `skill` in MLflow is a fraction, its trial's naive on its own windows."""
    import csv
    import re

    from search.storage import resolve_storage_url
    from search.study import StudyRequest, run_study

    lines: list[str] = []
    tracking = migrated_store(tmp_path / "mlflow.db")
    outcome = run_study(
        StudyRequest(
            study="epochs",
            storage=resolve_storage_url(f"sqlite:///{tmp_path / 'o.db'}"),
            tracking_uri=tracking,
            space="quick",
            max_rows=9000,
            trials=1,
            epochs=3,
            seed=3,
            progress=lines.append,
        )
    )
    trial = outcome.trials[0]
    printed = [line for line in lines if re.match(r"\s+trial 0 epoch \d/3:", line)]
    terminal = [int(re.search(r"epoch (\d)/3", line)[1]) for line in printed]  # type: ignore[index]
    assert terminal == [1, 2, 3], lines
    assert all("(mse on the target in degC)" in line for line in printed), printed  # book: raw
    assert all("on this trial's val windows: naive " in line for line in printed), printed
    client = mlflow.MlflowClient(tracking_uri=tracking)
    run_id = trial.attrs["mlflow_run_id"]
    folder = client.download_artifacts(run_id, "history.csv", str(tmp_path))
    rows = list(csv.DictReader(Path(folder).open()))
    assert [int(row["epoch"]) for row in rows] == terminal
    logged = client.get_metric_history(run_id, "val_mae")
    assert [(m.step + 1, round(m.value, 5)) for m in logged] == [
        (int(row["epoch"]), round(float(row["val_mae"]), 5)) for row in rows
    ]
    assert sorted(trial.intermediate_values) == [m.step for m in logged]
    best = min(rows, key=lambda row: float(row["val_mae"]))
    metrics = client.get_run(run_id).data.metrics
    assert metrics["best_epoch"] == int(best["epoch"])
    assert metrics["skill"] == pytest.approx(1 - metrics["best_val_mae"] / metrics["baseline_mae"])
    assert -1 < metrics["skill"] < 1  # a fraction, not a percentage


# ------------------------------------------------------------------------------------ pictures


def _val_period(days: int = 70, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 6 * 24 * days
    times = np.datetime64("2020-07-10T00:00") + np.arange(n) * np.timedelta64(10, "m")
    actual = 15 + 6 * np.sin(2 * np.pi * np.arange(n) / 144) + rng.normal(0, 0.5, n)
    naive = actual + rng.normal(0, 2.5, n)
    forecast = actual + rng.normal(0.4, 1.5, n) + (np.arange(n) % 144 < 36)  # worse at night
    forecast[::997] += 40  # a few wild errors, beyond the drawn range
    return times, actual, forecast, naive


def _legends_right_of_their_axes(figure) -> None:
    """Each legend right of its axes, and the figure laid out: every axes with its labels,
    ticks, title and legend inside the figure (nothing cut off at an edge)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    page = figure.bbox
    for axis in figure.axes:
        legend = axis.get_legend()
        if legend is not None:
            assert legend.get_window_extent(renderer).x0 >= axis.get_window_extent(renderer).x1
        box = axis.get_tightbbox(renderer)
        assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, (axis.get_title(), box, page)
        assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, (axis.get_title(), box, page)


def test_the_forecast_figure_says_horizon_error_sign_bias_clipping_and_calendar() -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    from search.training.plots import forecast_figure

    times, actual, forecast, naive = _val_period()
    figure = forecast_figure(times, actual, forecast, naive, "degC", 6, horizon_hours=24)
    try:
        titles = {axis.get_title(): axis for axis in figure.axes}
        series, errors, by_hour, by_month = figure.axes
        assert "24 h ahead" in series.get_title() and "24 h ahead" in errors.get_title()
        assert "forecast - actual" in errors.get_xlabel()
        legend = [t.get_text() for t in errors.get_legend().get_texts()]
        model_error = forecast - actual
        assert f"mean bias {model_error.mean():+.3f}" in legend[1], legend
        limit = np.percentile(np.abs(np.concatenate([model_error, naive - actual])), 99.5)
        dropped = int(np.sum(np.abs(model_error) > limit))
        assert dropped >= len(actual) // 997  # the wild errors are beyond it...
        assert f"model {dropped:,} " in errors.get_title(), errors.get_title()  # ...and said
        assert "MAE by hour of day, whole val period" in titles
        hours = (np.arange(len(actual)) // 6) % 24
        expected = [np.abs(model_error[hours == h]).mean() for h in range(24)]
        assert by_hour.get_lines()[0].get_ydata() == pytest.approx(expected)
        months = by_month.get_lines()[0].get_ydata()
        assert np.isfinite(months[6:9]).all() and np.isnan(months[:6]).all()  # Jul-Sep only
        _legends_right_of_their_axes(figure)
    finally:
        plt.close(figure)


def test_the_architecture_chart_starts_at_zero_and_its_labels_clear_the_markers() -> None:
    import matplotlib.pyplot as plt

    from search.training.plots import architecture_chart

    rows = [
        {"architecture": "dense", "best": 2.96, "naive": 3.03, "linear": 2.93},
        {"architecture": "lstm", "best": 2.85, "naive": 3.03, "linear": 2.90},
    ]
    figure = architecture_chart(rows, "degC")
    try:
        (axis,) = figure.axes
        assert axis.get_ylim()[0] == 0.0
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        lowest_marker = axis.transData.transform((0, min(r["linear"] for r in rows)))[1]
        labels = [t for t in axis.texts if t.get_text() in ("2.960", "2.850")]
        assert len(labels) == 2
        for label in labels:  # well below the reference markers (900-point wide dashes)
            assert label.get_window_extent(renderer).y1 < lowest_marker - 20
        _legends_right_of_their_axes(figure)
    finally:
        plt.close(figure)


def test_the_learning_curve_names_its_trial_and_counts_whole_epochs() -> None:
    import matplotlib.pyplot as plt

    from search.training.plots import learning_curve

    history = [{"epoch": e, "mae": 3 - 0.3 * e, "val_mae": 3.2 - 0.2 * e} for e in range(3)]
    figure = learning_curve(history, 3.03, "degC", 2.93, trial=4)
    try:
        (axis,) = figure.axes
        assert "trial 4" in axis.get_title()
        figure.canvas.draw()
        ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
        assert ticks == [1, 2, 3]
        _legends_right_of_their_axes(figure)
    finally:
        plt.close(figure)


def test_the_importance_plot_waits_for_10_complete_trials(tmp_path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    from search.engines.base import SearchOptions
    from search.engines.optuna import OptunaEngine

    engine = OptunaEngine(f"sqlite:///{tmp_path / 'o.db'}")
    engine.configure(SearchOptions())
    engine.open("s", seed=1)
    drawn = []
    for number in range(10):
        trial = engine.study.ask()
        x = trial.suggest_float("x", -1.0, 1.0)
        trial.suggest_int("y", 1, 10)
        engine.study.tell(trial, x * x + number)
        if number in (8, 9):  # 9, then 10 complete trials
            with matplotlib.rc_context():  # from matplotlib's defaults, whatever ran before
                matplotlib.style.use("default")
                style = dict(matplotlib.rcParams)
                figures = engine.figures()
                # optuna draws in its own style and leaves the process's as it was: later
                # figures (the next study's trials, in the same process) keep their look
                assert dict(matplotlib.rcParams) == style
            assert figures["optimization_history.png"].axes[0].get_facecolor()[:3] != (1, 1, 1)
            drawn.append(sorted(figures))
            for figure in figures.values():
                plt.close(figure)
    assert drawn == [
        ["optimization_history.png"],
        ["optimization_history.png", "param_importances.png"],
    ]
