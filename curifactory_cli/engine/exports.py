"""Files a stage's cacher keeps at its `path_override` (Curifactory's templates, such as
`JsonCacher(path_override="data/{params.a}_thing.json")`), where other tools read them.

The output is saved into its cache entry as any other (checksummed, published in one
rename); the file at the path is a copy of the entry's, so the entry stays the source of
truth: it is what later stages load. Each call that uses the entry, executed or cached,
makes sure its copy is there and byte-identical to the entry's file (same size and sha256,
the checksums the entry records); a copy that is missing or was changed by hand is written
again from the entry (verified first), through a temporary file renamed into place, so it
is never half-written. The producing call's copies are recorded in its entry's metadata
(`outputs.<name>.exported`: path, the entry file it copies, size and sha256).

A path stays inside the folder its template names before its first field (the project's
folder for a template such as `{params.a}.json`): a parameter value cannot move it
elsewhere (`../..`). The template's own literal part is the user's choice, an absolute
path included. Nothing is copied by a dry run (`--dry`, `--dry-cache`): it writes nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curifactory_cli.atomic import atomic_path
from curifactory_cli.cacher_support import bind, without_extension
from curifactory_cli.caching import new_cacher
from curifactory_cli.errors import CacheError, GraphError
from curifactory_cli.store import verify_files
from curifactory_cli.store.file_checks import file_sha256

if TYPE_CHECKING:
    from collections.abc import Callable

    from curifactory_cli.graph import Node
    from curifactory_cli.store.base import Store


@dataclass(frozen=True)
class Export:
    """One output's file at its path_override: `target` (absolute) copies entry file `source`."""

    output: str
    source: str  # relative to the entry
    target: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.target, "from": self.source, "size": self.size, "sha256": self.sha256}


def export_targets(node: Node, root: str) -> dict[str, str]:
    """Each output of `node` whose cacher has a path_override: its filled-in path (absolute).
    A path a parameter value moves out of its template's folder is a GraphError."""
    targets: dict[str, str] = {}
    for ref, template in zip(node.outputs, node.cacher_templates or ()):
        override = getattr(template, "path_override", None)
        if override is None:
            continue
        cacher = new_cacher(template)
        cacher.record, cacher.name, cacher.stage = node.record, ref.name, node.stage.name
        pattern = os.fspath(override)
        filled = cacher._resolve_path_template(pattern)
        target = os.path.normpath(os.path.join(root, os.path.expanduser(filled)))
        literal = pattern.split("{", 1)[0] if "{" in pattern else pattern
        base = os.path.normpath(os.path.join(root, os.path.expanduser(os.path.dirname(literal))))
        if not target.startswith(base.rstrip(os.sep) + os.sep):
            raise GraphError(
                f"stage {node.stage.name!r} ({node.record_name}), output {ref.name!r}: "
                f"path_override {pattern!r} gives {filled!r}, outside {base}",
                hint="a parameter value cannot move the file out of the folder the template "
                "names; write that folder in the template itself if it is meant.",
            )
        targets[ref.name] = target
    return targets


def exports_of(node: Node, targets: dict[str, str], outputs: dict[str, Any]) -> list[Export]:
    """The copies to keep: for each output with a target, its entry files that belong to the
    cacher's path (the file, and its siblings from `get_path(suffix)`/`get_dir()`), each
    mapped to the same place beside the target."""
    exports: list[Export] = []
    for ref, template in zip(node.outputs, node.cacher_templates or ()):
        target = targets.get(ref.name)
        if target is None:
            continue
        cacher = new_cacher(template)
        bind(cacher, _ENTRY, ref.name)  # paths only: where the file is inside any entry
        main = os.path.relpath(str(cacher._path), _ENTRY).replace(os.sep, "/")
        stem = without_extension(main, cacher.extension)
        target_stem = without_extension(target, cacher.extension)
        for info in outputs[ref.name].get("files") or ():
            rel = str(info["path"])
            if rel == main:
                where = target
            elif rel.startswith(stem):
                where = target_stem + rel[len(stem) :]
            else:
                continue
            size, sha = int(info.get("size", 0)), str(info.get("sha256"))
            exports.append(Export(ref.name, rel, where, size, sha))
    return exports


_ENTRY = os.path.join(os.sep, "entry")


def claim(claims: dict[str, tuple[str, str]], exports: list[Export], label: str) -> None:
    """Note the copies one call keeps (`claims`: path -> (sha256, call), for one run); two
    calls wanting different files at one path is a GraphError naming both (each would
    replace the other's copy, and every run would find one of them changed)."""
    for export in exports:
        held = claims.get(export.target)
        claims[export.target] = (export.sha256, label)
        if held is not None and held[0] != export.sha256 and held[1] != label:
            raise GraphError(
                f"{label} and {held[1]} both keep a different file at {export.target} "
                "(their cachers' path_override)",
                hint="put a field that tells them apart in the path_override, such as "
                "{params.name} or {hash}.",
            )


def keep_exports(
    store: Store,
    location: str,
    exports: list[Export],
    warn: Callable[[str], None] | None,
) -> None:
    """Make each copy byte-identical to its entry file: left alone when it is, else written
    again from the (verified) entry. `warn` says when a copy was missing or had changed
    (None: the call just produced the entry; its copies are new)."""
    fetched = False
    for export in exports:
        state = _state(export)
        if state == "same":
            continue
        if not fetched:
            store.materialize(location)
            fetched = True
        info = {"path": export.source, "size": export.size, "sha256": export.sha256}
        verify_files(location, [info])
        try:
            with atomic_path(export.target, durable=True) as tmp:
                shutil.copyfile(os.path.join(location, export.source), tmp)
        except OSError as exc:
            raise CacheError(
                f"cannot write {export.target}, the copy of output {export.output!r} at its "
                f"path_override: {exc.strerror or exc}",
                hint="the output is cached; check the folder's permissions and free space, "
                "then run again to write the copy.",
            ) from None
        if warn is not None:
            what = "was missing" if state == "missing" else "had changed"
            warn(f"{export.target} {what}: written again from its cache entry ({location})")


def _state(export: Export) -> str:
    try:
        size = os.path.getsize(export.target)
    except OSError:
        return "missing"
    if size == export.size and file_sha256(export.target) == export.sha256:
        return "same"
    return "changed"
