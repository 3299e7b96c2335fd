"""`Procedure` (Curifactory's `curifactory.procedure`): a list of stages run one after another
on a record made for each parameter set, so `run()` needs no record plumbing.

    procedure = Procedure([get_data, train, evaluate], manager)
    for params in param_sets:
        procedure.run(params)

Ported from Curifactory 0.20 (BSD-3): the same arguments, records and return value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curifactory_cli.record import Record

__all__ = ["NoArtifactManagerError", "Procedure"]


class NoArtifactManagerError(Exception):
    """A procedure was run without a manager: give one to Procedure() or to run()."""


class Procedure:
    """Stages run in order on one record per parameter set.

    Args:
        stages: the stage functions, in order; the first may be an aggregate.
        manager: the ArtifactManager (may instead be given to `run()`).
        name: a name for the procedure.
        previous_proc: a procedure whose records the first stage (an aggregate) covers.
        records: the records the first stage (an aggregate) covers.
    """

    def __init__(
        self,
        stages: list[Callable[..., Any]],
        manager: Any = None,
        name: str | None = None,
        previous_proc: Procedure | None = None,
        records: list[Record] | None = None,
    ) -> None:
        self.name = name
        self.stages = stages
        self.record: Record | None = None
        self.manager = manager
        self.records: list[Record] = []  # every record run through this procedure
        self.previous_proc = previous_proc
        self.use_records = records

    def run(
        self,
        param_set: Any,
        record: Record | None = None,
        hide: bool = False,
        manager: Any = None,
        records: list[Record] | None = None,
    ) -> Any:
        """Run the stages on a new record for `param_set` (or on `record`); returns what the
        last stage returned (the record)."""
        if self.manager is None:
            if manager is None:
                raise NoArtifactManagerError(
                    "This procedure does not have an artifact manager. Either initialize it "
                    "with one, or call with `proc.run(manager=...)`"
                )
            self.manager = manager
        if records is not None:
            self.use_records = records
        if record is None:
            self.record = Record(self.manager, param_set, hide=hide)
            self.records.append(self.record)
        else:
            self.record = record
        output: Any = None
        for index, stage in enumerate(self.stages):
            if index == 0 and self.previous_proc is not None:
                output = stage(self.record, self.previous_proc.records)
            elif index == 0 and self.use_records is not None:
                output = stage(self.record, self.use_records)
            else:
                output = stage(self.record)
        return output
