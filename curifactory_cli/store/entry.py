"""What every store shares: the entry layout, the metadata rules and the signature (the one
verifier of cached files is `store.file_checks`).

Layout, readable by a person, the same in every store (a folder, a bucket prefix):

    <cache>/<experiment>/<params hash[:16]>/<stage>-<key[:16]>/
        meta.json            # the commit record of the entry, listing every file's checksum
        <output><ext>        # files written by each output's cacher (plus its sibling files)

An entry exists once its `meta.json` exists: it is written last. It is usable only if the
metadata parses, names the expected key, and every file it lists is there with the recorded
size; checksums are verified (`file_checks.verify_files`) before any file is loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

META_NAME = "meta.json"
FORMAT_VERSION = 1
# Draft folders: where entries are written before their atomic publish. The folder keeps
# its name from before they were called drafts, so a cache made then is tidied the same.
DRAFTS_DIR = ".staging"
TRASH_DIR = ".trash"
LOCK_DIR = ".locks"
GITIGNORE = "*\n"
INVALIDATED = "invalidated"  # lookup's reason for an entry marked by `curi cache invalidate`
SIGNING_ENV = "CURI_CACHE_KEY"
ENTRY_DIR_NAME = re.compile(r"^(?P<stage>.+)-(?P<key>[0-9a-f]{16})$")


# ------------------------------------------------------------------------- layout
def entry_dir(stage_prefix: str, key: str) -> str:
    """An entry's folder: its stage's prefix (`.../<params>/<stage>`) and 16 of its key's hex
    digits, in any store."""
    return f"{stage_prefix}-{key[:16]}"


def names_key(folder: str, key: str) -> bool:
    """Whether an entry folder's name carries `key` (metadata copied into another entry's
    folder, or another parameter set's, is not that entry)."""
    return folder.endswith("-" + key[:16])


def lineage_match(folder: str, meta: Any, lineage_key: str) -> str | None:
    """The key of the entry in `folder` if its metadata claims this lineage and the folder
    carries that key: the one rule every store's lineage lookup applies before `lookup`."""
    if not isinstance(meta, dict) or meta.get("lineage_key") != lineage_key:
        return None
    key = meta.get("key")
    return key if isinstance(key, str) and names_key(folder, key) else None


def is_entry_of(name: str, stage: str) -> bool:
    """Whether folder `name` is an entry folder of `stage` (`<stage>-<16 characters>`)."""
    return len(name) == len(stage) + 17 and name.startswith(stage + "-")


# ------------------------------------------------------------------------- metadata
# Metadata lists an entry's files with their checksums: about 150 bytes a file. Far more than
# any entry needs, and a bound on what a planted file can make every command read.
MAX_META_BYTES = 32 << 20
MAX_META_DEPTH = 64  # nesting of JSON values: real metadata stays under 10


def parse_meta(data: bytes | str) -> dict[str, Any] | None:
    """Entry metadata from its bytes, or None when it is not well-formed metadata."""
    return check_meta(data)[0]


def check_meta(data: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    """(metadata, None) from its bytes, or (None, why they are not an entry's metadata):
    not JSON, too big, nested deeper than metadata is, or a field of the wrong shape."""
    if len(data) > MAX_META_BYTES:
        return None, "it is larger than metadata ever is"
    if _nesting(data) > MAX_META_DEPTH:
        return None, "it nests deeper than metadata ever does"
    try:
        # Metadata is UTF-8 (decoding first skips json's guess among UTF-8, 16 and 32).
        meta = _decode_json(data.decode() if isinstance(data, bytes) else data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, "it is not JSON"
    if not isinstance(meta, dict) or "key" not in meta:
        return None, "it is not an entry's metadata"
    # A control character reaches a parsed string only through an escape (a backslash), as
    # DEL itself (JSON refuses only U+0000..U+001F unescaped) or, for U+0080..U+009F, as the
    # UTF-8 lead byte 0xC2: without any of them, no string has one.
    plain = (
        isinstance(data, bytes)
        and b"\\" not in data
        and b"\xc2" not in data
        and b"\x7f" not in data
    )
    problem = shape_problem(meta, check_text=not plain)
    return (None, problem) if problem is not None else (meta, None)


# The type of each field that code reads, when the field is there. Metadata is data from a
# folder others may write to: anything else makes the entry damaged, for every reader.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "format": (int,),
    "key": (str,),
    "lineage_key": (str, type(None)),
    "key_parts": (dict, type(None)),
    "code_parts": (dict,),
    "experiment": (str,),
    "stage": (str,),
    "stage_ref": (str,),
    "record": (str,),
    "params_hash": (str,),
    "params": (dict, type(None)),
    "reads": (dict, type(None)),
    "aggregate": (bool,),
    "invalidated": (bool,),
    "inputs": (dict,),
    "input_records": (list,),
    "outputs": (dict,),
    "extra_files": (list,),
    "objects": (str, type(None)),
    "signature": (str,),
    "run": (dict,),
    "git": (dict, type(None)),
    "versions": (dict,),
    "timings": (dict,),
}
_OUTPUT_TYPES: dict[str, tuple[type, ...]] = {
    "cacher": (str,),
    "lazy": (bool,),
    "version": (str,),
    "files": (list,),
    "extra": (dict,),
    "track": (bool,),
}


# Metadata is parsed JSON, whose values have exact types (a bool is never an int there): a
# set lookup of the type is the check.
_FIELD_SETS = {name: frozenset(types) for name, types in _FIELD_TYPES.items()}
_OUTPUT_SETS = {name: frozenset(types) for name, types in _OUTPUT_TYPES.items()}
_decode_json = json.JSONDecoder().decode
_SHOWN_FIELDS = ("experiment", "stage", "stage_ref", "record", "params_hash", "key")


_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
    """Whether `text` holds characters a terminal acts on (escape sequences, bells...)."""
    return _CONTROL_CHARACTERS.search(text) is not None


def shape_problem(meta: dict[str, Any], check_text: bool = True) -> str | None:
    """What is malformed in metadata (a field of the wrong type, a file entry that is not a
    safe relative path with a size and a checksum, control characters in a name that
    commands print), or None."""
    problem = _field_problem(meta, check_text)
    if problem is not None:
        return problem
    for name, output in (meta.get("outputs") or {}).items():
        problem = _output_problem(name, output)
        if problem is not None:
            return problem
    for info in meta.get("extra_files") or ():
        if _file_problem(info):
            return "it lists an extra file it cannot have"
    reads = meta.get("reads")
    if reads is not None and _reads_problem(reads):
        return "field 'reads' is not a list of parameter paths and digests"
    return None


def _reads_problem(reads: dict[str, Any]) -> bool:
    items = reads.get("items")
    if type(reads.get("everything")) is not bool or type(items) is not list:
        return True
    for item in items:  # (most calls read a few parameters, or none)
        if type(item) is not list or len(item) != 2:
            return True
        if type(item[0]) is not str or type(item[1]) is not str:
            return True
    return False


def _field_problem(meta: dict[str, Any], check_text: bool) -> str | None:
    for name, value in meta.items():
        types = _FIELD_SETS.get(name)
        if types is not None and type(value) not in types:
            return f"field {name!r} is not a {_FIELD_TYPES[name][0].__name__}"
    for name in _SHOWN_FIELDS if check_text else ():
        if isinstance(meta.get(name), str) and has_control_characters(meta[name]):
            return f"field {name!r} holds control characters"
    return None


def _output_problem(name: str, output: Any) -> str | None:
    if type(output) is not dict:
        return f"output {name!r} is not a mapping"
    for field_name, value in output.items():
        types = _OUTPUT_SETS.get(field_name)
        if types is not None and type(value) not in types:
            kind = _OUTPUT_TYPES[field_name][0].__name__
            return f"field {field_name!r} of output {name!r} is not a {kind}"
    for info in output.get("files") or ():
        if _file_problem(info):
            return f"output {name!r} lists a file it cannot have"
    return None


def _file_problem(info: Any) -> bool:
    if type(info) is not dict:
        return True
    size = info.get("size")
    return (
        type(size) is not int  # bool is an int in Python, but not a size here
        or size < 0
        or type(info.get("sha256")) is not str
        or safe_rel(info.get("path")) is None
    )


def _nesting(data: bytes | str) -> int:
    """How deep brackets nest, counted without parsing (brackets inside strings count too,
    which only overestimates): refuses a deep bomb before the parser recurses into it."""
    if isinstance(data, bytes):
        if data.count(b"[") + data.count(b"{") <= MAX_META_DEPTH:
            return 0
        # Only the brackets matter: walk those (an aggregate over 10,000 records has
        # megabytes of metadata, a few brackets per record).
        text = data.translate(None, _NOT_BRACKETS).decode("ascii")
    else:
        text = data
        if text.count("[") + text.count("{") <= MAX_META_DEPTH:
            return 0
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_META_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


_META_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_SMALL_META = 1 << 16  # read whole in one call: real metadata is a few KB


def read_meta_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a metadata file, which must be a regular file (not a link, FIFO or device:
    a FIFO would block every command) of at most MAX_META_BYTES. Raises OSError
    (FileNotFoundError when there is none) and ValueError for anything else.

    Lookups read thousands of these: a file shorter than _SMALL_META is read in one call,
    without the status call. A short read is the end of a regular file. A planted FIFO never
    blocks: opened without blocking, it gives what is in it (no more than a file the planter
    could have written instead), nothing, or EAGAIN; a device cannot be planted without
    privileges. Anything longer is checked (regular, within the bound) before it is read on."""
    fd = os.open(path, _META_FLAGS)
    try:
        data = os.read(fd, _SMALL_META)
        if len(data) < _SMALL_META:
            return data
    finally:
        os.close(fd)
    return read_meta_file_stat(path)[0]


def read_meta_file_stat(path: str | os.PathLike[str]) -> tuple[bytes, os.stat_result]:
    """read_meta_file, and the file's status (its mtime is when the entry was written)."""
    fd = os.open(path, _META_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_size > MAX_META_BYTES:
            raise ValueError(f"{path} is {info.st_size} bytes, more than metadata ever is")
        # One read of the size fstat gave, plus a byte: a short read means the end (a file
        # growing meanwhile is read on, up to the bound).
        want = info.st_size + 1
        chunks, left = [os.read(fd, want)], MAX_META_BYTES + 1
        left -= len(chunks[0])
        if len(chunks[0]) == want:
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
    finally:
        os.close(fd)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(data) > MAX_META_BYTES:
        raise ValueError(f"{path} grew past {MAX_META_BYTES} bytes while read")
    return data, info


def dump_meta(meta: dict[str, Any]) -> str:
    return _META_ENCODER.encode(meta)


# One encoder for every entry (json.dumps with options builds a new one per call).
# No circular-reference check (a tenth of the time): the metadata is built by the engine, and
# the parameters in it went through the hashing walker, which refuses cycles.
_META_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False)


def signing_key() -> bytes | None:
    secret = os.environ.get(SIGNING_ENV)
    return secret.encode() if secret else None


UNSIGNED = ("signature", "objects")  # the signature itself; where a remote store put the files


def entry_signature(meta: dict[str, Any], secret: bytes) -> str:
    """HMAC-SHA256 over the whole metadata, canonically encoded: the key, the lineage key, each
    output's version, cacher and files with their checksums, invalidation, provenance. Every
    field that takes part in a decision or a load is covered, so none can be edited, added or
    removed by someone without the secret. ("objects", where a remote store put the files,
    is not: the files must match the signed checksums wherever they are.)"""
    signed = {k: v for k, v in meta.items() if k not in UNSIGNED}
    payload = json.dumps(signed, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def sign(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata to write: signed when `CURI_CACHE_KEY` is set (over its JSON form, which
    is what a reader will check)."""
    secret = signing_key()
    if not secret:
        return meta
    written = json.loads(dump_meta({k: v for k, v in meta.items() if k != "signature"}))
    return {**written, "signature": entry_signature(written, secret)}


def signature_problem(meta: dict[str, Any]) -> str | None:
    """Why the metadata's signature fails when `CURI_CACHE_KEY` is set (else None): then only
    metadata written with that key is trusted."""
    secret = signing_key()
    if secret is None:
        return None
    # Metadata here was parsed from JSON (by `check_meta`): encoding it again cannot fail.
    expected = entry_signature(meta, secret)
    if not hmac.compare_digest(str(meta.get("signature", "")), expected):
        return f"metadata is not signed with this {SIGNING_ENV}"
    return None


def meta_problem(meta: dict[str, Any], key: str, outputs: list[str], where: str) -> str | None:
    """Why metadata read at `where` cannot serve `key` with these outputs (None: it can,
    once its files are there). Every store checks this on every lookup, on metadata that
    `check_meta` accepted: the fields it reads are there and every file it lists has a safe
    path and a size (checked there)."""
    try:
        if meta.get("format") != FORMAT_VERSION:
            return f"metadata {where} has an unknown format"
        if meta["key"] != key:
            return f"metadata {where} belongs to another key"
        if meta.get("invalidated"):
            return INVALIDATED
        if signature_problem(meta) is not None:
            return f"entry {os.path.dirname(where)} is not signed with this {SIGNING_ENV}"
        if sorted(meta["outputs"]) != sorted(outputs):
            return f"metadata {where} lists other outputs than the stage declares"
        for output in meta["outputs"].values():
            if not isinstance(output["version"], str) or not isinstance(output["files"], list):
                return f"metadata {where} is incomplete"
    except (KeyError, TypeError, AttributeError):
        return f"metadata {where} is incomplete"
    return None


def listed_files(meta: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(output name, file info) for every file the metadata lists ("" for extra files)."""
    for name, output in (meta.get("outputs") or {}).items():
        for info in output.get("files") or []:
            yield name, info
    for info in meta.get("extra_files") or []:
        yield "", info


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # never "", ".", ".." nor a path


def safe_rel(rel: Any) -> str | None:
    """`rel` if it is a relative path that stays inside its folder (metadata is data: never
    trusted to name a place)."""
    if type(rel) is str and _PLAIN_NAME.fullmatch(rel):
        return rel  # one plain file name (what cachers write): nothing more to check
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")) or "\\" in rel:
        return None
    if "\x00" in rel:
        return None
    parts = rel.split("/")
    if "" in parts or "." in parts or ".." in parts:
        return None
    return rel


# ------------------------------------------------------------------------- the entry
class Entry:
    """A committed cache entry: where its files are, and its metadata.

    `directory` is in the store's own namespace: a local folder, or a PurePosixPath in a
    bucket. Given as a `str`, it becomes a Path only when asked for (a listing of 50,000
    entries would spend half a second making Paths nobody reads).
    """

    __slots__ = ("_directory", "meta", "mtime")

    def __init__(
        self, directory: str | PurePath, meta: dict[str, Any], mtime: float | None = None
    ) -> None:
        self._directory = directory
        self.meta = meta
        self.mtime = mtime  # when it was written

    @property
    def directory(self) -> PurePath:
        """A Path for a local entry, a PurePosixPath for one in a bucket."""
        if isinstance(self._directory, str):
            self._directory = Path(self._directory)
        return self._directory

    @property
    def location(self) -> str:
        """The directory as a string."""
        return self._directory if isinstance(self._directory, str) else str(self._directory)

    def __repr__(self) -> str:
        return f"Entry({self.location!r}, key={self.key[:16]!r})"

    def output_files(self, output: str) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = self.meta["outputs"][output]["files"]
        return files

    @property
    def experiment(self) -> str:
        return str(self.meta.get("experiment", "?"))

    @property
    def stage(self) -> str:
        return str(self.meta.get("stage", "?"))

    @property
    def params_name(self) -> str:
        return str(self.meta.get("record", "?"))

    @property
    def params_hash(self) -> str:
        return str(self.meta.get("params_hash") or "")

    @property
    def key(self) -> str:
        return str(self.meta.get("key", ""))

    @property
    def short_id(self) -> str:
        return self.key[:10]

    @property
    def invalidated(self) -> bool:
        return bool(self.meta.get("invalidated"))

    @property
    def outputs(self) -> dict[str, Any]:
        return self.meta.get("outputs") or {}

    @property
    def size(self) -> int:
        total = 0
        for _, info in listed_files(self.meta):
            try:
                total += int(info.get("size", 0))
            except (TypeError, ValueError, AttributeError):
                continue
        return total

    @property
    def created(self) -> float:
        if self.mtime is None:
            try:
                self.mtime = os.stat(os.path.join(self.location, META_NAME)).st_mtime
            except OSError:
                self.mtime = 0.0
        return self.mtime

    def rel(self, root: str | PurePath) -> str:
        """The entry's path relative to the cache root, as the metadata's lineage names it."""
        here, base = self.location, str(root).rstrip("/")
        if here.startswith(base + "/"):  # string work: pathlib costs more than the listing
            return here[len(base) + 1 :]
        return self.directory.relative_to(root).as_posix()

    def label(self) -> str:
        return f"{self.experiment} / {self.params_name} / {self.stage}"

    def to_json(self, root: Path) -> dict[str, Any]:
        return {
            "id": self.short_id,
            "key": self.key,
            "experiment": self.experiment,
            "params": self.params_name,
            "params_hash": self.meta.get("params_hash"),
            "stage": self.stage,
            "outputs": {
                name: {"cacher": out.get("cacher"), "lazy": out.get("lazy", False)}
                for name, out in self.outputs.items()
            },
            "size": self.size,
            "created": self.created,
            "age_s": round(time.time() - self.created, 1),
            "run": (self.meta.get("run") or {}).get("id"),
            "invalidated": self.invalidated,
            "path": self.rel(root),
        }
