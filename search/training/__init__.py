"""Training one trial: model builders and their registry, the fit loop, plots and artifacts.

Nothing here imports an engine (Optuna, keras-tuner) or a tracking library: the fit loop reports
each epoch to a monitor that the engine's trial handle plugs into, and logs through the
:class:`~search.tracking.Tracker` interface. Keras is imported by the modules that need it.
"""
