"""The on-disk formats of the built-in cachers: pandas' IO formats (and what each needs
installed), notebooks, and lists of file paths.

The functions taking a `cacher` are the bodies of `curifactory_cli.caching.PandasCacher`
methods.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from curifactory_cli.cacher_support.options import without_extension
from curifactory_cli.errors import CacheError


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


def saved_format(cacher: Any) -> tuple[PandasFormat, dict[str, Any], str]:
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


def label(cacher: Any) -> str:
    return f"PandasCacher(format={cacher.format!r})"


def require(cacher: Any, spec: PandasFormat, args: dict[str, Any]) -> None:
    """A clear error naming the package to install, before pandas fails half-way."""
    if not spec.modules or "engine" in args:  # the user picked the library
        return
    if spec.reader == "read_xml" and args.get("parser", "lxml") != "lxml":
        return  # parser="etree" is in the standard library
    if any(importlib.util.find_spec(module) is not None for module in spec.modules):
        return
    raise missing(cacher, spec)


def missing(cacher: Any, spec: PandasFormat, exc: ImportError | None = None) -> CacheError:
    if not spec.package:
        return CacheError(f"{label(cacher)}: {exc}", hint="install the package it names.")
    return CacheError(
        f"{label(cacher)} needs {spec.package}: pip install 'curifactory-cli[{spec.extra}]'",
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
