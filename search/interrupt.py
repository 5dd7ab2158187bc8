"""A polite stop: the first SIGINT/SIGTERM asks the running trial to stop after its current epoch
(its state recorded, its runs closed, its configuration re-queued to resume from its checkpoint);
a second one stops the process at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["Interrupted", "install", "requested", "signal_name"]

_requested = threading.Event()
_signal: list[int] = []
_second: list[Callable[[int], None]] = []  # what a second signal does (the caller's choice)
_first: list[Callable[[int], None]] = []  # what acknowledges the first one (the caller's choice)


class Interrupted(KeyboardInterrupt):  # noqa: N818 - a KeyboardInterrupt, not a trial's error
    """Raised when a stop was requested: the study ends after recording the current trial
    (engines treat it as they treat Ctrl-C: the trial FAIL, the exception re-raised)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _handle(signum: int, _frame: FrameType | None) -> None:
    _signal.append(signum)
    _requested.set()
    if _second:  # a second signal: the caller's immediate stop
        signal.signal(signal.SIGINT, _stop_now)
        signal.signal(signal.SIGTERM, _stop_now)
    else:  # the default action (SIGINT raises KeyboardInterrupt, SIGTERM ends us)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _first:  # acknowledged once the second signal's action is in place
        _first[0](signum)


def _stop_now(signum: int, _frame: FrameType | None) -> None:
    _second[0](signum)


def install(
    on_second: Callable[[int], None] | None = None,
    on_first: Callable[[int], None] | None = None,
) -> None:
    """Route SIGINT and SIGTERM to a stop request (main thread only). A second signal calls
    ``on_second(signum)``, which must end the process at once (a KeyboardInterrupt raised by a
    signal can land in a garbage-collection callback, where Python only reports it); without
    it, a second signal takes the default action. ``on_first(signum)`` acknowledges the first
    (it runs inside the signal handler: write with ``os.write``, not a buffered stream)."""
    _requested.clear()
    _signal.clear()
    _second[:] = [on_second] if on_second is not None else []
    _first[:] = [on_first] if on_first is not None else []
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def requested() -> int | None:
    """The signal number of a pending stop request, or None."""
    return _signal[0] if _requested.is_set() and _signal else None
