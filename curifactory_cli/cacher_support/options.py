"""How a cacher is made and described: Curifactory's two constructor forms, the names allowed
inside an entry, `path_override` templates and the metadata of a standalone cacher.

The functions taking a `cacher` are the bodies of `curifactory_cli.caching.Cacheable` methods
(typed `Any` here: `caching` imports this module, not the other way round).
"""

from __future__ import annotations

import datetime
import inspect
import re
from typing import Any

from curifactory_cli.cacher_support.values import json_safe
from curifactory_cli.errors import CacheError, GraphError

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
