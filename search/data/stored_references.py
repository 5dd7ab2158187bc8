"""Linear references fitted once: :func:`stored_linear_reference` keeps every fit in the user
cache folder under a digest of what it reads, so the next study (or process) on the same data,
split and geometry loads it; :class:`LinearCache` holds a study's fits in memory, and
:func:`linear_mae_on` scores them as the study's models are scored."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zipfile
from pathlib import Path

import numpy as np

from search.data.geometry import WindowSpec
from search.data.prepare import Prepared
from search.data.references import (
    CHUNK,
    MAX_BLOCKS,
    MAX_INPUTS,
    RELATIVE_GRID,
    LinearReference,
    linear_reference,
)
from search.data.splits import window_starts

__all__ = ["LinearCache", "linear_mae_on", "reference_store", "stored_linear_reference"]

_STORE_VERSION = 1  # bump when linear_reference's fit or what it returns changes


def reference_store() -> Path:
    """Where fitted linear references are kept: ``references/`` in the user cache folder
    (``SEARCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/search``, else ``~/.cache/search``)."""
    from search.data.jena import cache_root

    return cache_root() / "references"


def _store_key(
    prepared: Prepared,
    spec: WindowSpec,
    grid: tuple[float, ...],
    max_blocks: int,
    max_inputs: int,
) -> str:
    """A digest of everything a fit reads: the inputs, the target, the train and val window
    starts (the split), the geometry and the fit's settings."""
    digest = hashlib.blake2b(digest_size=20)
    settings = (_STORE_VERSION, repr(spec), tuple(grid), max_blocks, max_inputs, CHUNK)
    digest.update(repr(settings).encode())
    for array in (
        np.asarray(prepared.data),
        np.asarray(prepared.target),
        window_starts(prepared, spec, "train"),
        window_starts(prepared, spec, "val"),
    ):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


_FLOATS = ("penalty", "val_mae", "fit_seconds")
_INTS = ("inputs", "blocks", "block_steps", "train_windows", "val_windows")


def _load_stored(path: Path, spec: WindowSpec) -> LinearReference | None:
    """The reference stored at ``path``; None when it is missing or unreadable (then refitted)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            floats, ints = stored["floats"], stored["ints"]
            penalty, val_mae, fit_seconds = (float(v) for v in floats)
            inputs, blocks, block_steps, train_windows, val_windows = (int(v) for v in ints)
            if stored["coef"].shape != (inputs, spec.target_steps):
                return None  # not this geometry's fit: refitted and overwritten
            return LinearReference(
                spec=spec,
                penalty=penalty,
                grid=tuple(float(v) for v in stored["grid"]),
                grid_val_mae=tuple(float(v) for v in stored["grid_val_mae"]),
                val_mae=val_mae,
                fit_seconds=fit_seconds,
                inputs=inputs,
                blocks=blocks,
                block_steps=block_steps,
                train_windows=train_windows,
                val_windows=val_windows,
                coef=stored["coef"],
                x_mean=stored["x_mean"],
                y_mean=stored["y_mean"],
            )
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile):
        return None


def _store(path: Path, reference: LinearReference) -> None:
    """Write ``reference`` to ``path`` whole (a temporary file renamed), or not at all: a cache
    folder that cannot be written costs a refit next time, never the study."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as out:
            np.savez(
                out,
                grid=np.asarray(reference.grid, dtype=np.float64),
                grid_val_mae=np.asarray(reference.grid_val_mae, dtype=np.float64),
                coef=reference.coef,
                x_mean=reference.x_mean,
                y_mean=reference.y_mean,
                floats=np.asarray([getattr(reference, n) for n in _FLOATS], dtype=np.float64),
                ints=np.asarray([getattr(reference, n) for n in _INTS], dtype=np.int64),
            )
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()


def stored_linear_reference(
    prepared: Prepared,
    spec: WindowSpec,
    *,
    relative_grid: tuple[float, ...] = RELATIVE_GRID,
    max_blocks: int = MAX_BLOCKS,
    max_inputs: int = MAX_INPUTS,
) -> LinearReference:
    """:func:`linear_reference`, fitted once per data, split and geometry on this machine: a fit
    is kept in :func:`reference_store` under a digest of everything it reads, and a later
    request with the same digest (another study, a resumed one, ``search best --evaluate-test``)
    loads it. The same inputs give the same fit, so a loaded one is what a refit would return (its
    ``fit_seconds`` is the original fit's)."""
    folder = reference_store()
    path = folder / f"{_store_key(prepared, spec, relative_grid, max_blocks, max_inputs)}.npz"
    stored = _load_stored(path, spec)
    if stored is not None:
        return stored
    reference = linear_reference(
        prepared, spec, relative_grid=relative_grid, max_blocks=max_blocks, max_inputs=max_inputs
    )
    _store(path, reference)
    return reference


def linear_mae_on(prepared: Prepared, spec: WindowSpec, split: str = "test") -> float:
    """The linear reference's MAE on a split's windows, scored as the study's models are: one
    ridge fitted on the train windows; for a cross-validated study the mean of its K folds'
    ridges (each fitted on its fold's train windows, penalty picked on its fold's val), as the
    fold-mean model averages its K fold models."""
    folds = prepared.folds()
    if not folds:
        return stored_linear_reference(prepared, spec).mae(prepared, split)
    forecast = np.mean([stored_linear_reference(f, spec).predict(f, split) for f in folds], axis=0)
    starts = window_starts(prepared, spec, split)
    stride = spec.target_stride if spec.target_steps > 1 else 0
    ahead = spec.delay + stride * np.arange(spec.target_steps, dtype=np.int64)
    actual = prepared.target.astype(np.float64)[starts[:, None] + ahead[None, :]]
    return float(np.abs(forecast - actual).mean())


class LinearCache:
    """Linear references of one prepared series, one fit per geometry (one cache per study or
    worker; each fit is also kept on disk by :func:`stored_linear_reference`). Thread-safe; it
    keeps each series it has seen alive, so that its key stays unique."""

    def __init__(
        self,
        *,
        relative_grid: tuple[float, ...] = RELATIVE_GRID,
        max_blocks: int = MAX_BLOCKS,
        max_inputs: int = MAX_INPUTS,
    ) -> None:
        self._grid, self._max_blocks, self._max_inputs = relative_grid, max_blocks, max_inputs
        self._entries: dict[tuple[int, WindowSpec], tuple[Prepared, LinearReference]] = {}
        self._lock = threading.Lock()

    def get(self, prepared: Prepared, spec: WindowSpec) -> LinearReference:
        """The linear reference of ``spec`` on ``prepared``, fitted on the first request."""
        key = (id(prepared), spec)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is prepared:
                return hit[1]
            reference = stored_linear_reference(
                prepared,
                spec,
                relative_grid=self._grid,
                max_blocks=self._max_blocks,
                max_inputs=self._max_inputs,
            )
            self._entries[key] = (prepared, reference)
            return reference

    def __len__(self) -> int:
        return len(self._entries)
