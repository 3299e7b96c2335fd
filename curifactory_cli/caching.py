"""Cachers (Curifactory's `Cacheable` API) and the `Lazy` output marker.

A cacher saves and loads one stage output. The runner sets `path` (a `str`) before it calls
`save(obj)` or `load()`; a cacher may also write sibling files whose names start with `path`
(`self.path + "_model"`). Files are written into a private staging folder and published
atomically by the runner, so cachers never need to care about partial writes.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from typing import Any

from curifactory_cli.errors import CacheError

__all__ = [
    "Cacheable",
    "JsonCacher",
    "Lazy",
    "PandasCsvCacher",
    "PandasJsonCacher",
    "PickleCacher",
]


class Cacheable:
    """Base class for cachers. Subclasses implement `save(obj)` and `load()` using `self.path`.

    Args:
        extension: appended to the output name to make `path`, e.g. ".json" or "" (none).
        name, subdir, prefix, path_override, record, track: accepted for compatibility with
            cachers written for Curifactory's newer API; the runner owns the cache layout, so
            only `name` (the output name) is used.
    """

    def __init__(
        self,
        extension: str | None = "",
        *args: Any,
        name: str | None = None,
        subdir: str | None = None,
        prefix: str | None = None,
        path_override: str | None = None,
        record: Any = None,
        track: bool = True,
        **kwargs: Any,
    ) -> None:
        self.extension = extension or ""
        self.name = name
        self.subdir = subdir
        self.prefix = prefix
        self.path_override = path_override
        self.record = record
        self.track = track
        self.stage: str | None = None
        self.path: str = ""  # set by the runner before save()/load()
        self.extra_metadata: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}

    # The runner points the cacher at `<entry dir>/<output name><extension>`.
    def _bind(self, directory: str, output_name: str) -> None:
        self.name = output_name
        self.path = os.path.join(directory, output_name + self.extension)

    def get_path(self, suffix: str | None = None) -> str:
        """The artifact path; with `suffix`, a sibling path that replaces the extension."""
        if suffix is None:
            return self.path
        base = self.path[: -len(self.extension)] if self.extension else self.path
        return base + suffix

    def get_dir(self, suffix: str | None = None) -> str:
        """A directory beside the artifact (created), for cachers that write many files."""
        path = self.get_path(suffix if suffix is not None else "")
        if suffix is None and self.extension:
            path = self.get_path("")
        os.makedirs(path, exist_ok=True)
        return path

    def check(self) -> bool:
        """Whether the artifact file exists (the runner decides cache hits from its metadata)."""
        return bool(self.path) and os.path.exists(self.path)

    def save(self, obj: Any) -> None:
        msg = f"{type(self).__name__} does not implement save(obj)"
        raise NotImplementedError(msg)

    def load(self) -> Any:
        msg = f"{type(self).__name__} does not implement load()"
        raise NotImplementedError(msg)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"


def new_cacher(template: type[Cacheable] | Cacheable) -> Cacheable:
    """A fresh cacher for one stage call: a class is instantiated, an instance copied, so no
    two records ever share one (Curifactory's shared-instance bug)."""
    return template() if isinstance(template, type) else copy.deepcopy(template)


def _json_problem(obj: Any, where: str = "$", depth: int = 0) -> str | None:
    """Where `obj` stops being plain JSON that loads back as the same value, or None."""
    if depth > 200:
        return f"{where} is nested too deeply"
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return None  # NaN and infinity round-trip through Python's json module
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                return (
                    f"{where} has a key {key!r} of type {type(key).__name__} "
                    "(JSON keys are strings, so it would load back as a different key)"
                )
            problem = _json_problem(value, f"{where}.{key}", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            problem = _json_problem(value, f"{where}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} is a {type(obj).__name__}, which JSON cannot represent"


class JsonCacher(Cacheable):
    """Saves plain JSON data (dicts with string keys, lists, numbers, strings, booleans, None).

    Tuples are written as lists. A value JSON cannot represent is an error, never a silent
    `str()`: use PickleCacher or convert the value.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("extension", None)
        super().__init__(".json", *args, **kwargs)

    def save(self, obj: Any) -> None:
        problem = _json_problem(obj)
        if problem:
            msg = f"JsonCacher cannot save this value: {problem}"
            raise CacheError(msg, hint="convert it to plain JSON types or use PickleCacher.")
        text = json.dumps(obj, indent=2)
        with open(self.path, "w", encoding="utf-8") as outfile:
            outfile.write(text)

    def load(self) -> Any:
        with open(self.path, encoding="utf-8") as infile:
            return json.load(infile)


class PickleCacher(Cacheable):
    """Pickles any object. Loading is only done for files whose checksum this tool recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("extension", None)
        super().__init__(".pkl", *args, **kwargs)

    def save(self, obj: Any) -> None:
        with open(self.path, "wb") as outfile:
            pickle.dump(obj, outfile, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self) -> Any:
        with open(self.path, "rb") as infile:
            return pickle.load(infile)


class PandasCsvCacher(Cacheable):
    """A DataFrame as CSV (`df.to_csv(path, **to_csv_args)`, `pd.read_csv(path, index_col=0)`)."""

    def __init__(
        self,
        *args: Any,
        to_csv_args: dict[str, Any] | None = None,
        read_csv_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("extension", None)
        super().__init__(".csv", *args, **kwargs)
        self.to_csv_args = dict(to_csv_args or {})
        self.read_csv_args = {"index_col": 0} if read_csv_args is None else dict(read_csv_args)

    def save(self, obj: Any) -> None:
        obj.to_csv(self.path, **self.to_csv_args)

    def load(self) -> Any:
        import pandas as pd

        return pd.read_csv(self.path, **self.read_csv_args)


class PandasJsonCacher(Cacheable):
    """A DataFrame as a JSON array of row objects keyed by column name (the index is dropped)."""

    def __init__(
        self,
        *args: Any,
        to_json_args: dict[str, Any] | None = None,
        read_json_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("extension", None)
        super().__init__(".json", *args, **kwargs)
        self.to_json_args = {"double_precision": 15}
        self.to_json_args.update(to_json_args or {})
        self.read_json_args = dict(read_json_args or {})

    def save(self, obj: Any) -> None:
        args = {"orient": "records", **self.to_json_args}
        obj.to_json(self.path, **args)

    def load(self) -> Any:
        import pandas as pd

        args = {"orient": "records", **self.read_json_args}
        with open(self.path, encoding="utf-8") as infile:
            return pd.read_json(infile, **args)


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
