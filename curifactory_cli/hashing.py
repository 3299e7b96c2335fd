"""Stable digests: parameter sets, arbitrary parameter values, stage code and cache keys.

Everything here is deterministic across processes and PYTHONHASHSEED: values are turned into a
canonical JSON-compatible tree (sorted mappings and sets, numbers normalised) before hashing.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import hashlib
import inspect
import json
import math
import os
import sys
import textwrap
import types
from collections.abc import Callable, Mapping
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


def canonical_json(tree: Any) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, enum.Enum):
            return {"__enum__": f"{type(obj).__qualname__}.{obj.name}"}
        if isinstance(obj, int):
            return obj
        if isinstance(obj, float):
            if math.isnan(obj) or math.isinf(obj):
                return {"__float__": repr(obj)}
            # 1 and 1.0 are the same parameter value: keep a YAML edit from `1` to `1.0` cheap.
            return int(obj) if obj.is_integer() and abs(obj) < 2**53 else obj
        if isinstance(obj, PurePath):
            return {"__path__": obj.as_posix()}
        if isinstance(obj, bytes):
            return {"__bytes__": hashlib.sha256(obj).hexdigest()}
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
            items = []
            for key, value in obj.items():
                key_tree = self.walk(key, f"{path}.<key>", depth + 1)
                items.append(
                    (canonical_json(key_tree), self.walk(value, f"{path}.{key}", depth + 1))
                )
            items.sort(key=lambda kv: kv[0])
            return {"__map__": items}
        if isinstance(obj, (list, tuple)):
            return [self.walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)]
        if isinstance(obj, (set, frozenset)):
            trees = [self.walk(v, f"{path}{{}}", depth + 1) for v in obj]
            return {"__set__": sorted(trees, key=canonical_json)}
        if callable(obj) and hasattr(obj, "__qualname__"):
            return {"__callable__": f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"}
        module = type(obj).__module__
        if module.startswith(("pandas", "numpy")):
            return {"__repr__": _array_like_digest(obj)}
        text = repr(obj)
        if " at 0x" in text or " object at " in text:
            raise self.fail(path, f"a {type(obj).__name__} has no stable representation ({text})")
        return {"__repr__": f"{type(obj).__qualname__}:{text}"}


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
    if dataclasses.is_dataclass(params):
        items = [(f.name, getattr(params, f.name)) for f in dataclasses.fields(params)]
    elif isinstance(params, Mapping):
        items = list(params.items())
    else:
        items = list(vars(params).items())
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
    reps = getattr(params, "hash_representations", None) or {}
    if isinstance(reps, dataclasses.Field):
        # `field(default_factory=lambda: set_hash_functions(...))` wraps the field in a field.
        reps = reps.default_factory()  # type: ignore[misc]
    return reps if isinstance(reps, Mapping) else {}


def hash_breakdown(params: Any) -> dict[str, tuple[str, Any]]:
    """How each field of a parameter set takes part in its hash: (how, what is hashed), as
    Curifactory's `params_hash(dry=True)` shows it, to debug custom hash functions."""
    reps = _representations(params)
    if dataclasses.is_dataclass(params):
        items = [(f.name, getattr(params, f.name)) for f in dataclasses.fields(params)]
    elif isinstance(params, Mapping):
        items = list(params.items())
    else:
        items = list(vars(params).items())
    out: dict[str, tuple[str, Any]] = {}
    for name, value in items:
        if name in PARAMETERS_BLACKLIST:
            out[name] = ("SKIPPED: blacklist", None)
        elif name in reps and reps[name] is None:
            out[name] = ("SKIPPED: set to None in hash_representations", None)
        elif value is None:
            out[name] = ("SKIPPED: value is None", None)
        elif name in reps and callable(reps[name]):
            out[name] = (f"hash_representations['{name}']", reps[name](params, value))
        else:
            out[name] = ("value", value)
    return out


def hash_params(params: Any, where: str = "parameters") -> str:
    """Fixed-width hash of a parameter set; excludes its name so renaming keeps the cache."""
    tree = param_set_representation(params, _Walker(where))
    return digest(canonical_json(tree), PARAMS_HASH_WIDTH)


def hash_value(value: Any, where: str = "value") -> str:
    """Digest of any parameter-like value (used for keyword arguments given to stage calls)."""
    return digest(canonical_json(_Walker(where).walk(value)))


# --------------------------------------------------------------------------------------------
# Code fingerprints


class _StripDocstrings(ast.NodeTransformer):
    """Removes docstrings and annotations-only noise so only the logic is fingerprinted."""

    def _strip(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.decorator_list = []
        return self._strip(node)

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = _strip


def _source_fingerprint(obj: Any) -> str | None:
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    tree = _StripDocstrings().visit(tree)
    return digest(ast.dump(tree, annotate_fields=False, include_attributes=False))


def _bytecode_fingerprint(code: types.CodeType) -> str:
    parts: list[str] = [code.co_code.hex(), repr(code.co_names)]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_bytecode_fingerprint(const))
        elif not (isinstance(const, str) and const == code.co_consts[0]):  # skip docstrings
            parts.append(repr(const))
    return digest("|".join(parts))


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


_SIMPLE_CONSTANTS = (bool, int, float, str, bytes, type(None))


def _is_project_object(obj: Any, root: str) -> bool:
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if not path:
        return False
    path = os.path.abspath(path)
    return path.startswith(root + os.sep) and "site-packages" not in path


class CodeFingerprinter:
    """Fingerprints a stage function's logic plus the project-local code and constants it uses.

    A stage is re-run when its own logic changes (comments, docstrings, formatting and decorators
    are ignored) or when a function, class or simple module-level constant that it references
    and that is defined inside the project changes. Library code is not followed.
    """

    def __init__(self, project_root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(project_root))
        self._cache: dict[int, str] = {}

    def fingerprint(self, fn: Callable[..., Any]) -> str:
        cached = self._cache.get(id(fn))
        if cached is None:
            cached = self._fingerprint(fn, set())
            self._cache[id(fn)] = cached
        return cached

    def _fingerprint(self, fn: Any, seen: set[int]) -> str:
        seen.add(id(fn))
        own = _source_fingerprint(fn)
        code = getattr(fn, "__code__", None)
        if own is None:
            own = _bytecode_fingerprint(code) if code is not None else repr(fn)
        deps: list[str] = []
        glob = getattr(fn, "__globals__", {})
        for name in sorted(_global_names(code)) if code is not None else []:
            if name not in glob:
                continue
            value = glob[name]
            if isinstance(value, _SIMPLE_CONSTANTS) and not name.startswith("__"):
                deps.append(f"{name}={value!r}")
            elif isinstance(value, (tuple, frozenset)) and all(
                isinstance(v, _SIMPLE_CONSTANTS) for v in value
            ):
                deps.append(f"{name}={sorted(map(repr, value))!r}")
            elif (
                (inspect.isfunction(value) or inspect.isclass(value))
                and id(value) not in seen
                and _is_project_object(value, self.root)
                and not hasattr(value, "__curi_stage__")
            ):
                inner = (
                    self._fingerprint(value, seen)
                    if inspect.isfunction(value)
                    else _source_fingerprint(value) or value.__qualname__
                )
                deps.append(f"{name}:{inner}")
        return digest(own + "|" + "|".join(deps))
