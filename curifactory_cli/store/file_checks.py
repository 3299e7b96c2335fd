"""The files of an entry checked against what its metadata records: their size and sha256
(`check_file`, `verify_files`, raising `CorruptEntryError`), and bytes already read checked
the same way (`bytes_match`)."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Any

from curifactory_cli.errors import CacheError
from curifactory_cli.store.entry import safe_rel


class CorruptEntryError(CacheError):
    """A cached file does not match the checksum its metadata recorded."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as infile:
        while chunk := infile.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def bytes_match(data: bytes, info: dict[str, Any]) -> bool:
    """Whether bytes already read are the file `info` records (checked on the very bytes a
    loader uses, so the file cannot change in between)."""
    return len(data) == info.get("size") and hashlib.sha256(data).hexdigest() == info.get("sha256")


@dataclass
class FileCheck:
    output: str
    path: str
    size: int  # as recorded
    status: str  # "ok", "missing" or "mismatch"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "path": self.path,
            "size": self.size,
            "status": self.status,
            "detail": self.detail,
        }


def check_file(directory: str | os.PathLike[str], output: str, info: dict[str, Any]) -> FileCheck:
    """Recompute one recorded file's size and sha256, in a local folder."""
    rel = safe_rel(info.get("path"))
    try:
        size = int(info.get("size", 0))
    except (TypeError, ValueError):
        size = -1
    if rel is None:
        return FileCheck(output, str(info.get("path")), size, "mismatch", "path leaves the entry")
    path = os.path.join(directory, rel)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            problem = "not a regular file"
        elif st.st_size != size:
            problem = f"size {st.st_size} B, recorded {size} B"
        elif file_sha256(path) != info.get("sha256"):
            problem = "sha256 differs from the recorded one"
        else:
            return FileCheck(output, rel, size, "ok")
    except FileNotFoundError:
        return FileCheck(output, rel, size, "missing", "file is missing")
    except OSError as exc:
        problem = f"unreadable: {exc.strerror or exc}"
    return FileCheck(output, rel, size, "mismatch", problem)


def verify_files(directory: str | os.PathLike[str], files: list[dict[str, Any]]) -> None:
    """Raise CorruptEntryError unless every file matches its recorded size and checksum."""
    for info in files:
        check = check_file(directory, "", info)
        if not check.ok:
            raise CorruptEntryError(
                f"cached file {os.path.join(directory, check.path)} does not match its "
                f"recorded checksum ({check.detail})",
                hint="it will be recomputed; `curi cache clear` removes the entry.",
            )
