"""The machinery behind `curifactory_cli.caching` (Curifactory's public cacher module, which
keeps the user-facing classes): which values JSON keeps and JsonCacher's encoder; how a cacher
is constructed (Curifactory's two constructor forms), which names it may use inside an entry,
its `path_override` templates and a standalone cacher's metadata; binding a cacher to an
output of the entry being written and writing its files (checksummed as they are written into
the runner's draft folder, atomically anywhere else); the file formats of the built-in
cachers (pandas' IO formats and what each needs installed, notebooks, lists of file paths).

The functions taking a `cacher` are the bodies of `Cacheable` (and `PandasCacher`) methods,
bound to the classes in `caching` (typed `Any` here: `caching` imports this module, not the
other way round). One module: a run imports it once.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import hashlib
import importlib.util
import inspect
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from curifactory_cli.atomic import WRITE_FLAGS, atomic_path, write_bytes_atomic
from curifactory_cli.errors import CacheError, GraphError


# ------------------------------------------------------------------------ JSON values
def json_safe(value: Any) -> Any:
    """`value` as plain JSON data, other objects as their `str()` (as Curifactory's metadata
    files store them), so the entry's metadata can always be written."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)


_JSON_SCALARS = (bool, int, float, str)
_JSON_SCALAR_TYPES = frozenset({type(None), bool, int, float, str})
_JSON_MAX_DEPTH = 200
# JsonCacher's files: json.dumps's format, without its circular-reference check (a value
# with a cycle is refused first, as nested too deeply).
JSON_WRITER = json.JSONEncoder(check_circular=False)


def json_problem(obj: Any) -> str | None:
    """Where `obj` stops being plain JSON that loads back as the same value, or None."""
    found = json_trouble(obj, 0)
    if found is None:
        return None
    steps, message = found
    return "$" + "".join(reversed(steps)) + message


def json_trouble(obj: Any, depth: int) -> tuple[list[str], str] | None:
    """(the path to the trouble, innermost step first; what it is). The path is only built
    for a value that has trouble: a string per element made a long list slow to check."""
    if depth > _JSON_MAX_DEPTH:
        return [], " is nested too deeply"
    if obj is None or isinstance(obj, _JSON_SCALARS):
        return None  # NaN and infinity round-trip through Python's json module
    is_dict = isinstance(obj, dict)
    if is_dict:
        children, step = obj.items(), ".{}"
    elif isinstance(obj, (list, tuple)):
        children, step = enumerate(obj), "[{}]"
    else:
        return [], f" is a {type(obj).__name__}, which JSON cannot represent"
    # Elements that are plain scalars (by exact type) need no call; subclasses get one.
    plain = depth < _JSON_MAX_DEPTH
    for name, value in children:
        if is_dict and not isinstance(name, str):
            return [], (
                f" has a key {name!r} of type {type(name).__name__} "
                "(JSON keys are strings, so it would load back as a different key)"
            )
        if plain and type(value) in _JSON_SCALAR_TYPES:
            continue
        found = json_trouble(value, depth + 1)
        if found is not None:
            found[0].append(step.format(name))
            return found
    return None


# ------------------------------------------------------------------------ constructor forms
# Curifactory's Cacheable took `(extension, path_override=None)` up to 0.9 (the form its cache
# documentation shows: `super().__init__("")`), and `(path_override, name, subdir, prefix,
# extension, record, track)` since 0.10 (`super().__init__(*args, extension=".x", **kwargs)`,
# `JsonCacher("out.json")`). Both are accepted: without an `extension=` keyword, a first
# argument that looks like an extension ("", ".pt", ".tar.gz") is one.
_P = inspect.Parameter
MODERN = inspect.Signature(
    [
        _P("path_override", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("name", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("subdir", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("prefix", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("extension", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("record", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("track", _P.POSITIONAL_OR_KEYWORD, default=True),
    ]
)
_LEGACY = inspect.Signature(
    [
        _P("extension", _P.POSITIONAL_OR_KEYWORD, default=None),
        _P("path_override", _P.POSITIONAL_OR_KEYWORD, default=None),
        *(
            _P(p.name, _P.KEYWORD_ONLY, default=p.default)
            for p in MODERN.parameters.values()
            if p.name not in ("path_override", "extension")
        ),
    ]
)
SELF = _P("self", _P.POSITIONAL_OR_KEYWORD)  # for the signature help() shows
_EXTENSION = re.compile(r"(\.[A-Za-z0-9_-]+)+")


def _is_extension(value: Any) -> bool:
    return isinstance(value, str) and (value == "" or _EXTENSION.fullmatch(value) is not None)


_MODERN_DEFAULTS = {name: p.default for name, p in MODERN.parameters.items()}


def constructor_options(owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args and kwargs.keys() <= _MODERN_DEFAULTS.keys():
        # The form the runner makes a cacher per stage call in: no binder needed.
        return {**_MODERN_DEFAULTS, **kwargs}
    legacy = "extension" not in kwargs and bool(args) and _is_extension(args[0])
    try:
        bound = (_LEGACY if legacy else MODERN).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{owner}(): {exc}") from None
    bound.apply_defaults()
    return bound.arguments


# ------------------------------------------------------------------------ path helpers
# Subfolder and prefix names in an entry follow the rule for output names (staging.check_name):
# nothing that could climb out of the entry or hide a file.
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def check_part(owner: str, option: str, value: str, part: str) -> None:
    if not _SAFE_PART.match(part) or ".." in part:
        raise GraphError(
            f"{owner}({option}={value!r}): {part!r} cannot be a name inside a cache entry",
            hint="use letters, digits, '_', '-' and '.', with '/' between subfolders "
            "(no leading '/', '.' or '..').",
        )


def without_extension(path: str, extension: str) -> str:
    return path[: -len(extension)] if extension and path.endswith(extension) else path


def with_extension(name: str, extension: str) -> str:
    # As Curifactory: an output named "data.csv" is not saved as "data.csv.csv".
    return name if not extension or name.endswith(extension) else name + extension


# ------------------------------------------------------------------------ templates
def resolve_path_template(cacher: Any, path: str) -> str:
    """`path_override` with Curifactory's fields filled in; as in Curifactory, a cacher
    without a record takes the path as it is."""
    if cacher.record is None:
        return path
    try:
        return path.format(**template_fields(cacher))
    except (KeyError, AttributeError, IndexError, ValueError) as exc:
        raise CacheError(
            f"{type(cacher).__name__}: cannot fill in path_override {path!r}: "
            f"{type(exc).__name__}: {exc}",
            hint="the fields are {hash}, {cache}, {stage}, {name}, {params.NAME}, "
            "{experiment} and {artifact_filename}; double braces for a literal brace.",
        ) from None


def template_fields(cacher: Any) -> dict[str, Any]:
    record = cacher.record
    manager = getattr(record, "manager", None)
    experiment = getattr(manager, "experiment_name", "experiment")
    name = cacher.name if cacher.name is not None else "None"  # Curifactory's placeholder
    stage = cacher.stage or running_stage(record)
    params_hash = record.get_hash()
    prefix = getattr(manager, "prefix", None) or experiment
    return {
        "hash": params_hash,
        "cache": str(getattr(manager, "cache_path", "")).rstrip("/"),
        "stage": stage,
        "name": name,
        "params": record.params,
        "experiment": experiment,
        "artifact_filename": (
            f"{prefix}_{params_hash}_{stage}_{with_extension(name, cacher.extension)}"
        ),
    }


# ------------------------------------------------------------------------ metadata
def record_metadata(cacher: Any) -> dict[str, Any]:
    """A standalone cacher's `metadata`, from its record, with Curifactory's keys."""
    record = cacher.record
    if record is None:
        raise CacheError(
            "cannot collect metadata from a cacher with no associated record",
            hint="assign cacher.record first.",
        )
    params = record.params
    return {
        "artifact_generated": datetime.datetime.now().strftime("%Y-%m-%d-T%H%M%S"),
        "params_hash": record.get_hash(),
        "params_name": getattr(params, "name", None) if params is not None else None,
        "record_name": record.get_reference_name(),
        "stage": cacher.stage or running_stage(record),
        "artifact_name": cacher.name,
        "cacher_type": str(type(cacher)),
        "record_prior_stages": list(getattr(record, "stages", [])[:-1]),
        "prior_records": [r.get_reference_name() for r in record.input_records],
        "params": None if params is None else json_safe(params_fields(params)),
        "extra": cacher.extra_metadata,
        "manager_run_info": {},
    }


def running_stage(record: Any) -> str | None:
    current = getattr(record, "_current_stage", None)
    return (current() or None) if callable(current) else None


def params_fields(params: Any) -> Any:
    data = getattr(params, "_data", None)
    if isinstance(data, dict):
        return data
    fields = getattr(params, "__dict__", None)
    if isinstance(fields, dict):
        return {k: v for k, v in fields.items() if not k.startswith("_")}
    return repr(params)


# ------------------------------------------------------------------------ binding and writing
def write_text(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


class HashingFile:
    """A write-only file that keeps the sha256 and size of what went through it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0
        self.hash = hashlib.sha256()
        self.first = b""  # the first byte: tells a pickle (0x80) from other files

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if not self.size and view:
            self.first = bytes(view[:1])
        self.hash.update(view)
        written = len(view)
        self.size += written
        while view:
            view = view[os.write(self.fd, view) :]
        return written


def bind(cacher: Any, directory: str, output_name: str) -> None:
    """Point the cacher at output `output_name` of the entry being written (or read) in
    `directory`."""
    # A path_override does not move the output out of its entry: the entry keeps it, and
    # the driver keeps a copy at that path (engine.exports).
    owner = type(cacher).__name__
    parts = [output_name]
    if cacher.subdir is not None or cacher.prefix is not None:
        # Keep the output's name first: the files of an output are those whose path in
        # the entry starts with it (that is how they are verified and fetched).
        subdir = cacher.subdir.split("/") if cacher.subdir else []
        for part in subdir:
            check_part(owner, "subdir", str(cacher.subdir), part)
        if cacher.prefix is not None:
            check_part(owner, "prefix", cacher.prefix, cacher.prefix)
        filename = output_name if cacher.prefix is None else f"{cacher.prefix}_{output_name}"
        parts = [output_name, *subdir, filename]
    cacher.name = output_name
    cacher._bound_dir = directory
    # Always `<output><extension>`, even for an output named "data.csv": a sibling path
    # (`get_path("_model")`) must still start with the output's name.
    cacher._path = f"{directory}{os.sep}{os.sep.join(parts)}{cacher.extension}"


@contextlib.contextmanager
def tracked_file(cacher: Any, path: str) -> Iterator[Any]:
    """A binary file to write `path` through. In the runner's draft folder it is written
    in place (the folder is private, and published whole by one rename) and its checksum
    is taken while it is written; anywhere else, atomically through a temporary file."""
    bound = cacher._bound_dir
    if bound is None or not path.startswith(bound + os.sep):
        with atomic_path(path) as tmp, open(tmp, "wb") as outfile:
            yield outfile
        return
    folder = os.path.dirname(path)
    if folder != bound:
        os.makedirs(folder, exist_ok=True)
    fd = os.open(path, WRITE_FLAGS, 0o666)
    try:
        hashing = HashingFile(fd)
        yield hashing
        info = os.fstat(fd)
    finally:
        os.close(fd)
    cacher._written[path] = (
        hashing.size,
        info.st_mtime_ns,
        hashing.hash.hexdigest(),
        hashing.first,
    )


def tracked_bytes(cacher: Any, path: str, data: bytes) -> None:
    """`_write_file` for content already in memory, in one call (for a small artifact,
    the context manager and the hashing wrapper cost more than the write)."""
    bound = cacher._bound_dir
    if bound is None or path.rpartition(os.sep)[0] != bound:
        with cacher._write_file(path) as outfile:
            outfile.write(data)
        return
    fd = os.open(path, WRITE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        info = os.fstat(fd)
    finally:
        os.close(fd)
    sha = hashlib.sha256(data).hexdigest()
    cacher._written[path] = (len(data), info.st_mtime_ns, sha, data[:1])


def published(cacher: Any, path: str) -> str:
    """`path` as it will be once the runner has published the draft folder it is in."""
    staged, final = cacher._bound_dir, cacher._entry_dir
    if staged and final and (path == staged or path.startswith(staged + os.sep)):
        return final + path[len(staged) :]
    return path


# ------------------------------------------------------------------------ pandas
@dataclass(frozen=True)
class PandasFormat:
    extension: str
    writer: str  # the DataFrame method
    reader: str  # the pandas function
    modules: tuple[str, ...] = ()  # any one of them will do
    package: str = ""  # what to pip install
    extra: str = ""  # curifactory-cli's extra that installs it


# Curifactory's formats (and extensions), plus feather.
PANDAS_FORMATS = {
    "csv": PandasFormat(".csv", "to_csv", "read_csv"),
    "json": PandasFormat(".json", "to_json", "read_json"),
    "parquet": PandasFormat(
        ".parquet", "to_parquet", "read_parquet", ("pyarrow", "fastparquet"), "pyarrow", "parquet"
    ),
    "feather": PandasFormat(
        ".feather", "to_feather", "read_feather", ("pyarrow",), "pyarrow", "feather"
    ),
    "pickle": PandasFormat(".pkl", "to_pickle", "read_pickle"),
    "orc": PandasFormat(".orc", "to_orc", "read_orc", ("pyarrow",), "pyarrow", "orc"),
    "hdf5": PandasFormat(".h5", "to_hdf", "read_hdf", ("tables",), "tables", "hdf5"),
    "excel": PandasFormat(".xlsx", "to_excel", "read_excel", ("openpyxl",), "openpyxl", "excel"),
    "xml": PandasFormat(".xml", "to_xml", "read_xml", ("lxml",), "lxml", "xml"),
}


class _PandasIOType(enum.Enum):
    """Curifactory's enum of the pandas formats (some user code and its tests import it from
    `caching`): the member's name is the `format=` of PandasCacher, its value the file's
    extension. feather is curi's own addition."""

    csv = "csv"
    json = "json"
    parquet = "parquet"
    feather = "feather"
    pickle = "pkl"
    orc = "orc"
    hdf5 = "h5"
    excel = "xlsx"
    xml = "xml"


def pandas_format_name(format: Any) -> Any:
    """A `format=` as a name: a `_PandasIOType` member gives its name, anything else is
    returned as it is (PandasCacher says what it accepts)."""
    return format.name if isinstance(format, _PandasIOType) else format


def default_pandas_args(format: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Curifactory's defaults for `to_args` and `read_args`."""
    defaults: dict[str, dict[str, Any]] = {
        "json": {"double_precision": 15},
        "hdf5": {"key": "df"},
        "xml": {"index": False},
    }
    to_args = defaults.get(format, {})
    read_args: dict[str, Any] = {"index_col": 0} if format in ("csv", "excel") else {}
    return dict(to_args), read_args


def pandas_saved_format(cacher: Any) -> tuple[PandasFormat, dict[str, Any], str]:
    """The format, read arguments and path to load. They are this cacher's, unless the
    entry records another format: a cacher rebuilt without its options (`curi cache dump`)
    then reads what was written."""
    recorded = (cacher.extra_metadata or {}).get("format")
    if cacher._bound_dir is None or recorded == cacher.format or recorded not in PANDAS_FORMATS:
        return PANDAS_FORMATS[cacher.format], cacher.read_args, cacher.get_path()
    spec = PANDAS_FORMATS[recorded]
    read_args = cacher.extra_metadata.get("read_args")
    path = without_extension(cacher.get_path(), cacher.extension) + spec.extension
    return spec, dict(read_args) if isinstance(read_args, dict) else {}, path


def pandas_label(cacher: Any) -> str:
    return f"PandasCacher(format={cacher.format!r})"


def pandas_require(cacher: Any, spec: PandasFormat, args: dict[str, Any]) -> None:
    """A clear error naming the package to install, before pandas fails half-way."""
    if not spec.modules or "engine" in args:  # the user picked the library
        return
    if spec.reader == "read_xml" and args.get("parser", "lxml") != "lxml":
        return  # parser="etree" is in the standard library
    if any(importlib.util.find_spec(module) is not None for module in spec.modules):
        return
    raise pandas_missing(cacher, spec)


def pandas_missing(cacher: Any, spec: PandasFormat, exc: ImportError | None = None) -> CacheError:
    if not spec.package:
        return CacheError(f"{pandas_label(cacher)}: {exc}", hint="install the package it names.")
    return CacheError(
        f"{pandas_label(cacher)} needs {spec.package}: pip install 'curifactory-cli[{spec.extra}]'",
        hint="or use a format that needs nothing more: csv, json or pickle.",
    )


# ------------------------------------------------------------------------ paths and notebooks
def as_path_list(files: Any, owner: str) -> list[str] | str:
    if isinstance(files, (str, os.PathLike)):
        return os.fspath(files)
    if isinstance(files, (list, tuple)) and all(isinstance(f, (str, os.PathLike)) for f in files):
        return [os.fspath(f) for f in files]
    raise CacheError(
        f"{owner} saves a file path or a list of file paths, not a {type(files).__name__}",
        hint="return the path(s) the stage wrote, e.g. files under record.get_dir(...).",
    )


def exists(path: str) -> bool:
    return os.path.exists(path)


def notebook_cell(text: str) -> dict[str, Any]:
    for quotes in ('"""', "'''"):
        if text.startswith(quotes):
            source = text.strip(quotes[0] + "\n")
            return {"cell_type": "markdown", "metadata": {}, "source": source.splitlines(True)}
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": text.splitlines(True),
    }


def notebook_json(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "file_extension": ".py"},
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }
