"""Finding experiments and parameter files in a project, and importing experiments.

Listing never imports user code: it reads each file's syntax tree for `def run(`,
`def get_params(` and the module docstring.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.machinery
import importlib.util
import linecache
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from curifactory_cli.errors import (
    DiscoveryError,
    ExperimentImportError,
    GraphError,
    close_matches_hint,
)

EXPERIMENTS_DIR = "experiments"
DEFAULT_CACHE = "data/cache"  # the cache when no setting names another
RUNS_FOLDER = "data/runs"  # each run's own folder, data/runs/<reference> (and --store-full's)
PARAMS_DIR = "params"
PARAM_SUFFIXES = (".yaml", ".yml", ".py")


@dataclass(frozen=True)
class Listed:
    name: str
    path: Path
    description: str
    has_get_params: bool = False


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def _scan_python(path: Path) -> tuple[bool, bool, str] | None:
    """(defines run, defines get_params, first docstring line), or None if unparsable."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return None
    names = {
        node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    return "run" in names, "get_params" in names, _first_line(ast.get_docstring(tree))


def _walk_py(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        out.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return out


def _module_name(base: Path, path: Path) -> str:
    return path.relative_to(base).with_suffix("").as_posix()


def list_experiments(root: Path) -> list[Listed]:
    base = root / EXPERIMENTS_DIR
    out = []
    for path in _walk_py(base):
        if path.name == "__init__.py":
            continue
        scanned = _scan_python(path)
        if scanned and scanned[0]:
            out.append(Listed(_module_name(base, path), path, scanned[2], scanned[1]))
    return out


def _yaml_description(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as infile:
            for line in infile:
                stripped = line.strip()
                if stripped.startswith("#"):
                    return stripped.lstrip("#").strip()
                if stripped and stripped != "---":
                    return ""
    except (OSError, UnicodeDecodeError):
        pass
    return ""


def list_param_files(root: Path) -> list[Listed]:
    base = root / PARAMS_DIR
    if not base.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            rel = path.relative_to(base).as_posix()
            if filename.endswith((".yaml", ".yml")):
                out.append(Listed(rel, path, _yaml_description(path)))
            elif filename.endswith(".py") and filename != "__init__.py":
                scanned = _scan_python(path)
                if scanned and scanned[1]:
                    out.append(Listed(rel, path, scanned[2], True))
    return out


def _show(path: Path, root: Path) -> str:
    """A path as the user would type it: relative to the project when inside it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def ensure_importable(root: Path | str) -> None:
    text = str(root)
    if text not in sys.path:
        sys.path.insert(0, text)
    fresh_project_imports(text)


# ------------------------------------------------------------------ project code from source
# Python reuses a module's .pyc while its source keeps the same size and modification
# second. An edit within that second (a script's sed, a quick fix-and-rerun) would run the
# old code under a cache key fingerprinted from the new source, so project code is compiled
# from its source on every import, here and in workers (a few milliseconds a module);
# installed packages keep their bytecode.


class SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles the module from its source file; reads and writes no bytecode. The source it
    compiled is what `inspect` (and so the code fingerprint) reads for it afterwards, even in
    a long-lived process whose line cache holds an older text of the same size and time."""

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        data = self.get_data(path)
        try:
            mtime = os.stat(path).st_mtime
            text = importlib.util.decode_source(data)
        except (OSError, SyntaxError, UnicodeDecodeError):
            pass  # compiling says what is wrong with it
        else:
            linecache.cache[path] = (len(data), mtime, text.splitlines(keepends=True), path)
        return self.source_to_code(data, path)


_FRESH_ROOTS: list[str] = []


def _in_project(path: str) -> bool:
    path = os.path.abspath(path or ".")
    return "site-packages" not in path and any(
        path == root or path.startswith(root + os.sep) for root in _FRESH_ROOTS
    )


def _project_finder(path: str) -> Any:
    if not _in_project(path):
        raise ImportError("not project code")  # the next hook (the usual FileFinder) takes it
    machinery = importlib.machinery
    return machinery.FileFinder(
        path,
        (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
        (SourceLoader, machinery.SOURCE_SUFFIXES),
        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
    )


def fresh_project_imports(root: str) -> None:
    """From now on, modules under `root` are imported from their source (see above)."""
    root = os.path.abspath(root)
    if root in _FRESH_ROOTS:
        return
    _FRESH_ROOTS.append(root)
    if _project_finder not in sys.path_hooks:
        sys.path_hooks.insert(0, _project_finder)
    for path in list(sys.path_importer_cache):  # finders made before the hook was there
        if _in_project(path):
            del sys.path_importer_cache[path]


def source_spec(module_name: str, path: str | Path) -> Any:
    """The import spec of a project file, compiled from its source."""
    return importlib.util.spec_from_file_location(
        module_name, path, loader=SourceLoader(module_name, str(path))
    )


# Experiment module name -> the file it is imported from instead of experiments/ (see
# `experiment_source`).
_SOURCES: dict[str, Path] = {}


def experiment_module(name: str) -> str:
    """The module name of experiment `name` (`sub/name`, `sub.name`, `name.py`, and the name
    a run records for `curi run experiments/name.py`, `experiments.name`, accepted)."""
    clean = name[:-3] if name.endswith(".py") else name
    clean = clean.replace("\\", "/").replace(".", "/")
    if clean.startswith(f"{EXPERIMENTS_DIR}/"):
        clean = clean[len(EXPERIMENTS_DIR) + 1 :]
    return f"{EXPERIMENTS_DIR}.{clean.replace('/', '.')}"


@contextlib.contextmanager
def experiment_source(name: str, path: Path) -> Iterator[None]:
    """While this lasts, experiment `name` is imported from `path` rather than from
    experiments/ (a stored run's copy of its source, for `curi runs reproduce`). It keeps its
    name and module name, so its cache keys are those of the run that was stored, and worker
    processes import the same file (they import an experiment by its file)."""
    module = experiment_module(name)
    previous = _SOURCES.get(module)
    _SOURCES[module] = Path(path)
    try:
        yield
    finally:
        if previous is None:
            _SOURCES.pop(module, None)
        else:
            _SOURCES[module] = previous


def import_experiment(root: Path, name: str) -> ModuleType:
    """Import `experiments/<name>.py` (subfolders as `sub/name` or `sub.name`)."""
    clean = name[:-3] if name.endswith(".py") else name
    clean = clean.replace("\\", "/")
    if clean.startswith(f"{EXPERIMENTS_DIR}/"):
        clean = clean[len(EXPERIMENTS_DIR) + 1 :]
    rel = clean.replace(".", "/")
    source = _SOURCES.get(experiment_module(name))
    if source is not None:  # `curi runs reproduce`: the stored copy
        return _import_source(root, clean, experiment_module(name), source)
    path = root / EXPERIMENTS_DIR / f"{rel}.py"
    if not path.is_file() or ".." in rel.split("/"):
        available = [e.name for e in list_experiments(root)]
        raise DiscoveryError(
            f"no experiment named {name!r} in {_show(root / EXPERIMENTS_DIR, Path.cwd())}/",
            hint=_elsewhere_hint(root)
            or close_matches_hint(name, available, "experiments", "`curi ls` lists them"),
        )
    ensure_importable(root)
    module_name = f"{EXPERIMENTS_DIR}.{rel.replace('/', '.')}"
    if module_name in sys.modules:
        module = sys.modules[module_name]
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == path.resolve():
            return module
        del sys.modules[module_name]
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except GraphError:
        raise  # a stage declared wrongly: its own message names the stage and the fix
    except Exception as exc:
        raise ExperimentImportError(
            f"experiment {clean!r} ({_show(path, root)}) failed to import: "
            f"{type(exc).__name__}: {exc}",
            exc,
        ) from exc
    return _checked(module, clean, path, root)


def _checked(module: ModuleType, clean: str, path: Path, root: Path) -> ModuleType:
    if not callable(getattr(module, "run", None)):
        raise DiscoveryError(
            f"experiment {clean!r} ({_show(path, root)}) has no run(param_sets, manager) function",
            hint="define `def run(param_sets, manager):` that calls your stages.",
        )
    return module


def _import_source(root: Path, clean: str, module_name: str, path: Path) -> ModuleType:
    """Import experiment `clean` from the file `path` under its usual module name."""
    if not path.is_file():
        raise DiscoveryError(
            f"the source of experiment {clean!r} is missing: {_show(path, Path.cwd())}",
            hint="the stored copy was moved or deleted; nothing else holds that version.",
        )
    ensure_importable(root)  # what the experiment imports from the project
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)
        if file and Path(file).resolve() == path.resolve():
            return loaded
        del sys.modules[module_name]
    spec = source_spec(module_name, path)
    if spec is None or spec.loader is None:
        raise DiscoveryError(f"cannot import experiment {clean!r} from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except GraphError:
        del sys.modules[module_name]
        raise
    except Exception as exc:
        del sys.modules[module_name]
        raise ExperimentImportError(
            f"experiment {clean!r} ({_show(path, Path.cwd())}) failed to import: "
            f"{type(exc).__name__}: {exc}",
            exc,
        ) from exc
    return _checked(module, clean, path, Path.cwd())


def is_project_root(folder: Path) -> bool:
    """A folder with `experiments/`, `curi.toml`, or a pyproject.toml with [tool.curi]."""
    if (folder / EXPERIMENTS_DIR).is_dir() or (folder / "curi.toml").is_file():
        return True
    try:
        return "[tool.curi" in (folder / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def find_project_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that is a project root (as git finds .git)."""
    for folder in (start, *start.parents):
        if is_project_root(folder):
            return folder
    return None


def project_root(start: Path | None = None) -> Path:
    """The project that `start` (default: the current folder) is in: the nearest folder at or
    above it holding experiments/, curi.toml or a pyproject.toml with [tool.curi]; `start`
    itself when there is none (then an experiment is not found, with a hint saying so)."""
    folder = Path(os.path.abspath(start if start is not None else Path.cwd()))
    return find_project_root(folder) or folder


def _elsewhere_hint(root: Path) -> str | None:
    """When `root` is no project (curi started outside any project, or an API caller gave
    another folder), what to do."""
    if is_project_root(root):
        return None
    found = find_project_root(root.parent) if root.parent != root else None
    if found is None:
        return (
            f"neither {root} nor any folder above it is a project (a folder with "
            f"{EXPERIMENTS_DIR}/, curi.toml, or [tool.curi] in pyproject.toml): run curi inside "
            "your project (the folder holding experiments/ and params/, or any folder in it)."
        )
    return f"{root} is not a project folder but {found} is: run curi from there (cd {found})."


def _param_candidates(root: Path, spec: str) -> list[Path]:
    """Where a parameter file spec may be, in order, each place once."""
    direct = Path(spec)
    base = root / PARAMS_DIR
    # `params/x.yaml` (or `params.x` in Curifactory's module style) already names the folder:
    # looking for it inside params/ again would only add a params/params/... candidate.
    inner = spec.replace("\\", "/").removeprefix(f"{PARAMS_DIR}/")
    if direct.suffix in PARAM_SUFFIXES:
        candidates = [direct, root / direct, base / inner]
    else:
        # A module-style name as in Curifactory: `subparams.thing` is params/subparams/thing.py.
        inner = inner.removeprefix(f"{PARAMS_DIR}.")
        names = dict.fromkeys([inner.replace(".", "/"), inner])
        candidates = [base / f"{name}{suffix}" for name in names for suffix in PARAM_SUFFIXES]
    unique: dict[Path, Path] = {}
    for candidate in candidates:
        unique.setdefault(Path(os.path.abspath(candidate)), candidate)
    return list(unique.values())


def resolve_param_file(root: Path, spec: str) -> Path:
    """A parameter file given as a path, or a bare name looked up in `params/`."""
    candidates = _param_candidates(root, spec)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    available = [p.name.rsplit(".", 1)[0] for p in list_param_files(root)]
    raise DiscoveryError(
        f"no parameter file {spec!r} (looked for "
        f"{', '.join(_show(c, root) for c in candidates[:4])})",
        hint=close_matches_hint(Path(spec).stem, available, "parameter files", "`curi ls`"),
    )


def import_param_module(root: Path, path: Path) -> ModuleType:
    """Import a Python parameter file (a module with `get_params()`)."""
    ensure_importable(root)
    try:
        rel = path.resolve().relative_to(root.resolve()).with_suffix("")
        module_name = ".".join(rel.parts)
    except ValueError:
        module_name = path.stem
    try:
        if module_name in sys.modules:
            del sys.modules[module_name]
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ExperimentImportError(
            f"parameter file {path} failed to import: {type(exc).__name__}: {exc}", exc
        ) from exc
    if not callable(getattr(module, "get_params", None)):
        raise DiscoveryError(
            f"parameter file {path} has no get_params() function",
            hint="define `def get_params(): return [MyParams(name=...), ...]`.",
        )
    return module
