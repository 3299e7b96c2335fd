"""One `curi run`, end to end, as a Python function: `run_experiment(options) -> RunResult`."""

from __future__ import annotations

import datetime as dt
import inspect
import os
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli import discovery
from curifactory_cli.engine.executors import executor_named
from curifactory_cli.engine.keys import KeyMaker
from curifactory_cli.engine.runners import InlineRunner, parse_workers
from curifactory_cli.engine.scheduler import Scheduler, survivors_frozen
from curifactory_cli.errors import (
    ConfigError,
    CurifactoryError,
    GraphError,
    RunFunctionError,
    StageError,
    close_matches_hint,
)
from curifactory_cli.events import NullReporter, RunFinished, RunStarted, Warned
from curifactory_cli.fingerprint import CodeFingerprinter
from curifactory_cli.graph import Graph, Node, Outcome
from curifactory_cli.params import ParamSet
from curifactory_cli.provenance import (
    curi_run_line,
    git_info,
    host_info,
    library_versions,
    merge_versions,
    process_command,
)
from curifactory_cli.record import ArtifactManager
from curifactory_cli.registry.database import RunRegistry, registry_path
from curifactory_cli.registry.log import RunLog, log_path, read_log
from curifactory_cli.registry.records import GitInfo, HostInfo, StageRecord
from curifactory_cli.run.options import RunOptions, RunResult
from curifactory_cli.run.rows import param_files, param_set_records, stage_row, transfer_counts
from curifactory_cli.run.selection import load_param_sets
from curifactory_cli.run.settings import Settings
from curifactory_cli.run.signals import signals_deferred, terminate_as_interrupt

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from curifactory_cli.engine.executors import Executor, Starting
    from curifactory_cli.engine.runners import JobRunner
    from curifactory_cli.events import Reporter
    from curifactory_cli.store.base import Store

DEFAULT_CACHE = Path("data") / "cache"


# ---------------------------------------------------------------------------------- running
@dataclass
class Prepared:
    """An experiment loaded and traced: everything a run or a plan starts from."""

    root: Path
    experiment: str
    param_sets: list[ParamSet]
    manager: ArtifactManager
    cache: str  # the cache: an absolute folder or a URL
    results: Any  # what the experiment's run() returned
    module: ModuleType  # the experiment module
    settings: Settings
    warnings: list[str] = field(default_factory=list)  # found while loading the parameters

    def open_store(self, dry: bool) -> Store:
        from curifactory_cli.store import open_store

        return open_store(
            self.cache,
            remote=self.settings.get("remote"),
            dry=dry,
            storage_options=self.settings.get("storage_options"),
        )


def _root(options: RunOptions) -> Path:
    return Path(options.root or os.getcwd()).resolve()


def settings_for(options: RunOptions, root: Path) -> Settings:
    """Project settings, with what the command line gave on top."""
    from curifactory_cli.run.settings import load_settings

    given = {
        "cache": options.cache_dir,
        "remote": options.remote,
        "workers": options.workers,
        "executor": options.executor,
        "scheduler": options.scheduler,
    }
    return load_settings(root, given)


def prepare(options: RunOptions, on_trace: Callable[[Prepared], None] | None = None) -> Prepared:
    """Import the experiment, load and validate its parameters, trace its run() once
    (`on_trace` sees the prepared experiment just before)."""
    from curifactory_cli.run.settings import resolve_cache

    _check_options(options)
    root = _root(options)
    settings = settings_for(options, root)
    cache = resolve_cache(root, settings)
    module = discovery.import_experiment(root, options.experiment)
    warnings: list[str] = []
    param_sets = load_param_sets(root, module, options, warn=warnings.append)
    experiment = options.experiment.removesuffix(".py").replace("/", ".").replace("\\", ".")
    if experiment.startswith("experiments."):
        experiment = experiment[len("experiments.") :]
    manager = ArtifactManager(
        experiment,
        dry=options.dry,
        lazy=options.lazy,
        ignore_lazy=options.ignore_lazy,
        overwrite=options.overwrite,
        overwrite_stages=list(options.overwrite_stages),
        cache_path=cache,
        param_hashes={id(p.params): p.hash for p in param_sets},
    )
    prepared = Prepared(
        root, experiment, param_sets, manager, cache, None, module, settings, warnings
    )
    if on_trace is not None:
        on_trace(prepared)
    try:
        prepared.results = _trace(module, manager, param_sets)
    finally:
        manager._demand = None  # settling on demand is for the time run() is traced
    stage_names = manager.graph.stage_names()
    for name in options.overwrite_stages:
        if name not in stage_names:
            raise ConfigError(
                f"--overwrite-stage {name!r}: the experiment has no stage of that name",
                hint=close_matches_hint(name, stage_names, "stages", "see the experiment"),
            )
    return prepared


def _check_options(options: RunOptions) -> None:
    """Options that contradict each other: refuse rather than let one silently win."""
    if options.lazy and options.ignore_lazy:
        raise ConfigError(
            "--lazy and --ignore-lazy cannot be used together",
            hint="--lazy treats every output as Lazy, --ignore-lazy keeps Lazy outputs in "
            "memory: pass one of them.",
        )


@dataclass
class PlanResult:
    experiment: str
    param_sets: list[ParamSet]
    plans: list[Any]  # engine.planner.NodePlan, in traced order
    cache_dir: Path
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from curifactory_cli.engine.planner import headline, summarize

        return {
            "experiment": self.experiment,
            "summary": headline(self.plans),
            "counts": summarize(self.plans),
            "param_sets": [{"name": p.name, "hash": p.hash} for p in self.param_sets],
            "nodes": [item.to_json() for item in self.plans],
            "warnings": self.warnings,
        }


def _refuse_to_settle(prepared: Prepared) -> None:
    def refuse(node: Node) -> None:
        raise ConfigError(
            f"run() reads an output of {node.label} while it is traced, so it needs that "
            "stage call settled first; `curi plan` runs nothing and cannot see past that point",
            hint="`curi run` settles it (and what it needs) then goes on tracing.",
        )

    prepared.manager._demand = refuse


def plan_experiment(options: RunOptions) -> PlanResult:
    """What `run_experiment(options)` would do and why, without executing or loading anything."""
    from curifactory_cli.engine.keys import KeyMaker
    from curifactory_cli.engine.planner import Planner

    prepared = prepare(options, on_trace=_refuse_to_settle)
    store = prepared.open_store(dry=True)
    store.planning = True  # a remote tier answers from metadata, downloads nothing
    planner = Planner(
        store=store,
        keys=KeyMaker(prepared.experiment, CodeFingerprinter(prepared.root), write_memo=False),
        experiment=prepared.experiment,
        overwrite=options.overwrite,
        overwrite_stages=frozenset(options.overwrite_stages),
    )
    try:
        plans = planner.plan(prepared.manager.graph.nodes)
    finally:
        store.close()
    warnings = [*prepared.warnings, *planner.warnings, *getattr(store, "warnings", ())]
    return PlanResult(prepared.experiment, prepared.param_sets, plans, store.root, warnings)


def run_experiment(options: RunOptions, reporter: Reporter | None = None) -> RunResult:
    """Load, trace and execute one experiment. Raises CurifactoryError for setup problems;
    a failing stage is returned as `result.error` (a StageError).

    Stage calls made by run() are traced first and executed after it returns. If run() reads
    an output that is not settled yet, the run starts then, settles just what that output
    needs, and tracing goes on (see `_Run.demand`)."""
    started = time.perf_counter()
    # SIGTERM stops the run as Ctrl-C does from the first moment: importing and tracing the
    # experiment can take long too, and the default action would leave no message.
    with terminate_as_interrupt(), survivors_frozen():
        run = _Run(options, reporter or NullReporter())
        try:
            try:
                prepared: Prepared | None = prepare(options, on_trace=run.attach)
            except StageError as exc:  # a stage whose output run() read failed
                if not run.started:
                    raise
                run.fail(exc)
                prepared = None
            if prepared is not None and not run.started:
                run.start(prepared)
        except BaseException as exc:
            if not run.started:
                run.discard()
                raise
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            run.finish(status, started, crash=exc)
            raise
        return run.complete(prepared, started)


class _Run:
    """One `curi run` once it starts: its store, job runner, registry row and scheduler.

    It starts after tracing, or earlier, the first time run() reads an output that is not
    settled: then that output and what it needs are settled at once (`demand`), and the
    same scheduler settles the rest of the graph after tracing."""

    def __init__(self, options: RunOptions, reporter: Reporter) -> None:
        self.options = options
        self.reporter = reporter
        self.root = _root(options)
        self.execution = _execution(settings_for(options, self.root))
        # Started now: a cluster's workers come up while the experiment is traced.
        self.starting: Starting | None = self.execution.executor.start(
            self.execution.workers, self.execution.scheduler
        )
        self.started = False
        self.store: Store | None = None
        self.runner: JobRunner | None = None
        self.registry: RunRegistry | None = None
        self.log: RunLog | None = None
        self.scheduler: Scheduler | None = None
        self.result: RunResult | None = None
        self.announced = 0  # stage calls the reporter was told about
        self.expected: dict[str, float] = {}  # stage -> seconds a call took in recent runs

    def attach(self, prepared: Prepared) -> None:
        """Called before run() is traced: reading an unsettled output settles it."""
        for message in prepared.warnings:  # about the parameters, found before any tracing
            self.reporter.emit(Warned(message))
        prepared.manager._demand = partial(self.demand, prepared)

    def demand(self, prepared: Prepared, node: Node) -> None:
        if not self.started:
            self.start(prepared)
        assert self.scheduler is not None
        self._announce(prepared.manager.graph)
        with terminate_as_interrupt():
            self.scheduler.settle(prepared.manager.graph.nodes, [node])

    def start(self, prepared: Prepared) -> None:
        """Open the store, get the job runner, record the run and make its scheduler."""
        options, manager = self.options, prepared.manager
        self.store = store = prepared.open_store(dry=options.dry or options.dry_cache)
        if hasattr(store, "notify"):  # a remote tier says at once when it is left out
            store.notify = lambda message: self.reporter.emit(Warned(message))
        if not store.dry and manager.graph.nodes:
            store.prepare()  # an unusable cache is a setup error: no run is recorded
        # Workers (or a Dask cluster) before the run is recorded: failing to get them is a
        # setup error, which records nothing.
        if manager.graph.nodes:
            assert self.starting is not None
            self.runner = _make_runner(prepared, self.starting)
        else:
            self.runner = InlineRunner()
            if self.starting is not None:
                self.starting.discard()
        self.starting = None
        try:
            run_id = self._record(prepared)
        except BaseException:
            self.runner.close(cancel=True)
            store.close()
            raise
        self.started = True
        result = RunResult(
            prepared.experiment,
            run_id,
            prepared.param_sets,
            manager.records,
            manager.graph,
            store.root,
        )
        result.store = store  # outputs not loaded yet are read from its local tier later
        result.manager = manager
        self.result = result
        self.scheduler = Scheduler(
            store=store,
            keys=KeyMaker(
                prepared.experiment, CodeFingerprinter(self.root), write_memo=not options.dry
            ),
            runner=self.runner,
            reporter=self.reporter,
            experiment=prepared.experiment,
            overwrite=options.overwrite,
            overwrite_stages=frozenset(options.overwrite_stages),
            keep_going=options.keep_going,
            lock_timeout=options.lock_timeout,
            # Each entry names its run (and the machine): the run's command, git commit and
            # library versions are kept once, in the registry (`curi cache inspect` shows them).
            provenance={"run": {"id": run_id, "host": host_info()["host"]}},
            logbook=self.log.add if self.log is not None else None,
        )

    def _record(self, prepared: Prepared) -> str:
        options = self.options
        self.git = git_info(str(self.root))
        if options.dry:
            return f"{prepared.experiment}_0_{dt.datetime.now().strftime('%Y-%m-%d-T%H%M%S')}"
        self.registry = RunRegistry(registry_path(self.root))
        param_sets = prepared.param_sets
        if getattr(self.reporter, "progress", True):  # for the time left, where it is shown
            try:
                self.expected = self.registry.stage_seconds(prepared.experiment)
            except CurifactoryError:
                self.expected = {}
        reference = self.registry.start_run(
            experiment=prepared.experiment,
            # Started by `curi`: its command line. From a script or a notebook: the
            # process's own command, and the `curi run` line that does the same.
            command=list(options.command) or process_command(),
            reproduce=None if options.command else curi_run_line(options),
            param_files=param_files(param_sets),
            param_sets=param_set_records(param_sets),
            git=GitInfo.from_json(self.git),
            host=HostInfo.from_json(host_info()),
            versions=library_versions(),
            notes=options.notes,
            cache_dir=prepared.cache,
            dry=options.dry_cache,
            doc=inspect.getdoc(prepared.module),
        ).reference
        self.log = RunLog(log_path(self.registry.path, reference))
        return reference

    def _announce(self, graph: Graph) -> None:
        """Tell the reporter about the stage calls traced since it was last told."""
        assert self.result is not None and self.runner is not None
        nodes = graph.nodes[self.announced :]
        if not nodes:
            return
        stages: dict[str, int] = {}
        for node in nodes:
            stages[node.stage.name] = stages.get(node.stage.name, 0) + 1
        records = len({id(n.record) for n in nodes})
        more = self.announced > 0
        self.announced = len(graph.nodes)
        self.reporter.emit(
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

    def fail(self, error: StageError) -> None:
        assert self.result is not None
        self.result.error = error
        self.result.failures = [error]

    def discard(self) -> None:
        """Setup failed before the run started: give back the cluster and the store."""
        if self.starting is not None:
            self.starting.discard()
        if self.runner is not None:
            self.runner.close(cancel=True)
        if self.store is not None:
            self.store.close()

    def complete(self, prepared: Prepared | None, started: float) -> RunResult:
        """Settle the whole graph (unless a stage read while tracing failed), record how
        the run ended, and write its report."""
        result, store = self.result, self.store
        assert result is not None and store is not None and self.scheduler is not None
        status, crash = "error", None
        try:
            with terminate_as_interrupt():
                if result.error is None:
                    result.results = prepared.results if prepared is not None else None
                    self._announce(result.graph)
                    _execute(self.scheduler, result)
                _close_store(store, result, self.reporter)
            status = "complete" if result.error is None else "error"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BaseException as exc:
            crash = exc
            raise
        finally:
            self.finish(status, started, crash)
        # Declaration errors found while executing (a wrong return count) are usage errors.
        if result.error is not None and not isinstance(result.error, StageError):
            raise result.error
        if self.options.store_full and self.registry is not None:
            from curifactory_cli.run.full_store import store_full_run

            result.store_dir = store_full_run(self.root, result, self.registry)
        return result

    def finish(self, status: str, started: float, crash: BaseException | None = None) -> None:
        """Stop the runner, close the store, record the outcome and write the report (`crash`:
        what stopped the run when no stage failed, recorded as its error)."""
        with signals_deferred():
            self._wind_up(status, started, crash)

    def _wind_up(self, status: str, started: float, crash: BaseException | None) -> None:
        result, store, runner = self.result, self.store, self.runner
        assert result is not None and store is not None and runner is not None
        runner.close(cancel=status == "interrupted")
        store.close(cancel=True)  # after an error or an interruption; else already closed
        result.seconds = time.perf_counter() - started
        result.remote = getattr(store, "transfers", None)
        for node in result.graph.nodes:
            if node.outcome is None:
                node.outcome = Outcome.SKIPPED
                node.reason = "not run: the run stopped before it"
        if self.log is not None:
            self.log.close()
            if self.log.failed is not None:
                self.reporter.emit(Warned(self.log.failed))
            elif self.log.path.exists():
                result.log = self.log.path
        if self.registry is not None:
            stages = _finish(self.registry, result, status, _crash_text(crash))
            if self.options.report:
                result.report = _write_report(
                    self.root, self.registry, result, stages, self.reporter
                )
        result.warnings = list(getattr(self.reporter, "warnings", []))
        counts = result.counts()
        self.reporter.emit(
            RunFinished(result.run_id, result.ok, result.seconds, tuple(sorted(counts.items())))
        )


def _write_report(
    root: Path,
    registry: RunRegistry,
    result: RunResult,
    stages: list[StageRecord],
    reporter: Reporter,
) -> Path | None:
    """The run's HTML report, from what the registry recorded (its stage calls as just
    recorded) and the records' reportables. A report that cannot be written is a warning:
    the run's results stand."""
    from curifactory_cli import report

    warnings: list[str] = []
    path = None
    try:
        run = replace(registry.get_run(result.run_id, stages=False), stages=stages)
        items = report.items_from_records(result.records)
        logs = read_log(result.log) if result.log is not None else []
        path = report.write_run_report(root, run, items, warnings, logs)
        report.update_index(root, registry.list_runs(limit=None, brief=True))
    except (OSError, CurifactoryError) as exc:
        warnings.append(f"the run's report was not written: {exc}")
    for warning in warnings:
        reporter.emit(Warned(warning))
    return path


def _close_store(store: Store, result: RunResult, reporter: Reporter) -> None:
    """Finish with the store: a remote tier uploads what is queued and keeps what was served
    remotely. An upload the run cannot do without (the bucket is the cache) fails the run."""
    try:
        store.close()
    except CurifactoryError as exc:
        if result.error is None:
            result.error = exc
    for warning in getattr(store, "warnings", ()):
        reporter.emit(Warned(warning))


@dataclass(frozen=True)
class _Execution:
    executor: Executor
    workers: int
    scheduler: str | None


def _execution(settings: Settings) -> _Execution:
    """Where stages run: the command line, else CURI_* or the project settings, else in this
    process (`--scheduler` implies Dask)."""
    scheduler = settings.scheduler
    implied = "dask" if settings.source("scheduler").startswith("--") else None
    name = settings.executor
    if implied and not settings.source("executor").startswith("--"):
        name = implied
    executor = executor_named(name or "local")
    given = settings.workers
    workers = executor.default_workers() if given is None else parse_workers(given)
    return _Execution(executor, workers, scheduler)


def _make_runner(prepared: Prepared, starting: Starting) -> JobRunner:
    from curifactory_cli.engine.jobs import Context

    module = prepared.module
    context = Context(str(prepared.root), module.__name__, str(module.__file__), os.getcwd())
    return starting.runner(context)


def _crash_text(crash: BaseException | None) -> str | None:
    """What to record as the error of a run stopped by something other than a stage."""
    if crash is None or isinstance(crash, KeyboardInterrupt):
        return None
    if isinstance(crash, CurifactoryError):
        return crash.message
    return f"{type(crash).__name__}: {crash}"


def _execute(scheduler: Scheduler, result: RunResult) -> None:
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


def _finish(
    registry: RunRegistry, result: RunResult, status: str, crash: str | None = None
) -> list[StageRecord]:
    """Record how the run ended (`crash`: the error when no stage failed); returns its stage
    calls as recorded."""
    failed = result.failed_node
    counts = result.counts()
    stages = [stage_row(n, result.cache_dir) for n in result.graph.nodes]
    recorded = {k: counts.get(k, 0) for k in ("executed", "cached", "skipped", "failed")}
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
    )
    return stages


def _trace(module: ModuleType, manager: ArtifactManager, param_sets: list[ParamSet]) -> Any:
    """Call the experiment's run() once; stage calls inside it only build the graph."""
    try:
        return module.run([p.params for p in param_sets], manager)
    except CurifactoryError:
        raise
    except Exception as exc:
        raise RunFunctionError(manager.experiment_name, exc) from exc
