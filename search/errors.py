"""Exception types for user-facing errors.

Every error a user can cause (a bad file, a bad flag, an unreachable server) is a `SearchError`;
the CLI prints its message on one line and exits with code 2. Anything else is a bug.
"""


class SearchError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""


class DataError(SearchError):
    """A dataset cannot be loaded, repaired or windowed (missing file, bad columns, too short...)."""


class SpaceError(SearchError):
    """A search-space file is invalid; the message names the file, the parameter and the problem."""


class StorageError(SearchError):
    """An Optuna storage URL is malformed or the database cannot be reached."""


class TrackingError(SearchError):
    """The MLflow tracking server cannot be reached or refused a request."""
