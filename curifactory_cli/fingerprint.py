"""Code fingerprints: a stage function's logic plus the project code and constants it uses.

Followed by name from the stage function (and from every project function it reaches):
functions, classes, module constants made of plain values, project modules used through an
attribute (`F.scale(x)`), and the project modules a function imports in its own body
(`from mylib.lib import f`, `import mylib.lib as L`, `from . import lib`,
`importlib.import_module("mylib.lib")`). Installed packages are not followed: they count by
their version in the run's record, not in the key.
"""

from __future__ import annotations

import ast
import dis
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

from curifactory_cli.hashing import digest


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
            setattr(node, "body", body[1:] or [ast.Pass()])  # noqa: B010 - any node with a body
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.decorator_list = []
        return self._strip(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        node.decorator_list = []
        return self._strip(node)

    visit_ClassDef = _strip
    visit_Module = _strip


def _tree_fingerprint(source: str) -> str | None:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except (SyntaxError, IndentationError, ValueError):
        return None
    tree = _StripDocstrings().visit(tree)
    return digest(ast.dump(tree, annotate_fields=False, include_attributes=False))


def _source_fingerprint(obj: Any) -> str | None:
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    return _tree_fingerprint(source)


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


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """`code` and the code nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


# Calls that import a module named by their first argument: `importlib.import_module("x")`,
# `import_module("x")` after `from importlib import import_module`, and `__import__("x")`.
_IMPORT_CALLS = frozenset({"import_module", "__import__"})
# Instructions that only set up a call between loading the function and its first argument.
_CALL_SETUP = frozenset({"PUSH_NULL", "PRECALL", "CACHE", "NOP"})


def _int_or_tuple(instr: dis.Instruction | None, kind: type) -> Any:
    if instr is not None and instr.opname in ("LOAD_CONST", "LOAD_SMALL_INT"):
        return instr.argval if isinstance(instr.argval, kind) else None
    return None


def imports_in(code: types.CodeType) -> list[tuple[str, int, tuple[str, ...]]]:
    """The imports made in the body of `code` (nested code included), as (module name,
    relative level, names imported from it): `import a.b` is ("a.b", 0, ()), `from . import
    x` is ("", 1, ("x",)), `importlib.import_module("a.b")` is ("a.b", 0, ()). Sorted and
    without repeats, so the same code always gives the same list."""
    found: set[tuple[str, int, tuple[str, ...]]] = set()
    for each in _codes(code):
        instrs = [i for i in dis.get_instructions(each) if i.opname not in _CALL_SETUP]
        for at, instr in enumerate(instrs):
            before = instrs[at - 2 : at] if at >= 2 else [None, None]
            if instr.opname == "IMPORT_NAME":
                level = _int_or_tuple(before[0], int)
                names = _int_or_tuple(before[1], tuple)
                found.add((str(instr.argval), level or 0, tuple(names or ())))
            elif (
                isinstance(instr.argval, str)
                and instr.argval in _IMPORT_CALLS
                and instr.opname.startswith("LOAD_")
                and at + 1 < len(instrs)
            ):
                arg = instrs[at + 1]
                if arg.opname == "LOAD_CONST" and isinstance(arg.argval, str) and arg.argval:
                    name = arg.argval.lstrip(".")
                    found.add((name, len(arg.argval) - len(name), ()))
    return sorted(found)


def _in_root(path: str | None, root: str) -> bool:
    if not path:
        return False
    path = os.path.abspath(path)
    return path.startswith(root + os.sep) and "site-packages" not in path


def _is_project_object(obj: Any, root: str) -> bool:
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    return _in_root(getattr(module, "__file__", None), root)


def _is_project_module(module: Any, root: str) -> bool:
    path = getattr(module, "__file__", None)
    if path is None:  # a namespace package (a folder without __init__.py)
        return any(_in_root(each, root) for each in getattr(module, "__path__", ()))
    return _in_root(path, root)


_SIMPLE_CONSTANTS = (bool, int, float, str, bytes, type(None))
_CONSTANT_ITEMS = 10_000  # a bigger container is data, not a setting: fingerprinted by repr


def _constant_repr(value: Any, depth: int = 0) -> str | None:
    """A stable text for a module constant made of plain values (nested lists, tuples,
    dicts, sets of them), or None when it is not one. Lists and tuples keep their order;
    sets and dict keys are sorted, since their iteration order is not the value."""
    if isinstance(value, _SIMPLE_CONSTANTS):
        return repr(value)
    if depth > 6 or not isinstance(value, (list, tuple, dict, set, frozenset)):
        return None
    if len(value) > _CONSTANT_ITEMS:
        return None
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            k, v = _constant_repr(key, depth + 1), _constant_repr(item, depth + 1)
            if k is None or v is None:
                return None
            items.append(f"{k}:{v}")
        return "{" + ",".join(sorted(items)) + "}"
    found = [_constant_repr(item, depth + 1) for item in value]
    parts = [p for p in found if p is not None]
    if len(parts) != len(found):
        return None
    if isinstance(value, (set, frozenset)):
        return type(value).__name__ + "{" + ",".join(sorted(parts)) + "}"
    return type(value).__name__ + "[" + ",".join(parts) + "]"


def _find_file(name: str) -> str | None:
    """The file module `name` would be imported from (a namespace package's folder), found
    without running any code (None: not found). Parents are looked up, not imported."""
    path: list[str] | None = None
    spec = None
    for part in name.split("."):
        try:
            spec = importlib.machinery.PathFinder.find_spec(part, path)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    if spec is None:
        return None
    if spec.origin in (None, "namespace"):
        return path[0] if path else None
    return spec.origin


class _Parts(dict[str, str]):
    """A fingerprint's breakdown (name -> digest, kept in each entry's metadata), with what
    each name is (`kinds`: not kept, said in reasons)."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[str, str] = {}


class CodeFingerprinter:
    """Fingerprints a stage function's logic plus the project-local code and constants it uses.

    A stage is re-run when its own logic changes (comments, docstrings, formatting and
    decorators are ignored) or when something it references by name and that is defined
    inside the project changes: a function (followed in turn), a class (its whole source,
    methods included), a module-level constant made of plain values (numbers, strings, and
    lists, tuples, dicts and sets of them), or such a thing reached through a project module
    (`import mylib.features as F; F.scale(x)`), including modules imported inside the
    function's body. Library code is not followed: installed packages count by their version
    in the run's record, not in the key.
    """

    def __init__(self, project_root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(project_root))
        self._cache: dict[int, tuple[str, _Parts]] = {}

    def fingerprint(self, fn: Callable[..., Any]) -> str:
        return self._fingerprinted(fn)[0]

    def breakdown(self, fn: Callable[..., Any]) -> dict[str, str]:
        """What the fingerprint covers: each function, class and constant, by name, with its
        own fingerprint (to say which one changed)."""
        return self._fingerprinted(fn)[1]

    def kinds(self, fn: Callable[..., Any]) -> dict[str, str]:
        """What each name of the breakdown is: "stage" (the function itself), "helper" (a
        function it calls), "class" or "constant" (to say what changed in words)."""
        return self._fingerprinted(fn)[1].kinds

    def _fingerprinted(self, fn: Callable[..., Any]) -> tuple[str, _Parts]:
        cached = self._cache.get(id(fn))
        if cached is None:
            parts = _Parts()
            cached = (self._fingerprint(fn, set(), parts, getattr(fn, "__name__", "?")), parts)
            self._cache[id(fn)] = cached
        return cached

    def _fingerprint(self, fn: Any, seen: set[Any], parts: _Parts, label: str) -> str:
        seen.add(id(fn))
        own = _source_fingerprint(fn)
        code = getattr(fn, "__code__", None)
        if own is None:
            own = _bytecode_fingerprint(code) if code is not None else repr(fn)
        parts[label] = digest(own)
        parts.kinds[label] = "helper" if parts.kinds else "stage"
        deps: list[str] = []
        glob = getattr(fn, "__globals__", {})
        names = _global_names(code) if code is not None else set()
        for name in sorted(names):
            if name in glob and not name.startswith("__"):
                dep = self._dependency(glob[name], name, names, seen, parts)
                if dep is not None:
                    deps.append(f"{name}{dep}")
        if code is not None:
            package = glob.get("__package__") or ""
            for imported in imports_in(code):
                dep = self._imported(imported, package, names, seen, parts)
                if dep is not None:
                    deps.append(dep)
        return digest(own + "|" + "|".join(deps))

    def _imported(
        self,
        imported: tuple[str, int, tuple[str, ...]],
        package: str,
        names: set[str],
        seen: set[Any],
        parts: _Parts,
    ) -> str | None:
        """What an import in a function's body adds: the project module (or the names taken
        from it) followed as if it were imported at the top of the module. An installed
        module adds nothing; a module that cannot be found or imported adds a marker, or
        its file's syntax tree, so it still changes the key when it appears or is edited."""
        name, level, fromlist = imported
        text = "." * level + name
        try:
            full = importlib.util.resolve_name(text, package) if level else name
        except (ImportError, ValueError):
            return f"import {text}?"  # a relative import outside a package fails when run
        if not full:
            return None
        module = sys.modules.get(full)
        if module is None:
            origin = _find_file(full)
            top = _find_file(full.split(".")[0])
            if not _in_root(top, self.root):
                # Installed or missing: a missing module is marked, so that a project module
                # appearing under that name later changes the key.
                return None if top is not None else f"import {full}?"
            try:
                module = importlib.import_module(full)
            except Exception:  # it fails when the stage runs too; its source still counts
                source = _file_text(origin)
                return f"import {full}!" + ((_tree_fingerprint(source) or "") if source else "")
        if not _is_project_module(module, self.root):
            return None
        if not fromlist or fromlist == ("*",):
            dep = self._dependency(module, full, names, seen, parts)
            return None if dep is None else f"import {full}{dep}"
        inner = []
        for attr in fromlist:
            value = getattr(module, attr, None)
            if value is None and inspect.ismodule(module) and hasattr(module, "__path__"):
                try:  # `from pkg import submodule` imports it
                    value = importlib.import_module(f"{full}.{attr}")
                except Exception:
                    value = None
            dep = self._dependency(value, f"{full}.{attr}", names, seen, parts)
            inner.append(f"{attr}{'' if dep is None else dep}")
        return f"from {full} import " + ",".join(inner)

    def _dependency(
        self, value: Any, name: str, names: set[str], seen: set[Any], parts: _Parts
    ) -> str | None:
        """What a referenced global adds to the fingerprint (None: nothing, it is not ours
        or not code)."""
        if inspect.ismodule(value):
            # `F.scale(x)`: attribute names are among the code's names; follow those of a
            # project module (and of its project submodules, `mylib.features.scale`). Each
            # (module, name) pair is followed once, so a module reached again from another
            # function still has that function's names followed.
            if not _is_project_module(value, self.root):
                return None
            inner = []
            for attr in sorted(names):
                if attr.startswith("__") or (id(value), attr) in seen:
                    continue
                if not hasattr(value, attr):
                    continue
                seen.add((id(value), attr))
                dep = self._dependency(getattr(value, attr), f"{name}.{attr}", names, seen, parts)
                if dep is not None:
                    inner.append(f"{attr}{dep}")
            return "<" + ",".join(inner) + ">"
        constant = _constant_repr(value)
        if constant is not None:
            parts[name] = digest(constant)
            parts.kinds[name] = "constant"
            return f"={constant}"
        if (
            (inspect.isfunction(value) or inspect.isclass(value))
            and id(value) not in seen
            and _is_project_object(value, self.root)
            and not hasattr(value, "__curi_stage__")
        ):
            if inspect.isfunction(value):
                return ":" + self._fingerprint(value, seen, parts, name)
            source = _source_fingerprint(value) or value.__qualname__
            parts[name] = digest(source)
            parts.kinds[name] = "class"
            return ":" + source
        return None


def _file_text(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as infile:
            return infile.read()
    except (OSError, UnicodeDecodeError):
        return None


def class_fingerprint(module: str, qualname: str, root: str) -> str | None:
    """The source fingerprint of a project class already imported (None: not one of the
    project's), for classes whose instances travel inside pickled outputs."""
    obj: Any = sys.modules.get(module)
    if obj is None or not _is_project_module(obj, os.path.abspath(root)):
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return _source_fingerprint(obj) if inspect.isclass(obj) else None
