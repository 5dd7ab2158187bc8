"""Search spaces: YAML files in ``spaces/``, validated once into a :class:`Space`.

A space file names an architecture, gives each parameter either a distribution (``int``,
``float`` with ``log``/``step``, ``categorical``, as Optuna has them) or a plain constant, fixes
the training settings, and names the book's configuration, which a study enqueues as trial 0::

    name: lstm                      # optional: defaults to the file name
    description: LSTM forecaster    # one line, listed by `search spaces`
    architecture: lstm              # one of search.models.ARCHITECTURES
    params:                         # the builder's arguments + the four training parameters
      units: {type: int, low: 8, high: 128, log: true}
      dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
      reverse: false                # a constant: pinned, not searched
      lookback_hours: {type: categorical, choices: [24, 72, 120]}
      sampling_rate: 6              # rows per step; must divide every lookback's rows (hours * 6)
      learning_rate: {type: float, low: 1e-4, high: 1e-2, log: true}
      batch_size: 256
    fixed: {epochs: 20, optimizer: rmsprop, loss: mse, patience: 3, horizon_hours: 24,
            target_steps: 1}
    book:                           # plain names; left out = the builder's default / BOOK_PROTOCOL
      source: "Deep Learning with Python, 2nd ed., 10.2.5"
      params: {units: 16, dropout: 0.0, lookback_hours: 120, learning_rate: 0.001}

A multi-architecture space replaces ``architecture``/model parameters with ``architectures:``, a
mapping of architecture name to its own parameters (Optuna names ``"lstm.units"``, sampled only
when ``architecture`` is ``lstm``); its ``params`` then hold only the shared training parameters,
which an architecture may override. ``book`` then names its ``architecture`` too.

This package imports neither Keras, Optuna nor keras-tuner (the CLI validates a space in about a
second). It describes a space; translating one for a search engine is the engine's job
(``search/engines/optuna.py``: ``suggest``, ``distributions``; ``search/engines/keras_tuner.py``:
``hyperparameters``).

The modules: the names every space uses (``names.py``), distributions (``distributions.py``),
the Space model (``model.py``), one trial's ``TrialConfig`` (``trial_config.py``), checks against
the model builders' signatures (``builders.py``), loading YAML files (``loading.py``).
"""

from __future__ import annotations

from search.spaces.distributions import CategoricalParam, Constant, FloatParam, IntParam, ParamSpec
from search.spaces.loading import (
    list_spaces,
    load_space,
    names_a_file,
    parse_space,
    space_from_text,
)
from search.spaces.model import BookConfig, FixedSettings, SearchSettings, Space
from search.spaces.names import (
    BOOK_PROTOCOL,
    BOOK_SETTINGS,
    LOSSES,
    OPTIMIZERS,
    OPTIONAL_PARAMETERS,
    ROWS_PER_HOUR,
    SHARED_PARAMETERS,
    TARGET_SCALINGS,
    TRAINING_PARAMETERS,
    Scalar,
)
from search.spaces.trial_config import TrialConfig

__all__ = [
    "BOOK_PROTOCOL",
    "BOOK_SETTINGS",
    "BookConfig",
    "CategoricalParam",
    "Constant",
    "FixedSettings",
    "FloatParam",
    "IntParam",
    "LOSSES",
    "OPTIMIZERS",
    "OPTIONAL_PARAMETERS",
    "ParamSpec",
    "ROWS_PER_HOUR",
    "SHARED_PARAMETERS",
    "Scalar",
    "SearchSettings",
    "Space",
    "TARGET_SCALINGS",
    "TRAINING_PARAMETERS",
    "TrialConfig",
    "list_spaces",
    "load_space",
    "names_a_file",
    "parse_space",
    "space_from_text",
]
