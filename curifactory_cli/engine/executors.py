"""Executors: where a run's stage calls execute, chosen by name from one table (`local`,
`dask`, and the batch systems `slurm`, `pbs`, `lsf`, `sge`) or by a dotted path to a
`JobRunner` class (`--executor mypkg.runners:RayRunner`).

An executor is made in two steps, so that a slow start (a Dask cluster's worker processes)
overlaps importing and tracing the experiment:

* `executor.start(workers, scheduler)` before the experiment is imported, giving a `Starting`;
* `starting.runner(context)` once the run has stage calls to run, giving the `JobRunner`
  (or `starting.discard()` when it has none, or failed to load).

A class named by a dotted path is a `JobRunner` (see `engine.runners.JobRunner` for the
contract: `capacity`, `inline`, `shares_files`, `submit`, `wait`, `progress`, `close`) whose
constructor takes `(workers: int, context: Context)`; `context` says how a worker imports the
experiment. It only runs jobs: deciding, keying and publishing stay with the scheduler. A
runner whose `inline` is True is given no jobs: the scheduler runs them in its own process.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from curifactory_cli.engine.runners import InlineRunner, usable_cores
from curifactory_cli.errors import ConfigError

if TYPE_CHECKING:
    from curifactory_cli.engine.runners import JobRunner
    from curifactory_cli.engine.worker import Context

# A JobRunner class of the user's own, `module:Class` (checked when the run imports it).
DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*([.:][A-Za-z_]\w*)$")
_RUNNER_METHODS = ("submit", "wait", "progress", "close")
_RUNNER_FIELDS = ("capacity", "inline", "shares_files")  # often set by the constructor


class Starting(Protocol):
    """An executor on its way: its runner once there is work, or nothing after all."""

    def runner(self, context: Context) -> JobRunner: ...
    def discard(self) -> None: ...


class Executor(Protocol):
    name: str

    def default_workers(self) -> int: ...
    def start(self, workers: int, scheduler: str | None) -> Starting: ...


class _Ready:
    """A runner made on demand: nothing to start in advance."""

    def __init__(self, make: Callable[[Context], JobRunner]) -> None:
        self._make = make

    def runner(self, context: Context) -> JobRunner:
        return self._make(context)

    def discard(self) -> None:
        return None


def _local_runner(workers: int, context: Context) -> JobRunner:
    if workers <= 1:
        return InlineRunner()
    from curifactory_cli.engine.pool import PoolRunner

    return PoolRunner(workers, context)


class LocalExecutor:
    """This process (`-j 1`), or worker processes on this machine (`-j N`)."""

    name = "local"

    def default_workers(self) -> int:
        return 1

    def start(self, workers: int, scheduler: str | None) -> Starting:
        return _Ready(lambda context: _local_runner(workers, context))


class _DaskStarting:
    def __init__(self, workers: int, scheduler: str | None) -> None:
        from curifactory_cli.engine.dask_runner import ClusterStart

        self._cluster = ClusterStart(workers, scheduler)

    def runner(self, context: Context) -> JobRunner:
        from curifactory_cli.engine.dask_runner import DaskRunner

        return DaskRunner(self._cluster.result(), context)

    def discard(self) -> None:
        self._cluster.discard()


class DaskExecutor:
    """A Dask cluster: a local one curi starts, or the one at `--scheduler`."""

    name = "dask"

    def default_workers(self) -> int:
        return usable_cores()

    def start(self, workers: int, scheduler: str | None) -> Starting:
        return _DaskStarting(workers, scheduler)


class ClassExecutor:
    """A `JobRunner` class of the user's own, named by its dotted path."""

    def __init__(self, name: str, cls: Any) -> None:
        self.name = name
        self._cls = cls

    def default_workers(self) -> int:
        return usable_cores()

    def start(self, workers: int, scheduler: str | None) -> Starting:
        cls, name = self._cls, self.name

        def make(context: Context) -> JobRunner:
            try:
                made: JobRunner = cls(workers, context)
            except TypeError as exc:
                raise ConfigError(
                    f"--executor {name}: cannot make the runner: {exc}",
                    hint="a runner class takes (workers: int, context: Context).",
                ) from None
            missing = [a for a in _RUNNER_FIELDS if not hasattr(made, a)]
            if missing:
                raise ConfigError(
                    f"--executor {name}: the runner has no {', '.join(missing)}",
                    hint="see curifactory_cli.engine.runners.JobRunner for what a runner has.",
                )
            return made

        return _Ready(make)


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor, "dask": DaskExecutor}
# Dask workers as batch jobs (engine.hpc), each configured by its own settings table.
BATCH_EXECUTORS = ("slurm", "pbs", "lsf", "sge")
NAMES = (*EXECUTORS, *BATCH_EXECUTORS)


def executor_named(name: str, cluster: dict[str, Any] | None = None) -> Executor:
    """The executor `name` stands for: one of EXECUTORS, a batch system of BATCH_EXECUTORS
    (`cluster`: its settings), or a runner class's dotted path."""
    if name in BATCH_EXECUTORS:
        from curifactory_cli.engine.hpc import BatchExecutor

        return BatchExecutor(name, cluster or {})
    made = EXECUTORS.get(name)
    if made is not None:
        return made()
    if not DOTTED_NAME.match(name):
        raise ConfigError(
            f"--executor {name!r}: unknown executor",
            hint=f"use one of {', '.join(NAMES)}, or a JobRunner class as module:Class.",
        )
    module_name, _, attr = name.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"--executor {name}: cannot import {module_name!r}: {exc}",
            hint="the module must be importable from the project folder or installed.",
        ) from None
    cls = getattr(module, attr, None)
    missing = [a for a in _RUNNER_METHODS if not callable(getattr(cls, a, None))]
    if cls is None or not isinstance(cls, type) or missing:
        what = "no such class" if cls is None else f"not a JobRunner (no {', '.join(missing)})"
        raise ConfigError(
            f"--executor {name}: {module_name}.{attr} is {what}",
            hint="name a class with JobRunner's attributes and methods (curifactory_cli."
            "engine.runners.JobRunner).",
        )
    return ClassExecutor(name, cls)
