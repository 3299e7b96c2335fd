"""The exception family of curifactory_cli and the one table that maps it to exit codes."""

from __future__ import annotations

import difflib
import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of `curi`, documented in the README."""

    OK = 0
    STAGE_FAILED = 1  # a stage raised, or its outputs could not be cached
    USAGE = 2  # bad command line, parameters, experiment or stage declaration
    INTERRUPTED = 130  # Ctrl-C / SIGINT
    TERMINATED = 143  # SIGTERM (a CI timeout, `kill`)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as after Ctrl-C, and exits with 143."""


class CurifactoryError(Exception):
    """Base class; caught at the CLI boundary and shown as one line plus a hint."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nHint: {hint}")


class ConfigError(CurifactoryError):
    """The project layout or a command-line option is invalid."""


class ParamsError(CurifactoryError):
    """A parameter file cannot be loaded, validated or hashed."""


class DiscoveryError(CurifactoryError):
    """An experiment or parameter file cannot be found or imported."""


class ExperimentImportError(DiscoveryError):
    """The user's experiment module raised while being imported (its traceback is shown)."""

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.original = original


class GraphError(CurifactoryError):
    """Stages are declared or chained inconsistently (missing inputs, bad names, ...)."""


class InputSignatureError(GraphError):
    """A stage input is not a parameter of the stage function."""


class OutputSignatureError(GraphError):
    """A stage returned a different number of values than it declares outputs."""


class CachersMismatchError(GraphError):
    """A stage declares a different number of cachers than outputs."""


class EmptyCachersError(GraphError):
    """A stage declares `cachers=[]`; use `None` for an uncached stage."""


class MissingInputError(GraphError, KeyError):
    """A stage input is in no earlier stage's outputs (Curifactory raised KeyError here)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class MetricError(CurifactoryError):
    """A stage recorded a metric that is not a number, or named it badly (a usage error: exit
    2, though raised while the stage runs)."""


class CacheError(CurifactoryError):
    """An artifact cannot be written to or read from the cache (the run fails: exit 1)."""

    exit_code = ExitCode.STAGE_FAILED


class StageError(CurifactoryError):
    """A stage raised; the user's exception is chained as __cause__."""

    exit_code = ExitCode.STAGE_FAILED

    def __init__(self, stage: str, record: str, original: BaseException) -> None:
        self.stage = stage
        self.record = record
        self.original = original
        self.traceback_text: str | None = None  # set when the stage ran in another process
        super().__init__(
            f"stage {stage!r} failed for parameter set {record!r}: "
            f"{type(original).__name__}: {original}",
            hint="finished stages stay cached; fix the stage and run again to resume.",
        )


class RunFunctionError(StageError):
    """The experiment's own `run()` raised outside any stage."""

    def __init__(self, experiment: str, original: BaseException) -> None:
        CurifactoryError.__init__(
            self,
            f"run() of experiment {experiment!r} raised {type(original).__name__}: {original}",
            hint="stage calls inside run() only build the stage graph: values are not "
            "available in record.state until the stages have run.",
        )
        self.stage, self.record, self.original = "run", "(experiment)", original


def exit_code_for(exc: BaseException) -> ExitCode:
    """The single place where exceptions become exit codes."""
    if isinstance(exc, Terminated):
        return ExitCode.TERMINATED
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, CurifactoryError):
        return exc.exit_code
    return ExitCode.STAGE_FAILED


def close_matches_hint(name: str, available: list[str], what: str, listing: str) -> str:
    """A hint naming the closest candidates, or how to list them all."""
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
    if close:
        return "did you mean " + ", ".join(repr(c) for c in close) + "?"
    if available:
        shown = ", ".join(sorted(available)[:8]) + (", ..." if len(available) > 8 else "")
        return f"known {what}: {shown} ({listing})."
    return f"no {what} found ({listing})."
