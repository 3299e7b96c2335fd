"""What the cache commands decide and return, as JSON-able data: one entry described in full
(`inspect`), the problems `verify` finds, what `gc` collects, what `invalidate` marks and
what `push` and `pull` move. The commands show it (cli/cache.py, cli/cache_views.py); nothing here
prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import ConfigError, CurifactoryError, close_matches_hint
from curifactory_cli.store import index
from curifactory_cli.store.entry import ENTRY_DIR_NAME, Entry, signature_problem
from curifactory_cli.store.file_checks import FileCheck

if TYPE_CHECKING:
    from curifactory_cli.store.local import LocalStore
    from curifactory_cli.store.recorded import RecordedRun
    from curifactory_cli.store.remote import FsspecStore
    from curifactory_cli.store.uses import UseBook

# run id -> the run registry's record of it (None when unknown)
RunLookup = Callable[[str], "RecordedRun | None"]

PROBLEM_KINDS = ("missing", "corrupt", "orphan_file", "orphan_dir")


# ---------------------------------------------------------------------------------- inspect
def inspect_data(
    store: LocalStore, entry: Entry, lineage: index.Lineage, lookup_run: RunLookup
) -> dict[str, Any]:
    """Everything `cache inspect` shows of one entry (its `--json` output)."""
    from curifactory_cli.store.uses import UseBook

    root = store.root
    meta = entry.meta
    checks = index.check_files(store, entry)
    return {
        "id": entry.short_id,
        "key": entry.key,
        "path": entry.rel(root),
        "directory": str(entry.directory),
        "experiment": entry.experiment,
        "stage": entry.stage,
        "stage_ref": meta.get("stage_ref"),
        "aggregate": bool(meta.get("aggregate")),
        "params": {
            "name": entry.params_name,
            "hash": entry.params_hash,
            "values": meta.get("params"),
            "input_records": meta.get("input_records") or [],
            # What the call read of them (None: made by a version that did not record it).
            "reads": meta.get("reads"),
        },
        # Every set that used it: the one it was computed for, then those served from it.
        "used_by": UseBook(store).users(entry),
        "invalidated": entry.invalidated,
        "key_parts": meta.get("key_parts"),
        "lineage_key": meta.get("lineage_key"),
        "outputs": {
            name: {k: out.get(k) for k in ("cacher", "lazy", "version", "extra")}
            for name, out in entry.outputs.items()
        },
        "files": [c.to_json() for c in checks],
        "orphan_files": store.orphan_files(entry),
        "files_ok": all(c.status == "ok" for c in checks),
        "size": entry.size,
        "created": entry.created,
        **run_provenance(meta, lookup_run),
        "timings": meta.get("timings"),
        "upstream": lineage.upstream(entry),
        "downstream": lineage.downstream(entry),
    }


def run_provenance(meta: dict[str, Any], lookup_run: RunLookup) -> dict[str, Any]:
    """The run that made an entry ({run, git, versions}): an entry names its run, whose
    command, commit and library versions the run registry keeps once (an entry written by
    another machine's run, in a shared cache, names just the run and its host)."""
    run = dict(meta["run"]) if isinstance(meta.get("run"), dict) else {}
    git, versions = meta.get("git"), meta.get("versions")  # entries of older versions
    recorded = None
    if isinstance(run.get("id"), str) and (git is None or versions is None):
        try:
            recorded = lookup_run(run["id"])
        except (CurifactoryError, OSError):
            recorded = None
    if recorded is not None:
        _fill_from_registry(run, recorded)
        git = git if git is not None else recorded.git.to_json()
        versions = versions if versions is not None else recorded.versions
    return {"run": run or None, "git": git, "versions": versions}


def _fill_from_registry(run: dict[str, Any], recorded: RecordedRun) -> None:
    host = recorded.host
    run.setdefault("started", recorded.started)
    run.setdefault("command", list(recorded.command))
    for name, value in (("host", host.host), ("pid", host.pid), ("platform", host.platform)):
        if value is not None:
            run.setdefault(name, value)


# ---------------------------------------------------------------------------------- verify
def filtered_orphans(
    store: LocalStore, experiment: str | None, stage: str | None, params: str | None
) -> list[Path]:
    """Entry-like folders without metadata; they have no parameter set name, so `--params`
    matches only a hash prefix (the folder's parent)."""
    wanted = index.experiment_name(experiment) if experiment else None
    out = []
    for path in store.orphan_dirs():
        rel = path.relative_to(store.root).as_posix()
        named = ENTRY_DIR_NAME.match(path.name)
        if wanted and not rel.startswith(wanted + "/"):
            continue
        if stage and (named is None or named["stage"] != stage):
            continue
        if params and not path.parent.name.startswith(params):
            continue
        out.append(path)
    return out


def verify(
    store: LocalStore, entries: list[Entry], orphan_dirs: list[Path]
) -> tuple[list[dict[str, Any]], list[Entry], list[PurePath]]:
    """Problems found (JSON-able), entries to remove, and stray files in good entries."""
    problems: list[dict[str, Any]] = []
    bad: list[Entry] = []
    stray: list[PurePath] = []
    for entry in entries:
        found, damaged, unlisted = _entry_problems(store, entry)
        problems += found
        if damaged:
            bad.append(entry)
        else:  # files no metadata lists, in an entry that is otherwise fine
            stray += [entry.directory / rel for rel in unlisted]
    for path in orphan_dirs:
        problems.append(problem(store.root, "orphan_dir", path, None, "no readable meta.json"))
    return problems, bad, stray


def _entry_problems(
    store: LocalStore, entry: Entry
) -> tuple[list[dict[str, Any]], bool, list[str]]:
    """One entry's problems, whether they damage it (a file missing or changed, or a
    signature that does not match), and the files in it that its metadata does not list."""
    root = store.root
    checks: list[FileCheck] = index.check_files(store, entry)
    broken = [c for c in checks if c.status != "ok"]
    found = [
        problem(
            root,
            "missing" if c.status == "missing" else "corrupt",
            entry.directory / c.path,
            entry,
            c.detail,
        )
        for c in broken
    ]
    unsigned = signature_problem(entry.meta)
    if unsigned:  # only checked when CURI_CACHE_KEY is set
        found.append(problem(root, "corrupt", entry.directory / "meta.json", entry, unsigned))
    unlisted = store.orphan_files(entry)
    for rel in unlisted:
        found.append(problem(root, "orphan_file", entry.directory / rel, entry, "not in meta.json"))
    return found, bool(broken or unsigned), unlisted


def problem(
    root: Path, kind: str, path: PurePath, entry: Entry | None, detail: str
) -> dict[str, Any]:
    return {
        "kind": kind,
        "path": path.relative_to(root).as_posix(),
        "id": entry.short_id if entry else None,
        "entry": entry.label() if entry else None,
        "detail": detail,
    }


def problem_counts(problems: list[dict[str, Any]]) -> dict[str, int]:
    return {kind: sum(p["kind"] == kind for p in problems) for kind in PROBLEM_KINDS}


def removal_reasons(problems: list[dict[str, Any]]) -> dict[str, str]:
    """Entry id -> why `verify --fix` removed it (its first problem), so that the next plan
    and run say why these entries are missing."""
    why: dict[str, str] = {}
    for p in problems:
        if p["id"] and p["kind"] in ("missing", "corrupt"):
            file = p["path"].rsplit("/", 1)[-1]
            why.setdefault(p["id"], f"{p['kind']} {file}")
    return why


# ---------------------------------------------------------------------------------- gc
def garbage(
    store: LocalStore, now: float, older_than: str | None, keep_latest: int | None
) -> list[index.Garbage]:
    """What `cache gc` removes: leftovers of interrupted runs and orphaned folders always;
    entries older than `older_than` or beyond the `keep_latest` newest, when asked."""
    found = index.leftovers(store, now) + index.orphans(store, now)
    if older_than is None and keep_latest is None:
        return found
    every = list(store.entries())
    picked: list[index.Garbage] = []
    if older_than is not None:
        picked += index.older_than(every, index.parse_duration(older_than), now)
    if keep_latest is not None:
        picked += index.superseded(every, keep_latest)
    seen = set()
    for g in picked:  # an entry both old and superseded is listed once
        if g.path not in seen:
            seen.add(g.path)
            found.append(g)
    return found


# ---------------------------------------------------------------------------------- invalidate
def invalidation_targets(
    store: LocalStore,
    every: list[Entry],
    experiment: str,
    stage: str | None,
    params: str | None,
    book: UseBook | None = None,
) -> tuple[list[Entry], dict[str, str]]:
    """The entries `cache invalidate` names (their descendants are added by the lineage):
    with `-p SET`, the set's own and those of other sets its calls used (entry key -> the
    set whose folder holds it); none is an error that lists what there is."""
    from curifactory_cli.store.uses import with_shared

    mine = index.select(every, experiment)
    if not mine:
        known = sorted({e.experiment for e in every})
        hint = close_matches_hint(experiment, known, "experiments", "`curi cache ls`")
        raise ConfigError(f"no cached entries of experiment {experiment!r}", hint=hint)
    matched, shared_from = with_shared(
        store,
        index.select(mine, None, stage, params),
        index.experiment_name(experiment),
        stage,
        params,
        book,
    )
    if not matched:
        stages = sorted({e.stage for e in mine})
        sets = sorted({e.params_name for e in mine})
        raise ConfigError(
            f"no cached entries of experiment {experiment!r} match the filters",
            hint=f"its stages: {', '.join(stages)}; its parameter sets: {', '.join(sets)}.",
        )
    return matched, shared_from


# ---------------------------------------------------------------------------------- push, pull
def missing_from(
    source: LocalStore | FsspecStore,
    target: LocalStore | FsspecStore,
    chosen: Callable[[], Iterable[Entry]],
) -> list[Entry]:
    """The entries of `source` that `chosen()` lists and `target` lacks (or holds another
    version of); invalidated ones are not moved. `target` is listed first."""
    there = {e.rel(target.root): e.key for e in target.entries()}
    return [e for e in chosen() if there.get(e.rel(source.root)) != e.key and not e.invalidated]
