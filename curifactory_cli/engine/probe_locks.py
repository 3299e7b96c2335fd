"""Locks over a computation rather than one entry, so that two runs of different parameter
sets that may share an entry compute it once.

A call that may share (engine.sharing) locks its *probe* (its key but the parameters) instead
of its key. In one run, calls of one probe hold that lock together (calls that may share one
entry already wait for one another there: Scheduler._follows), so a run's own calls never
wait on it. Another run's call of the same probe waits until this run holds none: then it
looks again for its own entry (the same key: computed meanwhile) and for one it may share
(the reads index, read again). Equal keys have equal probes, so what the entry lock
guaranteed still holds: one run at a time computes an entry.

The lock also carries a message the other way: a run that finds it held writes a byte into
the lock file, and the holder, before letting go, writes out the index records it holds back
for a batch (engine.sharing), so the waiting run finds the entry the holder just computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from curifactory_cli.store.base import Lock, Store


@dataclass(slots=True)
class _Held:
    lock: Lock
    holders: int


class ProbeLocks:
    """The probe locks one run holds, each counted by the calls that hold it."""

    def __init__(self, store: Store, before_letting_go: Callable[[], None]) -> None:
        self.store = store
        self.before_letting_go = before_letting_go  # makes this run's entries findable
        self._held: dict[str, _Held] = {}

    def lock(self, probe: str) -> ProbeLock:
        return ProbeLock(self, probe)


class ProbeLock:
    """One call's hold on its probe's lock (the engine's Lock: see store.base.Lock)."""

    __slots__ = ("_holding", "_locks", "_probe", "_said", "path")

    def __init__(self, locks: ProbeLocks, probe: str) -> None:
        self._locks = locks
        self._probe = probe
        self._holding = False
        self._said = False
        self.path = ""

    def _store_lock(self) -> Lock:
        lock = self._locks.store.entry_lock(self._probe)
        self.path = lock.path
        return lock

    def acquire_nowait(self) -> bool:
        held = self._locks._held.get(self._probe)
        if held is not None:  # this run holds it: calls of one run never wait for each other
            held.holders += 1
            self._holding = True
            return True
        lock = self._store_lock()
        if lock.acquire_nowait():
            self._locks._held[self._probe] = _Held(lock, 1)
            self._holding = True
            return True
        if not self._said:
            self._said = True
            lock.mark_waiting()
        return False

    def acquire_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        pause = 0.01
        while not self.acquire_nowait():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)
        return True

    def acquire(self) -> None:
        while not self.acquire_within(3600.0):
            pass

    def release(self) -> None:
        if not self._holding:
            return
        self._holding = False
        held = self._locks._held[self._probe]
        held.holders -= 1
        if held.holders:
            return
        del self._locks._held[self._probe]
        lock = held.lock
        try:
            if lock.waited_on():
                self._locks.before_letting_go()
                lock.clear_waiting()
        finally:
            lock.release()

    def mark_waiting(self) -> None:
        return None  # said when it was found held

    def waited_on(self) -> bool:
        return False

    def clear_waiting(self) -> None:
        return None
