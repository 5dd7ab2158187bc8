"""The one preprocessing spec of a study's model: what it needs done to raw rows, as plain
JSON-able values, for `search predict`, the saved MLflow model and an ensemble's members."""

from __future__ import annotations

from typing import Any

import numpy as np

from search.record import StudyRecord

__all__ = ["preprocessing_spec"]


def preprocessing_spec(
    record: StudyRecord, config: Any, dataset: Any, prepared: Any
) -> dict[str, Any]:
    """What the best model needs done to raw rows, as plain JSON-able values: the one place
    that says it, for `search predict` and for the saved MLflow model alike.

    Keys: ``time_column`` and ``time_format`` (the study's own), ``features`` (the study's
    columns, in order), ``target`` and ``unit``, ``mean`` and ``std`` (per feature, applied to the
    raw values before the model), ``calendar`` (the four calendar inputs appended),
    ``lookback_hours``, ``sequence_length`` and ``sampling_rate`` (the window, in rows),
    ``horizon_hours`` and ``horizon_rows``, ``steps_per_hour`` (the rows' grid), ``target_steps``
    (hourly steps from the horizon on) and ``quantiles`` (the levels, or None).
    """
    from search.data.sources import unit_of
    from search.serving.forecast import SPEC_VERSION

    window = config.window(prepared.steps_per_hour)
    view = prepared.model_view()  # raw (mean 0, std 1) for a fold-mean model: it normalizes
    return {
        "spec_version": SPEC_VERSION,
        "time_column": str(dataset.report.get("time_column") or record.time_column),
        "time_format": record.time_format or dataset.report.get("time_format"),
        "features": [str(name) for name in prepared.feature_names],
        "target": str(prepared.target_name),
        "unit": unit_of(prepared.target_name),
        "mean": [float(v) for v in np.asarray(view.mean, np.float64)],
        "std": [float(v) for v in np.asarray(view.std, np.float64)],
        "calendar": bool(config.calendar_features),
        "lookback_hours": float(config.lookback_hours),
        "sequence_length": int(window.sequence_length),
        "sampling_rate": int(window.sampling_rate),
        "horizon_hours": float(window.horizon_hours),
        "horizon_rows": int(window.horizon_rows),
        "steps_per_hour": float(prepared.steps_per_hour),
        "target_steps": int(window.target_steps),
        "quantiles": [float(q) for q in config.quantiles] if config.quantiles else None,
    }
