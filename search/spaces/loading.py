"""Loading spaces: YAML files (shipped by name, or by path) and snapshots, parsed and
validated into a Space, each problem a one-line SpaceError."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from search._resources import spaces_dir
from search.errors import SpaceError
from search.spaces.model import Space


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

_UNION_TAGS = {"int", "float", "categorical", "constant"}


def _format_errors(error: ValidationError) -> str:
    messages: list[str] = []
    for item in error.errors():
        parts = [
            str(p)
            for p in item["loc"]
            if str(p) not in _UNION_TAGS and not str(p).startswith("function-")
        ]
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if item["type"] == "missing":
            message = "missing (required)"
        elif item["type"] == "extra_forbidden":
            message = "unknown key"
        text = f"{'.'.join(parts)}: {message}" if parts else message
        if text not in messages:
            messages.append(text.replace("\n", " "))
    shown = "; ".join(messages[:3])
    if len(messages) > 3:
        shown += f" (and {len(messages) - 3} more)"
    return shown


def parse_space(data: Any, path: Path | None = None) -> Space:
    """Validate an already-parsed space (a mapping) into a Space; errors raise SpaceError."""
    label = str(path) if path is not None else "space"
    if not isinstance(data, dict):
        raise SpaceError(
            f"{label}: expected a mapping of keys (name, description, ...), "
            f"got {type(data).__name__}"
        )
    data = dict(data)
    if "path" in data:  # set from where the file was read, never by the file itself
        raise SpaceError(f"{label}: path: unknown key")
    if path is not None:
        data.setdefault("name", path.stem)
        data["path"] = path
    try:
        return Space.model_validate(data)
    except ValidationError as error:
        raise SpaceError(f"{label}: {_format_errors(error)}") from None


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpaceError(f"{path}: cannot read the space file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise SpaceError(
            f"{path}: not a text (UTF-8) file: byte {error.object[error.start]:#04x} at offset "
            f"{error.start}; a space file is YAML text"
        ) from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, label: str) -> Any:
    """The YAML document in ``text``; anything PyYAML cannot read is a one-line SpaceError."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).strip() or type(error).__name__
        raise SpaceError(f"{label}: malformed YAML{where}: {problem}") from None
    except Exception as error:
        # PyYAML's constructors let other errors through on some malformed scalars (a timestamp
        # with month 13, an empty `!!int`, a nesting too deep to build): bad input, not a crash.
        problem = f"{type(error).__name__}: {error}".strip()
        raise SpaceError(f"{label}: malformed YAML: {problem}") from None


def space_from_text(text: str, path: Path | None = None) -> Space:
    """Validate a space file's text (a study's snapshot of its space); errors raise SpaceError."""
    label = str(path) if path is not None else "space"
    return parse_space(_parse_yaml(text, label), path)


def _shipped() -> dict[str, Path]:
    return {path.stem: path for path in sorted(spaces_dir().glob("*.yaml"))}


def names_a_file(name_or_path: str | Path) -> bool:
    """The one rule for what ``--space`` names: a file when it is a Path, ends with ``.yaml`` or
    ``.yml``, or holds a path separator; else a shipped space (whatever the current folder holds:
    an entry named ``quick`` there does not hide the shipped space)."""
    text = str(name_or_path)
    return (
        isinstance(name_or_path, Path)
        or text.endswith((".yaml", ".yml"))
        or "/" in text
        or (os.sep in text)
    )


def load_space(name_or_path: str | Path) -> Space:
    """Load and validate a shipped space by name (``"lstm"``) or a space file by path."""
    text = str(name_or_path)
    if names_a_file(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise SpaceError(f"{path}: no such space file")
    else:
        shipped = _shipped()
        if text not in shipped:
            raise SpaceError(
                f"unknown space {text!r}; available: {', '.join(shipped) or '(none)'} "
                "(or give the path of a YAML file)"
            )
        path = shipped[text]
    return parse_space(_read_yaml(path), path)


def list_spaces() -> list[Space]:
    """Every shipped space, sorted by name."""
    return [load_space(path) for path in _shipped().values()]
