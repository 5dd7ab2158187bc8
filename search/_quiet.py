"""Keep the terminal clean: TensorFlow's import noise goes to a log file unless --verbose.

TensorFlow's C++ runtime writes absl and CUDA-stub lines straight to file descriptor 2, even with
``TF_CPP_MIN_LOG_LEVEL=3``. `quiet_native_stderr` points fd 2 at a log file and gives Python's
``sys.stderr`` a private copy of the terminal, so our own messages and tracebacks still show.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from pathlib import Path


def set_quiet_environment() -> None:
    """Environment variables that quieten TensorFlow and friends; set before importing Keras."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    # MLflow: no emoji run links, no interactive prompts.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def quiet_native_stderr(log_path: Path) -> Path:
    """Redirect fd 2 (native libraries) to ``log_path``; Python's sys.stderr keeps the terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    terminal = os.dup(2)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = io.TextIOWrapper(
        os.fdopen(terminal, "wb", buffering=0),
        encoding="utf-8",
        errors="replace",
        write_through=True,
    )
    return log_path


def quiet_python_loggers() -> None:
    """Silence the chatty Python-level loggers and warnings of TF, absl, MLflow and Optuna."""
    for name in ("absl", "tensorflow", "h5py", "matplotlib", "PIL", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("mlflow",):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from search.engines import quiet_logging

    quiet_logging()
