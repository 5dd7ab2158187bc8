"""Where the files shipped with the package live, for editable and regular installs alike.

A regular install (``pip install .``) carries ``data/`` and ``spaces/`` inside the package as
``search/_data`` and ``search/_spaces``; an editable install or a source checkout reads them from
the repository root. Both resolve independently of the working directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return candidates[-1]


def data_dir() -> Path:
    """The folder holding the embedded datasets and their MANIFEST.json."""
    return _first_existing(_PACKAGE / "_data", _REPO / "data")


def spaces_dir() -> Path:
    """The folder holding the shipped search-space files (``*.yaml``)."""
    return _first_existing(_PACKAGE / "_spaces", _REPO / "spaces")
