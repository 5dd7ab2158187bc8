"""The MLflow ``pyfunc`` model file (models-from-code): raw rows in, forecasts out.

MLflow runs this file when the model is loaded; nothing is pickled. The model's artifacts are
the trial's ``model.keras`` and ``preprocessing.json`` (the spec of ``forecast.py``); this
folder travels beside it as the package ``search_serving`` (``code_paths``), so loading needs
numpy, pandas, keras and mlflow, not ``search``.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.models
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel

try:  # in a saved model: this folder, copied as the top-level package search_serving
    from search_serving import forecast, layers
except ImportError:  # in the repository, while the model is being saved
    from search.serving import forecast, layers


class Forecaster(PythonModel):
    """Recent raw rows (the time column and the study's columns) -> one row per complete
    window: the time the forecast is for, the forecast in the target's units, and the time of
    the last row it was made from."""

    def load_context(self, context: Any) -> None:
        import keras

        assert layers.InverseTargetScaling  # registered on import, for Keras' safe mode
        with open(context.artifacts["preprocessing"]) as source:
            self.spec = json.load(source)
        self.model = keras.models.load_model(
            context.artifacts["keras_model"], compile=False, safe_mode=True
        )

    # no type hints here: MLflow would read them as the input schema instead of the signature's
    def predict(self, context, model_input, params=None):
        try:
            return forecast.forecast_frame(
                self.spec, model_input, lambda x: self.model.predict(x, verbose=0)
            )
        except forecast.RowsError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


mlflow.models.set_model(Forecaster())
