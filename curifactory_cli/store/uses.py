"""Which parameter sets use an entry, for the cache commands: the set that computed it (its
metadata's record) and every set whose calls were served from it, as the use lines of the
cache's reads index say (`store.reads_index`; written by runs, in the cache itself, so a
cache shared by several clones or kept in a bucket answers the same for everyone).

A use line is a pointer, like every line of the index: an entry is listed for a set only
once the store has it, and a line naming an entry that is gone names nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from curifactory_cli.store.entry import Entry

if TYPE_CHECKING:
    from curifactory_cli.store.local import LocalStore
    from curifactory_cli.store.remote import FsspecStore

MAX_NAMED = 3  # sets named in a listing's row; more are counted


class UseBook:
    """The use lines of a store, read an experiment at a time when first asked for (a cache
    command that lists no shared entry reads each experiment's index once)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        # experiment -> entry key -> [(set name, set hash)], in the order the lines say
        self._by_key: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self._lines: dict[str, list[dict[str, Any]]] = {}

    def lines(self, experiment: str) -> list[dict[str, Any]]:
        found = self._lines.get(experiment)
        if found is None:
            reader = getattr(self.store, "read_uses", None)
            found = self._lines[experiment] = list(reader(experiment)) if reader else []
        return found

    def _keys(self, experiment: str) -> dict[str, list[tuple[str, str]]]:
        found = self._by_key.get(experiment)
        if found is None:
            found = self._by_key[experiment] = {}
            for use in self.lines(experiment):
                users = found.setdefault(use["use"], [])
                if (use["record"], use["by"]) not in users:
                    users.append((use["record"], use["by"]))
        return found

    def others(self, entry: Entry) -> list[str]:
        """The names of the other sets that used `entry` (not the one that computed it)."""
        own = entry.params_name
        users = self._keys(entry.experiment).get(entry.key, ())
        return list(dict.fromkeys(name for name, _ in users if name != own))

    def users(self, entry: Entry) -> list[dict[str, Any]]:
        """Every set that used `entry`: the one that computed it first, then the others,
        each with its hash (one line per name and hash: a set edited since is listed again)."""
        out = [{"name": entry.params_name, "hash": entry.params_hash, "computed": True}]
        for name, by in self._keys(entry.experiment).get(entry.key, ()):
            if by != entry.params_hash:
                out.append({"name": name, "hash": by, "computed": False})
        return out

    def shared_with(
        self,
        have: set[str],
        experiments: Iterable[str],
        stage: str | None,
        params: str,
    ) -> list[tuple[Entry, str]]:
        """The entries of other sets that the calls of set `params` (a name, else a hash
        prefix, as `-p` everywhere) used, with the name of the set using them; `have`: keys
        of the entries already selected for the set, not listed again."""
        out: list[tuple[Entry, str]] = []
        for experiment in experiments:
            lines = [u for u in self.lines(experiment) if not stage or u["stage"] == stage]
            mine = [u for u in lines if u["record"] == params] or [
                u for u in lines if u["by"].startswith(params)
            ]
            wanted: dict[tuple[str, str], dict[str, str]] = {}
            for use in mine:
                if use["use"] not in have:
                    wanted.setdefault((use["params_hash"], use["stage"]), {})[use["use"]] = use[
                        "record"
                    ]
            for (params_hash, stage_name), keys in sorted(wanted.items()):
                prefix = self.store.stage_prefix(experiment, params_hash, stage_name)
                for entry in self.store.stage_entries(prefix):
                    name = keys.get(entry.key)
                    if name is not None and entry.key not in have:
                        have.add(entry.key)
                        out.append((entry, name))
        return out


def index_experiments(store: Any, experiment: str | None) -> list[str]:
    """The experiments whose index may name shared entries (`experiment`, or every one)."""
    if experiment is not None:
        return [experiment]
    lister = getattr(store, "index_experiments", None)
    return list(lister()) if lister is not None else []


def with_shared(
    store: LocalStore | FsspecStore,
    entries: list[Entry],
    experiment: str | None,
    stage: str | None,
    params: str | None,
    book: UseBook | None = None,
) -> tuple[list[Entry], dict[str, str]]:
    """`entries` (selected with `-p params`) and the entries of other sets that set's calls
    used, and for those, entry key -> the set whose folder holds it (`shared from`)."""
    if not params:
        return entries, {}
    book = book or UseBook(store)
    have = {e.key for e in entries}
    found = book.shared_with(have, index_experiments(store, experiment), stage, params)
    return [*entries, *(e for e, _ in found)], {e.key: e.params_name for e, _ in found}


def then_shared(
    listed: Iterable[Entry],
    book: UseBook,
    experiment: str | None,
    stage: str | None,
    params: str,
    shared_from: dict[str, str],
) -> Iterator[Entry]:
    """`listed` (a set's own entries, streamed), then the entries of other sets that its
    calls used, each noted in `shared_from` (entry key -> the set whose folder holds it)."""
    have: set[str] = set()
    for entry in listed:
        have.add(entry.key)
        yield entry
    experiments = index_experiments(book.store, experiment)
    for entry, _ in book.shared_with(have, experiments, stage, params):
        shared_from[entry.key] = entry.params_name
        yield entry


def also_used_by(entry: Entry, book: UseBook, params: str | None) -> list[str]:
    """The sets other than `params` (a name or a hash prefix, as `-p` takes it) that used
    `entry`: whom invalidating or removing it for `params` concerns too."""
    return list(
        dict.fromkeys(
            u["name"]
            for u in book.users(entry)
            if not params or (u["name"] != params and not u["hash"].startswith(params))
        )
    )


def note(entry: Entry, book: UseBook, shared_from: dict[str, str]) -> str | None:
    """What a listing's row says of an entry's sharing: `shared from a` when it is listed
    for a set that used it, `shared with b, c` when other sets used it."""
    owner = shared_from.get(entry.key)
    if owner is not None:
        return f"shared from {owner}"
    others = book.others(entry)
    if not others:
        return None
    if len(others) > MAX_NAMED:
        return f"shared with {len(others)} other sets"
    return "shared with " + ", ".join(others)


def json_fields(entry: Entry, book: UseBook, shared_from: dict[str, str]) -> dict[str, Any]:
    """What `cache ls --json` adds to an entry that sets share: `used_by` (every set, the
    one that computed it first) and `shared_from` (when listed for another set)."""
    out: dict[str, Any] = {}
    users = book.users(entry)
    if len(users) > 1:
        out["used_by"] = list(dict.fromkeys(u["name"] for u in users))
    owner = shared_from.get(entry.key)
    if owner is not None:
        out["shared_from"] = owner
    return out


def sharing_fields(
    entry: Entry, book: UseBook, shared_from: dict[str, str], params: str | None
) -> dict[str, Any]:
    """What `invalidate` and `clear --json` add to an entry they name for `-p SET`: the set
    whose folder holds it (when not SET's own) and the other sets that used it."""
    out: dict[str, Any] = {}
    owner = shared_from.get(entry.key)
    if owner is not None:
        out["shared_from"] = owner
    others = also_used_by(entry, book, params)
    if others and params:
        out["also_used_by"] = others
    return out


def sharing_note(
    entry: Entry, book: UseBook, shared_from: dict[str, str], params: str | None
) -> str:
    """The same, as a line of `invalidate` or `clear` says it ('' when not shared)."""
    fields = sharing_fields(entry, book, shared_from, params)
    parts = []
    if "shared_from" in fields:
        parts.append(f"shared from {fields['shared_from']}")
    if "also_used_by" in fields:
        parts.append("also used by " + ", ".join(fields["also_used_by"]))
    return "; ".join(parts)


def sharing_notes(
    entries: list[Entry], book: UseBook, shared_from: dict[str, str], params: str | None
) -> dict[str, str]:
    """Entry key -> what a line says of the sets sharing it, for the entries that are."""
    notes = {e.key: sharing_note(e, book, shared_from, params) for e in entries}
    return {key: text for key, text in notes.items() if text}
