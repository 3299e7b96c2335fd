"""curifactory_cli: run Curifactory-style experiments from the command line, cache-correct.

`import curifactory_cli as cf` gives the experiment API (`cf.stage`, `cf.aggregate`, `cf.Lazy`,
`cf.Record`, `cf.ArtifactManager`, `cf.ExperimentParameters`). Names are imported on first
use, so importing the package (and `curi --help`) stays fast and never loads pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from curifactory_cli._version import __version__

_EXPORTS = {
    "stage": "curifactory_cli.staging",
    "aggregate": "curifactory_cli.staging",
    "Lazy": "curifactory_cli.caching",
    "Record": "curifactory_cli.record",
    "ArtifactManager": "curifactory_cli.manager",
    "ExperimentParameters": "curifactory_cli.params",
    "set_hash_functions": "curifactory_cli.hashing",
    "RunOptions": "curifactory_cli.run.runner",
    "RunResult": "curifactory_cli.run.runner",
    "run_experiment": "curifactory_cli.run.runner",
    "InputSignatureError": "curifactory_cli.errors",
    "OutputSignatureError": "curifactory_cli.errors",
    "CachersMismatchError": "curifactory_cli.errors",
    "EmptyCachersError": "curifactory_cli.errors",
    "CurifactoryError": "curifactory_cli.errors",
    "Procedure": "curifactory_cli.procedure",
}

# Submodules Curifactory code reaches as attributes: `cf.reporting.JsonReporter(...)`.
_SUBMODULES = frozenset(
    {"caching", "experiment", "hashing", "manager", "params", "procedure", "record"}
    | {"reporting", "staging", "utils"}
)

__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from curifactory_cli.caching import Lazy
    from curifactory_cli.errors import (
        CachersMismatchError,
        CurifactoryError,
        EmptyCachersError,
        InputSignatureError,
        OutputSignatureError,
    )
    from curifactory_cli.hashing import set_hash_functions
    from curifactory_cli.manager import ArtifactManager
    from curifactory_cli.params import ExperimentParameters
    from curifactory_cli.record import Record
    from curifactory_cli.run.runner import RunOptions, RunResult, run_experiment
    from curifactory_cli.staging import aggregate, stage


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"curifactory_cli.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'curifactory_cli' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
