"""Plain-text views of a study for the terminal: the trials table and the best trial."""

from __future__ import annotations

import math
from typing import Any

import optuna


def _duration(trial: optuna.trial.FrozenTrial) -> str:
    if trial.datetime_start is None:
        return "-"
    if trial.datetime_complete is None:
        return "running" if trial.state == optuna.trial.TrialState.RUNNING else "-"
    return f"{(trial.datetime_complete - trial.datetime_start).total_seconds():.1f}s"


def _number(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _params(params: dict[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def trials_table(study: optuna.Study) -> str:
    """One line per trial: number, state, val MAE (degC), skill vs baseline, duration, parameters."""
    header = ("trial", "state", "val MAE", "skill", "duration", "parameters")
    rows = []
    for trial in study.get_trials(deepcopy=False):
        value = trial.value
        if value is None and trial.intermediate_values:  # pruned: best reported value
            value = min(trial.intermediate_values.values())
        skill = trial.user_attrs.get("skill")
        rows.append(
            (
                str(trial.number),
                trial.state.name,
                _number(value, ".3f"),
                _number(skill, "+.1%"),
                _duration(trial),
                _params(trial.params)
                + (
                    f"  [{trial.user_attrs['fail_reason']}]"
                    if "fail_reason" in trial.user_attrs
                    else ""
                ),
            )
        )
    if not rows:
        return f"study {study.study_name!r} has no trials yet"
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [
            row[i].ljust(widths[i]) if i < 2 else row[i].rjust(widths[i])
            for i in range(len(widths))
        ]
        lines.append("  ".join(cells) + "  " + row[-1])
    return "\n".join(lines)


def best_text(study: optuna.Study) -> str:
    """The best trial's parameters and metrics, for `search best`."""
    try:
        best = study.best_trial
    except ValueError:
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        return f"study {study.study_name!r} has no completed trial yet ({len(states)} trials)"
    attrs = best.user_attrs
    lines = [
        f"study {study.study_name!r}: best trial {best.number}",
        f"  val MAE        {best.value:.4f} degC",
        f"  baseline MAE   {_number(attrs.get('baseline_mae'), '.4f')} degC",
        f"  skill          {_number(attrs.get('skill'), '+.2%')}",
        f"  epochs run     {attrs.get('epochs_run', '-')}",
        f"  train seconds  {_number(attrs.get('train_seconds'), '.1f')}",
        f"  parameters     {attrs.get('param_count', '-')}",
        f"  MLflow run     {attrs.get('mlflow_run_id', '-')}",
        "  hyperparameters:",
    ]
    width = max((len(k) for k in best.params), default=0)
    for key, value in best.params.items():
        lines.append(f"    {key:<{width}}  {value}")
    return "\n".join(lines)
