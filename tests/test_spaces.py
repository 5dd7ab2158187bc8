"""Space files: loading, validation errors, and compilation to Optuna and keras-tuner."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from search._resources import spaces_dir
from search.engines import keras_tuner as keras_tuner_engine
from search.engines import optuna as optuna_engine
from search.errors import SpaceError
from search.spaces import Space, TrialConfig, list_spaces, load_space

SHIPPED = sorted(path.stem for path in spaces_dir().glob("*.yaml"))
EXPECTED = {
    "all",
    "quick",
    "dense",
    "conv1d",
    "simple_rnn",
    "lstm",
    "gru",
    "stacked_gru",
    "bidirectional",
    "conv_gru",
}


# --------------------------------------------------------------------------- shipped spaces


def test_every_documented_space_is_shipped():
    assert EXPECTED <= set(SHIPPED)
    assert not (spaces_dir() / "__init__.py").exists()
    assert [space.name for space in list_spaces()] == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_by_name_and_by_path(name):
    space = load_space(name)
    assert isinstance(space, Space)
    assert space.name == name and space.description.strip()
    assert space.path == spaces_dir() / f"{name}.yaml"
    assert load_space(space.path) == space
    assert load_space(str(space.path)) == space
    assert space.book is not None, "every shipped space names its book configuration"
    text = space.describe()
    assert name in text.splitlines()[0]
    assert "book configuration" in text and "epochs=" in text
    for optuna_name in optuna_engine.distributions(space):
        assert optuna_name in text


def test_unknown_space_name_lists_the_available_ones():
    with pytest.raises(SpaceError) as error:
        load_space("lstmm")
    message = str(error.value)
    assert "'lstmm'" in message and "quick" in message and "lstm" in message


def test_missing_space_file_names_it(tmp_path):
    with pytest.raises(SpaceError, match="no such space file"):
        load_space(tmp_path / "nope.yaml")


def test_loading_a_space_does_not_import_keras_or_optuna():
    code = textwrap.dedent(
        """
        import sys
        from search.spaces import list_spaces
        for space in list_spaces():
            space.describe(); space.book_params(); space.resolve(space.book_params(), book=True)
        heavy = [m for m in ("keras", "tensorflow", "optuna", "keras_tuner") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- validation errors

GOOD = {
    "units": "{type: int, low: 8, high: 64, log: true}",
    "dropout": "{type: float, low: 0.0, high: 0.5, step: 0.1}",
    "lookback_hours": "{type: categorical, choices: [24, 48, 120]}",
    "sampling_rate": "6",
    "learning_rate": "{type: float, low: 1e-4, high: 1e-2, log: true}",
    "batch_size": "256",
}


def write_space(
    tmp_path: Path,
    architecture: str = "lstm",
    book: str | None = "units: 16",
    extra: str = "",
    **params: str | None,
) -> Path:
    """A small single-architecture space file; keyword arguments replace or drop parameters."""
    merged = {**GOOD, **params}
    lines = [f"  {name}: {value}" for name, value in merged.items() if value is not None]
    text = (
        "name: tiny\ndescription: a test space\n"
        f"architecture: {architecture}\nparams:\n" + "\n".join(lines) + "\n"
        "fixed: {epochs: 2, patience: 1}\n"
        + (f"book:\n  source: test\n  params: {{{book}}}\n" if book is not None else "")
        + extra
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(SpaceError) as error:
        load_space(path)
    message = str(error.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith(str(path)), "errors name the file"
    return message


def test_a_minimal_space_loads(tmp_path):
    space = load_space(write_space(tmp_path))
    assert space.name == "tiny"
    assert space.book_params() == {
        "units": 16,
        "dropout": 0.0,
        "lookback_hours": 120,
        "learning_rate": 0.001,
    }
    assert space.fixed.epochs == 2 and space.fixed.optimizer == "rmsprop"


def test_book_config_is_required_and_defaults_to_the_builders_book_values(tmp_path):
    assert "book: missing (required)" in load_error(write_space(tmp_path, book=None))
    space = load_space(write_space(tmp_path, book=""))
    config = space.resolve(space.book_params(), book=True)
    assert config.model_kwargs["units"] == 16  # build_lstm's default: the book's LSTM(16)
    assert (config.lookback_hours, config.sampling_rate, config.learning_rate) == (120, 6, 0.001)


def test_yaml_exponent_floats_are_numbers(tmp_path):
    space = load_space(write_space(tmp_path))
    assert space.params["learning_rate"].low == 1e-4  # YAML 1.1 would read "1e-4" as a string


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"architecture": "transformer"}, ["architecture", "unknown architecture 'transformer'"]),
        (
            {"units": "{type: normal, low: 1, high: 2}"},
            ["params.units", "unknown distribution type 'normal'"],
        ),
        ({"units": "{low: 1, high: 2}"}, ["params.units", "needs a 'type'"]),
        ({"units": "{type: int, low: 64, high: 8}"}, ["params.units", "low (64) > high (8)"]),
        (
            {"learning_rate": "{type: float, low: 0.0, high: 0.1, log: true}"},
            ["params.learning_rate", "log needs low > 0"],
        ),
        (
            {"units": "{type: int, low: 0, high: 8, log: true}"},
            ["params.units", "log needs low > 0"],
        ),
        ({"dropout": "{type: categorical, choices: []}"}, ["params.dropout", "choices is empty"]),
        (
            {"units": "{type: int, low: 8, high: 64, step: 5}"},
            ["params.units", "not a multiple of step"],
        ),
        ({"units": "{type: int, low: 8, high: 64, lo: 3}"}, ["params.units.lo", "unknown key"]),
        ({"filters": "8"}, ["params.filters", "does not take 'filters'"]),
        (
            {"sampling_rate": "{type: categorical, choices: [3, 5]}"},
            [
                "params.sampling_rate",
                "sampling_rate 5 does not divide the lookback",
                "24 h = 144 rows",
            ],
        ),
        (
            {"lookback_hours": "{type: float, low: 24, high: 48}"},
            ["params.lookback_hours", "continuous float"],
        ),
        (
            {"lookback_hours": "{type: categorical, choices: [24, 24.05]}"},
            ["params.lookback_hours", "choices mix types"],
        ),
        ({"units": "{type: float, low: 8, high: 64}"}, ["params.units", "integer"]),
        ({"dropout": "{type: float, low: 0.0, high: 1.0}"}, ["params.dropout", "in [0, 1)"]),
        ({"dropout": "[0.1, 0.2]"}, ["params.dropout", "a constant must be"]),
        ({"batch_size": None}, ["params.batch_size", "missing"]),
        ({"book": "units: 256"}, ["book.params.units", "256 is outside params.units"]),
        ({"book": "unitz: 16"}, ["book.params.unitz", "not a parameter"]),
        ({"book": "batch_size: 128"}, ["book.params.batch_size", "differs from the constant"]),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else None,
)
def test_invalid_space_files_name_file_parameter_and_problem(tmp_path, change, expected):
    change = dict(change)
    architecture = change.pop("architecture", "lstm")
    book = change.pop("book", "units: 16")
    message = load_error(write_space(tmp_path, architecture, book, **change))
    for fragment in expected:
        assert fragment in message, message


def test_book_default_outside_the_space_is_reported(tmp_path):
    # The book's lookback (120 h) is not among the choices and the book does not say otherwise.
    path = write_space(tmp_path, lookback_hours="{type: categorical, choices: [24, 48]}")
    assert "book.params.lookback_hours: 120 (the default) is outside" in load_error(path)


def test_conv_stack_too_deep_for_the_shortest_window(tmp_path):
    path = write_space(
        tmp_path,
        "conv1d",
        book="kernel_size: 6, lookback_hours: 48",
        units=None,
        dropout=None,
        kernel_size="{type: int, low: 6, high: 24}",
        lookback_hours="{type: categorical, choices: [24, 48]}",
    )
    message = load_error(path)
    assert "params.lookback_hours" in message and "too short for the conv stack" in message
    assert "kernel_size=24" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\ndescription: [unclosed\n", "malformed YAML at line"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: x\narchitecture: lstm\nparams: {}\n", "description: missing (required)"),
        (
            "description: d\nparams: {}\nbook: {}\n",
            "give either 'architecture: NAME' or 'architectures:'",
        ),
        ("description: d\narchitecture: lstm\nparams: {}\nepochs: 3\n", "epochs: unknown key"),
        (
            "description: d\narchitecture: lstm\nparams: {}\nfixed: {optimizer: adamm}\n",
            "fixed.optimizer",
        ),
        (
            "description: d\narchitecture: lstm\nparams: {}\nfixed: {horizon_hours: 0.1}\n",
            "whole number of 10-minute rows",
        ),
    ],
)
def test_malformed_and_incomplete_files(tmp_path, text, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    assert expected in load_error(path)


MULTI = """\
name: multi
description: two architectures
architectures:
  lstm:
    units: {type: int, low: 4, high: 16}
  conv1d:
    kernel_size: {type: int, low: 3, high: 6}
    lookback_hours: {type: categorical, choices: [48, 72]}
params:
  lookback_hours: {type: categorical, choices: [24, 48]}
  sampling_rate: 6
  learning_rate: 0.001
  batch_size: 64
book: {architecture: lstm, params: {units: 16, lookback_hours: 48}}
"""


def test_multi_architecture_space_validation(tmp_path):
    path = tmp_path / "multi.yaml"
    path.write_text(MULTI)
    space = load_space(path)
    assert space.conditional
    assert space.book_params() == {"architecture": "lstm", "lookback_hours": 48, "lstm.units": 16}
    assert set(optuna_engine.distributions(space)) == {
        "architecture",
        "lookback_hours",
        "lstm.units",
        "conv1d.kernel_size",
        "conv1d.lookback_hours",
    }
    for bad, expected in [
        (
            MULTI.replace("  sampling_rate: 6", "  sampling_rate: 6\n  units: 8"),
            "params.units: shared parameters",
        ),
        (MULTI.replace("conv1d:\n", "convv:\n"), "architectures.convv: unknown architecture"),
        (MULTI.replace("architecture: lstm, ", ""), "book.architecture: missing"),
        (
            MULTI.replace(
                "architecture: lstm, params: {units: 16, lookback_hours: 48}", "architecture: gru"
            ),
            "book.architecture: 'gru' is not in this space",
        ),
        (
            MULTI.replace("    units: {type: int", "    filters: {type: int"),
            "architectures.lstm.filters: architecture 'lstm' does not take 'filters'",
        ),
    ]:
        path.write_text(bad)
        assert expected in load_error(path)


# --------------------------------------------------------------------------- compilation


def test_resolve_gives_one_explicit_config():
    space = load_space("lstm")
    config = space.resolve(space.book_params(), book=True)
    assert isinstance(config, TrialConfig)
    assert config.architecture == "lstm"
    assert config.model_kwargs == {
        "units": 16,
        "layers": 1,
        "dropout": 0.0,
        "recurrent_dropout": 0.0,
        "head_dropout": 0.0,
        "reverse": False,
        "unroll": False,
    }
    assert (config.lookback_hours, config.sampling_rate, config.window(6).sequence_length) == (
        120,
        6,
        120,
    )
    assert config.window(6).delay == 858  # the book's delay for 120 h at hourly steps, 24 h ahead
    assert (config.epochs, config.optimizer, config.loss, config.patience) == (
        20,
        "rmsprop",
        "mse",
        3,
    )
    flat = config.as_dict(6)
    assert flat["units"] == 16 and flat["architecture"] == "lstm" and flat["sequence_length"] == 120
    assert all(isinstance(v, (str, int, float, bool)) for v in flat.values())
    settings = {
        "architecture",
        "lookback_hours",
        "sampling_rate",
        "sequence_length",
        "learning_rate",
        "batch_size",
        "epochs",
        "optimizer",
        "loss",
        "patience",
        "horizon_hours",
        "target_steps",
        "target_scaling",
        "calendar_features",
    }
    assert set(flat) == settings | set(config.model_kwargs)
    assert not settings & set(config.model_kwargs)  # no model argument shadows a setting
    with pytest.raises(SpaceError, match="units: 1000 is outside"):
        space.resolve({**space.book_params(), "units": 1000}, book=True)
    with pytest.raises(SpaceError, match="units: missing"):
        space.resolve({k: v for k, v in space.book_params().items() if k != "units"}, book=True)
    with pytest.raises(SpaceError, match="colour: not a parameter"):
        space.resolve({**space.book_params(), "colour": 1}, book=True)
    with pytest.raises(SpaceError, match="architecture: 'recurrent' is not one of"):
        load_space("all").resolve({"architecture": "recurrent"})


def _trials_for(space: Space) -> int:
    return 40 if space.conditional else 8


@pytest.mark.parametrize("name", SHIPPED)
def test_optuna_samples_within_the_space_and_enqueues_the_book_first(name):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(name)
    distributions = optuna_engine.distributions(space)
    configs: list[TrialConfig] = []

    def objective(trial):
        params = optuna_engine.suggest(space, trial)
        configs.append(space.resolve(params, book=bool(trial.user_attrs.get("book_config"))))
        return 0.0

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.book_params(), user_attrs={"book_config": True})
    study.optimize(objective, n_trials=_trials_for(space))

    assert study.trials[0].params == space.book_params()
    assert configs[0] == space.resolve(space.book_params(), book=True)
    seen_architectures = set()
    for trial in study.trials:
        architecture = trial.params.get("architecture", space.architecture)
        seen_architectures.add(architecture)
        for param, value in trial.params.items():
            assert trial.distributions[param] == distributions[param], param
            assert distributions[param]._contains(distributions[param].to_internal_repr(value))
            if "." in param:  # conditional parameters appear only with their architecture
                assert param.split(".")[0] == architecture, (param, architecture)
    assert all(config.architecture in space.candidate_architectures for config in configs)
    if space.conditional:
        assert len(seen_architectures) > 1


def test_conditional_optuna_names_are_unique_per_architecture():
    space = load_space("all")
    distributions = optuna_engine.distributions(space)
    assert distributions["architecture"].choices == (
        "dense",
        "conv1d",
        "simple_rnn",
        "lstm",
        "gru",
        "bidirectional",
        "conv_gru",
    )
    for architecture in space.candidate_architectures:
        assert any(name.startswith(f"{architecture}.") for name in distributions), architecture


def _kt_range(hp) -> tuple:
    kind = type(hp).__name__
    if kind in ("Choice", "Boolean", "Fixed"):
        return ("categorical", tuple(sorted(hp.values)))
    return (kind.lower(), hp.min_value, hp.max_value, hp.step, hp.sampling)


def _optuna_range(distribution) -> tuple:
    kind = type(distribution).__name__
    if kind == "CategoricalDistribution":
        return ("categorical", tuple(sorted(distribution.choices)))
    log = "log" if distribution.log else "linear"
    if kind == "IntDistribution":
        return (
            "int",
            distribution.low,
            distribution.high,
            None if distribution.log else distribution.step,
            log,
        )
    return ("float", distribution.low, distribution.high, distribution.step, log)


@pytest.mark.parametrize("name", SHIPPED)
def test_keras_tuner_hyperparameters_mirror_the_optuna_space(name):
    pytest.importorskip("keras_tuner")
    space = load_space(name)
    hp = keras_tuner_engine.hyperparameters(space)
    distributions = optuna_engine.distributions(space)
    registered = {p.name: p for p in hp.space}
    assert set(registered) == set(distributions)
    for param, distribution in distributions.items():
        assert _kt_range(registered[param]) == _optuna_range(distribution), param
        if "." in param:
            (condition,) = registered[param].conditions
            assert condition.name == "architecture"
            assert list(condition.values) == [param.split(".")[0]]
    # The defaults are the book configuration.
    # (the book trial's own settings, raw targets and no calendar, are not choices of the space)
    defaults = dataclasses.replace(
        space.resolve(hp.values), target_scaling="none", calendar_features=False
    )
    assert defaults == space.resolve(space.book_params(), book=True)
    # Random keras-tuner samples resolve to valid configurations.
    for seed in range(10):
        sample = hp.copy()
        for p in sample.space:
            if sample.is_active(p):
                sample.values[p.name] = p.random_sample(seed)
        config = space.resolve(sample.values)
        assert config.architecture in space.candidate_architectures
        assert math.isclose(
            config.window(6).sequence_length * config.sampling_rate, config.lookback_hours * 6
        )
