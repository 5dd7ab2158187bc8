"""The MLflow ``pyfunc`` model file of an ensemble (models-from-code): raw rows in, the weighted
mean of its members' forecasts out.

Its artifacts are ``ensemble.json`` (each member's name, weight, and the names of its Keras model
and preprocessing spec among the artifacts) and every member's ``model.keras`` and spec; as for
one trial's model (``model.py``), this folder travels beside it as the package
``search_serving``, and nothing is pickled.
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


class EnsembleForecaster(PythonModel):
    """Recent raw rows -> one row per time every member forecasts: the weighted mean of the
    members' forecasts in the target's units."""

    def load_context(self, context: Any) -> None:
        import keras

        assert layers.InverseTargetScaling  # registered on import, for Keras' safe mode
        with open(context.artifacts["ensemble"]) as source:
            members = json.load(source)["members"]
        self.members = []
        for member in members:
            with open(context.artifacts[member["spec"]]) as source:
                spec = json.load(source)
            model = keras.models.load_model(
                context.artifacts[member["model"]], compile=False, safe_mode=True
            )
            self.members.append((spec, _predictor(model), float(member["weight"])))

    # no type hints here: MLflow would read them as the input schema instead of the signature's
    def predict(self, context, model_input, params=None):
        try:
            return forecast.ensemble_frame(self.members, model_input)
        except forecast.RowsError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None


def _predictor(model: Any) -> Any:
    return lambda x: model.predict(x, verbose=0)


mlflow.models.set_model(EnsembleForecaster())
