"""Signals during a run: SIGTERM stops it as Ctrl-C does, and while a run records how it
ended, both wait until that is written."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from curifactory_cli.errors import Terminated


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) stops the run as Ctrl-C does, with its own exit code."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """While a run records how it ended, Ctrl-C and SIGTERM wait until that is written (a run
    stopped halfway would stay 'running'); then they stop the process as usual. A second
    signal stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[KeyboardInterrupt] = []

    def handler(signum: int, frame: Any) -> None:
        stop = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if pending:
            raise stop
        pending.append(stop)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, action in previous.items():
            # None: a handler installed outside Python (an embedding host), not restorable.
            signal.signal(sig, signal.SIG_DFL if action is None else action)
    if pending:
        raise pending[0]
