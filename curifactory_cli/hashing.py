"""Stable digests: parameter sets, arbitrary parameter values, stage code and cache keys.

Everything here is deterministic across processes and PYTHONHASHSEED: values are turned into a
canonical JSON-compatible tree (sorted mappings and sets, numbers normalised) before hashing.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from curifactory_cli.errors import ParamsError

PARAMS_HASH_WIDTH = 32  # hex characters, fixed
# Curifactory's built-in fields that never take part in a parameter hash.
PARAMETERS_BLACKLIST = frozenset({"name", "hash", "overwrite", "hash_representations"})
MAX_NODES = 1_000_000  # guards against YAML alias bombs
MAX_DEPTH = 100


def digest(data: str | bytes, width: int = 64) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()[:width]


# One encoder for every call: json.dumps with options builds a new one each time, which
# costs more than encoding a key's few parts.
# No circular-reference check: the trees are the walker's, which refuses cycles itself (the
# check cost a tenth of encoding).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)


def canonical_json(tree: Any) -> str:
    return _CANONICAL.encode(tree)


class _Walker:
    """Turns a value into a canonical tree, counting nodes and detecting cycles."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.nodes = 0
        self.active: set[int] = set()

    def fail(self, path: str, why: str) -> ParamsError:
        return ParamsError(
            f"{self.where}: cannot hash parameter {path or '<root>'!r}: {why}",
            hint="use plain values (numbers, strings, lists, mappings, dataclasses), or exclude "
            "the field with hash_representations.",
        )

    def walk(self, obj: Any, path: str = "", depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(path, f"more than {MAX_NODES:,} values (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise self.fail(path, f"nested deeper than {MAX_DEPTH} levels")
        # Most values are plain scalars: their exact type answers before any isinstance.
        cls = type(obj)
        if cls in _AS_IS:
            return obj
        if cls is float:
            return _float_tree(obj)
        leaf = _leaf_tree(obj)
        if leaf is not _NOT_A_LEAF:
            return leaf
        ident = id(obj)
        if ident in self.active:
            raise self.fail(path, "it contains itself (a self-referencing structure)")
        self.active.add(ident)
        try:
            return self._walk_container(obj, path, depth)
        finally:
            self.active.discard(ident)

    def _walk_container(self, obj: Any, path: str, depth: int) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {"__dataclass__": param_set_representation(obj, self, path, depth + 1)}
        if isinstance(obj, Mapping):
            return self._walk_mapping(obj, path, depth)
        if isinstance(obj, (list, tuple)):
            return [self.walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)]
        if isinstance(obj, (set, frozenset)):
            trees = [self.walk(v, f"{path}{{}}", depth + 1) for v in obj]
            return {"__set__": sorted(trees, key=canonical_json)}
        return self._describe_object(obj, path)

    def _walk_mapping(self, obj: Mapping[Any, Any], path: str, depth: int) -> Any:
        """Items sorted by their key's canonical form: insertion order does not count."""
        items = []
        for key, value in obj.items():
            key_tree = self.walk(key, f"{path}.<key>", depth + 1)
            items.append((canonical_json(key_tree), self.walk(value, f"{path}.{key}", depth + 1)))
        items.sort(key=lambda kv: kv[0])
        return {"__map__": items}

    def _describe_object(self, obj: Any, path: str) -> Any:
        """Any other object: a function by name, an array by content, else its repr when
        that is stable (not one that shows a memory address)."""
        if callable(obj) and hasattr(obj, "__qualname__"):
            return {"__callable__": f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"}
        module = type(obj).__module__
        if module.startswith(("pandas", "numpy")):
            return {"__repr__": _array_like_digest(obj)}
        text = repr(obj)
        if " at 0x" in text or " object at " in text:
            raise self.fail(path, f"a {type(obj).__name__} has no stable representation ({text})")
        return {"__repr__": f"{type(obj).__qualname__}:{text}"}


# The scalar types a tree holds as they are (exact types: a subclass may be an Enum).
_AS_IS = frozenset({str, int, bool, type(None)})
_NOT_A_LEAF = object()


def _leaf_tree(obj: Any) -> Any:
    """The tree of a scalar, an Enum member, a path or bytes; _NOT_A_LEAF for anything else."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return {"__enum__": f"{type(obj).__qualname__}.{obj.name}"}
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return _float_tree(obj)
    if isinstance(obj, PurePath):
        return {"__path__": obj.as_posix()}
    if isinstance(obj, bytes):
        return {"__bytes__": hashlib.sha256(obj).hexdigest()}
    return _NOT_A_LEAF


def _float_tree(obj: float) -> Any:
    if math.isnan(obj) or math.isinf(obj):
        return {"__float__": repr(obj)}
    # 1 and 1.0 are the same parameter value: keep a YAML edit from `1` to `1.0` cheap.
    return int(obj) if obj.is_integer() and abs(obj) < 2**53 else obj


def _array_like_digest(obj: Any) -> str:
    """A content digest for numpy arrays and pandas objects, without importing either."""
    to_numpy = getattr(obj, "to_numpy", None)
    data = to_numpy() if to_numpy is not None and not hasattr(obj, "tobytes") else obj
    try:
        raw = data.tobytes()
        return (
            f"{type(obj).__qualname__}:{getattr(data, 'dtype', '')}:{getattr(data, 'shape', '')}:"
            + (hashlib.sha256(raw).hexdigest())
        )
    except (AttributeError, ValueError, TypeError):
        return f"{type(obj).__qualname__}:{obj!r}"


def param_fields(params: Any) -> list[tuple[str, Any]]:
    """(name, value) of a parameter set's fields: a dataclass's, a mapping's or an object's."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return [(f.name, getattr(params, f.name)) for f in dataclasses.fields(params)]
    if isinstance(params, Mapping):
        return list(params.items())
    return list(vars(params).items()) if hasattr(params, "__dict__") else []


def param_set_representation(
    params: Any, walker: _Walker | None = None, path: str = "", depth: int = 0
) -> dict[str, Any]:
    """The hashed fields of a parameter set, following Curifactory's rules.

    Skipped: the built-in fields (name, hash, overwrite, hash_representations), fields whose
    `hash_representations` entry is None, and fields whose value is None (so adding a field that
    defaults to None keeps old hashes). A callable representation `fn(params, value)` replaces
    the value.
    """
    walker = walker or _Walker("parameters")
    reps = _representations(params)
    items = param_fields(params)
    out: dict[str, Any] = {}
    for name, value in items:
        if name in PARAMETERS_BLACKLIST or value is None:
            continue
        if name in reps:
            rep = reps[name]
            if rep is None:
                continue
            if callable(rep):
                value = rep(params, value)
        out[str(name)] = walker.walk(value, f"{path}.{name}" if path else str(name), depth + 1)
    return out


def set_hash_functions(*args: Any, **kwargs: Any) -> Any:
    """Curifactory's helper, a dataclass field default for `hash_representations`:

        hash_representations: dict = cf.set_hash_functions(n_workers=None)

    Each keyword names a parameter: None leaves it out of the hash; a function
    `fn(params, value)` hashes what it returns instead. A dict as first argument is merged
    with the keywords."""
    if args:
        if len(args) > 1 or not isinstance(args[0], dict):
            raise ValueError(
                "If providing a positional arg to set_hash_functions, it must be a dictionary."
            )
        given = {**args[0], **kwargs}
    else:
        given = dict(kwargs)
    return dataclasses.field(default_factory=lambda: dict(given), repr=False)


def _representations(params: Any) -> dict[str, Any]:
    reps = getattr(params, "hash_representations", None)
    if not reps:  # most sets have none (a mapping's check below is an ABC's: slow)
        return {}
    if isinstance(reps, dataclasses.Field):
        # `field(default_factory=lambda: set_hash_functions(...))` wraps the field in a field.
        factory: Any = reps.default_factory
        reps = factory()
    return dict(reps) if isinstance(reps, Mapping) else {}


def hash_breakdown(params: Any) -> dict[str, tuple[str, Any]]:
    """How each field of a parameter set takes part in its hash: (how, what is hashed), as
    Curifactory's `params_hash(dry=True)` shows it, to debug custom hash functions:
    `("repr(a)", "6")`, `("SKIPPED: value is None", None)`, a nested dataclass as
    `("get_param_set_hash_values(param_set, sub)", {its fields})`."""
    reps = _representations(params)
    out: dict[str, tuple[str, Any]] = {}
    for name, value in param_fields(params):
        skipped = _skip_reason(name, value, reps)
        out[name] = (skipped, None) if skipped else _how_hashed(params, name, value, reps)
    return out


def _skip_reason(name: str, value: Any, reps: Mapping[str, Any]) -> str | None:
    if name in PARAMETERS_BLACKLIST:
        return "SKIPPED: blacklist"
    if name in reps and reps[name] is None:
        return "SKIPPED: set to None in hash_representations"
    if value is None:
        return "SKIPPED: value is None"
    return None


def _how_hashed(params: Any, name: str, value: Any, reps: Mapping[str, Any]) -> tuple[str, Any]:
    if name in reps and callable(reps[name]):
        how = f"param_set.hash_representations['{name}'](param_set, {name})"
        return (how, reps[name](params, value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (f"get_param_set_hash_values(param_set, {name})", hash_breakdown(value))
    if callable(value) and hasattr(value, "__qualname__"):
        return (f"{name}.__qualname__", value.__qualname__)
    return (f"repr({name})", repr(value))


def param_set_string_hash_representations(param_set: Any) -> dict[str, Any]:
    """Curifactory's JSON-able view of a parameter set's hash: each hashed field as a string
    (a nested dataclass as its own such dict), the name, and the fields left out of the hash
    under "IGNORED_PARAMS" with their values."""
    shown: dict[str, Any] = {}
    skipped: dict[str, Any] = {}
    for key, (how, rep) in hash_breakdown(param_set).items():
        value = getattr(param_set, key, None)
        if key == "name":
            shown[key] = value
        elif how.startswith("get_param_set_hash_values"):
            shown[key] = param_set_string_hash_representations(value)
        elif rep is not None:
            shown[key] = str(rep)
        elif key in PARAMETERS_BLACKLIST:
            continue
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            skipped[key] = param_set_string_hash_representations(value)
        else:
            skipped[key] = None if value is None else str(value)
    if skipped:
        shown["IGNORED_PARAMS"] = skipped
    return shown


def combine_hashes(own: str, hashes: list[str]) -> str:
    """The hash of an aggregate's record: its own parameter hash ("None" without parameters)
    with those of the records it covers, in any order."""
    return digest("|".join([own, *sorted(hashes)]), PARAMS_HASH_WIDTH)


def add_params_combo_hash(
    active_record: Any,
    records_list: list[Any],
    registry_path: str | None = None,
    store_in_registry: bool = False,
) -> str:
    """Curifactory's hash of an aggregate stage's record over `records_list` (what
    `record.combo_hash` holds once the aggregate is called). `registry_path` and
    `store_in_registry` are accepted: parameter sets are kept in the run registry, not in a
    params_registry.json."""
    params = active_record.params
    own = "None" if params is None else active_record.manager._params_hash(params)
    return combine_hashes(own, [r.get_hash() for r in records_list])


def hash_params(params: Any, where: str = "parameters") -> str:
    """Fixed-width hash of a parameter set; excludes its name so renaming keeps the cache."""
    tree = param_set_representation(params, _Walker(where))
    return digest(canonical_json(tree), PARAMS_HASH_WIDTH)


def hash_value(value: Any, where: str = "value") -> str:
    """Digest of any parameter-like value (used for keyword arguments given to stage calls)."""
    if type(value) in _AS_IS:  # a plain scalar is its own tree (a read of one parameter)
        return digest(_CANONICAL.encode(value))
    return digest(canonical_json(_Walker(where).walk(value)))
