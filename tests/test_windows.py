"""Split, normalization, windows (equal to Keras' timeseries_dataset_from_array) and baseline."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared, prepare
from search.data.references import baseline_mae
from search.data.sources import Dataset, load_dataset
from search.data.splits import SPLITS, ChronologicalSplit, window_starts
from search.data.windows import WindowDataset, make_windows
from search.errors import DataError

REPO = Path(__file__).resolve().parents[1]
BOOK = WindowSpec(lookback_hours=120, sampling_rate=6, horizon_hours=24)


def synthetic(
    n_rows: int, n_features: int = 3, steps_per_hour: float = 6, seed: int = 0
) -> Dataset:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_rows, n_features)).astype(np.float32) * 5 + 10
    step = np.timedelta64(int(3600 / steps_per_hour), "s")
    return Dataset(
        name="synthetic",
        times=np.datetime64("2020-01-01") + np.arange(n_rows) * step,
        values=values,
        feature_names=[f"f{i}" for i in range(n_features)],
        target=values[:, 0].copy(),
        target_name="f0",
        steps_per_hour=steps_per_hour,
        report={},
    )


def all_batches(ds: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def keras_windows(
    prepared: Prepared,
    spec: WindowSpec,
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    import keras

    bounds = {
        "train": (0, prepared.num_train),
        "val": (prepared.num_train, prepared.num_train + prepared.num_val),
        "test": (prepared.num_train + prepared.num_val, None),
    }[split]
    delay = spec.delay
    dataset = keras.utils.timeseries_dataset_from_array(
        prepared.data[:-delay],
        targets=prepared.target[delay:],
        sampling_rate=spec.sampling_rate,
        sequence_length=spec.sequence_length,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        start_index=bounds[0],
        end_index=bounds[1],
    )
    return [(np.asarray(x), np.asarray(y)) for x, y in dataset]


@pytest.fixture(scope="module")
def jena_prepared() -> Prepared:
    return prepare(load_dataset("jena-2020"))


# ---------------------------------------------------------------------------------------------
# WindowSpec


def test_book_geometry() -> None:
    assert BOOK.sequence_length == 120 and BOOK.delay == 858 == 6 * (120 + 24 - 1)
    BOOK.validate()
    hourly = WindowSpec(lookback_hours=48, sampling_rate=2, horizon_hours=6, steps_per_hour=1)
    assert hourly.sequence_length == 24 and hourly.delay == 23 * 2 + 6
    half = WindowSpec(lookback_hours=1.5, sampling_rate=3, horizon_hours=0.5)
    assert half.sequence_length == 3 and half.delay == 2 * 3 + 3


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (WindowSpec(0, 6, 24), "lookback must be > 0"),
        (WindowSpec(-5, 6, 24), "lookback must be > 0"),
        (WindowSpec(1, 0, 24), "sampling rate must be a whole number of rows >= 1"),
        (WindowSpec(1, 7, 24), "larger than the lookback"),
        (WindowSpec(120, 6, -1), "horizon must be > 0"),
        (WindowSpec(120, 6, 0), "horizon must be > 0"),
        (WindowSpec(120, 6, 24, target_steps=0), "target_steps"),
        (WindowSpec(1.25, 1, 24), "whole number of rows"),
        (WindowSpec(2, 5, 24), "multiple of the sampling rate"),
        (WindowSpec(2, 2, 0.1), "horizon"),
        (WindowSpec(2, 2, 1, target_steps=3, steps_per_hour=2.5), "lookback"),
    ],
)
def test_nonsense_geometry_is_a_clear_error(spec: WindowSpec, fragment: str) -> None:
    with pytest.raises(DataError) as excinfo:
        spec.validate()
    assert fragment in str(excinfo.value) and "\n" not in str(excinfo.value)


# ---------------------------------------------------------------------------------------------
# split and normalization


def test_split_sizes_follow_the_book(jena_prepared: Prepared) -> None:
    p = jena_prepared
    n = p.data.shape[0]
    assert (p.num_train, p.num_val) == (int(0.5 * n), int(0.25 * n))
    assert p.num_train + p.num_val + p.num_test == n
    assert p.data.dtype == np.float32 and p.data.flags.c_contiguous
    train = p.data[: p.num_train].astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=0), 1, atol=1e-4)
    assert p.target_index == 1
    np.testing.assert_allclose(p.data[:, 1] * p.std[1] + p.mean[1], p.target, atol=1e-3)


def test_normalization_uses_the_training_part_only() -> None:
    ds = synthetic(400)
    base = prepare(ds)
    changed = dataclasses.replace(ds, values=ds.values.copy())
    changed.values[base.num_train :] *= 1000.0  # val and test only
    other = prepare(changed)
    np.testing.assert_array_equal(other.mean, base.mean)
    np.testing.assert_array_equal(other.std, base.std)
    np.testing.assert_array_equal(other.data[: base.num_train], base.data[: base.num_train])
    changed.values[: base.num_train] += 1.0  # the training part does move them
    assert not np.allclose(prepare(changed).mean, base.mean)


def test_constant_feature_is_centred_not_divided_by_zero() -> None:
    ds = synthetic(100)
    ds.values[:, 2] = 7.0
    p = prepare(ds)
    assert p.std[2] == 1.0 and np.all(p.data[:, 2] == 0)


def test_bad_split_arguments() -> None:
    with pytest.raises(DataError, match="split fractions"):
        prepare(synthetic(100), ChronologicalSplit(train_fraction=0.8, val_fraction=0.3))
    with pytest.raises(DataError, match="too short to split"):
        prepare(synthetic(3))
    with pytest.raises(DataError, match="split must be one of"):
        make_windows(prepare(synthetic(200)), WindowSpec(1, 1, 1), "validation")


# ---------------------------------------------------------------------------------------------
# equivalence with keras.utils.timeseries_dataset_from_array


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_rows=st.integers(20, 160),
    n_features=st.integers(1, 3),
    steps_per_hour=st.sampled_from([1, 2, 6]),
    sequence_length=st.integers(1, 10),
    sampling_rate=st.integers(1, 5),
    horizon_rows=st.integers(1, 15),
    train_fraction=st.floats(0.2, 0.7),
    val_fraction=st.floats(0.1, 0.3),
    split=st.sampled_from(SPLITS),
    batch_size=st.integers(1, 40),
    shuffle=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_windows_equal_keras_timeseries_dataset_from_array(
    n_rows: int,
    n_features: int,
    steps_per_hour: int,
    sequence_length: int,
    sampling_rate: int,
    horizon_rows: int,
    train_fraction: float,
    val_fraction: float,
    split: str,
    batch_size: int,
    shuffle: bool,
    seed: int,
) -> None:
    pytest.importorskip("tensorflow")
    prepared = prepare(
        synthetic(n_rows, n_features, steps_per_hour, seed),
        ChronologicalSplit(train_fraction, val_fraction),
    )
    spec = WindowSpec(
        lookback_hours=sequence_length * sampling_rate / steps_per_hour,
        sampling_rate=sampling_rate,
        horizon_hours=horizon_rows / steps_per_hour,
        steps_per_hour=steps_per_hour,
    )
    assert spec.sequence_length == sequence_length
    try:
        ours = make_windows(prepared, spec, split, batch_size, shuffle=shuffle, seed=seed)
    except DataError:
        try:
            reference = keras_windows(prepared, spec, split, batch_size)
        except ValueError:
            return  # Keras refuses the same arguments
        assert sum(len(y) for _, y in reference) == 0
        return
    reference = keras_windows(prepared, spec, split, batch_size, shuffle, seed)
    assert len(ours) == len(reference)
    if not shuffle:
        for i, (x_ref, y_ref) in enumerate(reference):
            x, y = ours[i]
            assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == (len(y_ref), 1)
            np.testing.assert_array_equal(x, x_ref)
            np.testing.assert_array_equal(y[:, 0], y_ref)
    else:
        # same windows and batch sizes; Keras' extra tf.data buffer shuffle is not reproducible
        x, y = all_batches(ours)
        x_ref = np.concatenate([b[0] for b in reference])
        y_ref = np.concatenate([b[1] for b in reference])
        key = np.concatenate([x.reshape(len(x), -1), y], axis=1)
        key_ref = np.concatenate([x_ref.reshape(len(x_ref), -1), y_ref[:, None]], axis=1)
        np.testing.assert_array_equal(np.unique(key, axis=0), np.unique(key_ref, axis=0))
        assert [len(b[1]) for b in reference] == [len(ours[i][1]) for i in range(len(ours))]
        # ... in the order of Keras' first shuffle stage
        positions = np.arange(ours.num_windows, dtype="int32")
        np.random.RandomState(seed).shuffle(positions)
        start = window_starts(prepared, spec, split)[0]
        np.testing.assert_array_equal(ours.start_rows(), positions + start)


def test_book_settings_match_keras_on_the_real_file(jena_prepared: Prepared) -> None:
    pytest.importorskip("tensorflow")
    ours = make_windows(jena_prepared, BOOK, "val", batch_size=256)
    reference = keras_windows(jena_prepared, BOOK, "val", batch_size=256)
    assert len(ours) == len(reference) and ours.num_windows == sum(len(y) for _, y in reference)
    for i in (0, len(ours) // 2, len(ours) - 1):
        x, y = ours[i]
        np.testing.assert_array_equal(x, reference[i][0])
        np.testing.assert_array_equal(y[:, 0], reference[i][1])


# ---------------------------------------------------------------------------------------------
# the common-sense baseline


def test_baseline_on_the_2020_file_with_book_settings(jena_prepared: Prepared) -> None:
    assert baseline_mae(jena_prepared, BOOK, "val") == pytest.approx(2.82, abs=0.01)
    assert baseline_mae(jena_prepared, BOOK, "test") == pytest.approx(2.15, abs=0.01)


def test_baseline_is_the_books_evaluate_naive_method(jena_prepared: Prepared) -> None:
    p = jena_prepared
    ds = make_windows(p, BOOK, "test", batch_size=1024)
    total, seen = 0.0, 0
    for i in range(len(ds)):
        samples, targets = ds[i]
        preds = samples[:, -1, 1] * p.std[1] + p.mean[1]
        total += float(np.sum(np.abs(preds - targets[:, 0])))
        seen += len(samples)
    assert baseline_mae(p, BOOK, "test") == pytest.approx(total / seen, abs=1e-4)


def test_baseline_depends_on_the_window_geometry(jena_prepared: Prepared) -> None:
    short = WindowSpec(lookback_hours=24, sampling_rate=6, horizon_hours=1)
    assert baseline_mae(jena_prepared, short, "val") < baseline_mae(jena_prepared, BOOK, "val") / 2


def test_baseline_for_a_target_that_is_not_a_feature() -> None:
    ds = synthetic(300)
    ds = dataclasses.replace(ds, values=ds.values[:, 1:], feature_names=["f1", "f2"])
    p = prepare(ds)
    assert p.target_index is None
    spec = WindowSpec(2, 2, 1)
    starts = window_starts(p, spec, "val")
    expected = np.mean(np.abs(p.target[starts + spec.delay] - p.target[starts + 10]))
    assert baseline_mae(p, spec, "val") == pytest.approx(float(expected), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# several target steps, targets(), shuffling, too-short series


def test_multi_step_targets_are_the_next_hourly_values() -> None:
    p = prepare(synthetic(600))
    spec = WindowSpec(lookback_hours=4, sampling_rate=6, horizon_hours=1, target_steps=5)
    one = dataclasses.replace(spec, target_steps=1)
    for split in SPLITS:
        ds = make_windows(p, spec, split, batch_size=64)
        starts = ds.start_rows()
        x, y = all_batches(ds)
        assert y.shape == (ds.num_windows, 5)
        for j in range(5):
            np.testing.assert_array_equal(y[:, j], p.target[starts + spec.delay + 6 * j])
        assert starts[-1] + spec.delay + 24 < len(p.target)
        single = make_windows(p, one, split)
        np.testing.assert_array_equal(x, all_batches(single)[0][: ds.num_windows])
    # the last window's last target must lie inside the series (Keras' own bound for one step,
    # first input row + (L-1)*s < n - delay, is (L-1)*s = 18 rows stricter than needed)
    n, start = len(p.target), p.num_train + p.num_val
    single = make_windows(p, one, "test").num_windows
    assert single == n - spec.delay - 18 - start
    assert make_windows(p, spec, "test").num_windows == n - (spec.delay + 24) - start == single - 6
    assert make_windows(p, spec, "val").num_windows == make_windows(p, one, "val").num_windows
    assert baseline_mae(p, spec, "val") > 0


def test_targets_follow_iteration_order_without_building_inputs() -> None:
    p = prepare(synthetic(500))
    spec = WindowSpec(3, 3, 2)
    for shuffle in (False, True):
        ds = make_windows(p, spec, "train", batch_size=32, shuffle=shuffle, seed=3)
        _, y = all_batches(ds)
        ds.data = None  # targets() must not touch the inputs
        np.testing.assert_array_equal(ds.targets(), y)


def test_shuffle_is_seeded_and_reshuffles_each_epoch() -> None:
    p = prepare(synthetic(500))
    spec = WindowSpec(3, 3, 2)
    a = make_windows(p, spec, "train", shuffle=True, seed=7)
    b = make_windows(p, spec, "train", shuffle=True, seed=7)
    plain = make_windows(p, spec, "train")
    np.testing.assert_array_equal(a.start_rows(), b.start_rows())
    assert not np.array_equal(a.start_rows(), plain.start_rows())
    first = a.start_rows()
    a.on_epoch_end()
    b.on_epoch_end()
    np.testing.assert_array_equal(a.start_rows(), b.start_rows())
    assert not np.array_equal(a.start_rows(), first)
    np.testing.assert_array_equal(np.sort(a.start_rows()), plain.start_rows())
    unseeded = make_windows(p, spec, "train", shuffle=True)
    assert isinstance(unseeded.seed, int)


def test_series_too_short_is_a_clear_error() -> None:
    p = prepare(synthetic(200))  # 100 / 50 / 50 rows
    with pytest.raises(DataError) as excinfo:
        make_windows(p, WindowSpec(120, 6, 24), "train")
    message = str(excinfo.value)
    assert "series too short" in message and "120 h" in message and "\n" not in message
    with pytest.raises(DataError, match="too short"):
        baseline_mae(p, WindowSpec(8, 1, 2), "val")  # 48 + 12 rows > 50 val rows
    with pytest.raises(DataError, match="too short"):
        make_windows(p, WindowSpec(1, 1, 9), "test")  # target 54 rows ahead, test has 50
    make_windows(p, WindowSpec(1, 1, 1), "test")


def test_spec_must_match_the_series_step() -> None:
    p = prepare(synthetic(300, steps_per_hour=1))
    with pytest.raises(DataError, match="rows per hour"):
        make_windows(p, WindowSpec(6, 1, 1), "train")  # default steps_per_hour=6
    assert p.spec(6, 1, 1).sequence_length == 6


def test_pydataset_options_and_memory_stay_small(jena_prepared: Prepared) -> None:
    ds = make_windows(
        jena_prepared, BOOK, "train", workers=2, use_multiprocessing=False, max_queue_size=4
    )
    assert (ds.workers, ds.use_multiprocessing, ds.max_queue_size) == (2, False, 4)
    assert ds.data is jena_prepared.data or np.shares_memory(ds.data, jena_prepared.data)
    owned = sum(
        v.nbytes
        for v in vars(ds).values()
        if isinstance(v, np.ndarray)
        and v.base is None
        and v is not jena_prepared.data
        and v is not jena_prepared.target
    )
    assert owned <= 8 * ds.num_windows + 4096  # one index per window, never the windows


def test_fit_accepts_the_windows() -> None:
    import keras

    p = prepare(synthetic(400))
    spec = WindowSpec(2, 2, 1)
    train = make_windows(p, spec, "train", batch_size=64, shuffle=True, seed=0)
    val = make_windows(p, spec, "val", batch_size=64)
    model = keras.Sequential(
        [keras.Input((spec.sequence_length, 3)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["val_mae"]) == 2 and train.epoch >= 2  # reshuffled per epoch


def test_pipeline_needs_no_tensorflow(tmp_path: Path) -> None:
    source = "\n".join(path.read_text() for path in (REPO / "search" / "data").glob("*.py"))
    for forbidden in ("import tensorflow", "from tensorflow", "tf.data.Dataset", "tf.gather"):
        assert forbidden not in source
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from search.data.sources import Dataset
        from search.data.geometry import WindowSpec
        from search.data.prepare import prepare
        from search.data.references import baseline_mae
        from search.data.windows import make_windows
        values = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
        ds = Dataset("s", np.arange(300).astype("datetime64[h]").astype("datetime64[ns]"), values,
                     ["a", "b"], values[:, 0].copy(), "a", 1.0, {})
        p = prepare(ds)
        w = make_windows(p, WindowSpec(6, 2, 3, steps_per_hour=1), "train", batch_size=16, shuffle=True, seed=1)
        n = sum(len(w[i][1]) for i in range(len(w)))
        assert n == w.num_windows, n
        baseline_mae(p, WindowSpec(6, 2, 3, steps_per_hour=1), "test")
        import keras
        print(keras.backend.backend(), "tensorflow" in sys.modules)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "numpy", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["numpy", "False"]
