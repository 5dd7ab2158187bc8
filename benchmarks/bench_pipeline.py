"""Input pipeline benchmark: the seeds' timeseries_dataset_from_array vs search.windows.

One run, side by side, on the embedded 2020 Jena file with the book's settings (sampling rate 6,
120 steps, horizon 24 h, batch 256, shuffle): windows per second over a full pass of the train
split, and the time of one LSTM(16) -> Dense(1) training epoch (rmsprop, mse, same initial
weights) fed by each pipeline (median of the timed epochs after a warm-up epoch, the epochs of
the two pipelines alternating so that both see the same background load). Prints both
figures and the ratios; targets: >= 50x the windows/s and <= 0.40x the epoch time.

Both pipelines read the same normalized float32 array, so the comparison is about how windows
are made, not about dtypes. Needs TensorFlow (the seeds' pipeline is tf.data).

    python benchmarks/bench_pipeline.py [--epochs 3] [--passes 2] [--workers 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from search.data.geometry import WindowSpec  # noqa: E402
from search.data.prepare import prepare  # noqa: E402
from search.data.sources import load_dataset  # noqa: E402
from search.data.windows import make_windows  # noqa: E402

BATCH = 256
SEED = 1337
SPEC = WindowSpec(lookback_hours=120, sampling_rate=6, horizon_hours=24)


def seeds_train_dataset(data: np.ndarray, target: np.ndarray, num_train: int):
    """The seeds' code (000, 004), verbatim apart from the seed argument."""
    sampling_rate = 6
    sequence_length = 120
    delay = sampling_rate * (sequence_length + 24 - 1)
    return keras.utils.timeseries_dataset_from_array(
        data[:-delay],
        targets=target[delay:],
        sampling_rate=sampling_rate,
        sequence_length=sequence_length,
        shuffle=True,
        batch_size=BATCH,
        start_index=0,
        end_index=num_train,
        seed=SEED,
    )


def windows_per_second(make_iter, passes: int) -> tuple[float, int]:
    """Best of ``passes`` full passes: (windows per second, windows per pass)."""
    best, count = 0.0, 0
    for _ in range(passes):
        count = 0
        start = time.perf_counter()
        for _x, y in make_iter():
            count += int(y.shape[0])
        best = max(best, count / (time.perf_counter() - start))
    return best, count


def tf_adapter_windows_per_second(dataset, passes: int) -> float | None:
    """Our windows as ``fit`` receives them on TensorFlow (Keras' PyDataset adapter, internal API)."""
    try:
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
    except ImportError:
        return None
    adapter = PyDatasetAdapter(dataset, shuffle=True)
    tf_dataset = adapter.get_tf_dataset()

    def one_epoch():
        adapter.on_epoch_begin()
        yield from tf_dataset
        adapter.on_epoch_end()

    return windows_per_second(one_epoch, passes)[0]


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def build_model(n_features: int) -> keras.Model:
    inputs = keras.Input(shape=(SPEC.sequence_length, n_features))
    x = keras.layers.LSTM(16)(inputs)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs)


def compiled_model(weights, n_features: int, jit_compile="auto") -> keras.Model:
    model = build_model(n_features)
    model.set_weights(weights)
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"], jit_compile=jit_compile)
    return model


def interleaved_epochs(
    runs: dict, weights, n_features: int, epochs: int, jit_compile="auto"
) -> dict[str, list[float]]:
    """Epoch times per pipeline: one warm-up epoch each, then epochs alternating between them.

    Alternating (seeds, ours, floor, seeds, ours, floor, ...) exposes all of them to the same
    background load on a shared machine; each trains its own model from the same weights.
    """
    models = {name: compiled_model(weights, n_features, jit_compile) for name in runs}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(1 + epochs):
        for name, data in runs.items():
            timer = EpochTimer()
            if isinstance(data, tuple):  # in-memory arrays
                x, y = data
                models[name].fit(x, y, batch_size=BATCH, epochs=1, callbacks=[timer], verbose=0)
            else:
                models[name].fit(data, epochs=1, callbacks=[timer], verbose=0)
            times[name].extend(timer.times)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=3, help="timed epochs each, after a warm-up (3)"
    )
    parser.add_argument(
        "--passes", type=int, default=2, help="full passes for windows/s, best kept (2)"
    )
    parser.add_argument("--workers", type=int, default=1, help="PyDataset workers for our fit (1)")
    parser.add_argument(
        "--jit",
        action="store_true",
        help="compile both models with jit_compile=True (XLA) instead of Keras' default 'auto'",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the in-memory-arrays reference (saves about 200 MB and a third of the time)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    prepared = prepare(load_dataset("jena-2020"))
    data, target = prepared.data, prepared.target
    n_features = data.shape[1]
    ours = make_windows(
        prepared, SPEC, "train", batch_size=BATCH, shuffle=True, seed=SEED, workers=args.workers
    )

    def ours_iter():
        return (ours[i] for i in range(len(ours)))

    seeds_rate, seeds_n = windows_per_second(
        lambda: seeds_train_dataset(data, target, prepared.num_train), args.passes
    )
    ours_rate, ours_n = windows_per_second(ours_iter, args.passes)
    adapter_rate = tf_adapter_windows_per_second(ours, args.passes)
    assert seeds_n == ours_n == ours.num_windows, (seeds_n, ours_n, ours.num_windows)

    runs: dict = {"seeds": seeds_train_dataset(data, target, prepared.num_train), "ours": ours}
    if not args.no_floor:
        # The compute floor: the same windows fully materialized in memory (Keras' array
        # adapter). Benchmark-only; the product never builds this array.
        xs, ys = zip(*(ours[i] for i in range(len(ours))), strict=True)
        runs["floor"] = (np.concatenate(xs), np.concatenate(ys))
        del xs, ys
    keras.utils.set_random_seed(SEED)
    weights = build_model(n_features).get_weights()
    times = interleaved_epochs(runs, weights, n_features, args.epochs, True if args.jit else "auto")
    epoch = {name: statistics.median(all_times[1:]) for name, all_times in times.items()}

    rate_ratio = ours_rate / seeds_rate
    epoch_ratio = epoch["ours"] / epoch["seeds"]
    figures = {
        "windows_per_pass": ours_n,
        "seeds_windows_per_s": round(seeds_rate),
        "ours_windows_per_s": round(ours_rate),
        "windows_per_s_ratio": round(rate_ratio, 1),
        "lstm16_epoch_s": {name: round(value, 2) for name, value in epoch.items()},
        "epoch_time_ratio": round(epoch_ratio, 3),
        "epochs_s": {name: [round(t, 2) for t in ts] for name, ts in times.items()},
        "workers": args.workers,
        "jit_compile": bool(args.jit),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    labels = {
        "seeds": "seeds (tf.data)",
        "ours": "search.windows",
        "floor": "arrays in memory",
    }
    print(f"train windows per pass              : {ours_n}")
    print(f"windows/s  seeds (tf.data)          : {seeds_rate:12,.0f}")
    print(f"windows/s  search.windows           : {ours_rate:12,.0f}")
    if adapter_rate is not None:
        figures["ours_via_tf_adapter_windows_per_s"] = round(adapter_rate)
        print(
            f"windows/s  ours as tf fit gets them : {adapter_rate:12,.0f}   (PyDataset -> tf.data adapter)"
        )
    print(
        f"windows/s ratio (ours / seeds)      : {rate_ratio:12.1f}x   (target >= 50x)   "
        f"{'OK' if rate_ratio >= 50 else 'MISSED'}"
    )
    for name, value in epoch.items():
        print(
            f"LSTM(16) epoch s  {labels[name]:<18}: {value:12.2f}    "
            f"all epochs {figures['epochs_s'][name]} (first = warm-up)"
        )
    print(
        f"epoch time ratio (ours / seeds)     : {epoch_ratio:12.3f}x  (target <= 0.40x)  "
        f"{'OK' if epoch_ratio <= 0.40 else 'MISSED'}"
    )
    if "floor" in epoch:
        figures["epoch_vs_floor"] = round(epoch["ours"] / epoch["floor"], 3)
        print(
            f"epoch time ratio (ours / floor)     : {figures['epoch_vs_floor']:12.3f}x  "
            "(1.0 = no input-pipeline overhead left)"
        )
    figures["total_s"] = round(time.perf_counter() - began, 1)
    print(
        f"total                               : {figures['total_s']:12.1f} s  "
        f"(load average {figures['load_average_1min']} on {os.cpu_count()} CPUs)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
