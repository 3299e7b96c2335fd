"""A run as the registry records it: its stage calls, its parameter sets and files, and what
it moved to and from a remote tier."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curifactory_cli.graph import Node, Outcome
from curifactory_cli.params import ParamSet, display_values
from curifactory_cli.registry.records import ParamFileRecord, ParamSetRecord, StageRecord


def param_files(param_sets: list[ParamSet]) -> list[ParamFileRecord]:
    files: dict[str, list[ParamSetRecord]] = {}
    for p in param_sets:
        files.setdefault(p.source, []).append(ParamSetRecord(name=p.name, hash=p.hash))
    return [ParamFileRecord(path, sets) for path, sets in files.items()]


def param_set_records(param_sets: list[ParamSet]) -> list[ParamSetRecord]:
    """The sets a run ran with: name, hash, the file they came from and their values."""
    return [
        ParamSetRecord(name=p.name, hash=p.hash, source=p.source, values=display_values(p.params))
        for p in param_sets
    ]


def transfer_counts(remote: dict[str, Any] | None) -> dict[str, int]:
    """What came from (and went to) a remote tier, as the registry's counts keep it."""
    if remote is None:
        return {}
    out = {}
    for way in ("pulled", "pushed"):
        out[way] = remote[way]["entries"]
        out[f"{way}_bytes"] = remote[way]["bytes"]
    return out


def stage_row(node: Node, cache: Path | str) -> StageRecord:
    """A stage call as the registry records it (and the report draws it)."""
    upstream = node.upstream()
    if len(upstream) == 1:  # most calls: no set to build
        inputs = [upstream[0].node.index]
    else:
        inputs = sorted({ref.node.index for ref in upstream})
    return StageRecord(
        stage=node.stage.name,
        record=node.record.name,
        outcome=(node.outcome or Outcome.SKIPPED).value,
        reason=node.reason,
        seconds=round(node.seconds, 4),
        key=node.key,
        entry=_relative(node.entry_dir, _prefix(cache)),
        inputs=inputs,
        aggregate=node.stage.is_aggregate,
        metrics=node.metrics,
        outputs=_versions(node),
    )


def _versions(node: Node) -> dict[str, str] | None:
    """The data versions of a settled call's outputs, when they are checksums of files (a
    call without cachers has versions derived from its key: nothing to compare bytes by)."""
    if not node.is_cached_stage or node.outcome not in _SETTLED:
        return None
    found = {ref.name: ref.version for ref in node.outputs if ref.version is not None}
    return found or None


_SETTLED = (Outcome.EXECUTED, Outcome.CACHED)


def stage_code(nodes: list[Node], fingerprinter: Any) -> dict[str, dict[str, str]]:
    """Each stage's code fingerprints by part (its function, and the helpers and constants
    it uses), as the run's keys were made from them: one breakdown per stage, not per call
    (the fingerprinter keeps them)."""
    code: dict[str, dict[str, str]] = {}
    for node in nodes:
        name = node.stage.name
        if name not in code:
            code[name] = fingerprinter.breakdown(node.stage.fn)
    return code


@functools.lru_cache(maxsize=8)
def _prefix(root: Path | str) -> str:
    return str(root).rstrip(os.sep) + os.sep  # string work: a Path per row is 30 us


def _relative(path: str | None, prefix: str) -> str | None:
    if not path:
        return None
    if path.startswith(prefix):
        return path[len(prefix) :].replace(os.sep, "/")
    return path


def entries_used(root: Path, experiment: str) -> Callable[[], dict[tuple[str, str], list[str]]]:
    """What the project's registry says each (set name, stage) of `experiment` used in
    earlier runs, read when first asked (a run none of whose sets misses never reads it)."""

    def read() -> dict[tuple[str, str], list[str]]:
        from curifactory_cli.errors import CurifactoryError
        from curifactory_cli.registry.database import RunRegistry, registry_path

        try:
            return RunRegistry(registry_path(root), read_only=True).entries_used(experiment)
        except CurifactoryError:  # an unreadable registry only makes a reason vaguer
            return {}

    return read
