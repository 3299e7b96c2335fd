"""A worker process's side of a job: entering the project as the driver does, the pickled
job in and the pickled result out, and stdout/stderr that survive a reader going away.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import pickle
import sys
from dataclasses import dataclass
from typing import Any

from curifactory_cli.engine.execute import run_job
from curifactory_cli.engine.jobs import Failure, Job, JobResult
from curifactory_cli.store import discard_draft


@dataclass(frozen=True)
class Context:
    """What a worker process needs before it can unpickle a job: the project and experiment."""

    root: str  # the project folder: put on sys.path, as the driver does
    module: str  # the experiment's module name ("experiments.demo")
    path: str  # its file: imported from there, so experiments/ needs no __init__.py
    cwd: str = ""  # the driver's working directory: stages open relative paths from there


def enter(context: Context) -> None:
    """Work where the driver works, and import the experiment module once (first job)."""
    if context.cwd and os.getcwd() != context.cwd and os.path.isdir(context.cwd):
        os.chdir(context.cwd)
    if sys.modules.get(context.module) is not None:
        loaded = getattr(sys.modules[context.module], "__file__", None)
        if loaded and os.path.realpath(loaded) == os.path.realpath(context.path):
            return
    from curifactory_cli.discovery import ensure_importable, source_spec

    ensure_importable(context.root)
    spec = source_spec(context.module, context.path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[context.module] = module
    spec.loader.exec_module(module)


class PipeSafeStream:
    """A text stream whose reader may go away: once a write meets a closed pipe (EPIPE, as
    after `curi run ... | head`), its descriptor is pointed at /dev/null and output is
    dropped, so a stage's `print()` or a progress line cannot stop the computation."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return int(self.stream.write(text))
            except BrokenPipeError:
                self._drop()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.reader_gone = True
        # The stream's buffer still holds what failed: /dev/null takes it at the next flush
        # (the interpreter flushes at exit), and child processes inherit /dev/null too.
        try:
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError, AttributeError):
            return
        os.dup2(devnull, fd)
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, ...
        return getattr(self.stream, name)


def guard_streams() -> None:
    """Make sys.stdout and sys.stderr survive a reader that goes away (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PipeSafeStream):
            setattr(sys, name, PipeSafeStream(stream))


def run_payload(context: Context, payload: bytes) -> bytes:
    """A worker's entry point: a pickled Job in, a pickled JobResult out.

    Pickling happens here, inside `try`, so that a value that cannot travel becomes a clear
    error naming the stage instead of a broken pool.
    """
    guard_streams()  # a worker shares the driver's stdout: `| head` must not fail its stages
    enter(context)
    job: Job = pickle.loads(payload)
    result = run_job(job)
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        reportables, result.reportables = result.reportables, []
        failure = result.failure
        if failure is not None and failure.original is not None:
            # The user's exception cannot travel: send its text, which is what is shown.
            result.failure = dataclasses.replace(failure, original=None)
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            discard_draft(result.draft)
            result = JobResult(job.index, worker=result.worker)
            result.failure = Failure(
                "error",
                f"stage {job.stage_name!r} ({job.record.name}) returned a value that cannot be "
                f"sent back from a worker process: {type(exc).__name__}: {exc}",
                hint="give the stage a cacher for that output, or run with -j 1.",
                error_type="curifactory_cli.errors:CacheError",
            )
            return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        if reportables:
            sys.stderr.write(f"warning: reportables of {job.label} could not be sent back\n")
        return data
