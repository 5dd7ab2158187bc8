"""MLflow as the tracker: one experiment per study, one parent run, one child run per trial.

Everything goes through `mlflow.MlflowClient` with explicit run ids and an explicit tracking URI
(no fluent global state, nothing set in a constructor), so several trials or workers never mix
their runs. Only this module imports mlflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import TrackingError
from search.tracking.base import Tracker
from search.tracking.redact import redact, redact_value

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow's client retries a dead server for many minutes by default (7 retries, backoff factor
# 2, 120 s timeouts). A call gives up within seconds here; the spool keeps what it was sending
# and retries later (search/tracking/spool.py). The environment can still set other bounds.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
ROLE_TAG = "search.role"
STUDY_TAG = "search.study"

# A database used directly as the tracking store (no `mlflow server`): the first worker to touch a
# fresh one creates MLflow's schema, and workers started together race to do it (a UniqueViolation
# on alembic_version, or "out-of-date schema" while another one migrates). On PostgreSQL the
# workers take turns under an advisory lock; elsewhere a worker that loses the race retries.
_DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mssql")
SCHEMA_WAIT_S = 300.0
_SCHEMA_ATTEMPTS = 12
_SCHEMA_LOCK_KEY = 0x5EA2C4_4D1F  # pg_advisory_lock's key for "MLflow schema of this database"
_SCHEMA_RACE = (
    "already exists",
    "uniqueviolation",
    "duplicate key",
    "out-of-date database schema",
    'relation "',  # relation "..." does not exist: a table another worker is about to make
)


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


@contextlib.contextmanager
def _schema_turn(uri: str, wait: float) -> Iterator[None]:
    """On PostgreSQL, hold a session advisory lock for ``uri``'s database (at most ``wait``
    seconds' wait for it); elsewhere nothing."""
    if _scheme(uri) not in ("postgresql", "postgres"):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"SET lock_timeout = '{int(wait * 1000)}ms'"))
            connection.execute(
                sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
            )
            connection.commit()
            try:
                yield
            finally:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK_KEY}
                )
                connection.commit()
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_database_client(uri: str, wait: float = SCHEMA_WAIT_S) -> MlflowClient:
    """An MlflowClient of a database tracking URI (its constructor builds the store, creating or
    checking MLflow's schema) made in turn with the other workers; a lost schema race is retried;
    one-line `TrackingError` else."""
    from mlflow import MlflowClient

    deadline = time.monotonic() + wait
    attempt = 0
    while True:
        attempt += 1
        try:
            with _schema_turn(uri, max(1.0, deadline - time.monotonic())):
                return MlflowClient(tracking_uri=uri)
        except Exception as exc:  # SQLAlchemy, psycopg and MLflow raise many types
            text = f"{type(exc).__name__}: {exc}".lower()
            if (
                any(race in text for race in _SCHEMA_RACE)
                and attempt < _SCHEMA_ATTEMPTS
                and time.monotonic() < deadline
            ):
                time.sleep(min(5.0, 0.2 * attempt) + random.random() * 0.3)
                continue
            raise TrackingError(
                f"cannot open the MLflow tracking store {redact(uri)!r}: "
                f"{type(exc).__name__}: {redact(_first_line(exc))}"
            ) from None


def stringify(value: Any) -> str:
    """A param or tag value as MLflow stores it: text, redacted, at most 6,000 characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return redact(text)[:6000]


class MlflowTracker(Tracker):
    """Logs one study to MLflow: the parent run and a child run per trial.

    The constructor only remembers its arguments; :meth:`open` talks to the tracking store.
    """

    def __init__(self, tracking_uri: str, study_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.study_name = study_name
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self.parent_run_id: str | None = None

    def open(self) -> str:
        """Find or create the study's experiment; returns its id."""
        if self._experiment_id is None:
            self._experiment_id = self._experiment(self.study_name)
        return self._experiment_id

    @property
    def experiment_id(self) -> str:
        return self.open()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            for name, value in HTTP_BOUNDS.items():
                os.environ.setdefault(name, value)
            from mlflow import MlflowClient

            if _scheme(self.tracking_uri) in _DATABASE_SCHEMES:
                self._client = open_database_client(self.tracking_uri)
            else:
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # -- experiment and parent run -------------------------------------------------------------
    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                if experiment.lifecycle_stage == "deleted":
                    self.client.restore_experiment(experiment.experiment_id)
                return experiment.experiment_id
            # Open the UI on the classic "model training" view, not MLflow 3's GenAI view.
            return self.client.create_experiment(
                name, tags={"mlflow.experimentKind": "custom_model_development"}
            )
        except MlflowException as exc:
            if "already exists" in str(exc):  # another worker created it a moment ago
                experiment = self.client.get_experiment_by_name(name)
                if experiment is not None:
                    return experiment.experiment_id
            raise TrackingError(
                f"MLflow refused experiment {name!r}: {redact(str(exc.message))}"
            ) from None

    def create_parent_run(self, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Create the study's parent run and return its id."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=self.study_name,
            tags={ROLE_TAG: "study", STUDY_TAG: self.study_name, **tags},
        )
        self.parent_run_id = run.info.run_id
        self.log_params(self.parent_run_id, params)
        return self.parent_run_id

    def attach_parent_run(self, run_id: str) -> None:
        """Continue logging to an existing parent run (a resumed study or a joining worker)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            raise TrackingError(
                f"the study's parent run {run_id} is not in the tracking store "
                f"{redact(self.tracking_uri)}; "
                "use the tracking URI the study was started with (--tracking-uri)"
            ) from None
        self.parent_run_id = run_id
        self.client.update_run(run_id, status="RUNNING")

    def finish_parent_run(self, status: str = "FINISHED") -> None:
        if self.parent_run_id:
            self.client.set_terminated(self.parent_run_id, status=status)

    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def terminate(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    # -- logging helpers ---------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), stringify(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int = 0,
        timestamp: int | None = None,
    ) -> None:
        from mlflow.entities import Metric

        now = timestamp if timestamp is not None else int(time.time() * 1000)
        items = [
            Metric(str(k), float(v), now, step)
            for k, v in metrics.items()
            if v is not None and v == v  # skip NaN
        ]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(str(k), stringify(v)) for k, v in tags.items()])

    def log_dict(self, run_id: str, payload: Any, artifact_file: str) -> None:
        self.client.log_dict(run_id, redact_value(payload), artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    # -- trial runs ----------------------------------------------------------------------------
    def create_trial_run(
        self, number: int, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        """A child run named ``trial-<number>`` nested under the parent run."""
        parent = parent_run_id or self.parent_run_id
        if parent is None:
            raise RuntimeError("create or attach the parent run first")
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number}",
            tags={
                "mlflow.parentRunId": parent,
                ROLE_TAG: "trial",
                STUDY_TAG: self.study_name,
                "search.trial_number": str(number),
                "search.state": "RUNNING",
                **tags,
            },
        )
        return run.info.run_id

    def create_child_run(self, name: str, tags: Mapping[str, str], parent_run_id: str) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={"mlflow.parentRunId": parent_run_id, STUDY_TAG: self.study_name, **tags},
        )
        return run.info.run_id

    def end_trial_run(self, run_id: str, state: str, reason: str | None = None) -> None:
        # A pruned trial ended as asked (its best epoch is logged): FINISHED, with PRUNED in its
        # search.state tag. An interrupted trial (SIGINT/SIGTERM) is a FAIL in the study, a
        # KILLED run in MLflow; a failed trial is FAILED.
        tags = {"search.state": "FAIL" if state == "INTERRUPTED" else state}
        if reason:
            tags["search.fail_reason"] = reason
        self.set_tags(run_id, tags)
        status = {
            "COMPLETE": "FINISHED",
            "PRUNED": "FINISHED",
            "FAIL": "FAILED",
            "INTERRUPTED": "KILLED",
        }.get(state, "FAILED")
        self.client.set_terminated(run_id, status=status)

    def find_run(self, tag: str, value: str) -> str | None:
        """The id of the study's run tagged ``tag`` = ``value``, or None."""
        quoted = value.replace("'", "")
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{tag}` = '{quoted}'", max_results=1
        )
        return runs[0].info.run_id if runs else None

    def trial_runs(self) -> dict[int, list[str]]:
        """The study's trial runs by trial number (a number with two runs is a duplicate)."""
        from mlflow.entities import ViewType

        found: dict[int, list[str]] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{ROLE_TAG}` = 'trial'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                page_token=token,
            )
            for run in page:
                number = run.data.tags.get("search.trial_number")
                if number is not None and number.isdigit():
                    found.setdefault(int(number), []).append(run.info.run_id)
            token = page.token
            if not token:
                return found

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """A run's latest metrics by name."""
        return dict(self.client.get_run(run_id).data.metrics)

    def register_model(self, run_id: str, folder: Path, name: str, description: str) -> str:
        """Log a saved MLflow model ``folder`` under the run's ``registered_model/`` artifacts and
        register it as a new version of the registered model ``name`` (with ``description``);
        returns the version."""
        from mlflow.exceptions import MlflowException

        self.client.log_artifacts(run_id, str(folder), "registered_model")
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(
                exc
            ):
                raise TrackingError(f"MLflow refused model name {name!r}: {exc.message}") from None
        source = f"{self.client.get_run(run_id).info.artifact_uri}/registered_model"
        version = self.client.create_model_version(
            name, source=source, run_id=run_id, description=description
        )
        return str(version.version)

    def download(self, run_id: str, artifact_path: str) -> Path:
        """Download one artifact of a run into a fresh temporary folder and return its path."""
        target = Path(tempfile.mkdtemp(prefix="search-artifact-"))
        return Path(self.client.download_artifacts(run_id, artifact_path, str(target)))


def _requirements() -> list[str]:
    """What a served model needs installed: mlflow, keras, numpy, pandas and the Keras backend,
    pinned to the versions that saved it (so MLflow need not infer them by loading the model)."""
    from importlib.metadata import PackageNotFoundError, version

    import keras

    backend = {"jax": ("jax", "jaxlib")}.get(keras.backend.backend(), (keras.backend.backend(),))
    pins = []
    for name in ("mlflow", "keras", "numpy", "pandas", *backend):
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def save_pyfunc_model(
    path: Path, keras_model: Path, spec: Mapping[str, Any], example: Any, output: Any
) -> None:
    """Save the forecaster as an MLflow ``pyfunc`` model in the new folder ``path``, from code
    (``search/serving/model.py``; nothing pickled): the Keras model and the preprocessing spec
    are its artifacts, ``search/serving`` travels as the package ``search_serving``, and the
    signature and input example come from ``example`` (raw rows) and ``output`` (its
    forecasts)."""
    with tempfile.TemporaryDirectory(prefix="search-pyfunc-") as folder:
        spec_file = Path(folder) / "preprocessing.json"
        spec_file.write_text(json.dumps(dict(spec), indent=1))
        artifacts = {"keras_model": str(keras_model), "preprocessing": str(spec_file)}
        _save_pyfunc(path, "model.py", artifacts, example, output)


def save_ensemble_pyfunc_model(
    path: Path,
    members: Sequence[tuple[str, Any, Mapping[str, Any], float]],
    example: Any,
    output: Any,
) -> None:
    """Save an ensemble (``(name, keras model, preprocessing spec, weight)`` per member) as an
    MLflow ``pyfunc`` model from ``search/serving/ensemble_model.py``, every member inside."""
    with tempfile.TemporaryDirectory(prefix="search-pyfunc-") as folder:
        artifacts: dict[str, str] = {}
        listed = []
        for k, (name, keras_model, spec, weight) in enumerate(members):
            spec_file = Path(folder) / f"member_{k}.json"
            spec_file.write_text(json.dumps(dict(spec), indent=1))
            artifacts[f"member_{k}_spec"] = str(spec_file)
            artifacts[f"member_{k}_model"] = str(keras_model)
            listed.append(
                {
                    "name": name,
                    "weight": weight,
                    "spec": f"member_{k}_spec",
                    "model": f"member_{k}_model",
                }
            )
        index = Path(folder) / "ensemble.json"
        index.write_text(json.dumps({"members": listed}, indent=1))
        artifacts["ensemble"] = str(index)
        _save_pyfunc(path, "ensemble_model.py", artifacts, example, output)


def _save_pyfunc(
    path: Path, model_file: str, artifacts: dict[str, str], example: Any, output: Any
) -> None:
    import shutil
    import warnings

    import mlflow.pyfunc
    from mlflow.models import infer_signature

    import search.serving

    serving = Path(search.serving.__file__).parent
    with tempfile.TemporaryDirectory(prefix="search-pyfunc-") as folder:
        code = Path(folder) / "search_serving"
        code.mkdir()
        for module in serving.glob("*.py"):
            shutil.copy2(module, code / module.name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mlflow.pyfunc.save_model(
                str(path),
                python_model=str(serving / model_file),
                artifacts=artifacts,
                code_paths=[str(code)],
                signature=infer_signature(example, output),
                input_example=example,
                pip_requirements=_requirements(),
            )
    for warning in caught:  # all but MLflow's advice to type-hint predict (a signature is given)
        if "type hints" not in str(warning.message):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
