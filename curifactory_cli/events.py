"""What a run reports while it works, as frozen data, and the `EventSink` that receives it.

The core never prints. The scheduler emits these events; the live display, plain log lines,
`--json` and tests consume them. They carry only plain values (no graph objects), so they can
be logged, sent to another process or kept for a report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RunStarted:
    """The traced graph is about to run: `stages` lists (stage name, number of calls)."""

    run_id: str
    experiment: str
    records: int
    stages: tuple[tuple[str, int], ...]
    workers: int = 1
    # More stage calls of a run already started: run() read an output while it was traced,
    # which started the run; these were traced after that.
    more: bool = False
    # (stage, seconds): how long a call of each stage took when it executed in recent runs.
    expected: tuple[tuple[str, float], ...] = ()

    @property
    def total(self) -> int:
        return sum(count for _, count in self.stages)


@dataclass(frozen=True)
class NodeStarted:
    """A stage call was handed to a job runner (`worker` names the slot running it)."""

    index: int
    stage: str
    record: str
    reason: str
    worker: str | None = None


@dataclass(frozen=True)
class NodeProgress:
    """A running stage call said how far it is (`record.progress(done, total)`)."""

    index: int
    stage: str
    record: str
    done: float
    total: float | None = None

    @property
    def text(self) -> str:
        """`450/1000 (45%)`, or `450` without a total."""
        done = f"{self.done:g}"
        if not self.total:
            return done
        return f"{done}/{self.total:g} ({min(100.0, 100 * self.done / self.total):.0f}%)"


@dataclass(frozen=True)
class NodeWaiting:
    """Another run holds this entry's lock: it is computing the same result."""

    index: int
    stage: str
    record: str


@dataclass(frozen=True)
class NodeFinished:
    """A stage call reached its outcome: executed, cached, skipped or failed."""

    index: int
    stage: str
    record: str
    outcome: str
    reason: str
    seconds: float = 0.0
    key: str | None = None
    entry: str | None = None


@dataclass(frozen=True)
class Warned:
    """Something the user should know that does not stop the run (a remote left out, a
    report not written, a log not kept): shown at once and kept in `RunResult.warnings`."""

    message: str


@dataclass(frozen=True)
class RunFinished:
    """The run ended, however it ended (last event of every run): `ok` is False when a
    stage failed or the run stopped; `counts` are (outcome, number of stage calls)."""

    run_id: str
    ok: bool
    seconds: float
    counts: tuple[tuple[str, int], ...] = ()


Event = RunStarted | NodeStarted | NodeProgress | NodeWaiting | NodeFinished | Warned | RunFinished


class EventSink(Protocol):
    """Receives every event of a run, in order: RunStarted before the stage calls it
    announces (again, with `more`, when run() traces more of them after reading an output),
    the per-stage-call events, and RunFinished last; Warned at any time. `emit` must return
    quickly and never raise: a run does not stop for its display. `progress = False` says it ignores
    the per-stage-call events (NodeStarted, NodeProgress, NodeWaiting, NodeFinished), so the
    scheduler need not build them. A sink that keeps `warnings` (a list of messages) gives
    them to `RunResult.warnings`."""

    progress: bool

    def emit(self, event: Event) -> None: ...


class NullSink:
    """Shows nothing; keeps warnings (and, with `keep=True`, every event) for API callers."""

    def __init__(self, keep: bool = False) -> None:
        self.warnings: list[str] = []
        self.events: list[Event] | None = [] if keep else None
        self.progress = keep

    def emit(self, event: Event) -> None:
        if isinstance(event, Warned):
            self.warnings.append(event.message)
        if self.events is not None:
            self.events.append(event)
