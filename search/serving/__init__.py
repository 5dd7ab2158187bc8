"""The found forecaster as a model anyone can use: what travels with the MLflow ``pyfunc`` model.

This folder is copied into the saved model (``code_paths``, as the top-level package
``search_serving``), so its modules import only numpy, pandas and keras (and, in the model file,
``mlflow.pyfunc``), never the rest of ``search``, and import each other relatively:

- ``forecast.py``: raw rows -> model inputs -> windows -> forecasts, from a plain JSON
  preprocessing spec; `search predict` uses the same functions, so both give the same numbers.
- ``layers.py``: the custom Keras layers a saved ``model.keras`` needs (registered on import).
- ``model.py``: the ``pyfunc`` model file (models-from-code: nothing is pickled).
"""
