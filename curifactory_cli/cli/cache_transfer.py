"""`curi cache push` and `curi cache pull`: move entries between the local cache and a remote
one, each verified before it is kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from curifactory_cli.cli.cache_args import remote_pair, select_entries
from curifactory_cli.cli.common import (
    CacheOpt,
    ExperimentFilter,
    JsonOpt,
    ParamsFilter,
    RemoteOpt,
    StageFilter,
    console,
    fail,
)
from curifactory_cli.errors import CurifactoryError
from curifactory_cli.wording import plural

if TYPE_CHECKING:
    from curifactory_cli.store import LocalStore
    from curifactory_cli.store.entry import Entry
    from curifactory_cli.store.remote import FsspecStore


def cache_push(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    remote: RemoteOpt = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload local entries the remote cache lacks (all, or those matching the filters)."""
    from curifactory_cli.store.local_folder import UNPUSHED
    from curifactory_cli.store.reads_compact import copy_index
    from curifactory_cli.store.tiered import UNPUSHED_INDEX, push_entry
    from curifactory_cli.store.upkeep import missing_from

    local, shared = remote_pair(cache, remote)
    try:
        todo = missing_from(local, shared, lambda: _chosen(local, experiment, stage, params))
        pushed = sum(push_entry(local, shared, entry) for entry in todo)
        # Their lines of the reads index too: other sets on other machines share them.
        copy_index(local, shared, _experiment(experiment), target_remote=True)
    except CurifactoryError as exc:
        raise fail(exc) from None
    if not (experiment or stage or params):  # all there now: no run need upload them
        (local.root / UNPUSHED).unlink(missing_ok=True)
        (local.root / UNPUSHED_INDEX).unlink(missing_ok=True)
    _moved("pushed", pushed, len(todo), shared.url, as_json)


def cache_pull(
    experiment: ExperimentFilter = None,
    stage: StageFilter = None,
    params: ParamsFilter = None,
    remote: RemoteOpt = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Download remote entries the local cache lacks (all, or those matching the filters);
    every file is verified against its checksum (and signature) before it is kept."""
    from curifactory_cli.store.reads_compact import copy_index
    from curifactory_cli.store.tiered import pull_entry
    from curifactory_cli.store.upkeep import missing_from

    local, shared = remote_pair(cache, remote)
    try:
        todo = missing_from(shared, local, lambda: _chosen(shared, experiment, stage, params))
        local.prepare()
        for entry in todo:
            pull_entry(local, shared, entry)
        copy_index(shared, local, _experiment(experiment), target_remote=False)
    except CurifactoryError as exc:
        raise fail(exc) from None
    _moved("pulled", len(todo), len(todo), shared.url, as_json)


def _moved(verb: str, done: int, tried: int, url: str, as_json: bool) -> None:
    from curifactory_cli.cli import cache_views as views

    if as_json:
        views.print_json({verb: done, "remote": url, "already_there": tried - done})
        return
    where = "to" if verb == "pushed" else "from"
    console.print(f"{verb} {plural(done, 'entry', 'entries')} {where} {url}", markup=False)


def _experiment(text: str | None) -> str | None:
    from curifactory_cli.store.index import experiment_name

    return experiment_name(text) if text else None


def _chosen(
    store: LocalStore | FsspecStore, experiment: str | None, stage: str | None, params: str | None
) -> list[Entry]:
    """The entries the filters select; with `-p SET`, also those of other sets that the set's
    calls used (so that the set is served whole where they are moved)."""
    from curifactory_cli.store.uses import with_shared

    entries = select_entries(store, experiment, stage, params)
    if not params:
        return entries
    return with_shared(store, entries, _experiment(experiment), stage, params)[0]
