"""Cross-validated trials (`--folds K`): the fold layouts never touch a test block, every
non-test block validates exactly once, each fold is normalized from its own training rows, the
fold-mean model is the mean of its fold models on raw windows, and a study through the CLI
records, prints and evaluates the honest estimate (selection gap recomputed)."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import optuna
import pytest

from search.data.prepare import load_prepared
from search.data.sources import JENA_FEATURES
from search.data.splits import parse_split, window_starts
from search.storage import open_storage, resolve_storage_url
from search.workers import checkpoint_root
from tests.cli_helpers import cli_env, migrated_store, run_cli_here, search_command
from tests.test_use import _new_file

ROWS = 9000
BLOCK = 14 * 24 * 6  # rows of a 14-day block on the 10-minute grid
REACH = 168.0 + 24.0  # the quick space's longest lookback + horizon


def _prepared(folds: int = 3, rows: int = ROWS):
    _, prepared = load_prepared(
        "jena-2020", max_rows=rows, split=f"blocked:14/folds:{folds}", reference_hours=REACH
    )
    return prepared


def _blocks(n_rows: int) -> list[tuple[int, int]]:
    """Every block by hand: block k is rows [k*B, min((k+1)*B, n))."""
    return [(k, min(k + BLOCK, n_rows)) for k in range(0, n_rows, BLOCK)]


def test_the_split_records_its_folds_and_an_older_parser_would_refuse_it() -> None:
    assert parse_split("blocked:14", folds=3).name == "blocked:14/folds:3"
    assert parse_split("blocked:14/folds:3").folds == 3
    assert parse_split("blocked:14").name == "blocked:14"  # without folds: as before
    # what an install without folds does with the recorded name: float("14/folds:3") fails
    with pytest.raises(ValueError):
        float("blocked:14/folds:3".partition(":")[2])


def test_no_fold_touches_a_test_row_and_every_non_test_block_validates_once() -> None:
    prepared = _prepared(folds=3, rows=20_000)
    blocks = _blocks(prepared.layout.n_rows)
    test_blocks = [b for k, b in enumerate(blocks) if k % 4 == 3]
    nontest = [b for k, b in enumerate(blocks) if k % 4 != 3]
    test_rows = np.zeros(prepared.layout.n_rows, dtype=bool)
    for start, end in test_blocks:
        test_rows[start:end] = True
    validated: Counter = Counter()
    folds = prepared.folds()
    assert len(folds) == 3
    for fold in folds:
        assert fold.layout.ranges["test"] == test_blocks
        for block in fold.layout.ranges["val"]:
            validated[block] += 1
        assert not (fold.layout.mask("train") & fold.layout.mask("val")).any()
        for lookback in (72, 168):
            spec = fold.spec(lookback, 6, 24)
            for split in ("train", "val"):
                starts = window_starts(fold, spec, split)
                assert len(starts)
                touched = starts[:, None] + np.arange(spec.span)[None, :]
                assert not test_rows[touched].any(), (split, lookback)
                inside = fold.layout.mask(split)[touched]
                assert inside.all(), (split, lookback)  # each window inside its split's blocks
    assert sorted(validated) == nontest
    assert set(validated.values()) == {1}
    # block i of the non-test blocks validates in fold i % 3
    for i, block in enumerate(nontest):
        assert block in folds[i % 3].layout.ranges["val"]


@pytest.mark.parametrize("split", ["blocked:14", "blocked:14/folds:3"])
def test_shuffled_training_batches_hold_exactly_the_splits_own_windows(split: str) -> None:
    """What a trial really trains on: every window of every shuffled batch, over two epochs,
    is one of the split's (or the fold's) train windows, each once per epoch, none touching a
    val or test row (a shuffle that drew consecutive rows from the first train window would
    train on the val and test blocks in between)."""
    from search.data.windows import make_windows

    _, prepared = load_prepared("jena-2020", max_rows=20_000, split=split, reference_hours=REACH)
    for series in prepared.folds() or [prepared]:
        spec = series.spec(72, 6, 24)
        train = make_windows(series, spec, "train", 512, shuffle=True, seed=3)
        expected = np.sort(window_starts(series, spec, "train"))
        outside = ~series.layout.mask("train")
        for _epoch in range(2):
            seen = np.sort(train.start_rows())
            np.testing.assert_array_equal(seen, expected)
            x, y = train[0]
            first = train.start_rows()[: len(x)]
            np.testing.assert_array_equal(x[:, 0, :], series.data[first])
            touched = first[:, None] + np.arange(spec.span)[None, :]
            assert not outside[touched].any()
            train.on_epoch_end()


def test_each_fold_is_scored_on_the_same_targets_whatever_the_lookback() -> None:
    for fold in _prepared().folds():
        targets = [
            window_starts(fold, fold.spec(hours, 6, 24), "val") + fold.spec(hours, 6, 24).delay
            for hours in (72, 120, 168)
        ]
        assert all(np.array_equal(targets[0], t) for t in targets[1:])


def test_each_fold_is_normalized_from_its_own_training_rows_only() -> None:
    prepared = _prepared()
    raw = np.asarray(prepared.raw, dtype=np.float64)
    nontest = [b for k, b in enumerate(_blocks(len(raw))) if k % 4 != 3]
    for f, fold in enumerate(prepared.folds()):
        rows = np.concatenate([np.arange(s, e) for i, (s, e) in enumerate(nontest) if i % 3 != f])
        mean, std = raw[rows].mean(axis=0), raw[rows].std(axis=0)
        np.testing.assert_allclose(fold.mean, mean, rtol=1e-9)
        np.testing.assert_allclose(fold.std, np.where(std > 0, std, 1.0), rtol=1e-9)
        np.testing.assert_allclose(fold.data, (raw - mean) / std, rtol=1e-4, atol=1e-4)
    # the study-level series keeps the blocked split's own train blocks
    train = np.concatenate(
        [np.arange(s, e) for k, (s, e) in enumerate(_blocks(len(raw))) if k % 4 < 2]
    )
    np.testing.assert_allclose(prepared.mean, raw[train].mean(axis=0), rtol=1e-9)


@pytest.mark.parametrize("calendar", [False, True])
def test_the_fold_mean_model_is_the_mean_of_its_fold_models_on_raw_windows(
    tmp_path: Path, calendar: bool
) -> None:
    import keras

    from search.spaces import load_space
    from search.training.compile import compiled_model
    from search.training.crossval import fold_mean_model
    from search.training.scaling import fit_scaling

    prepared = _prepared()
    space = load_space("quick")
    params = {**space.book_params(), "target_scaling": "residual", "units": 8}
    config = space.resolve(params)
    config = replace(config, calendar_features=calendar)
    spec = config.window(prepared.steps_per_hour)
    rng = np.random.default_rng(0)
    folds = []
    for k, fold in enumerate(prepared.folds()):
        model = compiled_model(fold, spec, config, fit_scaling("residual", fold, spec))
        model.set_weights([rng.normal(0, 0.2, w.shape) for w in model.get_weights()])
        folds.append(SimpleNamespace(index=k, model=model, prepared=fold))
    mean_model = fold_mean_model(folds, calendar)
    path = tmp_path / "model.keras"
    mean_model.save(path)
    loaded = keras.models.load_model(path, compile=False, safe_mode=True)

    raw = prepared.raw_view().inputs(calendar)
    starts = window_starts(prepared, spec, "test")[::97]
    offsets = np.arange(spec.sequence_length) * spec.sampling_rate
    x = raw[starts[:, None] + offsets[None, :]]
    expected = []
    for fold in folds:  # each fold model on its own normalization, computed here
        mean = np.concatenate([fold.prepared.mean, np.zeros(4 if calendar else 0)])
        std = np.concatenate([fold.prepared.std, np.ones(4 if calendar else 0)])
        expected.append(fold.model.predict((x - mean) / std, verbose=0))
    want = np.mean(expected, axis=0)
    assert np.ptp(want) > 0.1  # the folds' forecasts are not trivially equal
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-4, atol=1e-3)


def test_too_many_folds_for_the_blocks_is_one_line() -> None:
    from search.errors import DataError

    with pytest.raises(DataError) as caught:
        _prepared(folds=5)  # 9,000 rows: blocks T T V X T, four of them not test
    assert "--folds 5 needs at least 5 non-test blocks" in str(caught.value)
    assert "has 4" in str(caught.value)


# ------------------------------------------------------------------ a study through the CLI


def _args(workdir: Path, study: str, *extra: str) -> list[str]:
    return [
        "run",
        "--study",
        study,
        "--split",
        "blocked:14",
        "--max-rows",
        str(ROWS),
        "--storage",
        f"sqlite:///{workdir / 'studies.db'}",
        "--tracking-uri",
        migrated_store(workdir / "mlflow.db"),
        *extra,
    ]


def _study(workdir: Path, name: str) -> optuna.Study:
    storage = open_storage(resolve_storage_url(f"sqlite:///{workdir / 'studies.db'}"))
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_a_cross_validated_study_records_prints_and_evaluates_an_honest_estimate(
    tmp_path: Path,
) -> None:
    result = run_cli_here(
        *_args(tmp_path, "cv", "--folds", "3", "--trials", "2", "--epochs", "2", "--seed", "3"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "(blocked:14/folds:3 split)" in result.stdout
    assert "(mean of 3 folds;" in result.stdout
    study = _study(tmp_path, "cv")
    assert study.user_attrs["split"] == "blocked:14/folds:3"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for trial in study.trials:
        assert trial.state.name in ("COMPLETE", "PRUNED"), trial.user_attrs
        attrs = trial.user_attrs
        assert attrs["folds"] == 3 and len(attrs["fold_val_mae"]) == 3
        if trial.state.name == "COMPLETE":
            assert trial.value == pytest.approx(np.mean(attrs["fold_val_mae"]), abs=1e-5)
        run = client.get_run(attrs["mlflow_run_id"])
        metrics = run.data.metrics
        naive = [metrics[f"baseline_mae_fold_{k}"] for k in range(3)]
        linear = [metrics[f"linear_mae_fold_{k}"] for k in range(3)]
        best = [metrics[f"best_val_mae_fold_{k}"] for k in range(3)]
        skills = 1 - np.array(best) / np.array(naive)
        assert attrs["skill"] == pytest.approx(skills.mean(), abs=1e-9)
        assert attrs["skill_se"] == pytest.approx(skills.std(ddof=1) / math.sqrt(3), abs=1e-9)
        linear_skills = 1 - np.array(best) / np.array(linear)
        assert attrs["linear_skill"] == pytest.approx(linear_skills.mean(), abs=1e-9)
        history = client.get_metric_history(run.info.run_id, "val_mae")
        for entry in history:  # the mean over folds at step = epoch
            per_fold = [
                next(
                    m.value
                    for m in client.get_metric_history(run.info.run_id, f"val_mae_fold_{k}")
                    if m.step == entry.step
                )
                for k in range(3)
            ]
            assert entry.value == pytest.approx(np.mean(per_fold), abs=1e-6)
        # the out-of-fold predictions reproduce each fold's best val MAE
        folder = Path(client.download_artifacts(run.info.run_id, "oof.npz", str(tmp_path)))
        with np.load(folder, allow_pickle=False) as oof:
            for k in range(3):
                mine = oof["fold"] == k
                mae = np.abs(oof["prediction"][mine] - oof["actual"][mine]).mean()
                assert mae == pytest.approx(best[k], rel=1e-4)
                naive_mae = np.abs(oof["naive"][mine] - oof["actual"][mine]).mean()
                assert naive_mae == pytest.approx(naive[k], rel=1e-6)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model", "oof.npz", "learning_curve.png", "forecast.png"} <= artifacts

    best = run_cli_here(
        "best",
        "cv",
        "--storage",
        f"sqlite:///{tmp_path / 'studies.db'}",
        "--evaluate-test",
        cwd=tmp_path,
    )
    assert best.returncode == 0, best.stdout + best.stderr
    assert re.search(
        r"estimate +val MAE [\d.]+ ± [\d.]+ degC over 3 folds; skill [-+][\d.]+% ± [\d.]+ vs "
        r"naive, [-+][\d.]+% ± [\d.]+ vs linear",
        best.stdout,
    ), best.stdout
    winner = study.best_trial
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"]).data.metrics
    gap = 100 * (winner.user_attrs["skill"] - parent["test_skill"])
    assert parent["selection_gap"] == pytest.approx(gap, abs=1e-9)
    assert f"selection gap {gap:+.1f} points" in best.stdout
    # the fold-mean model's test MAE, recomputed from raw test windows built here
    model = _check_test_mae(tmp_path, winner, parent["test_mae"], parent["test_baseline_mae"])
    # search predict feeds it raw rows (no normalization outside the model)
    path = _new_file(tmp_path, 30_000, 1_200, JENA_FEATURES)
    out = tmp_path / "forecasts.csv"
    predicted = run_cli_here(
        "predict",
        "cv",
        "--storage",
        f"sqlite:///{tmp_path / 'studies.db'}",
        "--data",
        str(path),
        "--to",
        str(out),
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    values = np.array([float(row.split(",")[3]) for row in out.read_text().splitlines()[1:]])
    raw = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, 15), dtype=np.float32)
    config = _config(winner)
    offsets = np.arange(config.lookback_hours * 6 // config.sampling_rate) * config.sampling_rate
    windows = np.arange(len(values))[:, None] + offsets[None, :].astype(int)
    np.testing.assert_allclose(values, model.predict(raw[windows], verbose=0)[:, 0], atol=2e-3)

    refused = run_cli_here(*_args(tmp_path, "cv", "--folds", "2", "--trials", "1"), cwd=tmp_path)
    assert refused.returncode == 2 and "was started with --folds 3" in refused.stderr
    assert len(_study(tmp_path, "cv").trials) == 2  # nothing stored


def _check_test_mae(workdir: Path, trial, logged: float, naive: float):  # noqa: ANN001, ANN201
    import keras

    import search.training.scaling  # noqa: F401  (the custom layers)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    path = client.download_artifacts(
        trial.user_attrs["mlflow_run_id"], "model/model.keras", str(workdir)
    )
    model = keras.models.load_model(path, compile=False, safe_mode=True)
    config = _config(trial)
    prepared = _prepared()
    spec = config.window(prepared.steps_per_hour)
    starts = window_starts(prepared, spec, "test")
    offsets = np.arange(spec.sequence_length) * spec.sampling_rate
    raw = np.asarray(prepared.raw, dtype=np.float32)
    predicted = model.predict(raw[starts[:, None] + offsets[None, :]], verbose=0)[:, 0]
    actual = prepared.target[starts + spec.delay]
    assert np.abs(predicted - actual).mean() == pytest.approx(logged, rel=1e-4)
    last = prepared.target[starts + offsets[-1]]
    assert np.abs(last - actual).mean() == pytest.approx(naive, rel=1e-6)
    return model


def _config(trial):  # noqa: ANN001, ANN202
    from search.spaces import load_space

    return load_space("quick").resolve(trial.params, book=bool(trial.user_attrs.get("book_config")))


@pytest.mark.slow
def test_kill_9_mid_trial_resumes_every_fold_at_its_epoch(tmp_path: Path) -> None:
    args = _args(tmp_path, "cvkill", "--folds", "3", "--trials", "1", "--epochs", "4")
    worker = subprocess.Popen(
        search_command(*args),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
    )
    assert worker.stdout is not None
    folder = checkpoint_root(f"sqlite:///{tmp_path / 'studies.db'}", "cvkill") / "trial-0"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the checkpoint after epoch 2 of every fold
        try:
            if json.loads((folder / "folds.json").read_text())["next_epoch"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        if worker.poll() is not None:
            pytest.fail(f"the worker ended before its checkpoint: {worker.stdout.read()[-2000:]}")
        time.sleep(0.2)
    else:
        pytest.fail("no checkpoint of epoch 2 within 300 s")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    saved = json.loads((folder / "folds.json").read_text())["next_epoch"]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("fold-")) == [
        "fold-0",
        "fold-1",
        "fold-2",
    ]

    again = run_cli_here(*_args(tmp_path, "cvkill", "--trials", "1", "--epochs", "4"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "trial 1 resumes trial 0 after its epoch" in again.stdout
    study = _study(tmp_path, "cvkill")
    resumed = study.trials[1]
    assert resumed.user_attrs["search.resumed_from_epoch"] == saved
    assert resumed.params == study.trials[0].params
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = resumed.user_attrs["mlflow_run_id"]
    for k in range(3):  # every fold's epochs: the dead trial's, then the resumed ones
        steps = sorted(m.step for m in client.get_metric_history(run_id, f"val_mae_fold_{k}"))
        assert steps == list(range(len(steps))) and len(steps) > saved, steps
    trained = [line for line in again.stdout.splitlines() if line.startswith("  trial 1 epoch ")]
    assert trained and trained[0].startswith(f"  trial 1 epoch {saved + 1}/4"), again.stdout
    assert not folder.exists()  # finished: checkpoints removed
