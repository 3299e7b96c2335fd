"""How long a run has left: from how long its stages' calls took when they executed (in this
run once some have, else in the experiment's recent runs), the share of calls found cached so
far, and what running calls said of their progress. Fed the run's events; no rich here."""

from __future__ import annotations

import threading
import time

from curifactory_cli.events import Event, NodeFinished, NodeProgress, NodeStarted, RunStarted


class TimeLeft:
    def __init__(self) -> None:
        self.expected: dict[str, float] = {}
        self.workers = 1
        self.total: dict[str, int] = {}
        self.finished: dict[str, int] = {}
        self.cached: dict[str, int] = {}
        self.own: dict[str, tuple[int, float]] = {}  # stage -> calls executed, their seconds
        self.running: dict[int, tuple[str, float]] = {}  # index -> stage, started (monotonic)
        self.fraction: dict[int, float] = {}
        self._lock = threading.Lock()  # read by a display's thread while events arrive

    def add(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, RunStarted):
                self.workers = max(1, event.workers)
                self.expected.update(event.expected)
                for stage, count in event.stages:
                    self.total[stage] = self.total.get(stage, 0) + count
            elif isinstance(event, NodeStarted):
                self.running[event.index] = (event.stage, time.monotonic())
            elif isinstance(event, NodeProgress):
                if event.total:
                    self.fraction[event.index] = min(1.0, event.done / event.total)
            elif isinstance(event, NodeFinished):
                self._finished(event)

    def _finished(self, event: NodeFinished) -> None:
        self.running.pop(event.index, None)
        self.fraction.pop(event.index, None)
        stage = event.stage
        self.finished[stage] = self.finished.get(stage, 0) + 1
        if event.outcome == "executed":
            calls, seconds = self.own.get(stage, (0, 0.0))
            self.own[stage] = (calls + 1, seconds + event.seconds)
        elif event.outcome == "cached":
            self.cached[stage] = self.cached.get(stage, 0) + 1

    def _per_call(self, stage: str, projected: dict[str, list[float]]) -> float | None:
        """This run's calls of the stage: finished ones, else what running ones that report
        progress will take; else its recent runs (other parameters, maybe)."""
        calls, seconds = self.own.get(stage, (0, 0.0))
        if calls:
            return seconds / calls
        durations = projected.get(stage)
        if durations:
            return sum(durations) / len(durations)
        return self.expected.get(stage)

    def seconds(self, now: float | None = None) -> float | None:
        """Seconds the run has left, or None while a stage that still has calls to run has
        never executed (nothing to estimate from)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self.total:
                return None  # the run has not started
            work = 0.0
            busy: dict[str, int] = {}
            projected: dict[str, list[float]] = {}
            for index, (stage, started) in self.running.items():
                fraction = self.fraction.get(index)
                if fraction:
                    projected.setdefault(stage, []).append((now - started) / fraction)
            for index, (stage, started) in self.running.items():
                busy[stage] = busy.get(stage, 0) + 1
                elapsed = now - started
                fraction = self.fraction.get(index)
                if fraction:
                    work += elapsed * (1 - fraction) / fraction
                    continue
                per_call = self._per_call(stage, projected)
                if per_call is None:
                    return None
                work += max(per_call - elapsed, 0.0)
            for stage, total in self.total.items():
                waiting = total - self.finished.get(stage, 0) - busy.get(stage, 0)
                if waiting <= 0:
                    continue
                per_call = self._per_call(stage, projected)
                if per_call is None:
                    return None
                ran, hit = self.own.get(stage, (0, 0.0))[0], self.cached.get(stage, 0)
                share = ran / (ran + hit) if ran + hit else 1.0  # calls that will execute
                work += waiting * per_call * share
            return work / self.workers


def left_text(seconds: float) -> str:
    """`about 2m10s left`, rounded as far as an estimate deserves."""
    if seconds < 1:
        return "less than a second left"
    seconds = round(seconds) if seconds < 60 else round(seconds / 5) * 5
    minutes, secs = divmod(int(seconds), 60)
    if not minutes:
        return f"about {secs}s left"
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"about {hours}h{minutes:02d}m left"
    return f"about {minutes}m{secs:02d}s left"
