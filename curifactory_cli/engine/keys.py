"""The two keys of a stage call.

* the **data key**: params hash, stage name, code fingerprint, cachers, output names, keyword
  arguments, and the *data versions* (checksums) of its inputs. A re-run that reproduces
  byte-identical outputs leaves its dependants' data keys unchanged (early cutoff).
* the **lineage key**: the same, but with the *lineage keys* of its upstream stages instead
  of their data versions. It is computable without any data, so a stage whose upstream entry
  was deleted can still be found in the cache without re-running the upstream stage.

Nothing here depends on the machine or the project's absolute path: a cache computed in one
checkout is valid in another, and on another worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from curifactory_cli.engine.file_digests import FileDigests
from curifactory_cli.engine.sharing import probe_parts
from curifactory_cli.errors import CurifactoryError
from curifactory_cli.graph import OutputRef, entry_namespace
from curifactory_cli.hashing import (
    canonical_json,
    digest,
    hash_value,
    param_set_representation,
)

if TYPE_CHECKING:
    from curifactory_cli.fingerprint import CodeFingerprinter
    from curifactory_cli.graph import Node

KEY_FORMAT = 1
_CACHER_PRIVATE = {"path", "metadata", "extra_metadata", "record", "stage", "name", "_curi_loader"}

Version = Callable[[OutputRef], "str | None"]


def cacher_type(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def cacher_id(template: Any) -> Any:
    """What identifies a cacher in a key: its type, and the options of an instance."""
    cls = template if isinstance(template, type) else type(template)
    ident: dict[str, Any] = {"type": cacher_type(cls)}
    if not isinstance(template, type):
        config = {k: v for k, v in vars(template).items() if k not in _CACHER_PRIVATE}
        try:
            ident["config"] = hash_value(config, "cacher options")
        except CurifactoryError:
            ident["config"] = repr(sorted(config))
    return ident


def params_json(params: Any) -> Any:
    """A JSON-friendly view of a parameter set for metadata (name included)."""
    if params is None:
        return None
    data = getattr(params, "_data", None)
    if data is None:
        try:
            data = param_set_representation(params)
        except CurifactoryError:
            data = {"repr": repr(params)}
    return {"name": getattr(params, "name", None), **data}


def known_version(ref: OutputRef) -> str | None:
    """An input's data version as the run knows it (None until its producer settled)."""
    return ref.version


def memory_version(key: str, output: str) -> str:
    """An in-memory output has no bytes to checksum: its version is derived from its key."""
    return digest(f"memory:{key}:{output}")


class KeyMaker:
    """Computes keys of the nodes of one graph; the parts that need no inputs are memoised."""

    def __init__(
        self, experiment: str, fingerprinter: CodeFingerprinter, write_memo: bool = True
    ) -> None:
        self.experiment = experiment
        self.fingerprinter = fingerprinter
        self.files = FileDigests(fingerprinter.root, write=write_memo)
        self._bases: dict[int, dict[str, Any]] = {}

    def base(self, node: Node) -> dict[str, Any]:
        """Every key part except the inputs."""
        found = self._bases.get(node.index)
        if found is None:
            spec = node.stage
            found = {
                "format": KEY_FORMAT,
                "experiment": entry_namespace(node, self.experiment),
                "stage": spec.name,
                "params": node.record.get_hash(),
                "code": self.fingerprinter.fingerprint(spec.fn),
                "outputs": [ref.name for ref in node.outputs],
                "cachers": [cacher_id(t) for t in node.cacher_templates or []],
            }
            if node.kwargs:
                found["kwargs"] = hash_value(node.kwargs, f"keyword arguments of {spec.name!r}")
            if spec.depends_on:  # only then: keys of other stages stay as they were
                found["files"] = self.files.digests(spec.depends_on, spec.name)
            if spec.is_aggregate:  # the records it is given, in their order
                found["records"] = [r.get_hash() for r in node.record.input_records]
            self._bases[node.index] = found
        return found

    def forget(self, node: Node) -> None:
        """Drop what is memoised for a settled call (made again if it is ever keyed again)."""
        self._bases.pop(node.index, None)

    @staticmethod
    def input_parts(node: Node, version: Version) -> dict[str, Any]:
        """Input name -> what identifies its data (`version(ref)` for an artifact); an
        aggregate's, per record by its position in the records it is given (their order is
        the `records` key part)."""
        inputs: dict[str, Any] = {
            name: _input_part(node, src, version) for name, src in node.inputs.items()
        }
        if node.aggregate_inputs:
            positions = {id(r): i for i, r in enumerate(node.record.input_records)}
            for name, pairs in node.aggregate_inputs.items():
                inputs[name] = sorted(
                    [positions.get(id(rec), -1), _input_part(node, src, version)]
                    for rec, src in pairs
                )
        return inputs

    def data_key(self, node: Node, version: Version) -> tuple[dict[str, Any], str, str]:
        """The data key's parts, the key, and what its probe digests: every part but the
        parameters (see engine.sharing; digested only when a call misses or runs), from one
        encoding of the parts."""
        parts = {**self.base(node), "inputs": self.input_parts(node, version)}
        text = canonical_json(parts)
        if "records" in parts:  # an aggregate
            return parts, digest(text), canonical_json(probe_parts(parts))
        # Keys are sorted, and "stage" follows "params": leaving out `"params":<hash>,` is
        # the encoding of the parts without it.
        probe_source = text.replace(f'"params":"{parts["params"]}",', "", 1)  # a hex digest
        return parts, digest(text), probe_source

    def lineage_probe(self, node: Node, probes: Callable[[Node], str]) -> str:
        """The lineage key but the parameters, of the call and of every call upstream of it:
        the same for calls of two sets that compute the same thing if they read the same
        values (how `curi plan` tells which calls a run may share: engine.sharing)."""
        parts = {k: v for k, v in self.base(node).items() if k != "params"}
        parts["inputs"] = self.input_parts(node, lambda ref: f"{probes(ref.node)}:{ref.name}")
        parts["lineage"] = True
        return digest(canonical_json(parts))

    def lineage_key(self, node: Node, lineage: Callable[[Node], str | None]) -> str:
        parts = {
            **self.base(node),
            "inputs": self.input_parts(node, lambda ref: f"{lineage(ref.node)}:{ref.name}"),
            "lineage": True,
        }
        return digest(canonical_json(parts))


def _input_part(node: Node, src: Any, version: Version) -> Any:
    """What identifies one input's data: its version, or a given value's hash."""
    if isinstance(src, OutputRef):
        return version(src)
    return "value:" + hash_value(src, f"input of {node.stage.name!r}")
