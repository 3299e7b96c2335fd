"""What a stage call returned, kept: paths into its draft folder pointed at the entry it
becomes, its reportables rendered into it, each output saved through its cacher and described
(files, checksums, version), and the files uploaded when the job names a remote store.
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
from typing import Any

from curifactory_cli.caching import TRACKED_WRITERS, Cacheable, json_safe
from curifactory_cli.engine.jobs import Failure, Job, JobResult, stage_failure
from curifactory_cli.engine.keys import cacher_type
from curifactory_cli.engine.pickled import pickled_classes
from curifactory_cli.errors import CacheError, CurifactoryError
from curifactory_cli.hashing import canonical_json, digest
from curifactory_cli.metrics import METRICS_FILE, dump_metrics
from curifactory_cli.store import describe_files, discard_draft, fault_point, written_files
from curifactory_cli.store.ref import RemoteRef


def relocated(
    job: Job, record: Any, reported: int, draft: str, values: list[Any], cachers: list[Cacheable]
) -> tuple[list[Any], bool]:
    """The returned values with their staged paths moved (see relocate_staged_paths), and
    whether the draft folder need not be listed afterwards (`tracked`)."""
    # Whether a path into the draft folder reached the stage (record.get_path(), a
    # cacher's path): only then can its values hold one, or its code write files there.
    handed_out = getattr(record, "_paths_given", True) or any(
        getattr(c, "_paths_given", True) for c in cachers
    )
    # Else, with only cachers that checksum all they write, the folder need not be
    # listed afterwards.
    tracked = (
        not handed_out
        and not record.reportables[reported:]
        and not getattr(record, "_call_metrics", None)
        and all(type(c) in TRACKED_WRITERS for c in cachers)
    )
    return relocate_staged_paths(job, draft, values, cachers, handed_out), tracked


def keep_outputs(
    job: Job,
    record: Any,
    reported: int,
    draft: str,
    cachers: list[Cacheable],
    result: JobResult,
    tracked: bool,
) -> bool:
    """Keep a call's outputs in its draft folder: the reportables it made since `reported`,
    each output saved through its cacher and described, uploaded when the job names a remote
    store. False when a reportable could not be rendered (`result.failure` says why; the
    draft folder is gone)."""
    result.draft = draft
    new_reportables = record.reportables[reported:]
    if new_reportables:
        # Kept with the entry: the driver reads them back from it, cached or not.
        del record.reportables[reported:]
        failure = _save_reportables(draft, new_reportables)
        if failure is not None:
            result.failure = failure
            result.draft = None
            discard_draft(draft)
            return False
    if result.metrics:
        # Kept with the entry (listed and checksummed with its files): a cached call has them.
        with open(os.path.join(draft, METRICS_FILE), "wb") as outfile:
            outfile.write(dump_metrics(result.metrics))
    _save_outputs(job, cachers, result, tracked)
    if job.upload is not None:
        _upload(job.upload, result)
    if not job.ship_values:
        result.values = [None] * len(result.values)  # the driver reads them from the entry
    return True


def _save_reportables(draft: str, reportables: list[Any]) -> Failure | None:
    """Render the stage's reportables into its entry; one that raises fails the stage, with
    the user's traceback, like the stage itself."""
    from curifactory_cli.reporting import save_reportables

    try:
        save_reportables(draft, reportables)
    except Exception as exc:
        return stage_failure(exc, " (rendering a reportable)")
    return None


def _upload(target: RemoteRef, result: JobResult) -> None:
    """Upload the staged outputs (not yet visible to anyone: the driver commits them)."""
    assert result.draft is not None
    files = [f for info in result.outputs_meta.values() for f in info["files"]]
    try:
        result.attempt = target.open().put_files(
            result.draft, target.path, files + result.extra_files
        )
    except CacheError as exc:
        result.upload_error = exc.message


def relocate_staged_paths(
    job: Job, draft: str, values: list[Any], cachers: list[Cacheable], handed_out: bool = True
) -> list[Any]:
    """The stage's returned values with every path into its draft folder pointed at the
    published entry instead.

    A path from record.get_path()/get_dir() or a cacher's get_path() is in the draft folder,
    which is renamed when the outputs are published: returned as it is, it would dangle for the
    stages that receive it and, once cached, on every later run. `str` and `pathlib` values are
    rewritten, also inside lists, tuples and dicts, before the outputs are saved.
    """
    final = job.entry_dir
    if final is None:
        return values
    for cacher in cachers:
        cacher._entry_dir = final  # PathRef accepts its own path, relocated
    if not handed_out:
        return values  # no path into the draft folder was handed out: none to find
    # The same folders as the user may spell them (os.path.abspath/realpath of a path).
    moves = {draft: final}
    for spell in (os.path.abspath, _realpath):
        moves.setdefault(spell(draft), spell(final))
    return [_relocate(value, moves, set()) for value in values]


def _realpath(path: str) -> str:
    """os.path.realpath of a draft or entry folder, resolving the folder two levels up once
    per process (a dozen lstat calls each time otherwise): the cache creates the two last
    levels itself, as folders, never links."""
    rest, name = os.path.split(os.path.abspath(path))
    folder, middle = os.path.split(rest)
    return os.path.join(_real_folder(folder), middle, name)


@functools.lru_cache(maxsize=1024)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _relocate(value: Any, moves: dict[str, str], active: set[int]) -> Any:
    """`value` with its staged paths moved; unchanged objects are returned as they are."""
    if isinstance(value, str):
        for staged, final in moves.items():
            if value == staged or value.startswith(staged + os.sep):
                return final + value[len(staged) :]
        return value
    if isinstance(value, pathlib.PurePath):
        moved = _relocate(str(value), moves, active)
        return value if moved == str(value) else type(value)(moved)
    # Only containers that can be rebuilt faithfully; a cycle or absurd depth stops the walk.
    rebuildable = type(value) in (list, tuple, dict) or (
        isinstance(value, tuple) and hasattr(value, "_make")  # a namedtuple
    )
    if not rebuildable or id(value) in active or len(active) > 100:
        return value
    active.add(id(value))
    try:
        return _relocate_items(value, moves, active)
    finally:
        active.discard(id(value))


def _relocate_items(value: Any, moves: dict[str, str], active: set[int]) -> Any:
    if isinstance(value, dict):
        pairs = list(value.items())
        moved = [(_relocate(k, moves, active), _relocate(v, moves, active)) for k, v in pairs]
        same = all(a is k and b is v for (a, b), (k, v) in zip(moved, pairs))
        return value if same else dict(moved)
    items = [_relocate(item, moves, active) for item in value]
    if all(a is b for a, b in zip(items, value)):
        return value
    if type(value) is list:
        return items
    return tuple(items) if type(value) is tuple else type(value)._make(items)


def _save_outputs(
    job: Job, cachers: list[Cacheable], result: JobResult, tracked: bool = False
) -> None:
    save_started = time.perf_counter()
    values = result.values
    for i, (name, cacher) in enumerate(zip(job.outputs, cachers)):
        try:
            cacher.save(values[i])
        except Exception as exc:
            what = f"stage {job.stage_name!r} ({job.record.name}), output {name!r}"
            if isinstance(exc, CurifactoryError):
                raise CacheError(f"{what}: {exc.message}", exc.hint) from exc
            raise CacheError(
                f"{what}: {type(cacher).__name__} could not save it: {type(exc).__name__}: {exc}",
                hint="pick a cacher that can store this value (PickleCacher stores most).",
            ) from exc
        if job.lazy[i]:
            values[i] = None  # drop the object as soon as it is on disk
    fault_point("after-data")
    assert result.draft is not None
    known: dict[str, tuple[int, int, str, bytes]] = {}
    for cacher in cachers:
        known.update(getattr(cacher, "_written", None) or {})
    files = written_files(result.draft, list(job.outputs), known) if tracked else None
    if files is None:
        files = describe_files(result.draft, list(job.outputs), known)
    for i, (name, cacher) in enumerate(zip(job.outputs, cachers)):
        own = files[name]
        cacher_name = cacher_type(type(cacher))
        identity: list[Any] = [cacher_name, [(f["path"][len(name) :], f["sha256"]) for f in own]]
        classes = pickled_classes(result.draft, own, job.code_root, known)
        if classes:
            # Editing such a class's methods changes what consumers compute from the same
            # bytes: it is part of the data's identity.
            identity.append(classes)
        version = digest(canonical_json(identity))
        result.outputs_meta[name] = {
            "cacher": cacher_name,
            "lazy": job.lazy[i],
            "version": version,
            "files": own,
            "extra": _extra_metadata(cacher),
        }
        if getattr(cacher, "track", True) is False:  # --store-full leaves its files out
            result.outputs_meta[name]["track"] = False
    result.extra_files = files[""]
    result.save_s = time.perf_counter() - save_started


def _extra_metadata(cacher: Cacheable) -> dict[str, Any]:
    """A cacher's own metadata as plain JSON (other objects as text, a circular one as its
    repr): the entry's metadata is written without a circular-reference check."""
    extra = cacher.extra_metadata
    if not extra:
        return {}
    plain = json_safe(extra)
    return plain if isinstance(plain, dict) else {"repr": plain}
