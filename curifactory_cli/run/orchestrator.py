"""The one run orchestrator. `curi run`, `curi runs reproduce` and `run_experiment(...)`
(through `run.runner`), and an `ArtifactManager` made in a notebook or a script (through
`manager`), all drive a `Run`: it opens the project's store, takes a job runner, records the
run in the registry with its log, settles stage calls through the engine's scheduler, and
records how the run ended (with its report).

A `curi run` settles the whole traced graph at once (`execute`), or part of it early when
run() reads an output while it is traced (`settle`); a notebook's session settles each stage
call as it is made and records the run as it stands after each (`checkpoint`).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from curifactory_cli.discovery import RUNS_FOLDER
from curifactory_cli.engine.keys import KeyMaker
from curifactory_cli.engine.scheduler import Scheduler
from curifactory_cli.errors import CurifactoryError, GraphError, StageError
from curifactory_cli.events import RunFinished, RunStarted, Warned
from curifactory_cli.fingerprint import CodeFingerprinter
from curifactory_cli.graph import Graph, Node, Outcome
from curifactory_cli.params import ParamSet
from curifactory_cli.provenance import (
    git_info,
    host_info,
    library_versions,
    merge_versions,
    process_command,
)
from curifactory_cli.registry.database import RunRegistry, registry_path
from curifactory_cli.registry.log import RunLog, log_path
from curifactory_cli.registry.records import GitInfo, HostInfo, ParamSetRecord, StageRecord
from curifactory_cli.run.options import RunResult
from curifactory_cli.run.rows import (
    entries_used,
    param_files,
    param_set_records,
    stage_code,
    stage_row,
    transfer_counts,
)
from curifactory_cli.run.settings import Settings
from curifactory_cli.run.signals import signals_deferred
from curifactory_cli.run.stores import project_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from curifactory_cli.engine.runners import JobRunner
    from curifactory_cli.events import EventSink
    from curifactory_cli.record import Record, TracingManager
    from curifactory_cli.store.base import Store

COUNTED = ("executed", "cached", "skipped", "failed")


def run_folder(root: Path, reference: str, dry: bool) -> str:
    """The run's own folder, `data/runs/<reference>`: files that stages without cachers ask
    for (record.get_path()) and Curifactory's manager.get_run_output_path(); --store-full
    writes there too. A --dry run writes nothing in the project: a temporary folder."""
    if dry:
        return str(Path(tempfile.gettempdir()) / "curi-dry-runs" / reference)
    return str(root / RUNS_FOLDER / reference)


@dataclass(frozen=True)
class RunSpec:
    """What a run is, however it was started: from `RunOptions`, or from the arguments of
    a notebook's `ArtifactManager`."""

    root: Path  # the project
    settings: Settings
    experiment: str
    cache: str  # an absolute folder or a URL
    dry: bool = False  # write nothing: no entries, no registry row, no memo of file digests
    dry_cache: bool = False  # read the cache, never write it (the run is recorded)
    overwrite: bool = False
    overwrite_stages: frozenset[str] = frozenset()
    keep_going: bool = False
    lock_timeout: float | None = None
    command: tuple[str, ...] = ()  # the `curi` command line; empty: the process's own
    reproduce: str | None = None  # the command that runs it again, when not a `curi` one
    notes: str | None = None
    doc: str | None = None  # the experiment's docstring
    report: bool = True  # write the HTML report when the run finishes
    progress: bool = True  # the sink shows progress: read recent stage times for ETAs

    @property
    def dry_store(self) -> bool:
        return self.dry or self.dry_cache


class Run:
    """One run once it starts: its store, job runner, registry row, log and scheduler."""

    def __init__(self, spec: RunSpec, events: EventSink, began: float | None = None) -> None:
        self.spec = spec
        self.events = events
        self.began = time.perf_counter() if began is None else began  # for its duration
        self.store: Store | None = None
        self.runner: JobRunner | None = None
        self.registry: RunRegistry | None = None
        self.log: RunLog | None = None
        self.scheduler: Scheduler | None = None
        self.result: RunResult | None = None
        self.announced = 0  # stage calls the sink was told about
        self.expected: dict[str, float] = {}  # stage -> seconds a call took in recent runs
        self.failed: list[BaseException] = []  # what stopped settling (interactive)
        self.fingerprinter: CodeFingerprinter | None = None  # the keys' (for the registry)
        self.run_dir: str | None = None  # the run's own folder (see run_folder)

    # ------------------------------------------------------------------------ starting
    def open_store(self) -> Store:
        spec = self.spec
        store = project_store(spec.root, spec.settings, cache=spec.cache, dry=spec.dry_store)
        self.store = store
        if hasattr(store, "notify"):  # a remote tier says at once when it is left out
            store.notify = self.warn
        return store

    def start(
        self,
        records: list[Record],
        graph: Graph,
        param_sets: list[ParamSet],
        make_runner: Callable[[], JobRunner],
    ) -> RunResult:
        """Open the store, take the job runner, record the run and make its scheduler (a
        setup error before the run is recorded records nothing)."""
        spec = self.spec
        store = self.store or self.open_store()
        if not store.dry and graph.nodes:
            store.prepare()  # an unusable cache is a setup error: no run is recorded
        # Workers (or a Dask cluster) before the run is recorded: failing to get them is a
        # setup error, which records nothing.
        self.runner = make_runner()
        try:
            run_id = self._record(param_sets)
        except BaseException:
            self.runner.close(cancel=True)
            store.close()
            raise
        result = RunResult(spec.experiment, run_id, param_sets, records, graph, store.root)
        result.store = store  # outputs not loaded yet are read from its local tier later
        self.result = result
        self.fingerprinter = CodeFingerprinter(spec.root)
        self.scheduler = Scheduler(
            store=store,
            # A dry run writes nothing, the memo of depends_on files' checksums included.
            keys=KeyMaker(spec.experiment, self.fingerprinter, write_memo=not spec.dry),
            runner=self.runner,
            events=self.events,
            experiment=spec.experiment,
            overwrite=spec.overwrite,
            overwrite_stages=spec.overwrite_stages,
            keep_going=spec.keep_going,
            lock_timeout=spec.lock_timeout,
            # Each entry names its run (and the machine): the run's command, git commit and
            # library versions are kept once, in the registry (`curi cache inspect` shows them).
            provenance={"run": {"id": run_id, "host": host_info()["host"]}},
            logbook=self.log.add if self.log is not None else None,
            whole_params=spec.settings.whole_params,
            history=entries_used(spec.root, spec.experiment),
        )
        self.scheduler.jobs.run_dir = self.run_dir = run_folder(spec.root, run_id, spec.dry)
        return result

    def bind(self, manager: TracingManager) -> None:
        """Give the run's manager its reference and own folder (Curifactory's run folder)."""
        reference = None if self.result is None else self.result.run_id
        manager._run_reference = reference
        manager._run_dir = self.run_dir
        registry = self.registry
        if registry is not None and reference is not None:
            manager._run_record = lambda: registry.get_run(reference).to_json()

    def _record(self, param_sets: list[ParamSet]) -> str:
        spec = self.spec
        if spec.dry:
            return f"{spec.experiment}_0_{dt.datetime.now().strftime('%Y-%m-%d-T%H%M%S')}"
        self.registry = RunRegistry(registry_path(spec.root))
        if spec.progress:  # for the time left, where it is shown
            try:
                self.expected = self.registry.stage_seconds(spec.experiment)
            except CurifactoryError:
                self.expected = {}
        reference = self.registry.start_run(
            experiment=spec.experiment,
            # Started by `curi`: its command line. From a script or a notebook: the
            # process's own command, and the `curi run` line that does the same.
            command=list(spec.command) or process_command(),
            reproduce=spec.reproduce,
            param_files=param_files(param_sets),
            param_sets=param_set_records(param_sets),
            git=GitInfo.from_json(git_info(str(spec.root))),
            host=HostInfo.from_json(host_info()),
            versions=library_versions(),
            notes=spec.notes,
            cache_dir=spec.cache,
            dry=spec.dry_cache,
            doc=spec.doc,
        ).reference
        self.log = RunLog(log_path(self.registry.path, reference))
        return reference

    # ------------------------------------------------------------------------ settling
    def settle(self, wanted: list[Node]) -> None:
        """Settle `wanted` and what it needs, now (the rest of the graph waits)."""
        assert self.result is not None and self.scheduler is not None
        self.announce()
        self.scheduler.settle(self.result.graph.nodes, wanted)

    def execute(self) -> None:
        """Settle the whole graph; a failing stage is kept as the result's error."""
        result, scheduler = self.result, self.scheduler
        assert result is not None and scheduler is not None
        self.announce()
        try:
            scheduler.run(result.graph.nodes)
            result.failures = list(scheduler.failures)
            if result.failures:
                result.error = result.failures[0]
        except StageError as exc:
            result.error = exc
            result.failures = [exc]
        except GraphError as exc:
            if result.failed_node is None:
                raise
            result.error = exc

    def announce(self) -> None:
        """Tell the sink about the stage calls traced since it was last told."""
        assert self.result is not None and self.runner is not None
        graph = self.result.graph
        nodes = graph.nodes[self.announced :]
        if not nodes:
            return
        stages: dict[str, int] = {}
        for node in nodes:
            stages[node.stage.name] = stages.get(node.stage.name, 0) + 1
        records = len({id(n.record) for n in nodes})
        more = self.announced > 0
        self.announced = len(graph.nodes)
        self.events.emit(
            RunStarted(
                self.result.run_id,
                self.result.experiment,
                records,
                tuple(stages.items()),
                self.runner.capacity,
                more,
                tuple((s, self.expected[s]) for s in stages if s in self.expected),
            )
        )

    def checkpoint(self, param_sets: list[ParamSetRecord]) -> None:
        """The registry's row as the run stands (a notebook's session, after each stage
        call): its outcome so far, its parameter sets, its stage calls."""
        result, store = self.result, self.store
        if self.registry is None or result is None or store is None:
            return
        nodes = result.graph.nodes
        counts = dict.fromkeys(COUNTED, 0)
        for node in nodes:
            counts[(node.outcome or Outcome.SKIPPED).value] += 1
        # Pulled so far (uploads are batched until the session closes: not counted here).
        moved = transfer_counts(getattr(store, "transfers", None))
        counts.update({k: v for k, v in moved.items() if k.startswith("pulled")})
        failed = result.failed_node
        error = self.failed[-1] if self.failed else None
        self.registry.finish_run(
            result.run_id,
            status="error" if failed is not None else "complete",
            duration_s=time.perf_counter() - self.began,
            counts=counts,
            error=None if error is None else str(getattr(error, "message", error)),
            failed_stage=failed.stage.name if failed else None,
            failed_record=failed.record_name if failed else None,
            stages=[stage_row(n, store.root) for n in nodes],
            param_sets=param_sets,
            versions=merge_versions(library_versions(), (n.versions for n in nodes)),
            code=self._code(nodes),
        )

    # ------------------------------------------------------------------------ ending
    def close_store(self) -> None:
        """Finish with the store: a remote tier uploads what is queued and keeps what was
        served remotely. An upload the run cannot do without (the bucket is the cache)
        fails the run."""
        result, store = self.result, self.store
        assert result is not None and store is not None
        try:
            store.close()
        except CurifactoryError as exc:
            if result.error is None:
                result.error = exc
        for warning in getattr(store, "warnings", ()):
            self.warn(warning)

    def discard(self) -> None:
        """Setup failed before the run started: give back the runner and the store."""
        if self.runner is not None:
            self.runner.close(cancel=True)
        if self.store is not None:
            self.store.close()

    def finish(self, status: str, crash: BaseException | None = None) -> None:
        """Stop the runner, close the store, record the outcome and write the report (`crash`:
        what stopped the run when no stage failed, recorded as its error)."""
        with signals_deferred():
            self._wind_up(status, crash)

    def _wind_up(self, status: str, crash: BaseException | None) -> None:
        result, store, runner = self.result, self.store, self.runner
        assert result is not None and store is not None and runner is not None
        runner.close(cancel=status == "interrupted")
        store.close(cancel=True)  # after an error or an interruption; else already closed
        result.seconds = time.perf_counter() - self.began
        result.remote = getattr(store, "transfers", None)
        for node in result.graph.nodes:
            if node.outcome is None:
                node.outcome = Outcome.SKIPPED
                node.reason = "not run: the run stopped before it"
        if self.log is not None:
            self.log.close()
            if self.log.failed is not None:
                self.warn(self.log.failed)
            elif self.log.path.exists():
                result.log = self.log.path
        if self.registry is not None:
            stages = self._finish_row(status, _crash_text(crash))
            if self.spec.report:
                from curifactory_cli.run.reports import write_for_run

                result.report = write_for_run(
                    self.spec.root, self.registry, result, stages, self.warn
                )
        result.warnings = list(getattr(self.events, "warnings", []))
        counts = result.counts()
        self.events.emit(
            RunFinished(result.run_id, result.ok, result.seconds, tuple(sorted(counts.items())))
        )

    def _finish_row(self, status: str, crash: str | None) -> list[StageRecord]:
        """Record how the run ended (`crash`: the error when no stage failed); returns its
        stage calls as recorded."""
        result, registry = self.result, self.registry
        assert result is not None and registry is not None
        failed = result.failed_node
        counts = result.counts()
        stages = [stage_row(n, result.cache_dir) for n in result.graph.nodes]
        recorded = {k: counts.get(k, 0) for k in COUNTED}
        recorded.update(transfer_counts(result.remote))
        registry.finish_run(
            result.run_id,
            status=status,
            duration_s=round(result.seconds, 3),
            counts=recorded,
            error=crash if result.error is None else result.error.message,
            failed_stage=failed.stage.name if failed else None,
            failed_record=failed.record_name if failed else None,
            stages=stages,
            # The run's own, and those of every result it made or used.
            versions=merge_versions(library_versions(), (n.versions for n in result.graph.nodes)),
            code=self._code(result.graph.nodes),
        )
        return stages

    def _code(self, nodes: list[Node]) -> dict[str, dict[str, str]] | None:
        """Each stage's code fingerprints by part (what `curi runs diff` compares); a stage
        whose code cannot be read is left out, never failing the run's record."""
        if self.fingerprinter is None:
            return None
        try:
            return stage_code(nodes, self.fingerprinter)
        except Exception:  # the run's outcome matters more than this detail
            return None

    def warn(self, message: str) -> None:
        self.events.emit(Warned(message))


def _crash_text(crash: BaseException | None) -> str | None:
    """What to record as the error of a run stopped by something other than a stage."""
    if crash is None or isinstance(crash, KeyboardInterrupt):
        return None
    if isinstance(crash, CurifactoryError):
        return crash.message
    return f"{type(crash).__name__}: {crash}"
