"""Plain-text views for the terminal: the trials table, the best trial, a run's outcome."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.engines import TrialSummary

if TYPE_CHECKING:
    from search.study import StudyOutcome


def _duration(trial: TrialSummary) -> str:
    if trial.datetime_start is None:
        return "-"
    if trial.datetime_complete is None:
        return "running" if trial.state == "RUNNING" else "-"
    return f"{(trial.datetime_complete - trial.datetime_start).total_seconds():.1f}s"


def _number(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _value(value: Any) -> str:
    """A parameter's value as `trials` and `best` both print it (floats to 3 significant
    digits: a learning rate of 0.0004576 is 0.000458)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# settings a trial records besides its sampled parameters (the book configuration, trial 0,
# fixes them instead of sampling them)
_SETTINGS = ("target_scaling", "calendar_features")


def full_params(trial: TrialSummary) -> dict[str, Any]:
    """The trial's parameters, with the settings it fixed rather than sampled."""
    params = dict(trial.params)
    for key in _SETTINGS:
        if key not in params and key in trial.attrs:
            params[key] = trial.attrs[key]
    return params


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in params.items())


def best_value(trial: TrialSummary) -> float | None:
    """The trial's best val MAE: a pruned trial's best epoch, not its last (Optuna keeps the last
    reported value as a pruned trial's value)."""
    if trial.state == "PRUNED" and trial.intermediate_values:
        return min(trial.intermediate_values.values())
    if trial.value is None and trial.intermediate_values:
        return min(trial.intermediate_values.values())
    return trial.value


def script(name: str) -> str:
    """How the user's shell starts this environment's script ``name``: the bare name when PATH
    finds this environment's, else its full path."""
    path = Path(sys.executable).parent / name
    found = shutil.which(name)
    if not path.exists() or (found is not None and Path(found).resolve() == path.resolve()):
        return name
    return str(path)


def trials_table(study: str, trials: list[TrialSummary], unit: str) -> str:
    """One line per trial: number, state, val MAE (in the target's unit), skill vs baseline,
    duration, parameters."""
    header = ("trial", "state", f"val MAE ({unit})", "skill", "duration", "parameters")
    rows = []
    for trial in trials:
        value = best_value(trial)
        skill = trial.attrs.get("skill")
        rows.append(
            (
                str(trial.number),
                trial.state,
                _number(value, ".3f"),
                _number(skill, "+.1%"),
                _duration(trial),
                _params(full_params(trial))
                + (f"  [{trial.attrs['fail_reason']}]" if "fail_reason" in trial.attrs else ""),
            )
        )
    if not rows:
        return f"study {study!r} has no trials yet"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [
            row[i].ljust(widths[i]) if i < 2 else row[i].rjust(widths[i])
            for i in range(len(widths))
        ]
        lines.append("  ".join(cells) + "  " + row[-1])
    return "\n".join(lines)


def best_text(study: str, best: TrialSummary | None, n_trials: int, unit: str) -> str:
    """The best trial's parameters and metrics, for `search best`."""
    if best is None or best.value is None:
        return f"study {study!r} has no completed trial yet ({n_trials} trials)"
    attrs = best.attrs
    lines = [
        f"study {study!r}: best trial {best.number}",
        f"  val MAE        {best.value:.3f} {unit}",
        f"  naive MAE      {_number(attrs.get('baseline_mae'), '.3f')} {unit} (on this trial's "
        "val windows)",
        f"  skill          {_number(attrs.get('skill'), '+.1%')} (against naive)",
        f"  linear MAE     {_number(attrs.get('linear_mae'), '.3f')} {unit} (same windows)",
        f"  linear skill   {_number(attrs.get('linear_skill'), '+.1%')}",
        f"  epochs run     {attrs.get('epochs_run', '-')}",
        f"  train seconds  {_number(attrs.get('train_seconds'), '.1f')}",
        f"  model weights  {_number(attrs.get('param_count'), ',')}",
        f"  MLflow run     {attrs.get('mlflow_run_id', '-')}",
    ]
    lines[1:1] = estimate_lines(best, unit)
    lines[-1:-1] = step_lines(attrs, unit)
    lines.append("  hyperparameters:")
    params = full_params(best)
    width = max((len(k) for k in params), default=0)
    for key, value in params.items():
        lines.append(f"    {key:<{width}}  {_value(value)}")
    return "\n".join(lines)


def _by_step(values: list[float], fmt: str) -> str:
    """A per-step list, shortened to steps 1, 6, 12, 18 and the last when it is long."""
    shown = range(len(values)) if len(values) <= 6 else sorted({0, 5, 11, 17, len(values) - 1})
    return ", ".join(f"{i + 1} h {format(values[i], fmt)}" for i in shown if i < len(values))


def step_lines(attrs: dict[str, Any], unit: str) -> list[str]:
    """A multi-step or quantile trial's val figures for `search best`: MAE by step (the val MAE
    above is their mean) and the quantile loss and interval coverage against naive's."""
    lines = []
    by_step = attrs.get("val_mae_by_step")
    if by_step:
        lines.append(f"  MAE by step    {_by_step(by_step, '.3f')} {unit} (val MAE is their mean)")
    if "val_wql" in attrs:
        lines.append(
            f"  quantile loss  {_number(attrs.get('val_wql'), '.4f')} weighted (naive with "
            f"train-residual intervals {_number(attrs.get('naive_wql'), '.4f')})"
        )
        lines.append(
            f"  coverage       {_number(attrs.get('val_coverage'), '.1%')} of val inside the "
            f"uncalibrated interval (naive {_number(attrs.get('naive_coverage'), '.1%')}); the "
            "saved model's interval is calibrated on these val windows"
        )
    return lines


def test_step_lines(result: dict[str, Any]) -> list[str]:
    """`--evaluate-test`'s multi-step and quantile figures."""
    unit = result.get("unit", "")
    lines = []
    if result.get("mae_by_step"):
        lines.append(
            f"test MAE by step: {_by_step(result['mae_by_step'], '.3f')} {unit} (naive "
            f"{_by_step(result['naive_mae_by_step'], '.3f')}); test MAE above is their mean"
        )
    if "test_wql" in result:
        level = result["test_interval_level"]
        lines.append(
            f"test weighted quantile loss {result['test_wql']:.4f} (naive "
            f"{result['test_naive_wql']:.4f}, {result['test_wql_skill']:+.1%} better); "
            f"{level:.0%} interval covers {result['test_coverage']:.1%} of test (per step "
            f"{result['test_coverage_min_step']:.1%}-{result['test_coverage_max_step']:.1%}; "
            f"naive's {result['test_naive_coverage']:.1%})"
        )
    return lines


def estimate_lines(best: TrialSummary, unit: str) -> list[str]:
    """A cross-validated trial's estimate with its spread over folds (standard errors), and a
    warning when it does not beat the linear reference by more than that; nothing for a trial
    scored on one validation slice."""
    attrs = best.attrs
    folds = attrs.get("folds")
    if not folds or best.value is None:
        return []

    def pm(key: str, fmt: str, scale: float = 1.0) -> str:
        value = attrs.get(key)
        return "" if value is None else f" ± {float(value) * scale:{fmt}}"

    lines = [
        f"  estimate       val MAE {best.value:.3f}{pm('val_mae_se', '.3f')} {unit} over {folds} "
        f"folds; skill {_number(attrs.get('skill'), '+.1%')}{pm('skill_se', '.1f', 100)} vs "
        f"naive, {_number(attrs.get('linear_skill'), '+.1%')}{pm('linear_skill_se', '.1f', 100)} "
        "vs linear (standard errors over folds)"
    ]
    linear, spread = attrs.get("linear_skill"), attrs.get("linear_skill_se")
    if linear is not None and spread is not None and float(linear) <= float(spread):
        lines.append(
            f"  note: trial {best.number} does not beat the linear reference by more than its "
            f"standard error ({float(linear):+.1%} ± {100 * float(spread):.1f}): a ridge on the "
            "same windows does about as well"
        )
    return lines


def ensemble_lines(ensemble: Any) -> list[str]:
    """What `search best --ensemble` prints: the members and weights, and the figures on the
    target times every member forecasts."""
    unit = ensemble.unit
    members = ", ".join(
        f"{'linear' if m == 'linear' else 'trial ' + m} {w:.2f}"
        for m, w in ensemble.weights.items()
    )
    chosen = sum(
        1 for m, c in zip(ensemble.members, ensemble.counts, strict=True) if c and m != "linear"
    )
    linear = "and the linear reference" if ensemble.counts[-1] else "(the linear reference unused)"
    where = (
        f"out-of-fold val predictions of {ensemble.folds} folds"
        if not ensemble.in_sample
        else "val"
    )
    lines = [
        f"ensemble       {chosen} of the {len(ensemble.members) - 1} best trials {linear}, "
        f"{ensemble.steps} greedy steps on the {where} ({ensemble.targets:,} target "
        f"times): {members}",
        f"  val MAE {ensemble.val_mae:.3f} {unit} (best trial {ensemble.best_trial}: "
        f"{ensemble.best_val_mae:.3f}; naive {ensemble.naive_val_mae:.3f}; linear "
        f"{ensemble.linear_val_mae:.3f} on the same times)",
    ]
    if ensemble.in_sample:
        lines.append(
            f"  estimate {ensemble.estimate_mae:.3f} {unit}, skill {ensemble.skill:+.1%} vs naive, "
            f"{ensemble.linear_skill:+.1%} vs linear: in-sample (the weights were chosen on these "
            "val windows; --folds gives an estimate they never saw)"
        )
    else:
        lines.append(
            f"  estimate {ensemble.estimate_mae:.3f} {unit}, skill {ensemble.skill:+.1%} vs naive, "
            f"{ensemble.linear_skill:+.1%} vs linear: cross-fitted (each fold scored with "
            "weights chosen on the other folds)"
        )
    if ensemble.run_id:
        lines.append(f"  logged as MLflow run {ensemble.run_id} under the study's parent run")
    return lines


def ensemble_test_line(ensemble: Any, figures: dict[str, Any]) -> str:
    """`search best --ensemble --evaluate-test`: the ensemble's test figures."""
    return (
        f"ensemble test MAE {figures['ensemble_test_mae']:.3f} {ensemble.unit} (naive "
        f"{figures['ensemble_test_baseline_mae']:.3f}, skill {figures['ensemble_test_skill']:+.1%}; "
        f"linear {figures['ensemble_test_linear_mae']:.3f}, skill "
        f"{figures['ensemble_test_linear_skill']:+.1%}; best trial "
        f"{figures['ensemble_test_best_trial_mae']:.3f} on the same "
        f"{figures['test_targets']:,} times); selection gap "
        f"{figures['ensemble_selection_gap']:+.1f} points"
    )


def outcome_lines(outcome: StudyOutcome) -> list[str]:
    """The closing lines of `search run`: counts, the best trial, where the results are."""
    from search.tracking import redact

    counts = ", ".join(f"{v} {k}" for k, v in sorted(outcome.counts.items()))
    lines = ["", f"study {outcome.study!r}: {len(outcome.trials)} trials ({counts})"]
    if outcome.stopped_for_failures:
        failed = [t for t in outcome.trials if t.state == "FAIL"]
        reason = failed[-1].attrs.get("fail_reason", "no reason recorded") if failed else ""
        lines.append(
            f"stopped: {outcome.stopped_for_failures} trials failed in a row (the last: "
            f"{reason}); fix the cause and run again to continue, or raise "
            "--max-consecutive-failures"
        )
    best = outcome.best
    if best is not None and best.value is not None:
        attrs = best.attrs
        extra = ""
        if attrs.get("baseline_mae") is not None and attrs.get("skill") is not None:
            extra = (
                f" (on its val windows: naive {attrs['baseline_mae']:.3f}, "
                f"skill {attrs['skill']:+.1%}"
            )
            if attrs.get("linear_mae") is not None and attrs.get("linear_skill") is not None:
                extra += f"; linear {attrs['linear_mae']:.3f}, skill {attrs['linear_skill']:+.1%}"
            extra += ")"
        lines.append(f"best: trial {best.number}, val MAE {best.value:.3f} {outcome.unit}{extra}")
    else:
        lines.append("no trial completed yet")
    storage = redact(outcome.storage)
    if outcome.spool is not None:
        spool = outcome.spool
        why = f" ({spool.reason})" if spool.reason else ""
        lines.append(
            f"tracking: {spool.operations} logging operations of {spool.runs} runs are kept in "
            f"{spool.folder}, not yet on the tracking server{why}; nothing is lost: run `search "
            f"sync {outcome.study} --storage {storage}` when the server is back"
        )
    lines.append(f"list the trials: {script('search')} trials {outcome.study} --storage {storage}")
    lines.append(
        f"results: Optuna study {outcome.study!r} in {storage}; MLflow experiment "
        f"{outcome.study!r} in {redact(outcome.tracking_uri)}"
    )
    experiment_id = outcome.experiment_id or outcome.record.mlflow_experiment_id
    lines.extend(ui_lines(outcome.tracking_uri, experiment_id))
    return lines


def ui_lines(tracking_uri: str, experiment_id: str | None) -> list[str]:
    """How to open the study's runs in the MLflow UI: the command that starts a local store's
    UI, then (the last line) the address of the runs table."""
    from search.tracking import runs_link, ui_command

    local = not tracking_uri.startswith(("http://", "https://"))
    start = ui_command(tracking_uri, script("mlflow"))
    if experiment_id is None:
        return [f"open the MLflow UI: {start}"]
    lines = [f"start the MLflow UI: {start}"] if local else []
    lines.append(f"the study's runs in the MLflow UI: {runs_link(tracking_uri, experiment_id)}")
    return lines
