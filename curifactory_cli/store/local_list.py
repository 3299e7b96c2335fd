"""Listing a local cache for the cache commands: every entry, or a parameter set's entries
at a time, reading only the folders of the layout and never following a link.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

from curifactory_cli.store.entry import (
    META_NAME,
    Entry,
    is_entry_of,
    parse_meta,
    read_meta_file,
    read_meta_file_stat,
)
from curifactory_cli.store.local_folder import LocalFolder

# The top-level "record" field as dump_meta writes it (before "inputs", whose references
# also name records).
_RECORD_FIELD = re.compile(rb'"aggregate":(?:true|false),"record":("(?:[^"\\]|\\.)*")')


def _subfolders(folder: str) -> list[str]:
    """Names of the real folders (not links, not hidden) in `folder`, sorted."""
    try:
        with os.scandir(folder) as items:
            return sorted(
                item.name
                for item in items
                if not item.name.startswith(".") and item.is_dir(follow_symlinks=False)
            )
    except OSError:
        return []


class LocalListing(LocalFolder):
    """The listings of `LocalStore`."""

    def entries(self, experiment: str | None = None) -> Iterator[Entry]:
        """Every committed entry (a folder with a readable meta.json), or one experiment's.

        Entries live at `<experiment>/<parameter set>/<stage>-<key>/`: only those folders are
        looked in (an entry's own folder is not listed, its metadata is just opened), links
        are never followed, and names starting with "." are not entries.
        """
        top = self.root / experiment if experiment else self.root
        if not top.is_dir() or top.is_symlink():
            return
        for exp in [experiment] if experiment else _subfolders(self._root):
            exp_dir = os.path.join(self._root, exp)
            for folder in _subfolders(exp_dir):
                yield from self._folder_entries(os.path.join(exp_dir, folder), None)

    def entry_groups(
        self, experiment: str | None = None, stage: str | None = None, params: str | None = None
    ) -> Iterator[list[Entry]]:
        """The committed entries, a parameter set at a time, in the listing's order:
        experiment, parameter-set name, stage, newest first. Memory holds one set's entries
        and a name per parameter-set folder, however large the cache.

        `params` matches a set's name or a prefix of its hash; `stage` a stage name.
        """
        if not os.path.isdir(self._root) or os.path.islink(self._root):
            return  # as entries(): a cache root that is a link is not walked
        for exp in _subfolders(self._root):
            if experiment is not None and exp != experiment:
                continue
            named = self._named_sets(os.path.join(self._root, exp), stage, params)
            for name in sorted(named):
                group = self._set_group(named[name], stage, params)
                if group:
                    yield group

    def _named_sets(
        self, exp_dir: str, stage: str | None, params: str | None
    ) -> dict[str, list[str]]:
        """Parameter-set name -> its folders in an experiment folder, as `params` selects."""
        named: dict[str, list[str]] = {}
        for folder in _subfolders(exp_dir):
            path = os.path.join(exp_dir, folder)
            name = self._set_name(path, stage)
            if name is None:
                continue
            if params is not None and params != name and not folder.startswith(params):
                continue
            named.setdefault(name, []).append(path)
        return named

    def _set_group(self, paths: list[str], stage: str | None, params: str | None) -> list[Entry]:
        """One parameter set's entries, by stage, newest first."""
        group = [e for path in paths for e in self._folder_entries(path, stage)]
        if params is not None and len(params) > 16:  # more of the hash than a folder
            group = [e for e in group if e.params_hash.startswith(params)]
        group.sort(key=lambda e: -(e.mtime or 0.0))
        group.sort(key=lambda e: (e.params_name, e.stage))
        return group

    def _set_name(self, folder: str, stage: str | None) -> str | None:
        """The parameter-set name of a folder's entries, to order folders by (None: no entry
        of `stage`). Read from the first entry's raw metadata as this tool writes it; the
        entries themselves are read and checked in full when listed."""
        for name in _subfolders(folder):
            if stage is not None and not is_entry_of(name, stage):
                continue
            try:
                data = read_meta_file(os.path.join(folder, name, META_NAME))
            except (OSError, ValueError):
                continue
            found = _RECORD_FIELD.search(data)
            if found is not None:
                try:
                    return json.loads(found.group(1)).strip() or "?"
                except ValueError:
                    pass
            meta = parse_meta(data)
            if meta is not None:
                return str(meta.get("record", "?"))
        return None

    def _folder_entries(
        self, folder: str, stage: str | None, limit: int | None = None
    ) -> Iterator[Entry]:
        """The readable entries of one parameter-set folder (of one stage)."""
        found = 0
        for name in _subfolders(folder):
            if stage is not None and not is_entry_of(name, stage):
                continue
            directory = f"{folder}{os.sep}{name}"
            try:
                data, info = read_meta_file_stat(f"{directory}{os.sep}{META_NAME}")
            except (OSError, ValueError):
                continue
            meta = parse_meta(data)
            if meta is None:
                continue
            yield Entry(directory, meta, info.st_mtime)
            found += 1
            if limit is not None and found >= limit:
                return
