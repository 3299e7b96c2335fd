"""What the graph needs of a stage declaration and of a record, as protocols: the graph sits
below `staging` and `record`, which build it, so it names them by what they offer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class StageLike(Protocol):
    """A stage as declared by its decorator (staging.StageSpec)."""

    @property
    def fn(self) -> Callable[..., Any]: ...
    @property
    def name(self) -> str: ...
    @property
    def ref(self) -> str: ...
    @property
    def is_aggregate(self) -> bool: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def params(self) -> str | None: ...  # "all": keyed on the whole parameter set
    @property
    def resources(self) -> dict[str, float] | None: ...  # Dask worker resources; not keyed


class RecordLike(Protocol):
    """A record: one parameter set's state through a run (record.Record)."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> Any: ...
    @property
    def manager(self) -> Any: ...
    @property
    def reportables(self) -> list[Any]: ...
    @property
    def input_records(self) -> Sequence[Any]: ...

    def get_hash(self) -> str: ...
