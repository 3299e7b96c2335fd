"""Parameter sets: the `ExperimentParameters` base that typed sets subclass, and
Curifactory's names for parameters (`set_hash_functions`).

Reading parameter files (YAML sets, defaults and grids; a Python `get_params()`), checking
values against a class's annotations and `--set` overrides live in `curifactory_cli.parameters`;
their public names are importable from here as well.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from curifactory_cli.hashing import (
    MAX_DEPTH,
    PARAMETERS_BLACKLIST,
    hash_breakdown,
    hash_params,
    param_fields,
    set_hash_functions,
)
from curifactory_cli.hashing import MAX_NODES as MAX_VALUES
from curifactory_cli.parameters.files import RESERVED_TOP_KEYS, load_yaml_sets, sets_from_objects
from curifactory_cli.parameters.overrides import OverrideUse, parse_override
from curifactory_cli.parameters.sets import Params, ParamSet, display_values

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "PARAMETERS_BLACKLIST",
    "RESERVED_TOP_KEYS",
    "ExperimentParameters",
    "OverrideUse",
    "ParamSet",
    "Params",
    "display_values",
    "hash_breakdown",
    "hash_params",
    "load_yaml_sets",
    "param_fields",
    "parse_override",
    "set_hash_functions",
    "sets_from_objects",
]


@dataclass
class ExperimentParameters:
    """Base class for typed parameter sets (subclass it as a `@dataclass`)."""

    name: str = "UNNAMED"
    hash: str | None = None
    overwrite: bool = False
    hash_representations: dict[str, Any] = field(default_factory=dict, repr=False)

    # A run gives the set its hash once computed (`params.hash`, as in Curifactory). A class
    # attribute, not a field: run.param_sets looks for it, as it cannot import this class.
    _keeps_run_hash = True

    def __post_init__(self) -> None:
        # `field(default_factory=lambda: set_hash_functions(...))` leaves a field object
        # here (set_hash_functions is itself the field default): use what it stands for.
        reps = self.hash_representations
        if isinstance(reps, dataclasses.Field) and callable(reps.default_factory):
            self.hash_representations = reps.default_factory()

    def params_hash(self, dry: bool = False) -> Any:
        """The set's parameter hash (its name and built-in fields excluded); with `dry`, how
        each field takes part in it, as Curifactory shows it: {field: (how, hashed value)}."""
        if dry:
            return hash_breakdown(self)
        if self.hash is None:
            self.hash = hash_params(self, f"parameter set {self.name!r}")
        return self.hash
