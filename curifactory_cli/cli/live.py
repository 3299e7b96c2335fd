"""What a run shows while it runs: a line per stage call for logs, CI and pipes
(`PlainProgress`), or a live table on a terminal (`LiveProgress`), with the time left."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from curifactory_cli.cli.console import Output, print_warning, rich_of, write_line
from curifactory_cli.cli.eta import TimeLeft, left_text
from curifactory_cli.events import (
    NodeFinished,
    NodeProgress,
    NodeStarted,
    NodeWaiting,
    RunFinished,
    RunStarted,
    Warned,
)
from curifactory_cli.graph import Outcome
from curifactory_cli.wording import duration, plural

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from curifactory_cli.events import Event


class _Counts:
    def __init__(self, total: int) -> None:
        self.total = total
        self.by_outcome = dict.fromkeys(Outcome, 0)
        self.running: dict[int, str] = {}  # node index -> what the "now" column says
        self.progress: dict[int, str] = {}  # node index -> how far it said it is

    @property
    def done(self) -> int:
        return sum(self.by_outcome.values())


HEARTBEAT_S = 60.0  # a stage call running this long gets a line in a log, and again after each


class PlainProgress:
    """One line per stage execution (for logs, CI and pipes); `quiet` prints only warnings.

    A stage call running longer than HEARTBEAT_S gets a `running` line every HEARTBEAT_S, so
    a CI log shows the run is alive and what it is busy with."""

    def __init__(
        self, console: Console | Output, err_console: Console | Output, quiet: bool = False
    ) -> None:
        self.console = console
        self.err = err_console
        self.quiet = quiet
        self.progress = not quiet
        self.warnings: list[str] = []
        # node index -> [label, started, last line, progress]
        self._running: dict[int, list] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None
        self.time_left = TimeLeft()

    def emit(self, event: Event) -> None:
        if not self.quiet:
            self.time_left.add(event)
        if isinstance(event, Warned):
            self.warnings.append(event.message)
            print_warning(self.err, event.message)
        elif not self.quiet:
            self.show(event)

    def _line(self, text: str) -> None:
        write_line(self.console, text)

    def show(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            workers = f" on {event.workers} workers" if event.workers > 1 else ""
            more = "more " if event.more else ""
            self._line(
                f"running {plural(event.total, more + 'stage call', more + 'stage calls')} over "
                f"{plural(event.records, 'record')}{workers}"
            )
        elif isinstance(event, NodeStarted):
            self._started(event)
        elif isinstance(event, NodeProgress):
            with self._lock:
                call = self._running.get(event.index)
                if call is not None:
                    call[3] = event.text
        elif isinstance(event, NodeWaiting):
            self._line(
                f"{'waiting':>8}  {event.stage} [{event.record}]: another run is computing it"
            )
        elif isinstance(event, NodeFinished):
            with self._lock:
                self._running.pop(event.index, None)
            timing = f" {event.seconds:.2f}s" if event.outcome == Outcome.EXECUTED.value else ""
            self._line(f"{event.outcome:>8}  {event.stage} [{event.record}]{timing}")
        elif isinstance(event, RunFinished):
            self._stop.set()

    def _started(self, event: NodeStarted) -> None:
        where = f" ({event.worker})" if event.worker else ""
        now = time.monotonic()
        with self._lock:
            self._running[event.index] = [f"{event.stage} [{event.record}]{where}", now, now, ""]
        if self._beating is None:
            # A thread: the stage may run in this very process, which then emits nothing.
            self._beating = threading.Thread(target=self._beat, name="curi-heartbeat", daemon=True)
            self._beating.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S / 4):
            now = time.monotonic()
            with self._lock:
                due = [call for call in self._running.values() if now - call[2] >= HEARTBEAT_S]
                for call in due:
                    call[2] = now
            for label, started, _, progress in due:
                done = f": {progress}" if progress else ""
                self._line(f"{'running':>8}  {label} for {duration(now - started)}{done}")
            left = self.time_left.seconds(now) if due else None
            if left is not None:
                self._line(f"{'eta':>8}  {left_text(left)} in the run")


class LiveProgress(PlainProgress):
    """A live table on a terminal: per stage, records done, executed vs cached, what runs now
    (and on which worker)."""

    def __init__(self, console: Console | Output, err_console: Console | Output) -> None:
        super().__init__(console, err_console)
        self.stages: dict[str, _Counts] = {}
        self.outcomes: dict[int, Outcome] = {}
        self.live: Live | None = None
        self.started = time.perf_counter()
        self.workers = 1

    def _render(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("stage")
        table.add_column("done", justify="right")
        table.add_column("executed", justify="right", style="green")
        table.add_column("cached", justify="right", style="cyan")
        table.add_column("skipped", justify="right", style="dim")
        table.add_column("now")
        for name, counts in self.stages.items():
            now = ", ".join(
                f"{text} {counts.progress[i]}" if i in counts.progress else text
                for i, text in list(counts.running.items())
            )
            if now and not now.startswith("waiting"):
                now = "running " + now
            table.add_row(
                name,
                f"{counts.done}/{counts.total}",
                str(counts.by_outcome[Outcome.EXECUTED]),
                str(counts.by_outcome[Outcome.CACHED]),
                str(counts.by_outcome[Outcome.SKIPPED]),
                Text(now, style="yellow") if now else "",
            )
        workers = f", {self.workers} workers" if self.workers > 1 else ""
        left = self.time_left.seconds()
        estimate = f", {left_text(left)}" if left is not None else ""
        table.caption = f"{time.perf_counter() - self.started:.1f}s{workers}{estimate}"
        return table

    def show(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.workers = event.workers
            for name, count in event.stages:
                self.stages.setdefault(name, _Counts(0)).total += count
            if self.live is not None:
                return  # more stage calls of the run on display
            from rich.live import Live

            self.live = Live(
                get_renderable=self._render,
                console=rich_of(self.console),
                refresh_per_second=8,
                transient=True,
            )
            self.live.start()
        elif isinstance(event, NodeStarted):
            # "running a (w1), b (w2)": which worker runs which record, short enough for a row.
            worker = (event.worker or "").replace("worker ", "w").replace("main process", "main")
            where = f" ({worker})" if worker else ""
            self.stages[event.stage].running[event.index] = f"{event.record}{where}"
        elif isinstance(event, NodeProgress):
            self.stages[event.stage].progress[event.index] = event.text
        elif isinstance(event, NodeWaiting):
            self.stages[event.stage].running[event.index] = (
                f"waiting: {event.record} (another run computes it)"
            )
        elif isinstance(event, NodeFinished):
            self._finished(event)
        elif isinstance(event, RunFinished):
            self.close()

    def _finished(self, event: NodeFinished) -> None:
        counts = self.stages[event.stage]
        outcome = Outcome(event.outcome)
        previous = self.outcomes.get(event.index)
        if previous is not None:  # a damaged cached entry that was recomputed
            counts.by_outcome[previous] -= 1
        counts.by_outcome[outcome] += 1
        self.outcomes[event.index] = outcome
        counts.running.pop(event.index, None)
        counts.progress.pop(event.index, None)
        if outcome is Outcome.FAILED and self.live is not None:
            self.live.console.print(
                f"failed  {event.stage} [{event.record}]", style="bold red", markup=False
            )

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
