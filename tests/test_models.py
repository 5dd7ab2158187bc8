"""Model builders: the books' layer stacks and parameter counts, variants, and a training step."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from search.errors import SpaceError  # noqa: E402
from search.spaces import load_space  # noqa: E402
from search.training.models import ARCHITECTURES, BUILDERS, build_model, builder_parameters  # noqa: E402

FEATURES = 14  # the Jena record's columns


# Parameter counts by formula (Keras 3 defaults: biases on, GRU reset_after=True).
def dense_p(n_in: int, units: int) -> int:
    return n_in * units + units


def conv_p(kernel: int, n_in: int, filters: int) -> int:
    return kernel * n_in * filters + filters


def rnn_p(n_in: int, units: int) -> int:
    return units * (n_in + units) + units


def lstm_p(n_in: int, units: int) -> int:
    return 4 * (units * (n_in + units) + units)


def gru_p(n_in: int, units: int) -> int:
    return 3 * (units * (n_in + units) + 2 * units)


def run(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """A direct (eager) forward pass: cheaper than predict() for a handful of tiny calls."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def stack(model: keras.Model) -> list[tuple]:
    """The model's layers as comparable tuples (type and the arguments the books set)."""
    described = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Dense":
            described.append((kind, layer.units, layer.get_config()["activation"]))
        elif kind == "Conv1D":
            described.append(
                (kind, layer.filters, layer.kernel_size[0], layer.get_config()["activation"])
            )
        elif kind == "MaxPooling1D":
            described.append((kind, layer.pool_size[0]))
        elif kind == "Dropout":
            described.append((kind, layer.rate))
        elif kind in ("SimpleRNN", "LSTM", "GRU"):
            described.append(
                (kind, layer.units, layer.dropout, layer.recurrent_dropout, layer.return_sequences)
            )
        elif kind == "Bidirectional":
            inner = layer.forward_layer
            described.append((kind, type(inner).__name__, inner.units, inner.return_sequences))
        else:
            described.append((kind,))
    return described


BOOK_CASES = [
    # id, architecture, kwargs, sequence length, expected stack, expected parameter count
    (
        "dense 2nd ed.",
        "dense",
        {},
        120,
        [("Flatten",), ("Dense", 16, "relu"), ("Dense", 1, "linear")],
        dense_p(120 * FEATURES, 16) + dense_p(16, 1),
    ),
    (
        "dense 1st ed.",
        "dense",
        {"units": 32},
        240,
        [("Flatten",), ("Dense", 32, "relu"), ("Dense", 1, "linear")],
        dense_p(240 * FEATURES, 32) + dense_p(32, 1),
    ),
    (
        "conv1d 2nd ed.",
        "conv1d",
        {},
        120,
        [
            ("Conv1D", 8, 24, "relu"),
            ("MaxPooling1D", 2),
            ("Conv1D", 8, 12, "relu"),
            ("MaxPooling1D", 2),
            ("Conv1D", 8, 6, "relu"),
            ("GlobalAveragePooling1D",),
            ("Dense", 1, "linear"),
        ],
        conv_p(24, FEATURES, 8) + conv_p(12, 8, 8) + conv_p(6, 8, 8) + dense_p(8, 1),
    ),
    (
        "conv1d 1st ed.",
        "conv1d",
        {
            "filters": 32,
            "kernel_size": 5,
            "pool_size": 3,
            "halve_kernel": False,
            "global_pool": "max",
        },
        240,
        [
            ("Conv1D", 32, 5, "relu"),
            ("MaxPooling1D", 3),
            ("Conv1D", 32, 5, "relu"),
            ("MaxPooling1D", 3),
            ("Conv1D", 32, 5, "relu"),
            ("GlobalMaxPooling1D",),
            ("Dense", 1, "linear"),
        ],
        conv_p(5, FEATURES, 32) + 2 * conv_p(5, 32, 32) + dense_p(32, 1),
    ),
    (
        "simple_rnn",
        "simple_rnn",
        {},
        120,
        [("SimpleRNN", 16, 0.0, 0.0, False), ("Dense", 1, "linear")],
        rnn_p(FEATURES, 16) + dense_p(16, 1),
    ),
    (
        "simple_rnn stacked",
        "simple_rnn",
        {"layers": 3},
        120,
        [
            ("SimpleRNN", 16, 0.0, 0.0, True),
            ("SimpleRNN", 16, 0.0, 0.0, True),
            ("SimpleRNN", 16, 0.0, 0.0, False),
            ("Dense", 1, "linear"),
        ],
        rnn_p(FEATURES, 16) + 2 * rnn_p(16, 16) + dense_p(16, 1),
    ),
    (
        "lstm",
        "lstm",
        {},
        120,
        [("LSTM", 16, 0.0, 0.0, False), ("Dense", 1, "linear")],
        lstm_p(FEATURES, 16) + dense_p(16, 1),
    ),
    (
        "lstm + dropout",
        "lstm",
        {"units": 32, "recurrent_dropout": 0.25, "head_dropout": 0.5},
        120,
        [("LSTM", 32, 0.0, 0.25, False), ("Dropout", 0.5), ("Dense", 1, "linear")],
        lstm_p(FEATURES, 32) + dense_p(32, 1),
    ),
    (
        "gru",
        "gru",
        {},
        240,
        [("GRU", 32, 0.0, 0.0, False), ("Dense", 1, "linear")],
        gru_p(FEATURES, 32) + dense_p(32, 1),
    ),
    (
        "gru + dropout",
        "gru",
        {"dropout": 0.2, "recurrent_dropout": 0.2},
        240,
        [("GRU", 32, 0.2, 0.2, False), ("Dense", 1, "linear")],
        gru_p(FEATURES, 32) + dense_p(32, 1),
    ),
    (
        "stacked gru",
        "gru",
        {"layers": 2, "recurrent_dropout": 0.5, "head_dropout": 0.5},
        120,
        [
            ("GRU", 32, 0.0, 0.5, True),
            ("GRU", 32, 0.0, 0.5, False),
            ("Dropout", 0.5),
            ("Dense", 1, "linear"),
        ],
        gru_p(FEATURES, 32) + gru_p(32, 32) + dense_p(32, 1),
    ),
    (
        "bidirectional lstm",
        "bidirectional",
        {},
        120,
        [("Bidirectional", "LSTM", 16, False), ("Dense", 1, "linear")],
        2 * lstm_p(FEATURES, 16) + dense_p(32, 1),
    ),
    (
        "bidirectional gru 1st ed.",
        "bidirectional",
        {"cell": "gru", "units": 32},
        240,
        [("Bidirectional", "GRU", 32, False), ("Dense", 1, "linear")],
        2 * gru_p(FEATURES, 32) + dense_p(64, 1),
    ),
    (
        "conv_gru 1st ed.",
        "conv_gru",
        {},
        480,
        [
            ("Conv1D", 32, 5, "relu"),
            ("MaxPooling1D", 3),
            ("Conv1D", 32, 5, "relu"),
            ("GRU", 32, 0.1, 0.5, False),
            ("Dense", 1, "linear"),
        ],
        conv_p(5, FEATURES, 32) + conv_p(5, 32, 32) + gru_p(32, 32) + dense_p(32, 1),
    ),
]


@pytest.mark.parametrize(
    "architecture, kwargs, steps, expected_stack, expected_params",
    [case[1:] for case in BOOK_CASES],
    ids=[case[0] for case in BOOK_CASES],
)
def test_book_arguments_give_the_book_stack(
    architecture, kwargs, steps, expected_stack, expected_params
):
    model = build_model(architecture, (steps, FEATURES), **kwargs)
    assert stack(model) == expected_stack
    assert model.count_params() == expected_params
    assert model.output_shape == (None, 1)


# The book configuration each shipped space enqueues first builds the book's model.
SPACE_BOOK_PARAMS = {
    "dense": dense_p(120 * FEATURES, 16) + dense_p(16, 1),
    "conv1d": conv_p(24, FEATURES, 8) + conv_p(12, 8, 8) + conv_p(6, 8, 8) + dense_p(8, 1),
    "simple_rnn": rnn_p(FEATURES, 16) + dense_p(16, 1),
    "lstm": lstm_p(FEATURES, 16) + dense_p(16, 1),
    "quick": dense_p(120 * FEATURES, 16) + dense_p(16, 1),
    "all": lstm_p(FEATURES, 16) + dense_p(16, 1),
    "gru": gru_p(FEATURES, 32) + dense_p(32, 1),
    "stacked_gru": gru_p(FEATURES, 32) + gru_p(32, 32) + dense_p(32, 1),
    "bidirectional": 2 * lstm_p(FEATURES, 16) + dense_p(32, 1),
    "conv_gru": conv_p(5, FEATURES, 32) + conv_p(5, 32, 32) + gru_p(32, 32) + dense_p(32, 1),
}


@pytest.mark.parametrize("name", sorted(SPACE_BOOK_PARAMS))
def test_space_book_config_builds_the_book_model(name):
    config = load_space(name).resolve(load_space(name).book_params(), book=True)
    model = build_model(
        config.architecture,
        (config.window(6).sequence_length, FEATURES),
        config.target_steps,
        **config.model_kwargs,
    )
    assert model.count_params() == SPACE_BOOK_PARAMS[name]


# Tiny arguments per architecture for training smoke tests on (12, 3) windows.
TINY = {
    "dense": {"units": 4, "layers": 2, "dropout": 0.1},
    "conv1d": {"filters": 4, "kernel_size": 3, "layers": 2, "pool_size": 2, "head_dropout": 0.1},
    "simple_rnn": {"units": 4, "layers": 2, "dropout": 0.1, "recurrent_dropout": 0.1},
    "lstm": {"units": 4, "layers": 2, "recurrent_dropout": 0.1, "head_dropout": 0.1},
    "gru": {"units": 4, "layers": 2, "dropout": 0.1, "reverse": True},
    "bidirectional": {"cell": "gru", "units": 4, "layers": 2},
    "conv_gru": {"filters": 4, "kernel_size": 3, "pool_size": 2, "units": 4},
}


def test_registry_covers_every_architecture():
    assert set(BUILDERS) == set(ARCHITECTURES) == set(TINY)
    assert set(ARCHITECTURES) == {
        "dense",
        "conv1d",
        "simple_rnn",
        "lstm",
        "gru",
        "bidirectional",
        "conv_gru",
    }


@pytest.mark.parametrize("architecture", sorted(TINY))
def test_every_architecture_trains_one_step_with_multi_step_head(architecture):
    keras.utils.set_random_seed(0)
    model = build_model(architecture, (12, 3), target_steps=3, **TINY[architecture])
    assert model.output_shape == (None, 3)
    assert model.layers[-1].units == 3
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).standard_normal((8, 12, 3)).astype("float32")
    y = np.random.default_rng(1).standard_normal((8, 3)).astype("float32")
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("architecture", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_reverse_feeds_the_window_newest_first(architecture, layers):
    keras.utils.set_random_seed(0)
    forward = build_model(architecture, (6, 2), units=3, layers=layers)
    backward = build_model(architecture, (6, 2), units=3, layers=layers, reverse=True)
    backward.set_weights(forward.get_weights())
    x = np.arange(2 * 6 * 2, dtype="float32").reshape(2, 6, 2) / 10.0
    seen_reversed = run(forward, np.ascontiguousarray(x[:, ::-1, :]))
    np.testing.assert_allclose(run(backward, x), seen_reversed, rtol=1e-5, atol=1e-6)
    assert not np.allclose(run(forward, x), seen_reversed, atol=1e-4)


def test_reverse_is_only_offered_where_it_means_something():
    for architecture in ("simple_rnn", "lstm", "gru"):
        assert "reverse" in builder_parameters(architecture)
    for architecture in ("dense", "conv1d", "bidirectional", "conv_gru"):
        assert "reverse" not in builder_parameters(architecture)


def test_unroll_gives_the_same_model_unrolled():
    keras.utils.set_random_seed(0)
    looped = build_model("lstm", (5, 2), units=3, layers=2)
    unrolled = build_model("lstm", (5, 2), units=3, layers=2, unroll=True)
    assert all(layer.unroll for layer in unrolled.layers if type(layer).__name__ == "LSTM")
    unrolled.set_weights(looped.get_weights())
    x = np.linspace(-1, 1, 2 * 5 * 2, dtype="float32").reshape(2, 5, 2)
    np.testing.assert_allclose(run(unrolled, x), run(looped, x), rtol=1e-5, atol=1e-6)


def test_unroll_needs_a_fixed_sequence_length():
    assert build_model("gru", (None, 3), units=2).input_shape == (None, None, 3)
    with pytest.raises(SpaceError, match="unroll"):
        build_model("gru", (None, 3), units=2, unroll=True)


def test_stacked_and_bidirectional_variants():
    model = build_model("bidirectional", (12, 3), cell="lstm", units=4, layers=3, head_dropout=0.2)
    assert stack(model) == [
        ("Bidirectional", "LSTM", 4, True),
        ("Bidirectional", "LSTM", 4, True),
        ("Bidirectional", "LSTM", 4, False),
        ("Dropout", 0.2),
        ("Dense", 1, "linear"),
    ]
    model = build_model(
        "conv_gru",
        (40, 3),
        filters=4,
        kernel_size=3,
        conv_layers=3,
        pool_size=2,
        units=5,
        layers=2,
        dropout=0.0,
        recurrent_dropout=0.0,
    )
    assert [s[0] for s in stack(model)] == [
        "Conv1D",
        "MaxPooling1D",
        "Conv1D",
        "MaxPooling1D",
        "Conv1D",
        "GRU",
        "GRU",
        "Dense",
    ]
    assert [s[-1] for s in stack(model) if s[0] == "GRU"] == [True, False]
    model = build_model("dense", (12, 3), units=5, layers=3, dropout=0.25)
    assert stack(model) == [("Flatten",)] + [("Dense", 5, "relu"), ("Dropout", 0.25)] * 3 + [
        ("Dense", 1, "linear")
    ]


def test_build_model_rejects_unknown_names_and_bad_values():
    with pytest.raises(SpaceError, match="unknown architecture 'transformer'"):
        build_model("transformer", (12, 3))
    with pytest.raises(SpaceError, match="unitz"):
        build_model("lstm", (12, 3), unitz=4)
    with pytest.raises(SpaceError, match="reverse"):
        build_model("dense", (12, 3), reverse=True)
    with pytest.raises(SpaceError, match="too short for the conv stack"):
        build_model("conv1d", (24, 3))  # the book's kernel 24 needs a longer window
    with pytest.raises(SpaceError, match="dropout"):
        build_model("lstm", (12, 3), dropout=1.5)
    with pytest.raises(SpaceError, match="cell"):
        build_model("bidirectional", (12, 3), cell="rnn")


JAX_SMOKE = textwrap.dedent(
    """
    import numpy as np, keras
    from search.training.models import build_model
    assert keras.backend.backend() == "jax", keras.backend.backend()
    tiny = {tiny!r}
    for kwargs in tiny.values():  # one recurrent layer each: XLA compiles every scan
        kwargs["layers"] = 1
    x = np.random.default_rng(0).standard_normal((4, 12, 3)).astype("float32")
    y = np.random.default_rng(1).standard_normal((4, 2)).astype("float32")
    for architecture, kwargs in tiny.items():
        model = build_model(architecture, (12, 3), target_steps=2, **kwargs)
        model.compile(optimizer="rmsprop", loss="mse")
        loss = float(model.train_on_batch(x, y))
        assert np.isfinite(loss), (architecture, loss)
        assert keras.ops.convert_to_numpy(model(x)).shape == (4, 2)
        print(architecture, "ok", loss)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="jax is not installed (pip install jax, or the project's [jax] extra)",
)
def test_every_architecture_trains_on_the_jax_backend():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SMOKE.format(tiny=TINY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(" ok ") == len(TINY)
