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

from search.datasets import load_dataset  # noqa: E402
from search.windows import WindowSpec, make_windows, prepare  # noqa: E402

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


def compiled_model(weights, n_features: int) -> keras.Model:
    model = build_model(n_features)
    model.set_weights(weights)
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    return model


def interleaved_epochs(runs: dict, weights, n_features: int, epochs: int) -> dict[str, list[float]]:
    """Epoch times per pipeline: one warm-up epoch each, then epochs alternating between them.

    Alternating (seeds, ours, seeds, ours, ...) exposes both to the same background load on a
    shared machine; each pipeline trains its own model from the same initial weights.
    """
    models = {name: compiled_model(weights, n_features) for name in runs}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(1 + epochs):
        for name, dataset in runs.items():
            timer = EpochTimer()
            models[name].fit(dataset, epochs=1, callbacks=[timer], verbose=0)
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
    assert seeds_n == ours_n == ours.num_windows, (seeds_n, ours_n, ours.num_windows)

    keras.utils.set_random_seed(SEED)
    weights = build_model(n_features).get_weights()
    runs = {"seeds": seeds_train_dataset(data, target, prepared.num_train), "ours": ours}
    times = interleaved_epochs(runs, weights, n_features, args.epochs)
    seeds_all, ours_all = times["seeds"], times["ours"]
    seeds_epoch = statistics.median(seeds_all[1:])
    ours_epoch = statistics.median(ours_all[1:])

    rate_ratio = ours_rate / seeds_rate
    epoch_ratio = ours_epoch / seeds_epoch
    figures = {
        "windows_per_pass": ours_n,
        "seeds_windows_per_s": round(seeds_rate),
        "ours_windows_per_s": round(ours_rate),
        "windows_per_s_ratio": round(rate_ratio, 1),
        "seeds_lstm16_epoch_s": round(seeds_epoch, 2),
        "ours_lstm16_epoch_s": round(ours_epoch, 2),
        "epoch_time_ratio": round(epoch_ratio, 3),
        "seeds_epochs_s": [round(t, 2) for t in seeds_all],
        "ours_epochs_s": [round(t, 2) for t in ours_all],
        "workers": args.workers,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "cpu_count": os.cpu_count(),
        "total_s": round(time.perf_counter() - began, 1),
    }
    print(f"train windows per pass          : {ours_n}")
    print(f"windows/s  seeds (tf.data)      : {seeds_rate:12,.0f}")
    print(f"windows/s  search.windows       : {ours_rate:12,.0f}")
    print(
        f"windows/s ratio (ours / seeds)  : {rate_ratio:12.1f}x   (target >= 50x)  "
        f"{'OK' if rate_ratio >= 50 else 'MISSED'}"
    )
    print(
        f"LSTM(16) epoch s  seeds         : {seeds_epoch:12.2f}   epochs {figures['seeds_epochs_s']}"
    )
    print(
        f"LSTM(16) epoch s  search.windows: {ours_epoch:12.2f}   epochs {figures['ours_epochs_s']}"
    )
    print(
        f"epoch time ratio (ours / seeds) : {epoch_ratio:12.3f}x  (target <= 0.40x) "
        f"{'OK' if epoch_ratio <= 0.40 else 'MISSED'}"
    )
    print(f"total                           : {figures['total_s']:12.1f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
