"""Reading a local cache: an entry found by its key (the cheap checks of every lookup:
its metadata, the listed files' sizes) or by its lineage, and a stage's entries for `curi plan`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from curifactory_cli.store.entry import (
    META_NAME,
    Entry,
    check_meta,
    lineage_match,
    listed_files,
    meta_problem,
    read_meta_file,
)
from curifactory_cli.store.local_folder import LocalFolder, read_meta


class LocalReading(LocalFolder):
    """The lookups of `LocalStore`."""

    def find_by_lineage(
        self, stage_prefix: str, lineage_key: str, outputs: list[str]
    ) -> Entry | None:
        """A valid entry of this stage whose lineage key matches, whatever its data key.

        Used only when an upstream entry is missing, so scanning the few entries of one
        stage of one parameter set is cheap.
        """
        for candidate in self._stage_dirs(stage_prefix):
            key = lineage_match(candidate, read_meta(candidate), lineage_key)
            if key is not None:
                entry, _ = self.lookup(candidate, key, outputs)
                if entry is not None:
                    return entry
        return None

    def stage_entries(self, stage_prefix: str) -> list[Entry]:
        """Every entry of this stage for the same parameters (whatever its key), newest first:
        what `curi plan` compares against to say why a stage runs."""
        out = []
        for candidate in self._stage_dirs(stage_prefix):
            meta = read_meta(candidate)
            if meta is not None:
                out.append(Entry(candidate, meta))
        return sorted(out, key=lambda e: e.created, reverse=True)

    # ---------------------------------------------------------------- reading
    def lookup(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """The valid entry at `directory` for `key`, or None and why it is unusable."""
        parent, _, name = directory.rpartition(os.sep)
        listed = self._listed.get(parent)
        if listed is not None and name not in listed:
            return None, None
        return self._read_entry(directory, key, outputs)

    def recheck(
        self, directory: str, key: str, outputs: list[str]
    ) -> tuple[Entry | None, str | None]:
        """The lookup again, on disk, under the entry's lock (a concurrent run may have
        published it meanwhile). Its caller runs the stage unless an entry is found, so a
        missing one is not explained."""
        return self._read_entry(directory, key, outputs, explain=False)

    def _read_entry(
        self, directory: str, key: str, outputs: list[str], explain: bool = True
    ) -> tuple[Entry | None, str | None]:
        meta_path = f"{directory}{os.sep}{META_NAME}"  # (os.path.join: 1 us, per lookup)
        try:
            data = read_meta_file(meta_path)
        except FileNotFoundError:
            # Publishing never leaves a folder without metadata.
            if explain and os.path.isdir(directory):
                return None, f"{meta_path} is missing (deleted or damaged)"
            return None, None
        except (OSError, ValueError) as exc:
            return None, f"unreadable metadata {meta_path} ({exc})"
        if os.path.islink(directory):
            return None, f"{directory} is a symbolic link (never followed)"
        meta, damage = check_meta(data)
        if meta is None:
            return None, f"damaged metadata {meta_path}: {damage}"
        problem = meta_problem(meta, key, outputs, meta_path)
        if problem is None:
            problem = _listed_file_problem(directory, meta)
        if problem is not None:
            return None, problem
        return Entry(directory, meta), None

    def entry_at(self, directory: str) -> Entry | None:
        """The committed entry in a folder this store named, whatever its key."""
        meta = read_meta(directory)
        return None if meta is None else Entry(directory, meta)

    def local_dir(self, entry: Entry) -> str:
        """A local folder holding the entry's files: here, the entry folder itself."""
        return entry.location

    def prefetch(self, folders: Iterable[str]) -> None:
        """Before a run: the parameter-set folders it will read must not be links out of
        the cache (one lstat per folder, not one per lookup)."""
        for folder in set(folders):
            self._no_links(folder)


def _listed_file_problem(directory: str, meta: dict[str, Any]) -> str | None:
    """Why the files an entry's metadata lists are not all there as written (missing, not a
    regular file, another size), or None: the cheap check of every lookup (checksums are
    `cache verify`'s)."""
    for _, info in listed_files(meta):
        path = f"{directory}{os.sep}{info['path']}"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return f"{path} is missing"
        except OSError as exc:
            return f"{path} is unreadable ({exc.strerror or exc})"
        if not stat.S_ISREG(st.st_mode):
            return f"{path} is not a regular file"
        if st.st_size != info["size"]:
            return f"{path} has the wrong size (truncated or changed)"
    return None
