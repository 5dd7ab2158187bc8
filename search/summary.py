"""A study's summary on its parent run: the trial counts, the best trial (its run, params and
skill) and the figures (best per architecture, the engine's own)."""

from __future__ import annotations

import math
from typing import Any

from search.engines import Engine, TrialSummary
from search.tracking import Tracker
from search.tracking.spool import SPOOL_PREFIX

__all__ = ["objective_name", "summarize"]


def objective_name(unit: str) -> str:
    """What the study minimises, with its unit, as the engine's views name it."""
    return f"val MAE ({unit})" if unit else "val MAE"


def best_per_architecture(trials: list[TrialSummary]) -> list[dict[str, Any]]:
    """The best COMPLETE trial of each architecture with its references (for the chart)."""
    best: dict[str, TrialSummary] = {}
    for trial in trials:
        arch = trial.attrs.get("architecture") or trial.params.get("architecture")
        if trial.state != "COMPLETE" or trial.value is None or not arch:
            continue
        if arch not in best or trial.value < (best[arch].value or math.inf):
            best[arch] = trial
    return [
        {
            "architecture": arch,
            "best": float(t.value or 0.0),
            "naive": float(t.attrs.get("baseline_mae", math.nan)),
            "linear": float(t.attrs.get("linear_mae", math.nan)),
        }
        for arch, t in sorted(best.items())
    ]


def run_of(tracker: Tracker, trial: TrialSummary) -> str:
    """A trial's MLflow run id; a run still in the spool is named by its spool reference."""
    ref = str(trial.attrs.get("mlflow_run_id", ""))
    if not ref.startswith(SPOOL_PREFIX):
        return ref
    try:
        return tracker.resolve_run(ref) or ref
    except Exception:  # noqa: BLE001 - the server is down: the reference will do
        return ref


def summarize(engine: Engine, tracker: Tracker, status: str, unit: str) -> None:
    """Log the best trial and the study's figures to the parent run."""
    parent = tracker.parent_run_id
    if parent is None:
        return
    trials = engine.trials()
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    metrics: dict[str, float] = {f"trials_{k.lower()}": v for k, v in counts.items()}
    best = engine.best()
    if best is not None and best.value is not None:
        metrics["best_val_mae"] = float(best.value)
        skill = best.attrs.get("skill")
        if skill is not None and math.isfinite(skill):
            metrics["best_skill"] = float(skill)
        tracker.set_tags(
            parent,
            {
                "search.best_trial": best.number,
                "search.best_run_id": run_of(tracker, best),
                "search.best_params": best.params,
            },
        )
    tracker.log_metrics(parent, metrics, step=len(trials))
    import matplotlib.pyplot as plt

    rows = best_per_architecture(trials)
    if rows:
        from search.training.plots import architecture_chart

        figure = architecture_chart(rows, unit)
        tracker.log_figure(parent, figure, "architectures.png")
        plt.close(figure)

    for figure_name, figure in engine.figures().items():
        tracker.log_figure(parent, figure, figure_name)
        plt.close(figure)
    tracker.finish_parent_run(status)
