"""Ensembles of trials (`search best --ensemble`): the greedy weights reproduce the ensemble's
val MAE from the members' saved out-of-fold predictions (recomputed here with numpy), members of
different geometry are combined on the same target times, the test figures are recomputed from
the members' forecasts, and bad input is one line with exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest

from search.data.prepare import load_prepared
from search.data.references import linear_reference
from search.data.sources import JENA_FEATURES
from search.data.windows import make_windows
from search.ensemble import (
    _aligned,
    _Forecasts,
    _linear_forecasts,
    _ranked,
    greedy_selection,
    linear_member_model,
)
from search.errors import SearchError
from tests.cli_helpers import run_cli_here
from tests.test_bad_input import assert_user_error
from tests.test_folds import REACH, ROWS, _args, _study
from tests.test_use import _new_file, answer_without_search


def test_greedy_selection_adds_the_member_that_lowers_the_mae_most_with_replacement() -> None:
    actual = np.array([0.0, 10.0, 20.0, 30.0])
    low = actual - 1.0  # always 1 below
    high = actual + 1.0  # always 1 above
    bad = actual + 5.0
    counts, curve = greedy_selection(np.stack([bad, low, high]), actual, steps=4)
    # step 1: low (first of the two tied at 1.0); step 2: high (mean exact); then low, high
    assert counts.tolist() == [0, 2, 2]
    assert curve == pytest.approx([1.0, 0.0, 1.0 / 3.0, 0.0])
    # the MAE after the last step is the weighted mean's
    weights = counts / 4
    assert curve[-1] == pytest.approx(np.abs(weights @ np.stack([bad, low, high]) - actual).mean())


def test_members_of_different_geometry_are_combined_on_the_target_times_they_share() -> None:
    rng = np.random.default_rng(0)

    def member(rows: np.ndarray, offset: float) -> _Forecasts:
        shuffled = rng.permutation(rows)  # in any order, as each member's windows come
        return _Forecasts(shuffled, shuffled * 0.5 + offset)

    # a long lookback starts later; a coarse sampling rate forecasts every other row
    members = [
        member(np.arange(100, 200), 0.0),
        member(np.arange(140, 200), 1.0),
        member(np.arange(100, 200, 2), 2.0),
    ]
    rows, predictions, _ = _aligned(members)
    np.testing.assert_array_equal(rows, np.arange(140, 200, 2))
    for k, offset in enumerate((0.0, 1.0, 2.0)):
        np.testing.assert_allclose(predictions[k], rows * 0.5 + offset)
    with pytest.raises(Exception, match="no target time in common"):
        _aligned(
            [_Forecasts(np.arange(10), np.zeros(10)), _Forecasts(np.arange(20, 30), np.zeros(10))]
        )


@pytest.mark.parametrize("split", ["blocked:14/folds:3", "blocked:14"])
def test_the_linear_member_as_a_keras_model_forecasts_as_the_ridge_does(split: str) -> None:
    _, prepared = load_prepared("jena-2020", max_rows=ROWS, split=split, reference_hours=REACH)
    spec = prepared.spec(121, 2, 24)  # 363 steps pooled in 61 blocks, the oldest of 3 steps
    ridges = [linear_reference(f, spec) for f in prepared.folds()] or [
        linear_reference(prepared, spec)
    ]
    assert ridges[0].block_steps == 6 and spec.sequence_length % 6 == 3
    model = linear_member_model(ridges, prepared, calendar=True)
    windows = make_windows(prepared.model_view(), spec, "test", calendar=True)
    ridge = _linear_forecasts(ridges, prepared, "test")  # the mean of the fold ridges
    np.testing.assert_array_equal(windows.start_rows() + spec.delay, ridge.rows)
    np.testing.assert_allclose(model.predict(windows, verbose=0)[:, 0], ridge.values, atol=1e-4)


def test_a_study_without_a_complete_trial_has_no_ensemble() -> None:
    engine = SimpleNamespace(
        trials=lambda: [SimpleNamespace(state="PRUNED", value=2.0, number=0)],
    )
    with pytest.raises(SearchError, match="has no completed trial"):
        _ranked(engine, 10, "s")  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_ensemble_of_a_cross_validated_study_is_chosen_logged_and_tested(
    tmp_path: Path,
) -> None:
    storage = ["--storage", f"sqlite:///{tmp_path / 'studies.db'}"]
    result = run_cli_here(
        *_args(tmp_path, "ens", "--folds", "3", "--trials", "2", "--epochs", "1", "--seed", "3"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    best = run_cli_here("best", "ens", *storage, "--ensemble", "3", "--evaluate-test", cwd=tmp_path)
    assert best.returncode == 0, best.stdout + best.stderr
    assert "25 greedy steps on the out-of-fold val predictions of 3 folds" in best.stdout
    study = _study(tmp_path, "ens")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = re.search(r"logged as MLflow run (\w+)", best.stdout)[1]  # type: ignore[index]
    run = client.get_run(run_id)
    assert run.data.tags["search.kind"] == "ensemble"
    assert run.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
    saved = json.loads(
        Path(client.download_artifacts(run_id, "ensemble.json", str(tmp_path))).read_text()
    )
    weights = saved["weights"]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert run.data.params["members"] == ",".join(weights)

    # the weights reproduce the logged val MAE from the members' saved out-of-fold predictions
    by_number = {t.number: t for t in study.trials}
    oofs = {}
    for name in saved["candidates"].split(","):
        number = saved["trial"] if name == "linear" else int(name)
        folder = tmp_path / f"oof-{name}"
        folder.mkdir()
        path = client.download_artifacts(
            by_number[number].user_attrs["mlflow_run_id"], "oof.npz", str(folder)
        )
        with np.load(path, allow_pickle=False) as oof:
            key = "linear" if name == "linear" else "prediction"
            oofs[name] = dict(zip(oof["row"].tolist(), oof[key].tolist(), strict=True))
            actual = dict(zip(oof["row"].tolist(), oof["actual"].tolist(), strict=True))
    common = sorted(set.intersection(*(set(v) for v in oofs.values())))
    forecast = sum(w * np.array([oofs[m][r] for r in common]) for m, w in weights.items())
    mae = np.abs(forecast - np.array([actual[r] for r in common])).mean()
    assert run.data.metrics["val_mae"] == pytest.approx(mae, rel=1e-6)
    assert f"val MAE {mae:.3f} degC" in best.stdout

    # its test figures on the parent run, the gap recomputed from them
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"]).data.metrics
    skill = 1 - parent["ensemble_test_mae"] / parent["ensemble_test_baseline_mae"]
    assert parent["ensemble_test_skill"] == pytest.approx(skill)
    estimate = 1 - run.data.metrics["estimate_mae"] / run.data.metrics["naive_val_mae"]
    assert parent["ensemble_selection_gap"] == pytest.approx(100 * (estimate - skill))
    assert f"selection gap {100 * (estimate - skill):+.1f} points" in best.stdout

    # a member whose saved predictions no longer match the study's data: one line, exit 2
    member = by_number[int(next(iter(n for n in weights if n != "linear")))]
    tampered = tmp_path / "tampered" / "oof.npz"
    tampered.parent.mkdir()
    with np.load(tmp_path / f"oof-{member.number}" / "oof.npz") as oof:
        arrays = {k: oof[k] for k in oof.files}
    arrays["actual"] = arrays["actual"] + 1.0
    np.savez(tampered, **arrays)
    client.log_artifact(member.user_attrs["mlflow_run_id"], str(tampered))
    refused = run_cli_here("best", "ens", *storage, "--ensemble", "3", cwd=tmp_path)
    assert_user_error(
        refused, "best", [f"trial {member.number}'s saved val predictions do not match"]
    )

    # the served ensemble (every member inside) answers with `search predict --ensemble`'s numbers,
    # loaded where `search` is not importable
    restored = tmp_path / "oof-restored.npz"
    with np.load(tmp_path / f"oof-{member.number}" / "oof.npz") as oof:
        np.savez(restored, **{k: oof[k] for k in oof.files})
    client.log_artifact(member.user_attrs["mlflow_run_id"], str(restored.rename(tampered)))
    path = _new_file(tmp_path, 30_000, 1_200, JENA_FEATURES, time_header="date")
    out = tmp_path / "forecasts.csv"
    predicted = run_cli_here(
        "predict",
        "ens",
        *storage,
        "--ensemble",
        "3",
        "--data",
        str(path),
        "--to",
        str(out),
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    assert "by the ensemble of" in predicted.stdout
    exported = run_cli_here(
        "best",
        "ens",
        *storage,
        "--ensemble",
        "3",
        "--export-model",
        str(tmp_path / "served"),
        cwd=tmp_path,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    # asking again found the same ensemble run rather than logging another
    assert f"logged as MLflow run {run_id}" in exported.stdout
    answer = answer_without_search(tmp_path, str(tmp_path / "served"), path)
    rows = [r.split(",") for r in out.read_text().splitlines()[1:]]
    assert [a["time"] for a in answer] == [r[2] for r in rows]
    np.testing.assert_allclose(
        [a["forecast T (degC)"] for a in answer], [float(r[3]) for r in rows], atol=1e-3
    )


def test_served_members_of_different_lookback_and_rate_combine_on_shared_times() -> None:
    """`ensemble_forecast` (search predict --ensemble and the served ensemble): each member reads
    its own windows; the ensemble forecasts the times all of them forecast, from the longest
    member's first window on, and each time gets the weighted sum of exactly that time's
    forecasts."""
    from search.serving.forecast import ensemble_forecast, forecast

    rows = 2_000
    times = np.datetime64("2020-01-01T00:00:00") + np.arange(rows) * np.timedelta64(10, "m")
    values = np.random.default_rng(1).normal(size=(rows, 2))

    def spec(lookback_hours: float, rate: int) -> dict:
        return {
            "mean": [0.0, 0.0], "std": [1.0, 1.0], "calendar": False,
            "lookback_hours": lookback_hours, "sequence_length": int(lookback_hours * 6 // rate),
            "sampling_rate": rate, "horizon_hours": 24.0, "steps_per_hour": 6.0,
        }  # fmt: skip

    def last_value(x: np.ndarray) -> np.ndarray:  # depends on which rows the window holds
        return x[:, -1, 0] + x[:, 0, 1]

    members = [(spec(72, 6), last_value, 0.25), (spec(120, 3), last_value, 0.75)]
    combined = ensemble_forecast(members, times, values)
    alone = [forecast(s, times, values, p) for s, p, _ in members]
    assert combined.times[0] == alone[1].times[0]  # the 120 h member starts later
    np.testing.assert_array_equal(combined.times, alone[1].times)
    at = [np.searchsorted(a.times, combined.times) for a in alone]
    expected = 0.25 * alone[0].values[at[0]] + 0.75 * alone[1].values[at[1]]
    np.testing.assert_allclose(combined.values, expected, atol=1e-6)
    np.testing.assert_array_equal(combined.made_from, combined.times - np.timedelta64(24, "h"))
