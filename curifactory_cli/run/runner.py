"""One `curi run`, end to end, as a Python function: `run_experiment(options) -> RunResult`."""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli import discovery
from curifactory_cli.engine.collector import survivors_frozen
from curifactory_cli.engine.executors import executor_named
from curifactory_cli.engine.keys import KeyMaker
from curifactory_cli.engine.runners import InlineRunner, parse_workers
from curifactory_cli.errors import (
    ConfigError,
    CurifactoryError,
    RunFunctionError,
    StageError,
    close_matches_hint,
)
from curifactory_cli.events import NullSink, Warned
from curifactory_cli.fingerprint import CodeFingerprinter
from curifactory_cli.graph import Node
from curifactory_cli.params import (
    ParamSet,
)
from curifactory_cli.provenance import (
    curi_run_line,
)
from curifactory_cli.record import TracingManager
from curifactory_cli.run.options import RunOptions, RunResult
from curifactory_cli.run.orchestrator import Run, RunSpec
from curifactory_cli.run.rows import entries_used
from curifactory_cli.run.selection import load_param_sets
from curifactory_cli.run.settings import Settings
from curifactory_cli.run.signals import terminate_as_interrupt

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from curifactory_cli.engine.executors import Executor, Starting
    from curifactory_cli.engine.hpc import ClusterPlan
    from curifactory_cli.engine.planner import Planner
    from curifactory_cli.engine.runners import JobRunner
    from curifactory_cli.events import EventSink
    from curifactory_cli.store.base import Store


# ---------------------------------------------------------------------------------- running
@dataclass
class Prepared:
    """An experiment loaded and traced: everything a run or a plan starts from."""

    root: Path
    experiment: str
    param_sets: list[ParamSet]
    manager: TracingManager
    cache: str  # the cache: an absolute folder or a URL
    results: Any  # what the experiment's run() returned
    module: ModuleType  # the experiment module
    settings: Settings
    warnings: list[str] = field(default_factory=list)  # found while loading the parameters

    def open_store(self, dry: bool) -> Store:
        from curifactory_cli.run.stores import project_store

        return project_store(self.root, self.settings, cache=self.cache, dry=dry)


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
    manager = TracingManager(
        experiment,
        dry=options.dry,
        lazy=options.lazy,
        ignore_lazy=options.ignore_lazy,
        overwrite=options.overwrite,
        overwrite_stages=list(options.overwrite_stages),
        cache_path=cache,
        param_hashes={id(p.params): p.hash for p in param_sets},
    )
    manager.store_full = options.store_full
    prepared = Prepared(
        root, experiment, param_sets, manager, cache, None, module, settings, warnings
    )
    if on_trace is not None:
        on_trace(prepared)
    try:
        prepared.results = _trace_experiment(module, manager, param_sets)
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
    explained: Any = None  # what `plan_experiment`'s `explain` gave

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

    def no_run() -> None:
        raise ConfigError(
            "run() asks for the run's reference or folder while it is traced; `curi plan` "
            "records no run and has none to give",
            hint="`curi run` records the run then and gives them.",
        )

    prepared.manager._demand = refuse
    prepared.manager._begin = no_run


def plan_experiment(
    options: RunOptions, explain: Callable[[Planner, list[Any]], Any] | None = None
) -> PlanResult:
    """What `run_experiment(options)` would do and why, without executing or loading anything.
    `explain(planner, plans)`: called while the store is open (`curi why`), its answer kept
    as the result's `explained`."""
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
        whole_params=prepared.settings.whole_params,
        history=entries_used(prepared.root, prepared.experiment),
    )
    try:
        plans = planner.plan(prepared.manager.graph.nodes)
        explained = explain(planner, plans) if explain is not None else None
    finally:
        store.close()
    warnings = [*prepared.warnings, *planner.warnings, *getattr(store, "warnings", ())]
    return PlanResult(
        prepared.experiment, prepared.param_sets, plans, store.root, warnings, explained
    )


def run_experiment(options: RunOptions, events: EventSink | None = None) -> RunResult:
    """Load, trace and execute one experiment. Raises CurifactoryError for setup problems;
    a failing stage is returned as `result.error` (a StageError).

    Stage calls made by run() are traced first and executed after it returns. If run() reads
    an output that is not settled yet, the run starts then, settles just what that output
    needs, and tracing goes on (see `_Driver.demand`)."""
    began = time.perf_counter()
    # SIGTERM stops the run as Ctrl-C does from the first moment: importing and tracing the
    # experiment can take long too, and the default action would leave no message.
    with terminate_as_interrupt(), survivors_frozen():
        driver = _Driver(options, events or NullSink(), began)
        try:
            try:
                prepared: Prepared | None = prepare(options, on_trace=driver.attach)
            except StageError as exc:  # a stage whose output run() read failed
                if driver.run is None:
                    raise
                driver.fail(exc)
                prepared = None
            if prepared is not None and driver.run is None:
                driver.start(prepared)
        except BaseException as exc:
            if driver.run is None:
                driver.discard()
                raise
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            driver.run.finish(status, crash=exc)
            raise
        return driver.complete(prepared)


class _Driver:
    """A `curi run` around its `Run` (see `run.orchestrator`): the executor started while
    the experiment is imported and traced, and the run started early, the first time run()
    reads an output that is not settled; then that output and what it needs are settled at
    once (`demand`), and the same run settles the rest of the graph after tracing."""

    def __init__(self, options: RunOptions, events: EventSink, began: float) -> None:
        self.options = options
        self.events = events
        self.began = began
        self.execution = _execution(
            settings_for(options, _root(options)), options.cluster_opts, options.dry
        )
        # Started now: a cluster's workers come up while the experiment is traced.
        self.starting: Starting | None = self.execution.executor.start(
            self.execution.workers, self.execution.scheduler
        )
        self.run: Run | None = None  # set once the run is recorded
        self.opening: Run | None = None

    def attach(self, prepared: Prepared) -> None:
        """Called before run() is traced: reading an unsettled output settles it."""
        for message in prepared.warnings:  # about the parameters, found before any tracing
            self.events.emit(Warned(message))
        prepared.manager._demand = partial(self.demand, prepared)
        # run() asking for the run's reference or folder records the run then.
        prepared.manager._begin = partial(self.begin, prepared)

    def begin(self, prepared: Prepared) -> None:
        if self.run is None:
            self.start(prepared)

    def demand(self, prepared: Prepared, node: Node) -> None:
        if self.run is None:
            self.start(prepared)
        assert self.run is not None
        with terminate_as_interrupt():
            self.run.settle([node])

    def start(self, prepared: Prepared) -> None:
        """Open the store, get the job runner, record the run and make its scheduler."""
        manager = prepared.manager
        spec = _spec(self.options, prepared, self.events)
        run = self.opening = Run(spec, self.events, self.began)
        result = run.start(
            manager.records, manager.graph, prepared.param_sets, partial(self._runner, prepared)
        )
        result.manager = manager
        run.bind(manager)
        self.run = run

    def _runner(self, prepared: Prepared) -> JobRunner:
        starting, self.starting = self.starting, None
        assert starting is not None
        if prepared.manager.graph.nodes:
            return _make_runner(prepared, starting)
        starting.discard()
        return InlineRunner()

    def fail(self, error: StageError) -> None:
        assert self.run is not None and self.run.result is not None
        self.run.result.error = error
        self.run.result.failures = [error]

    def discard(self) -> None:
        """Setup failed before the run started: give back the cluster and the store."""
        if self.starting is not None:
            self.starting.discard()
        if self.opening is not None:
            self.opening.discard()

    def complete(self, prepared: Prepared | None) -> RunResult:
        """Settle the whole graph (unless a stage read while tracing failed), record how
        the run ended, and write its report."""
        run = self.run
        assert run is not None and run.result is not None
        result = run.result
        status, crash = "error", None
        try:
            with terminate_as_interrupt():
                if result.error is None:
                    result.results = prepared.results if prepared is not None else None
                    run.execute()
                run.close_store()
            status = "complete" if result.error is None else "error"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BaseException as exc:
            crash = exc
            raise
        finally:
            run.finish(status, crash)
        # Declaration errors found while executing (a wrong return count) are usage errors.
        if result.error is not None and not isinstance(result.error, StageError):
            raise result.error
        if self.options.store_full and run.registry is not None:
            from curifactory_cli.run.full_store import store_full_run

            result.store_dir = store_full_run(run.spec.root, result, run.registry)
        return result


def _spec(options: RunOptions, prepared: Prepared, events: EventSink) -> RunSpec:
    return RunSpec(
        root=prepared.root,
        settings=prepared.settings,
        experiment=prepared.experiment,
        cache=prepared.cache,
        dry=options.dry,
        dry_cache=options.dry_cache,
        overwrite=options.overwrite,
        overwrite_stages=frozenset(options.overwrite_stages),
        keep_going=options.keep_going,
        lock_timeout=options.lock_timeout,
        command=tuple(options.command),
        reproduce=None if options.command else curi_run_line(options),
        notes=options.notes,
        doc=inspect.getdoc(prepared.module),
        report=options.report,
        progress=getattr(events, "progress", True),
    )


@dataclass(frozen=True)
class _Execution:
    executor: Executor
    workers: int
    scheduler: str | None


def _execution(
    settings: Settings, cluster_opts: tuple[str, ...] = (), dry: bool = False
) -> _Execution:
    """Where stages run: the command line, else CURI_* or the project settings, else in this
    process (`--scheduler` implies Dask). A dry run submits no batch job: it runs here."""
    scheduler = settings.scheduler
    name = executor_name(settings)
    batch = batch_settings(settings, name, cluster_opts)
    if batch is not None and settings.source("workers") == "--workers":
        raise ConfigError(
            f"-j/--workers does not size --executor {name}",
            hint="it starts up to max_jobs jobs of `processes` workers each: "
            "--cluster-opt max_jobs=N.",
        )
    executor = executor_named("local" if dry and batch is not None else name, batch)
    given = settings.workers
    workers = executor.default_workers() if given is None else parse_workers(given)
    return _Execution(executor, workers, scheduler)


def batch_plan(options: RunOptions) -> list[ClusterPlan] | None:
    """The job scripts a batch executor would submit (one per pool) and how many jobs at
    most (None when the run's executor is not a batch system); submits nothing."""
    from curifactory_cli.engine.hpc import plan_cluster

    settings = settings_for(options, _root(options))
    name = executor_name(settings)
    batch = batch_settings(settings, name, options.cluster_opts)
    return None if batch is None else plan_cluster(name, batch)


def executor_name(settings: Settings) -> str:
    """The executor in force (`--scheduler` implies Dask)."""
    name = settings.executor
    if settings.source("scheduler").startswith("--") and not settings.source("executor").startswith(
        "--"
    ):
        name = "dask"
    return name or "local"


def batch_settings(
    settings: Settings, name: str, cluster_opts: tuple[str, ...]
) -> dict[str, Any] | None:
    """A batch executor's settings table with `--cluster-opt` on top (None for others)."""
    from curifactory_cli.engine.executors import BATCH_EXECUTORS

    if name not in BATCH_EXECUTORS:
        if cluster_opts:
            raise ConfigError(
                f"--cluster-opt goes with a batch executor, not --executor {name}",
                hint=f"use --executor {' or '.join(BATCH_EXECUTORS)}.",
            )
        return None
    from curifactory_cli.engine.hpc import parse_cluster_opts

    return {**(settings.get(name) or {}), **parse_cluster_opts(name, cluster_opts)}


def _make_runner(prepared: Prepared, starting: Starting) -> JobRunner:
    from curifactory_cli.engine.worker import Context

    module = prepared.module
    context = Context(str(prepared.root), module.__name__, str(module.__file__), os.getcwd())
    return starting.runner(context)


def _trace_experiment(
    module: ModuleType, manager: TracingManager, param_sets: list[ParamSet]
) -> Any:
    """Call the experiment's run() once; stage calls inside it only build the graph."""
    try:
        return module.run([p.params for p in param_sets], manager)
    except CurifactoryError:
        raise
    except Exception as exc:
        raise RunFunctionError(manager.experiment_name, exc) from exc
