"""The data room: sources and repair, split policies, normalization, window geometry, windows,
and the references every trial is measured against.

- :mod:`search.data.sources`: named and CSV sources, repaired, with a data-quality report.
- :mod:`search.data.splits`: split policies (the book's chronological 50/25/25, blocked).
- :mod:`search.data.prepare`: split + normalize with training-row statistics.
- :mod:`search.data.geometry`: window geometry in hours and rows (pure, no Keras).
- :mod:`search.data.windows`: the windows as a Keras ``PyDataset`` (no tf.data).
- :mod:`search.data.references`: the naive (persistence) forecast and a ridge linear model on
  the same windows: the two yardsticks of every trial.

Import the submodules you need: this package imports nothing heavy.
"""
