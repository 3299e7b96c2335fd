"""Cachers (Curifactory's `Cacheable` API) and the `Lazy` output marker.

A cacher saves and loads one object. It is used in one of two ways, as in Curifactory:

* **In a stage's `cachers=[...]`.** The runner binds a fresh copy to the output before the stage
  runs: `path` (a `str`) and `get_path()` point at `<output><extension>` inside the stage's
  private staging folder, which the runner checksums and publishes atomically as the cache
  entry. A cacher may also write sibling files whose names start with the path
  (`self.path + "_model"`, `get_path("_model")`, `get_dir()`): they are part of the entry too.
* **Standalone ("inline"), with a path:** `JsonCacher("out.json").save(x)`, `.load()`. The path
  may use Curifactory's `path_override` templates when the cacher has a `record`. Files are
  written atomically: a temporary file beside the target, then `os.replace`.

pandas and its optional IO libraries are imported only inside `save()`/`load()`.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import importlib.util
import inspect
import json
import os
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from curifactory_cli.errors import CacheError, GraphError
from curifactory_cli.store.atomic import WRITE_FLAGS, atomic_path, write_bytes_atomic

__all__ = [
    "Cacheable",
    "FileReferenceCacher",
    "JsonCacher",
    "Lazy",
    "PandasCacher",
    "PandasCsvCacher",
    "PandasJsonCacher",
    "PandasParquetCacher",
    "PathRef",
    "PickleCacher",
    "RawJupyterNotebookCacher",
]


# ------------------------------------------------------------------------ constructor forms
# Curifactory's Cacheable took `(extension, path_override=None)` up to 0.9 (the form its cache
# documentation shows: `super().__init__("")`), and `(path_override, name, subdir, prefix,
# extension, record, track)` since 0.10 (`super().__init__(*args, extension=".x", **kwargs)`,
# `JsonCacher("out.json")`). Both are accepted: without an `extension=` keyword, a first
# argument that looks like an extension ("", ".pt", ".tar.gz") is one.
_P = inspect.Parameter
_MODERN = inspect.Signature(
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
            for p in _MODERN.parameters.values()
            if p.name not in ("path_override", "extension")
        ),
    ]
)
_EXTENSION = re.compile(r"(\.[A-Za-z0-9_-]+)+")


def _is_extension(value: Any) -> bool:
    return isinstance(value, str) and (value == "" or _EXTENSION.fullmatch(value) is not None)


_MODERN_DEFAULTS = {name: p.default for name, p in _MODERN.parameters.items()}


def _constructor_options(owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args and kwargs.keys() <= _MODERN_DEFAULTS.keys():
        # The form the runner makes a cacher per stage call in: no binder needed.
        return {**_MODERN_DEFAULTS, **kwargs}
    legacy = "extension" not in kwargs and bool(args) and _is_extension(args[0])
    try:
        bound = (_LEGACY if legacy else _MODERN).bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{owner}(): {exc}") from None
    bound.apply_defaults()
    return bound.arguments


# ------------------------------------------------------------------------ path helpers
# Subfolder and prefix names in an entry follow the rule for output names (staging.check_name):
# nothing that could climb out of the entry or hide a file.
_SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")


def _check_part(owner: str, option: str, value: str, part: str) -> None:
    if not _SAFE_PART.match(part) or ".." in part:
        raise GraphError(
            f"{owner}({option}={value!r}): {part!r} cannot be a name inside a cache entry",
            hint="use letters, digits, '_', '-' and '.', with '/' between subfolders "
            "(no leading '/', '.' or '..').",
        )


def _without_extension(path: str, extension: str) -> str:
    return path[: -len(extension)] if extension and path.endswith(extension) else path


def _with_extension(name: str, extension: str) -> str:
    # As Curifactory: an output named "data.csv" is not saved as "data.csv.csv".
    return name if not extension or name.endswith(extension) else name + extension


def _write_text(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


class _HashingFile:
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


def json_safe(value: Any) -> Any:
    """`value` as plain JSON data, other objects as their `str()` (as Curifactory's metadata
    files store them), so the entry's metadata can always be written."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return repr(value)


# ------------------------------------------------------------------------ Cacheable
class Cacheable:
    """Base class for cachers. Subclasses implement `save(obj)` and `load()`, using
    `self.path` or `self.get_path()` (and `get_path(suffix)` / `get_dir()` for more files).

    Args (Curifactory >= 0.10 order; `Cacheable(extension, path_override)` works too):
        path_override: where a standalone cacher saves and loads. With a `record`, the fields
            `{hash}`, `{cache}`, `{stage}`, `{name}`, `{params.X}`, `{experiment}` and
            `{artifact_filename}` are filled in. Refused for a cacher listed in a stage's
            `cachers`: a stage's outputs live in its cache entry.
        name: the object name; in a stage it is the output's name.
        subdir, prefix: in a stage, the file becomes `<output>/<subdir>/<prefix>_<output><ext>`
            inside the entry (the entry itself is where the runner puts it).
        extension: added to the name to make the path (".json"; "" or None for none).
        record: the record a standalone cacher works for (paths, templates, metadata).
        track: whether Curifactory's `--store-full` copies the file (no effect on caching).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = _constructor_options(type(self).__name__, args, kwargs)
        self.path_override: str | None = options["path_override"]
        self.name: str | None = options["name"]
        self.subdir: str | None = options["subdir"]
        self.prefix: str | None = options["prefix"]
        self.extension: str = options["extension"] or ""
        self.track: bool = options["track"]
        self.record: Any = None
        self.stage: str | None = None
        self.cache_paths: list[str] = []  # every path get_path() handed out, as Curifactory
        self.metadata: dict[str, Any] | None = None
        self.extra_metadata: dict[str, Any] = {}
        self._path: str | None = None  # set by the runner (or assigned to `path`)
        self._bound_dir: str | None = None  # the staging folder the runner bound it to
        self._entry_dir: str | None = None  # where that folder is published (see _published)
        self._paths_given = False  # whether a path was asked for (path, get_path, get_dir)
        # path -> (size, mtime_ns, sha256, first byte) of files written through _write_file
        # into the staging folder: the runner then need not read them back for checksums.
        self._written: dict[str, tuple[int, int, str, bytes]] = {}
        if options["record"] is not None:
            self.set_record(options["record"])

    # ---------------------------------------------------------------- binding (the runner)
    def _bind(self, directory: str, output_name: str) -> None:
        """Point the cacher at output `output_name` of the entry being written (or read) in
        `directory`."""
        owner = type(self).__name__
        if self.path_override is not None:
            # The engine checksums every file of an entry and publishes it in one rename;
            # a file elsewhere would be neither, and writing it before the stage's entry is
            # published would leave it behind when the stage fails.
            raise GraphError(
                f"output {output_name!r}: {owner}(path_override={self.path_override!r}) "
                "cannot be used in a stage's cachers: stage outputs are written into the "
                "stage's cache entry",
                hint="drop path_override: the file is then kept in the entry (inside the "
                "stage, record.stage_cachers[i].get_path() is its path); for a copy at a "
                "chosen path after the run, use `curi cache dump ENTRY OUTPUT --out FILE`.",
            )
        parts = [output_name]
        if self.subdir is not None or self.prefix is not None:
            # Keep the output's name first: the files of an output are those whose path in
            # the entry starts with it (that is how they are verified and fetched).
            subdir = self.subdir.split("/") if self.subdir else []
            for part in subdir:
                _check_part(owner, "subdir", str(self.subdir), part)
            if self.prefix is not None:
                _check_part(owner, "prefix", self.prefix, self.prefix)
            filename = output_name if self.prefix is None else f"{self.prefix}_{output_name}"
            parts = [output_name, *subdir, filename]
        self.name = output_name
        self._bound_dir = directory
        # Always `<output><extension>`, even for an output named "data.csv": a sibling path
        # (`get_path("_model")`) must still start with the output's name.
        self._path = f"{directory}{os.sep}{os.sep.join(parts)}{self.extension}"

    @contextlib.contextmanager
    def _write_file(self, path: str) -> Iterator[Any]:
        """A binary file to write `path` through. In the runner's staging folder it is written
        in place (the folder is private, and published whole by one rename) and its checksum
        is taken while it is written; anywhere else, atomically through a temporary file."""
        bound = self._bound_dir
        if bound is None or not path.startswith(bound + os.sep):
            with atomic_path(path) as tmp, open(tmp, "wb") as outfile:
                yield outfile
            return
        folder = os.path.dirname(path)
        if folder != bound:
            os.makedirs(folder, exist_ok=True)
        fd = os.open(path, WRITE_FLAGS, 0o666)
        try:
            hashing = _HashingFile(fd)
            yield hashing
            info = os.fstat(fd)
        finally:
            os.close(fd)
        self._written[path] = (
            hashing.size,
            info.st_mtime_ns,
            hashing.hash.hexdigest(),
            hashing.first,
        )

    def _write_bytes(self, path: str, data: bytes) -> None:
        """`_write_file` for content already in memory, in one call (for a small artifact,
        the context manager and the hashing wrapper cost more than the write)."""
        bound = self._bound_dir
        if bound is None or path.rpartition(os.sep)[0] != bound:
            with self._write_file(path) as outfile:
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
        self._written[path] = (len(data), info.st_mtime_ns, sha, data[:1])

    def _published(self, path: str) -> str:
        """`path` as it will be once the runner has published the staging folder it is in."""
        staged, final = self._bound_dir, self._entry_dir
        if staged and final and (path == staged or path.startswith(staged + os.sep)):
            return final + path[len(staged) :]
        return path

    # ---------------------------------------------------------------- paths
    @property
    def path(self) -> str:
        """The artifact's path (Curifactory's original API); "" while there is none."""
        try:
            return self._artifact_path()
        except CacheError:
            return ""

    @path.setter
    def path(self, value: str | os.PathLike[str] | None) -> None:
        self._path = None if value is None else os.fspath(value)

    def _artifact_path(self) -> str:
        self._paths_given = True  # the runner then looks for this path in returned values
        if self._path is not None:
            return self._path
        if self.path_override is not None:
            return self._resolve_path_template(os.fspath(self.path_override))
        owner = type(self).__name__
        if self.record is not None:
            if self.name is None:
                raise CacheError(
                    f"{owner} has a record but no object name to make a path from",
                    hint="pass name='...' or a path: JsonCacher('out.json').",
                )
            return str(
                self.record.get_path(
                    _with_extension(self.name, self.extension),
                    subdir=self.subdir,
                    prefix=self.prefix,
                    stage_name=self.stage,
                    track=self.track,
                )
            )
        raise CacheError(
            f"{owner} has no path to save to or load from",
            hint=f"pass one ({owner}('out{self.extension}')), give it a record, or list it in "
            "a stage's cachers.",
        )

    def get_path(self, suffix: str | None = None) -> str:
        """The artifact's path; with `suffix`, a sibling path with `suffix` instead of the
        extension (`get_path("_model")`, `get_path("_metadata.json")`)."""
        path = self._artifact_path()
        if suffix is not None:
            path = _without_extension(path, self.extension) + suffix
        if path not in self.cache_paths:
            self.cache_paths.append(path)
        return path

    def get_dir(self, suffix: str | None = None) -> str:
        """A directory beside the artifact (created): its path without the extension, plus
        `suffix`."""
        path = _without_extension(self._artifact_path(), self.extension) + (suffix or "")
        os.makedirs(path, exist_ok=True)
        return path

    def _resolve_path_template(self, path: str) -> str:
        """`path_override` with Curifactory's fields filled in; as in Curifactory, a cacher
        without a record takes the path as it is."""
        if self.record is None:
            return path
        try:
            return path.format(**self._template_fields())
        except (KeyError, AttributeError, IndexError, ValueError) as exc:
            raise CacheError(
                f"{type(self).__name__}: cannot fill in path_override {path!r}: "
                f"{type(exc).__name__}: {exc}",
                hint="the fields are {hash}, {cache}, {stage}, {name}, {params.NAME}, "
                "{experiment} and {artifact_filename}; double braces for a literal brace.",
            ) from None

    def _template_fields(self) -> dict[str, Any]:
        record = self.record
        manager = getattr(record, "manager", None)
        experiment = getattr(manager, "experiment_name", "experiment")
        name = self.name if self.name is not None else "None"  # Curifactory's placeholder
        stage = self.stage or _running_stage(record)
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
                f"{prefix}_{params_hash}_{stage}_{_with_extension(name, self.extension)}"
            ),
        }

    def check(self) -> bool:
        """Whether the artifact file exists (the runner decides cache hits from the entry's
        metadata instead). False when the record's parameters ask to overwrite."""
        if self.record is not None and getattr(self.record.params, "overwrite", False) is True:
            return False
        path = self.path
        return bool(path) and os.path.exists(path)

    # ---------------------------------------------------------------- metadata
    def set_record(self, record: Any) -> None:
        self.record = record
        self.collect_metadata()

    def collect_metadata(self) -> None:
        """Fill `metadata` from the record, with Curifactory's keys (`extra` is
        `extra_metadata`)."""
        record = self.record
        if record is None:
            raise CacheError(
                "cannot collect metadata from a cacher with no associated record",
                hint="assign cacher.record first.",
            )
        params = record.params
        self.metadata = {
            "artifact_generated": datetime.datetime.now().strftime("%Y-%m-%d-T%H%M%S"),
            "params_hash": record.get_hash(),
            "params_name": getattr(params, "name", None) if params is not None else None,
            "record_name": record.get_reference_name(),
            "stage": self.stage or _running_stage(record),
            "artifact_name": self.name,
            "cacher_type": str(type(self)),
            "record_prior_stages": list(getattr(record, "stages", [])[:-1]),
            "prior_records": [r.get_reference_name() for r in record.input_records],
            "params": None if params is None else json_safe(_params_fields(params)),
            "extra": self.extra_metadata,
            "manager_run_info": {},
        }

    def save_metadata(self) -> None:
        """Write `metadata` (with `extra_metadata` as its `extra`) beside the artifact, to
        `get_path("_metadata.json")`.

        In a stage there is nothing to write here: the runner keeps `extra_metadata` in the
        entry's `meta.json` (checksummed with the entry) once `save()` returns, and gives it
        back before `load()`. A file here would only duplicate it, and a timestamp in it would
        change the output's version on every recompute, re-running stages that read it.
        """
        if self._bound_dir is not None:
            return
        if self.metadata is None:
            data: dict[str, Any] = {"extra": self.extra_metadata}
        else:
            self.metadata.setdefault("extra", {}).update(self.extra_metadata)
            data = self.metadata
        _write_text(self.get_path("_metadata.json"), json.dumps(data, indent=2, default=str))

    def load_metadata(self) -> dict[str, Any] | None:
        """Read the metadata saved with the artifact into `metadata` and `extra_metadata`;
        returns `metadata` (None when there is none). In a stage, the runner has already
        restored both from the entry."""
        if self._bound_dir is not None:
            return self.metadata
        path = self.get_path("_metadata.json")
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as infile:
                    self.metadata = json.load(infile)
            except (OSError, ValueError) as exc:
                raise CacheError(f"cannot read the metadata file {path}: {exc}") from None
            assert self.metadata is not None
            self.extra_metadata = self.metadata.get("extra") or {}
        return self.metadata

    # ---------------------------------------------------------------- the contract
    def save(self, obj: Any) -> Any:
        msg = f"{type(self).__name__} does not implement save(obj)"
        raise NotImplementedError(msg)

    def load(self) -> Any:
        msg = f"{type(self).__name__} does not implement load()"
        raise NotImplementedError(msg)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"


Cacheable.__init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined] # for help()
    [_P("self", _P.POSITIONAL_OR_KEYWORD), *_MODERN.parameters.values()]
)


def _running_stage(record: Any) -> str | None:
    current = getattr(record, "_current_stage", None)
    return (current() or None) if callable(current) else None


def _params_fields(params: Any) -> Any:
    data = getattr(params, "_data", None)
    if isinstance(data, dict):
        return data
    fields = getattr(params, "__dict__", None)
    if isinstance(fields, dict):
        return {k: v for k, v in fields.items() if not k.startswith("_")}
    return repr(params)


def new_cacher(template: type[Cacheable] | Cacheable) -> Cacheable:
    """A fresh cacher for one stage call: a class is instantiated, an instance copied, so no
    two records ever share one (Curifactory's shared-instance bug)."""
    return template() if isinstance(template, type) else copy.deepcopy(template)


# ------------------------------------------------------------------------ JSON and pickle
_JSON_SCALARS = (bool, int, float, str)
_JSON_SCALAR_TYPES = frozenset({type(None), bool, int, float, str})
_JSON_MAX_DEPTH = 200
# JsonCacher's files: json.dumps's format, without its circular-reference check (a value
# with a cycle is refused first, as nested too deeply).
_JSON_WRITER = json.JSONEncoder(check_circular=False)


def _json_problem(obj: Any) -> str | None:
    """Where `obj` stops being plain JSON that loads back as the same value, or None."""
    found = _json_trouble(obj, 0)
    if found is None:
        return None
    steps, message = found
    return "$" + "".join(reversed(steps)) + message


def _json_trouble(obj: Any, depth: int) -> tuple[list[str], str] | None:
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
        found = _json_trouble(value, depth + 1)
        if found is not None:
            found[0].append(step.format(name))
            return found
    return None


class JsonCacher(Cacheable):
    """Saves plain JSON data (dicts with string keys, lists, numbers, strings, booleans, None).

    Tuples are written as lists. A value JSON cannot represent is an error, never a silent
    `str()`: use PickleCacher or convert the value.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, extension=".json", **kwargs)

    def save(self, obj: Any) -> str:
        problem = _json_problem(obj)
        if problem:
            msg = f"JsonCacher cannot save this value: {problem}"
            raise CacheError(msg, hint="convert it to plain JSON types or use PickleCacher.")
        path = self.get_path()
        # One line: json's C encoder (an indented file goes through its Python encoder, three
        # times slower); `curi cache dump` shows it indented.
        self._write_bytes(path, _JSON_WRITER.encode(obj).encode("utf-8"))
        return path

    def load(self) -> Any:
        with open(self.get_path(), encoding="utf-8") as infile:
            return json.load(infile)


class PickleCacher(Cacheable):
    """Pickles any object. Loading is only done for files whose checksum this tool recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, extension=".pkl", **kwargs)

    def save(self, obj: Any) -> str:
        path = self.get_path()
        with self._write_file(path) as outfile:
            pickle.dump(obj, outfile, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    def load(self) -> Any:
        with open(self.get_path(), "rb") as infile:
            return pickle.load(infile)


# Cachers whose save() writes every file through Cacheable._write_file (which checksums it
# as it goes) and nothing else. Exact classes: a subclass may write more.
TRACKED_WRITERS = frozenset({JsonCacher, PickleCacher})


# ------------------------------------------------------------------------ pandas
@dataclass(frozen=True)
class _PandasFormat:
    extension: str
    writer: str  # the DataFrame method
    reader: str  # the pandas function
    modules: tuple[str, ...] = ()  # any one of them will do
    package: str = ""  # what to pip install
    extra: str = ""  # curifactory-cli's extra that installs it


# Curifactory's formats (and extensions), plus feather.
_PANDAS_FORMATS = {
    "csv": _PandasFormat(".csv", "to_csv", "read_csv"),
    "json": _PandasFormat(".json", "to_json", "read_json"),
    "parquet": _PandasFormat(
        ".parquet", "to_parquet", "read_parquet", ("pyarrow", "fastparquet"), "pyarrow", "parquet"
    ),
    "feather": _PandasFormat(
        ".feather", "to_feather", "read_feather", ("pyarrow",), "pyarrow", "feather"
    ),
    "pickle": _PandasFormat(".pkl", "to_pickle", "read_pickle"),
    "orc": _PandasFormat(".orc", "to_orc", "read_orc", ("pyarrow",), "pyarrow", "orc"),
    "hdf5": _PandasFormat(".h5", "to_hdf", "read_hdf", ("tables",), "tables", "hdf5"),
    "excel": _PandasFormat(".xlsx", "to_excel", "read_excel", ("openpyxl",), "openpyxl", "excel"),
    "xml": _PandasFormat(".xml", "to_xml", "read_xml", ("lxml",), "lxml", "xml"),
}


def _default_pandas_args(format: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Curifactory's defaults for `to_args` and `read_args`."""
    defaults: dict[str, dict[str, Any]] = {
        "json": {"double_precision": 15},
        "hdf5": {"key": "df"},
        "xml": {"index": False},
    }
    to_args = defaults.get(format, {})
    read_args: dict[str, Any] = {"index_col": 0} if format in ("csv", "excel") else {}
    return dict(to_args), read_args


class PandasCacher(Cacheable):
    """A DataFrame in one of pandas' IO formats: `df.to_<format>(path, **to_args)`, read back
    with `pd.read_<format>(path, **read_args)`.

    Args:
        format: "csv", "json", "parquet", "feather", "pickle" (the default), "orc", "hdf5",
            "excel" or "xml". parquet, feather and orc need pyarrow, hdf5 needs tables, excel
            needs openpyxl and xml needs lxml (`pip install 'curifactory-cli[parquet]'`, ...).
        to_args, read_args: keyword arguments of the pandas calls; when not given,
            Curifactory's defaults (json: double_precision=15; hdf5: key="df"; xml:
            index=False; csv and excel read with index_col=0).
    """

    def __init__(
        self,
        path_override: str | None = None,
        format: str = "pickle",
        to_args: dict[str, Any] | None = None,
        read_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if format not in _PANDAS_FORMATS:
            raise GraphError(
                f"{type(self).__name__}: unknown format {format!r}",
                hint="use one of: " + ", ".join(_PANDAS_FORMATS) + ".",
            )
        default_to, default_read = _default_pandas_args(format)
        self.format = format
        self.to_args = default_to if to_args is None else dict(to_args)
        self.read_args = default_read if read_args is None else dict(read_args)
        super().__init__(
            path_override=path_override, extension=_PANDAS_FORMATS[format].extension, **kwargs
        )

    def save(self, obj: Any) -> str:
        import pandas as pd

        spec = _PANDAS_FORMATS[self.format]
        self._require(spec, self.to_args)
        if not callable(getattr(obj, spec.writer, None)):
            raise CacheError(
                f"{self._label()} saves a pandas DataFrame, not a {type(obj).__name__} "
                f"(it has no {spec.writer}())",
                hint="return a DataFrame, or use PickleCacher.",
            )
        # As Curifactory: what was used, to explain a file that loads differently later.
        self.extra_metadata["pandas_version"] = pd.__version__
        self.extra_metadata["to_args"] = json_safe(self.to_args)
        self.extra_metadata["read_args"] = json_safe(self.read_args)
        self.extra_metadata["format"] = self.format
        self.save_metadata()
        path = self.get_path()
        with atomic_path(path) as tmp:
            try:
                getattr(obj, spec.writer)(tmp, **self.to_args)
            except ImportError as exc:
                raise self._missing(spec, exc) from None
        return path

    def load(self) -> Any:
        import pandas as pd

        self.load_metadata()
        spec, read_args, path = self._saved_format()
        self._require(spec, read_args)
        saved = (self.extra_metadata or {}).get("pandas_version")
        if saved and saved != pd.__version__:
            import logging  # only for this warning: importing it costs every run 2 ms

            logging.getLogger(__name__).warning(
                "loading a DataFrame saved with pandas %s using pandas %s", saved, pd.__version__
            )
        reader = getattr(pd, spec.reader)
        try:
            if spec.reader == "read_json":  # a file object: never mistaken for JSON text
                with open(path, encoding="utf-8") as infile:
                    return reader(infile, **read_args)
            return reader(path, **read_args)
        except ImportError as exc:
            raise self._missing(spec, exc) from None

    def _saved_format(self) -> tuple[_PandasFormat, dict[str, Any], str]:
        """The format, read arguments and path to load. They are this cacher's, unless the
        entry records another format: a cacher rebuilt without its options (`curi cache dump`)
        then reads what was written."""
        recorded = (self.extra_metadata or {}).get("format")
        if self._bound_dir is None or recorded == self.format or recorded not in _PANDAS_FORMATS:
            return _PANDAS_FORMATS[self.format], self.read_args, self.get_path()
        spec = _PANDAS_FORMATS[recorded]
        read_args = self.extra_metadata.get("read_args")
        path = _without_extension(self.get_path(), self.extension) + spec.extension
        return spec, dict(read_args) if isinstance(read_args, dict) else {}, path

    def _label(self) -> str:
        return f"PandasCacher(format={self.format!r})"

    def _require(self, spec: _PandasFormat, args: dict[str, Any]) -> None:
        """A clear error naming the package to install, before pandas fails half-way."""
        if not spec.modules or "engine" in args:  # the user picked the library
            return
        if spec.reader == "read_xml" and args.get("parser", "lxml") != "lxml":
            return  # parser="etree" is in the standard library
        if any(importlib.util.find_spec(module) is not None for module in spec.modules):
            return
        raise self._missing(spec)

    def _missing(self, spec: _PandasFormat, exc: ImportError | None = None) -> CacheError:
        if not spec.package:
            return CacheError(f"{self._label()}: {exc}", hint="install the package it names.")
        return CacheError(
            f"{self._label()} needs {spec.package}: pip install 'curifactory-cli[{spec.extra}]'",
            hint="or use a format that needs nothing more: csv, json or pickle.",
        )


class PandasCsvCacher(PandasCacher):
    """A DataFrame as CSV (`df.to_csv(path, **to_csv_args)`, `pd.read_csv(path, index_col=0)`).
    The same as `PandasCacher(format="csv")`."""

    def __init__(
        self,
        path_override: str | None = None,
        to_csv_args: dict[str, Any] | None = None,
        read_csv_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            path_override, format="csv", to_args=to_csv_args, read_args=read_csv_args, **kwargs
        )


class PandasJsonCacher(PandasCacher):
    """A DataFrame as a JSON array of row objects keyed by column name (the index is dropped),
    written with `double_precision=15` unless `to_json_args` says otherwise."""

    def __init__(
        self,
        path_override: str | None = None,
        to_json_args: dict[str, Any] | None = None,
        read_json_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        to_args: dict[str, Any] = (
            {"double_precision": 15} if to_json_args is None else dict(to_json_args)
        )
        read_args: dict[str, Any] = {} if read_json_args is None else dict(read_json_args)
        # The documented layout (an array of dictionaries), not pandas' default orient.
        to_args.setdefault("orient", "records")
        read_args.setdefault("orient", "records")
        super().__init__(
            path_override, format="json", to_args=to_args, read_args=read_args, **kwargs
        )


class PandasParquetCacher(PandasCacher):
    """A DataFrame as Parquet (needs pyarrow: `pip install 'curifactory-cli[parquet]'`). The
    same as `PandasCacher(format="parquet")`; keeps dtypes and the index."""

    def __init__(
        self,
        path_override: str | None = None,
        to_parquet_args: dict[str, Any] | None = None,
        read_parquet_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            path_override,
            format="parquet",
            to_args=to_parquet_args,
            read_args=read_parquet_args,
            **kwargs,
        )


# ------------------------------------------------------------------------ paths and notebooks
def _as_path_list(files: Any, owner: str) -> list[str] | str:
    if isinstance(files, (str, os.PathLike)):
        return os.fspath(files)
    if isinstance(files, (list, tuple)) and all(isinstance(f, (str, os.PathLike)) for f in files):
        return [os.fspath(f) for f in files]
    raise CacheError(
        f"{owner} saves a file path or a list of file paths, not a {type(files).__name__}",
        hint="return the path(s) the stage wrote, e.g. files under record.get_dir(...).",
    )


class FileReferenceCacher(Cacheable):
    """Saves a file path, or a list of them, as JSON; the files themselves are not copied.

    As in Curifactory, `check()` is true only while every referenced file exists. Files made
    with `record.get_path()`/`get_dir()` are part of the stage's entry (and their paths are
    the published ones); loading a reference whose files are gone is an error.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, extension=".json", **kwargs)

    def save(self, files: Any) -> str:
        path = self.get_path()
        _write_text(path, json.dumps(_as_path_list(files, "FileReferenceCacher"), indent=4))
        return path

    def load(self) -> list[str] | str:
        files = self._read()
        missing = [f for f in ([files] if isinstance(files, str) else files) if not _exists(f)]
        if missing:
            # Curifactory would quietly recompute the stage; the runner trusts its entry, so
            # say what is gone instead of handing out dangling paths.
            raise CacheError(
                f"FileReferenceCacher: {len(missing)} file(s) that output {self.name!r} refers "
                f"to no longer exist, e.g. {missing[0]!r}",
                hint="restore them, or recompute the stage that wrote them with "
                "--overwrite-stage STAGE.",
            )
        return files

    def check(self) -> bool:
        if not super().check():
            return False
        files = self._read()
        return all(_exists(f) for f in ([files] if isinstance(files, str) else files))

    def _read(self) -> list[str] | str:
        with open(self.get_path(), encoding="utf-8") as infile:
            return json.load(infile)


def _exists(path: str) -> bool:
    return os.path.exists(path)


class RawJupyterNotebookCacher(Cacheable):
    """A list of code cells (each a list of lines) saved as a Jupyter notebook, `<name>.ipynb`,
    plus the cells as `<name>_cells.json`, which `load()` returns.

    Curifactory runs the external `ipynb-py-convert` tool; the notebook is written here
    directly, with the same rules: a cell whose text starts with triple quotes is a markdown
    cell (the quotes removed), every other cell is a code cell.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, extension=".ipynb", **kwargs)

    def save(self, obj: Any) -> str:
        if not isinstance(obj, list) or not all(
            isinstance(cell, list) and all(isinstance(line, str) for line in cell) for cell in obj
        ):
            raise CacheError(
                "RawJupyterNotebookCacher saves a list of cells, each a list of strings, not "
                f"{type(obj).__name__}",
                hint='return e.g. [["import pandas as pd"], ["df = pd.read_csv(path)"]].',
            )
        path = self.get_path()
        notebook = _notebook([_notebook_cell("\n".join(cell)) for cell in obj])
        _write_text(path, json.dumps(notebook, indent=2))
        JsonCacher(self.get_path("_cells.json")).save(obj)
        return path

    def load(self) -> list[list[str]]:
        return JsonCacher(self.get_path("_cells.json")).load()


def _notebook_cell(text: str) -> dict[str, Any]:
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


def _notebook(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "file_extension": ".py"},
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }


class PathRef(Cacheable):
    """Saves nothing: the output *is* a path, this cacher's own, which the stage writes to
    (`record.stage_cachers[i].get_path()`) and returns. Loading returns the path.

    In a stage the path is inside the entry, so what the stage wrote there is checksummed and
    published with it; returning another path, or writing nothing there, is an error.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No extension by default; given as a keyword, so a path such as ".data" is a path.
        super().__init__(*args, extension=kwargs.pop("extension", None), **kwargs)

    def save(self, obj: Any) -> str:
        internal = self.get_path()
        returned = os.fspath(obj) if isinstance(obj, (str, os.PathLike)) else obj
        # The runner rewrites returned staging paths to their published place before saving.
        published = self._published(internal)
        if returned not in (internal, published):
            raise CacheError(
                f"stage returned unexpected path to PathRef cacher for artifact {self.name!r}: "
                f"expected {published!r}, returned {returned!r}",
                hint="write to record.stage_cachers[i].get_path() and return that path.",
            )
        if self._bound_dir is not None and not os.path.exists(internal):
            raise CacheError(
                f"PathRef for output {self.name!r}: nothing was written at {internal!r}",
                hint="write the file (or folder) at that path before returning it.",
            )
        return internal

    def load(self) -> str:
        return self.get_path()


# ------------------------------------------------------------------------ Lazy
class Lazy:
    """Marks an output as lazy: `@stage(outputs=["small", Lazy("large")], ...)`.

    The output is cached and dropped from memory as soon as the stage returns; the record's
    state holds this handle, which loads the object through its cacher whenever the name is read.
    With `resolve=False`, consuming stages receive the handle itself (e.g. to pass
    `lazy.cacher.get_path()` to an external tool). Every record gets its own copy.
    """

    def __init__(self, name: str, resolve: bool = True) -> None:
        self.name = name
        self.resolve = resolve
        self.cacher: Cacheable | None = None
        self._value: Any = _UNSET  # only used when nothing could be written (--dry)

    def load(self) -> Any:
        if self._value is not _UNSET:
            return self._value
        if self.cacher is None:
            msg = f"Lazy output {self.name!r} has no cacher to load it from"
            raise CacheError(msg)
        loader = getattr(self.cacher, "_curi_loader", None)
        return loader() if loader is not None else self.cacher.load()

    def _copy_for(self, cacher: Cacheable | None) -> Lazy:
        clone = copy.copy(self)
        clone.cacher = cacher
        clone._value = _UNSET
        return clone

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        where = f" at {self.cacher.path!r}" if self.cacher is not None and self.cacher.path else ""
        return f"Lazy({self.name!r}{where})"


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()
