"""Loading one cached output for `curi cache dump`, summarizing it and exporting it.

An output is loaded only after every one of its files matched the size and sha256 its
metadata recorded when it was cached. That matters most for pickles: unpickling runs code,
so a pickle is only loaded when its checksum matches the metadata this tool wrote.

Loading goes through the cacher class the metadata names (importing it, which for a custom
cacher imports the user's module); nothing here renders: `cli/cache.py` does.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pickle
import pprint
import reprlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curifactory_cli.atomic import atomic_path
from curifactory_cli.errors import CacheError, ConfigError
from curifactory_cli.store import index as cache_index
from curifactory_cli.store.entry import Entry, signature_problem
from curifactory_cli.store.file_checks import bytes_match

if TYPE_CHECKING:
    from curifactory_cli.store.local import LocalStore

PICKLE_RULE = "pickles are only loaded when their checksum matches the metadata this tool wrote"
MAX_LINES = 200  # of a pretty-printed value; --out exports everything
MAX_CHARS = 20_000
_BIG = 10_000  # containers longer than this are summarized by reprlib, not pretty-printed


# ------------------------------------------------------------------------- loading
def pick_output(entry: Entry, output: str | None) -> str:
    names = list(entry.outputs)
    if output is None:
        if len(names) == 1:
            return names[0]
        raise ConfigError(
            f"entry {entry.short_id} ({entry.label()}) has {len(names)} outputs: "
            + ", ".join(names),
            hint="name the one to show: `curi cache dump ENTRY OUTPUT`.",
        )
    if output not in entry.outputs:
        raise ConfigError(
            f"entry {entry.short_id} ({entry.label()}) has no output {output!r}",
            hint="its outputs: " + (", ".join(names) or "none") + ".",
        )
    return output


def is_pickle(info: dict[str, Any]) -> bool:
    cacher = str(info.get("cacher", ""))
    return cacher.rsplit(".", 1)[-1] == "PickleCacher" or any(
        str(f.get("path", "")).endswith(".pkl") for f in info.get("files") or []
    )


def verified_files(store: LocalStore, entry: Entry, output: str) -> list[dict[str, Any]]:
    """The output's file records, after checking every file against its recorded sha256."""
    info = entry.outputs[output]
    files = info.get("files") or []
    what = f"output {output!r} of entry {entry.short_id} ({entry.label()})"
    pickled = is_pickle(info)
    hint = (
        f"{PICKLE_RULE}: a changed pickle could run any code. "
        if pickled
        else "the file changed after it was cached. "
    ) + "`curi cache verify --fix` removes damaged entries; the next run recomputes them."
    if not files:
        raise CacheError(f"refusing to load {what}: its metadata lists no files", hint=hint)
    unsigned = signature_problem(entry.meta)
    if unsigned:
        raise CacheError(f"refusing to load {what}: {unsigned}", hint=hint)
    for check in cache_index.check_files(store, entry, output):
        if check.status == "missing":
            raise CacheError(f"refusing to load {what}: {check.path} is missing", hint=hint)
        if check.status != "ok":
            raise CacheError(
                f"refusing to load {what}: checksum mismatch for {check.path} ({check.detail})",
                hint=hint,
            )
    return files


def load_output(store: LocalStore, entry: Entry, output: str) -> Any:
    """The output's value, loaded by its cacher once its files are verified."""
    info = entry.outputs[output]
    files = verified_files(store, entry, output)
    root = store.root
    if os.getcwd() not in sys.path:
        # Custom cachers, and the classes a pickle refers to, live in the project's modules.
        sys.path.insert(0, os.getcwd())
    directory = store.local_dir(entry)
    cacher = make_cacher(str(info.get("cacher", "")), entry, directory, output, files, root)
    from curifactory_cli.caching import PickleCacher

    if type(cacher) is PickleCacher:
        return _load_pickle(Path(cacher.path), files, output)
    try:
        return cacher.load()
    except Exception as exc:
        raise CacheError(
            f"{type(cacher).__name__} could not load output {output!r} of entry "
            f"{entry.short_id}: {type(exc).__name__}: {exc}",
            hint="the cacher's load() raised; is its library installed in this environment?",
        ) from None


def _load_pickle(path: Path, files: list[dict[str, Any]], output: str) -> Any:
    # Unpickle the very bytes whose checksum is checked, so the file cannot change in between.
    info = next((f for f in files if f.get("path") == path.name), None)
    data = path.read_bytes()
    if info is None or not bytes_match(data, info):
        raise CacheError(
            f"refusing to load {path}: checksum mismatch",
            hint=f"{PICKLE_RULE}.",
        )
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise CacheError(
            f"cannot unpickle output {output!r}: {type(exc).__name__}: {exc}",
            hint="the classes it refers to must be importable from the current directory.",
        ) from None


def _reaches_into(parts: list[str], root: Path) -> bool:
    """Whether importing the module path `parts` could load code from inside the cache
    `root`.

    Checked without importing anything: whoever can write into a shared cache must not be
    able to name a module of their own in a meta.json and have `dump` import it. The top
    package's places are followed down the dotted path, resolving links at every step:
    `data/cache` may be a link to a shared folder that the project's `data` package reaches.
    """
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = list(spec.submodule_search_locations or []) + ([spec.origin] if spec.origin else [])
    real_root = root.resolve()
    for place in places:
        if place in ("built-in", "frozen"):
            continue
        here = Path(place)
        for part in ["", *parts[1:]]:
            here = here / part if part else here
            where = here.resolve()
            if where.is_relative_to(real_root) or real_root.is_relative_to(where):
                return True
    return False


def cacher_class(dotted: str, root: Path | None = None) -> type:
    """Import `package.module.Class` (the metadata's cacher type)."""
    parts = dotted.split(".")
    if root is not None and parts[0] != "curifactory_cli" and _reaches_into(parts, root):
        raise CacheError(
            f"refusing to import the cacher {dotted!r}: its package is inside the cache "
            f"directory {root}",
            hint="cachers must come from your project or installed packages, not the cache.",
        )
    for i in range(len(parts) - 1, 0, -1):
        module = _module_or_none(".".join(parts[:i]), dotted)
        if module is None:
            continue  # no such module: the class may be nested one level up
        obj = _attribute(module, parts[i:], dotted)
        if isinstance(obj, type):
            return obj
        break
    raise _import_error(dotted, None)


def _module_or_none(module_name: str, dotted: str) -> Any:
    """The module, or None when there is no module of that name (an error inside it is an
    error)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise _import_error(dotted, exc) from None
    except Exception as exc:
        raise _import_error(dotted, exc) from None


def _attribute(obj: Any, path: list[str], dotted: str) -> Any:
    try:
        for attr in path:
            obj = getattr(obj, attr)
    except AttributeError as exc:
        raise _import_error(dotted, exc) from None
    return obj


def _import_error(dotted: str, exc: BaseException | None) -> CacheError:
    why = f": {type(exc).__name__}: {exc}" if exc else ""
    return CacheError(
        f"cannot import the cacher {dotted!r}{why}",
        hint="run this from the project folder, in the environment the experiment ran in.",
    )


def make_cacher(
    dotted: str,
    entry: Entry,
    directory: str,
    output: str,
    files: list[dict[str, Any]],
    root: Path | None = None,
) -> Any:
    """A cacher of the recorded type, pointed at the entry's files for `output`."""
    from curifactory_cli.caching import Cacheable

    cls = cacher_class(dotted, root)
    try:
        cacher = cls()
    except TypeError:
        # A cacher with required arguments: its extension is what follows the output name.
        cacher = object.__new__(cls)
        extension = min((str(f["path"])[len(output) :] for f in files), key=len)
        Cacheable.__init__(cacher, extension)
    if hasattr(cacher, "_bind"):
        cacher._bind(directory, output)
    else:
        cacher.path = os.path.join(directory, output + getattr(cacher, "extension", ""))
    info = entry.outputs[output]
    cacher.extra_metadata = dict(info.get("extra") or {})
    cacher.metadata = info
    cacher.stage = entry.stage
    return cacher


# ------------------------------------------------------------------------- describing
def as_frame(obj: Any) -> Any:
    """`obj` as a pandas DataFrame if it is a DataFrame or Series, else None.

    Checked by type name so that pandas is never imported for other objects.
    """
    module = type(obj).__module__
    if not module.startswith("pandas"):
        return None
    name = type(obj).__name__
    if name == "DataFrame":
        return obj
    if name == "Series":
        return obj.to_frame()
    return None


def is_json(obj: Any) -> bool:
    from curifactory_cli.cacher_support import json_problem

    return json_problem(obj) is None


def type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def frame_parts(frame: Any, rows: int) -> tuple[Any, Any | None]:
    """The first and last `rows` rows; the tail is None when everything fits in the head."""
    rows = max(rows, 0)
    if len(frame) <= 2 * rows:
        return frame, None
    return frame.head(rows), frame.tail(rows)


def summary(obj: Any, rows: int) -> dict[str, Any]:
    """A JSON-able description of a loaded value (for `cache dump --json`)."""
    frame = as_frame(obj)
    if frame is not None:
        head, tail = frame_parts(frame, rows)
        return {
            "kind": "dataframe",
            "type": type_name(obj),
            "shape": list(frame.shape),
            "columns": [str(c) for c in frame.columns],
            "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
            "head": _split(head),
            "tail": _split(tail) if tail is not None else None,
            "omitted_rows": len(frame) - len(head) - (len(tail) if tail is not None else 0),
        }
    if is_json(obj):
        return {"kind": "json", "type": type_name(obj), "value": obj}
    text, cut = readable_repr(obj)
    return {"kind": "object", "type": type_name(obj), "repr": text, "truncated": cut}


def _split(part: Any) -> dict[str, Any]:
    data = json.loads(part.to_json(orient="split", date_format="iso", default_handler=str))
    return {"index": data["index"], "rows": data["data"]}


def preview_cells(part: Any) -> list[list[str]]:
    """Rows of display strings, the index first (floats to 6 significant digits)."""
    return [
        [display_cell(i), *(display_cell(v) for v in row)]
        for i, row in zip(part.index, part.to_numpy())
    ]


def display_cell(value: Any) -> str:
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return f"{float(value):.6g}"
    return str(value)


def pretty_json(obj: Any) -> tuple[str, int]:
    return _truncate(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def readable_repr(obj: Any) -> tuple[str, int]:
    """A pretty-printed repr, cut to MAX_LINES lines; returns it and how many lines were cut."""
    try:
        size = len(obj) if isinstance(obj, (list, tuple, dict, set, frozenset)) else 0
        if size > _BIG:
            short = reprlib.Repr()
            short.maxlist = short.maxtuple = short.maxdict = short.maxset = 50
            short.maxlevel, short.maxstring, short.maxother = 4, 200, 200
            text = short.repr(obj)
        else:
            text = pprint.pformat(obj, width=100, sort_dicts=False)
    except Exception as exc:
        text = f"<{type_name(obj)}: repr() raised {type(exc).__name__}: {exc}>"
    return _truncate(text)


def _truncate(text: str) -> tuple[str, int]:
    lines = text.splitlines()
    cut = max(0, len(lines) - MAX_LINES)
    text = "\n".join(lines[:MAX_LINES])
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS] + " …"
        cut = max(cut, 1)
    return text, cut


def export_table(
    values: list[tuple[str, Any]],
    table: list[tuple[str, dict[str, Any]]],
    target: Path,
    force: bool,
) -> str:
    """A stage's output over parameter sets, written as .csv (the table: a header, then a row
    per set, full precision) or .json (a list of {"set", "value"}, values as cached)."""
    _refuse_existing(target, force)
    suffix = target.suffix.lower()
    if suffix == ".json":
        data = [{"set": name, "value": value} for name, value in values]
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        _write_atomically(target, lambda p: Path(p).write_text(text, encoding="utf-8"))
        return "json"
    if suffix == ".csv":
        import csv

        keys = list(dict.fromkeys(k for _, row in table for k in row))

        def write(path: str) -> None:
            with open(path, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["set", *keys])
                for name, row in table:
                    cells = [row.get(k, "") for k in keys]
                    writer.writerow(
                        [
                            name,
                            *(
                                c if isinstance(c, (str, int, float)) else json.dumps(c)
                                for c in cells
                            ),
                        ]
                    )

        _write_atomically(target, write)
        return "csv"
    raise ConfigError(
        f"cannot export a table of parameter sets as {suffix or 'a file without extension'}",
        hint="use a .csv or .json file name, or name one set with -p SET.",
    )


# ------------------------------------------------------------------------- exporting
EXPORT_FORMATS = {"dataframe": (".csv", ".json", ".parquet"), "json": (".json",)}  # and .pkl


def _refuse_existing(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise ConfigError(
            f"refusing to overwrite {target}",
            hint="pass --force to replace it, or choose another file.",
        )


def _is_array(obj: Any) -> bool:
    """A numpy array (checked by type, so numpy is never imported for other values)."""
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def _save_npy(obj: Any, target: Path) -> None:
    import numpy as np

    def write(path: str) -> None:
        with open(path, "wb") as f:
            # No pickled objects inside: an .npy that np.load reads without allow_pickle.
            np.save(f, obj, allow_pickle=False)

    _write_atomically(target, write)


def _save_pickle(obj: Any, target: Path) -> None:
    def write(path: str) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)

    _write_atomically(target, write)


def export(obj: Any, target: Path, force: bool = False) -> str:
    """Write `obj` to `target` in the format its suffix names; returns that format."""
    _refuse_existing(target, force)
    suffix = target.suffix.lower()
    if suffix == ".pkl":  # anything: read back with pickle.load, as the stage returned it
        _save_pickle(obj, target)
        return "pkl"
    if suffix == ".npy" and _is_array(obj):
        _save_npy(obj, target)
        return "npy"
    frame = as_frame(obj)
    if frame is not None:
        if suffix not in EXPORT_FORMATS["dataframe"]:
            raise ConfigError(
                f"cannot export a DataFrame as {suffix or 'a file without extension'}",
                hint="use a .csv, .json, .parquet or .pkl file name.",
            )
        if suffix == ".parquet":
            import importlib.util

            if importlib.util.find_spec("pyarrow") is None:
                raise ConfigError(
                    "exporting parquet needs pyarrow, which is not installed",
                    hint="`pip install pyarrow`, or export to .csv or .json.",
                )
        writers = {
            ".csv": lambda p: frame.to_csv(p),
            ".json": lambda p: frame.to_json(p, orient="records", indent=2, date_format="iso"),
            ".parquet": lambda p: frame.to_parquet(p, engine="pyarrow"),
        }
        _write_atomically(target, writers[suffix])
        return suffix[1:]
    if suffix == ".json" and is_json(obj):
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        _write_atomically(target, lambda p: Path(p).write_text(text, encoding="utf-8"))
        return "json"
    raise ConfigError(
        f"cannot export a {type_name(obj)} to {target.name}",
        hint="DataFrames export to .csv, .json or .parquet, plain JSON values to .json, numpy "
        "arrays to .npy, and anything to .pkl.",
    )


def _write_atomically(target: Path, write: Any) -> None:
    # A failed export never leaves a half-written file, nor damages one passed with --force.
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError(f"cannot write {target}: folder {directory} does not exist")
    try:
        with atomic_path(target) as tmp:
            write(tmp)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    except Exception as exc:  # the library writing the format refused the value
        raise ConfigError(f"cannot write {target}: {type(exc).__name__}: {exc}") from None
