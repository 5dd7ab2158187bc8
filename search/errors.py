"""Exception types for user-facing errors.

Every error a user can cause (a bad file, a bad flag, an unreachable server) is a `SearchError`;
the CLI prints its message on one line and exits with code 2. Anything else is a bug.
"""


class SearchError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2).

    The message is one line by construction: text quoted into it (a YAML parser's report, a
    column name, a server's answer) may hold line breaks, which become single spaces here.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str):
            message = one_line(message)
        super().__init__(message, *args)


def one_line(text: str) -> str:
    """``text`` on one line: every line break (``\\n``, ``\\r``, ``\\x85``, ``\\u2028``...) and
    the blanks around it become one space."""
    lines = text.splitlines()
    if len(lines) == 1 and lines[0] == text:
        return text
    return " ".join(part.strip() for part in lines if part.strip())


class DataError(SearchError):
    """A dataset cannot be loaded, repaired or windowed (missing file, bad columns, too short...)."""


class SpaceError(SearchError):
    """A search-space file is invalid; the message names the file, the parameter and the problem."""


class StorageError(SearchError):
    """An Optuna storage URL is malformed or the database cannot be reached."""


class TrackingError(SearchError):
    """The MLflow tracking server cannot be reached or refused a request."""
