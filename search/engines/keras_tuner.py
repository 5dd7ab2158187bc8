"""keras-tuner's side of a space: the same parameters as keras-tuner ``HyperParameters``.

Only the translation lives here for now; a keras-tuner engine will sit beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search.spaces import FloatParam, IntParam

if TYPE_CHECKING:
    import keras_tuner

    from search.spaces import Space

__all__ = ["hyperparameters"]


def hyperparameters(space: Space) -> keras_tuner.HyperParameters:
    """The space as keras-tuner ``HyperParameters``; defaults are the book configuration.

    In a multi-architecture space, each architecture's parameters live in a
    ``conditional_scope`` on ``architecture``.
    """
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    book = space.book_params()
    if space.architectures is not None:
        hp.Choice("architecture", list(space.architectures), default=book.get("architecture"))
    for name, entry, _ in space.sampled():
        users = space.users(name)
        if space.architectures is not None and len(users) < len(space.architectures):
            with hp.conditional_scope("architecture", users):
                _register(hp, name, entry.spec, book.get(name))
        else:
            _register(hp, name, entry.spec, book.get(name))
    return hp


def _register(hp: Any, name: str, spec: Any, default: Any) -> None:
    if isinstance(spec, IntParam):
        hp.Int(
            name,
            spec.low,
            spec.high,
            step=None if spec.log else spec.step,
            sampling="log" if spec.log else "linear",
            default=default,
        )
    elif isinstance(spec, FloatParam):
        hp.Float(
            name,
            spec.low,
            spec.high,
            step=spec.step,
            sampling="log" if spec.log else "linear",
            default=default,
        )
    elif isinstance(spec.choices[0], bool):  # Choice would turn booleans into 0/1
        if len(spec.choices) == 2:
            hp.Boolean(name, default=bool(default) if default is not None else spec.choices[0])
        else:
            hp.Fixed(name, spec.choices[0])
    else:
        hp.Choice(name, list(spec.choices), default=default)
