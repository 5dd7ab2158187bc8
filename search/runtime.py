"""The Keras backend a process trains on, chosen before Keras is imported, and what it ran on.

`select_backend` picks the backend (``--backend`` > ``KERAS_BACKEND`` > TensorFlow > JAX >
PyTorch, by what is installed) and sets ``KERAS_BACKEND``; it never imports a backend, so a bad
choice is answered in a second. `runtime_tags` (after Keras is imported) names the backend and
the device for a trial's run; `machine_versions` names the host and the package versions for the
study's parent run. Versions are read with ``importlib.metadata``: this module imports neither
Optuna nor MLflow (tests/test_structure.py).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import re
import socket
import sys
from dataclasses import dataclass
from importlib import metadata

from search.errors import SearchError

__all__ = [
    "BACKENDS",
    "BackendChoice",
    "machine_versions",
    "runtime_tags",
    "select_backend",
    "versions_tag",
]

#: The backends `search` supports, in the order a default is chosen.
BACKENDS: tuple[str, ...] = ("tensorflow", "jax", "torch")

#: Per backend: the modules that must be importable, the distributions whose versions are
#: recorded, the pip extra that installs it and its name in prose.
_MODULES = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
_DISTRIBUTIONS = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib"), "torch": ("torch",)}
_EXTRA = {"tensorflow": "search[tensorflow]", "jax": "search[jax]", "torch": "search[torch]"}
_TITLE = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


@dataclass(frozen=True)
class BackendChoice:
    name: str
    note: str | None = None


def _installed(backend: str) -> bool:
    """Whether ``backend``'s modules can be imported, without importing them."""
    for module in _MODULES[backend]:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):  # a broken install, or a module without a spec
            return False
    return True


def _loaded_backend() -> str | None:
    """The backend of a Keras already imported in this process, else None."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return str(keras.backend.backend())
    except Exception:  # a half-imported Keras: nothing to compare with
        return None


def _valid(name: str, source: str) -> str:
    cleaned = name.strip().lower()
    if cleaned not in BACKENDS:
        raise SearchError(
            f"unknown Keras backend {name!r} ({source}): choose tensorflow, jax or torch"
        )
    return cleaned


def select_backend(requested: str | None) -> BackendChoice:
    """Choose the Keras backend and set ``KERAS_BACKEND``; call before Keras is imported.

    ``requested`` (the ``--backend`` flag) wins over the ``KERAS_BACKEND`` environment variable;
    without either: TensorFlow if installed, else JAX, else PyTorch (with a note saying so). An
    unknown name, an explicit request for a backend that is not installed, no backend at all, or
    a Keras already imported on another backend raise a one-line `SearchError`.
    """
    environment = (os.environ.get("KERAS_BACKEND") or "").strip()
    if requested is not None and requested.strip():
        name, source = _valid(requested, "--backend"), f"--backend {requested.strip()}"
    elif environment:
        name, source = _valid(environment, "KERAS_BACKEND"), f"KERAS_BACKEND={environment}"
    else:
        name, source = "", ""

    loaded = _loaded_backend()
    if loaded is not None:
        if name and loaded != name:
            raise SearchError(
                f"{source} asked for {_TITLE[name]}, but Keras was already imported in this "
                f"process on the {loaded} backend; start a new process (or set KERAS_BACKEND "
                "before importing keras)"
            )
        if not name and loaded in BACKENDS:
            os.environ["KERAS_BACKEND"] = loaded
            return BackendChoice(loaded)

    if name:
        if not _installed(name):
            raise SearchError(
                f"{source}: {_TITLE[name]} is not installed: pip install '{_EXTRA[name]}'"
            )
        os.environ["KERAS_BACKEND"] = name
        return BackendChoice(name)

    for candidate in BACKENDS:
        if _installed(candidate):
            os.environ["KERAS_BACKEND"] = candidate
            if candidate == "tensorflow":
                return BackendChoice(candidate)
            return BackendChoice(
                candidate,
                f"TensorFlow is not installed; training on {_TITLE[candidate]} "
                "(pass --backend to choose)",
            )
    raise SearchError(
        "no Keras backend installed: pip install 'search[tensorflow]' "
        "(or search[jax] / search[torch])"
    )


@functools.cache  # asked once per process, not once per trial
def _device(backend: str) -> str:
    """``cpu``, ``gpu:<name>`` (``tpu:<kind>``, ``mps``) by the backend's own device query."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        kind = str(getattr(device, "device_kind", "") or "unknown")
        platform_name = str(device.platform).lower()
        if platform_name == "cpu":
            return "cpu"
        if platform_name in ("gpu", "cuda", "rocm"):
            return f"gpu:{kind}"
        return f"{platform_name}:{kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return "cpu"
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"gpu:{details.get('device_name') or 'unknown'}"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"gpu:{torch.cuda.get_device_name(0)}"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    return "unknown"


def runtime_tags() -> dict[str, str]:
    """``search.backend`` and ``search.device`` (``cpu`` or e.g. ``gpu:NVIDIA H100 80GB HBM3``)
    for a trial's run; call after Keras is imported. Never raises: ``unknown`` when a query fails."""
    try:
        import keras

        backend = str(keras.backend.backend())
    except Exception:
        backend = os.environ.get("KERAS_BACKEND") or "unknown"
    try:
        device = _device(backend)
    except Exception:
        device = "unknown"
    return {"search.backend": backend, "search.device": device}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except Exception:  # not installed (PackageNotFoundError) or unreadable metadata
        return None


def machine_versions() -> dict[str, str]:
    """The host, platform, Python and the versions of search, Keras, the backend in use
    (``tensorflow``, ``jax`` + ``jaxlib`` or ``torch``), Optuna, MLflow and NumPy; packages that
    are not installed are left out. Cheap, and imports none of them."""
    from search._version import __version__

    versions: dict[str, str] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "search": __version__,
    }
    backend = _loaded_backend() or (os.environ.get("KERAS_BACKEND") or "").strip().lower()
    if backend:
        versions["backend"] = backend
    packages = ["keras", *_DISTRIBUTIONS.get(backend, ()), "optuna", "mlflow", "numpy"]
    for package in packages:
        version = _version(package)
        if version is not None:
            versions[package] = version
    return versions


def versions_tag() -> dict[str, str]:
    """``{"search.machine.<host>": <machine_versions() as JSON>}``: one tag per machine that
    worked on a study, for the parent run (a second machine adds its own key)."""
    versions = machine_versions()
    host = re.sub(r"[^\w.\- ]", "_", versions["host"]) or "unknown"
    return {f"search.machine.{host}": json.dumps(versions, sort_keys=True)}
