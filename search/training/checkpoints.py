"""Epoch checkpoints: after every epoch a trial saves its model weights, its optimizer's state,
the best epoch's weights and its history to a local folder, so a trial re-run after a crash or a
stop continues from the last finished epoch instead of from scratch.

Everything is plain NumPy arrays (``.npz``, loaded with ``allow_pickle=False``) and JSON, written
to a temporary folder and renamed into place, so a kill in the middle of a save leaves the
previous checkpoint intact. Backend-agnostic: only ``get_weights``/``set_weights`` and the
optimizer's variables.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

__all__ = [
    "Restored",
    "load_checkpoint",
    "load_fold_checkpoints",
    "remove_checkpoint",
    "restore",
    "save_checkpoint",
    "save_fold_checkpoints",
]


@dataclass
class Restored:
    """A trial's state after its last finished epoch."""

    next_epoch: int
    history: list[dict[str, float]]
    best: float
    best_epoch: int
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    best_weights: list[np.ndarray] | None


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return [data[f"a{i}"] for i in range(len(data.files))]


def _save_arrays(path: Path, arrays: list[Any]) -> None:
    named: dict[str, Any] = {f"a{i}": np.asarray(a) for i, a in enumerate(arrays)}
    np.savez(path, **named)


def save_checkpoint(
    folder: Path,
    model: keras.Model,
    epoch: int,
    history: list[dict[str, float]],
    best: float,
    best_epoch: int,
    best_weights: list[np.ndarray] | None,
) -> None:
    """The state after ``epoch`` (0-based) finished, replacing the previous checkpoint."""
    staging = _staging(folder)
    _save_arrays(staging / "weights.npz", model.get_weights())
    optimizer = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    _save_arrays(staging / "optimizer.npz", optimizer)
    if best_weights is not None:
        _save_arrays(staging / "best.npz", best_weights)
    state = {
        "next_epoch": epoch + 1,
        "history": history,
        "best": best if math.isfinite(best) else None,
        "best_epoch": best_epoch,
    }
    (staging / "state.json").write_text(json.dumps(state))
    _swap_in(staging, folder)


def _staging(folder: Path) -> Path:
    staging = folder.with_name(folder.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    # parents too: another trial's end may just have removed the emptied study folder
    staging.mkdir(parents=True)
    return staging


def _swap_in(staging: Path, folder: Path) -> None:
    """Replace ``folder`` by ``staging`` with renames only (the previous one kept as ``.old``
    until the new one is in place)."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def save_fold_checkpoints(
    folder: Path,
    folds: list[tuple[keras.Model, list[dict[str, float]], float, int, Any]],
    history: list[dict[str, float]],
    epoch: int,
) -> None:
    """A cross-validated trial's state after ``epoch``: every fold's checkpoint (``fold-K``,
    as :func:`save_checkpoint` writes it) and the mean history, replaced together, so a kill
    never leaves two folds at different epochs."""
    staging = _staging(folder)
    for index, (model, fold_history, best, best_epoch, best_weights) in enumerate(folds):
        save_checkpoint(
            staging / f"fold-{index}", model, epoch, fold_history, best, best_epoch, best_weights
        )
    state = {"folds": len(folds), "next_epoch": epoch + 1, "history": history}
    (staging / "folds.json").write_text(json.dumps(state))
    _swap_in(staging, folder)


def load_fold_checkpoints(
    folder: Path, folds: int
) -> tuple[list[Restored], list[dict[str, float]]] | None:
    """Every fold's checkpoint and the mean history from ``folder``, or None when there is no
    complete one for ``folds`` folds."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        try:
            state = json.loads((candidate / "folds.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("folds") != folds:
            continue
        restored = [load_checkpoint(candidate / f"fold-{k}") for k in range(folds)]
        if all(r is not None and r.next_epoch == state["next_epoch"] for r in restored):
            return [r for r in restored if r is not None], list(state["history"])
    return None


def load_checkpoint(folder: Path) -> Restored | None:
    """The checkpoint in ``folder``, or None when there is none (or it cannot be read)."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        try:
            state = json.loads((candidate / "state.json").read_text())
            best_path = candidate / "best.npz"
            return Restored(
                next_epoch=int(state["next_epoch"]),
                history=list(state["history"]),
                best=math.inf if state["best"] is None else float(state["best"]),
                best_epoch=int(state["best_epoch"]),
                weights=_arrays(candidate / "weights.npz"),
                optimizer=_arrays(candidate / "optimizer.npz"),
                best_weights=_arrays(best_path) if best_path.exists() else None,
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def restore(model: keras.Model, restored: Restored) -> bool:
    """Load a checkpoint's weights and optimizer state into a compiled model of the same
    configuration; False (weights only) when the optimizer's variables do not match."""
    model.set_weights(restored.weights)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    variables = list(optimizer.variables)
    if len(variables) != len(restored.optimizer) or any(
        tuple(v.shape) != a.shape for v, a in zip(variables, restored.optimizer, strict=True)
    ):
        return False
    for variable, value in zip(variables, restored.optimizer, strict=True):
        variable.assign(value)
    return True


def remove_checkpoint(folder: Path) -> None:
    """Remove a trial's checkpoint, then the study's checkpoint folder and the one holding it
    (``studies.db.checkpoints``) when nothing else is left in them: a finished study leaves no
    empty folders behind."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        shutil.rmtree(candidate, ignore_errors=True)
    shutil.rmtree(folder.with_name(folder.name + ".saving"), ignore_errors=True)
    for parent in (folder.parent, folder.parent.parent):
        try:
            parent.rmdir()  # only when empty; another trial's checkpoint keeps it
        except OSError:
            break
