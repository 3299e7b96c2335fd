"""Cachers (Curifactory's `Cacheable` API) and the `Lazy` output marker.

A cacher saves and loads one object. It is used in one of two ways, as in Curifactory:

* **In a stage's `cachers=[...]`.** The runner binds a fresh copy to the output before the stage
  runs: `path` (a `str`) and `get_path()` point at `<output><extension>` inside the stage's
  private draft folder, which the runner checksums and publishes atomically as the cache
  entry. A cacher may also write sibling files whose names start with the path
  (`self.path + "_model"`, `get_path("_model")`, `get_dir()`): they are part of the entry too.
* **Standalone ("inline"), with a path:** `JsonCacher("out.json").save(x)`, `.load()`. The path
  may use Curifactory's `path_override` templates when the cacher has a `record`. Files are
  written atomically: a temporary file beside the target, then `os.replace`.

pandas and its optional IO libraries are imported only inside `save()`/`load()`.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import pickle
from typing import Any

from curifactory_cli import cacher_support as support
from curifactory_cli.atomic import atomic_path
from curifactory_cli.cacher_support import (
    JSON_WRITER,
    PANDAS_FORMATS,
    _PandasIOType,
    as_path_list,
    constructor_options,
    default_pandas_args,
    exists,
    json_problem,
    json_safe,
    notebook_cell,
    notebook_json,
    pandas_format_name,
    with_extension,
    without_extension,
    write_text,
)
from curifactory_cli.errors import CacheError, GraphError

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


# ------------------------------------------------------------------------ Cacheable
class Cacheable:
    """Base class for cachers. Subclasses implement `save(obj)` and `load()`, using
    `self.path` or `self.get_path()` (and `get_path(suffix)` / `get_dir()` for more files).

    Args (Curifactory >= 0.10 order; `Cacheable(extension, path_override)` works too):
        path_override: where a standalone cacher saves and loads. With a `record`, the fields
            `{hash}`, `{cache}`, `{stage}`, `{name}`, `{params.X}`, `{experiment}` and
            `{artifact_filename}` are filled in. In a stage's `cachers`, the output is
            saved in its cache entry and a verified copy kept at that path (engine.exports).
        name: the object name; in a stage it is the output's name.
        subdir, prefix: in a stage, the file becomes `<output>/<subdir>/<prefix>_<output><ext>`
            inside the entry (the entry itself is where the runner puts it).
        extension: added to the name to make the path (".json"; "" or None for none).
        record: the record a standalone cacher works for (paths, templates, metadata).
        track: whether Curifactory's `--store-full` copies the file (no effect on caching).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = constructor_options(type(self).__name__, args, kwargs)
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
        self._bound_dir: str | None = None  # the draft folder the runner bound it to
        self._entry_dir: str | None = None  # where that folder is published (see _published)
        self._paths_given = False  # whether a path was asked for (path, get_path, get_dir)
        # path -> (size, mtime_ns, sha256, first byte) of files written through _write_file
        # into the draft folder: the runner then need not read them back for checksums.
        self._written: dict[str, tuple[int, int, str, bytes]] = {}
        if options["record"] is not None:
            self.set_record(options["record"])

    # ---------------------------------------------------------------- binding and writing
    # The runner binds a cacher to an output of the entry it writes; files written through
    # _write_file/_write_bytes into that draft folder are checksummed as they are written.
    _bind = support.bind
    _write_file = support.tracked_file
    _write_bytes = support.tracked_bytes
    _published = support.published

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
                    with_extension(self.name, self.extension),
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
            path = without_extension(path, self.extension) + suffix
        if path not in self.cache_paths:
            self.cache_paths.append(path)
        return path

    def get_dir(self, suffix: str | None = None) -> str:
        """A directory beside the artifact (created): its path without the extension, plus
        `suffix`."""
        path = without_extension(self._artifact_path(), self.extension) + (suffix or "")
        os.makedirs(path, exist_ok=True)
        return path

    _resolve_path_template = support.resolve_path_template
    _template_fields = support.template_fields

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
        self.metadata = support.record_metadata(self)

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
        write_text(self.get_path("_metadata.json"), json.dumps(data, indent=2, default=str))

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
    [support.SELF, *support.MODERN.parameters.values()]
)


def new_cacher(template: type[Cacheable] | Cacheable) -> Cacheable:
    """A fresh cacher for one stage call: a class is instantiated, an instance copied, so no
    two records ever share one (Curifactory's shared-instance bug)."""
    return template() if isinstance(template, type) else copy.deepcopy(template)


# ------------------------------------------------------------------------ JSON and pickle
class JsonCacher(Cacheable):
    """Saves plain JSON data (dicts with string keys, lists, numbers, strings, booleans, None).

    Tuples are written as lists. A value JSON cannot represent is an error, never a silent
    `str()`: use PickleCacher or convert the value.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, extension=".json", **kwargs)

    def save(self, obj: Any) -> str:
        problem = json_problem(obj)
        if problem:
            msg = f"JsonCacher cannot save this value: {problem}"
            raise CacheError(msg, hint="convert it to plain JSON types or use PickleCacher.")
        path = self.get_path()
        # One line: json's C encoder (an indented file goes through its Python encoder, three
        # times slower); `curi cache dump` shows it indented.
        self._write_bytes(path, JSON_WRITER.encode(obj).encode("utf-8"))
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
        format: str | _PandasIOType = "pickle",
        to_args: dict[str, Any] | None = None,
        read_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        format = pandas_format_name(format)  # Curifactory's enum is accepted too
        if format not in PANDAS_FORMATS:
            raise GraphError(
                f"{type(self).__name__}: unknown format {format!r}",
                hint="use one of: " + ", ".join(PANDAS_FORMATS) + ".",
            )
        default_to, default_read = default_pandas_args(format)
        self.format = format
        self.to_args = default_to if to_args is None else dict(to_args)
        self.read_args = default_read if read_args is None else dict(read_args)
        super().__init__(
            path_override=path_override, extension=PANDAS_FORMATS[format].extension, **kwargs
        )

    def save(self, obj: Any) -> str:
        import pandas as pd

        spec = PANDAS_FORMATS[self.format]
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

    _saved_format = support.pandas_saved_format
    _label = support.pandas_label
    _require = support.pandas_require
    _missing = support.pandas_missing


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
        write_text(path, json.dumps(as_path_list(files, "FileReferenceCacher"), indent=4))
        return path

    def load(self) -> list[str] | str:
        files = self._read()
        missing = [f for f in ([files] if isinstance(files, str) else files) if not exists(f)]
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
        return all(exists(f) for f in ([files] if isinstance(files, str) else files))

    def _read(self) -> list[str] | str:
        with open(self.get_path(), encoding="utf-8") as infile:
            return json.load(infile)


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
        notebook = notebook_json([notebook_cell("\n".join(cell)) for cell in obj])
        write_text(path, json.dumps(notebook, indent=2))
        JsonCacher(self.get_path("_cells.json")).save(obj)
        return path

    def load(self) -> list[list[str]]:
        return JsonCacher(self.get_path("_cells.json")).load()


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
        # The runner rewrites returned draft paths to their published place before saving.
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
