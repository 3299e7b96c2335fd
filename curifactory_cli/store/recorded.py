"""The runs the registry recorded, as the cache commands read them: only what they need
(which entries a run's stage calls used; who made an entry), named here so the store does
not import the registry above it. `registry.records.RunRecord` and `RunRegistry` fit these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class RecordedCall(Protocol):
    """A stage call of a run: the cache entry it computed or read (by key and folder), and
    the parameter set it was a call of."""

    @property
    def record(self) -> str: ...

    @property
    def key(self) -> str | None: ...

    @property
    def entry(self) -> str | None: ...


class RecordedHost(Protocol):
    @property
    def host(self) -> str | None: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def platform(self) -> str | None: ...


class JsonDocument(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class RecordedRun(Protocol):
    """A run: its identity, cache, status and stage calls (None: not read), and where and
    from which commit it ran."""

    @property
    def reference(self) -> str: ...

    @property
    def experiment(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def started(self) -> str: ...

    @property
    def command(self) -> Sequence[str]: ...

    @property
    def cache_dir(self) -> str: ...

    @property
    def host(self) -> RecordedHost: ...

    @property
    def git(self) -> JsonDocument: ...

    @property
    def versions(self) -> Mapping[str, str] | None: ...

    @property
    def stages(self) -> Sequence[RecordedCall] | None: ...


class RunSource(Protocol):
    """The run registry, read: its runs newest first, and one run by reference."""

    @property
    def path(self) -> Path: ...

    def list_runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = 50,
        brief: bool = False,
    ) -> Sequence[RecordedRun]: ...

    def get_run(self, reference: str, stages: bool = True) -> RecordedRun: ...
