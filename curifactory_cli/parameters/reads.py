"""A view of a parameter set that records what a stage reads of it.

`watch(params)` gives a view that behaves like the set for the code that uses it, and a `Reads`
that fills as that code reads: each parameter path read (`p.model.depth` reads `model.depth`,
`p["lr"]` reads `lr`) with a digest of the value read, computed as the parameter hash computes
it (built-in fields, `hash_representations` opt-outs and functions respected). Anything that
takes the whole set (iteration, `to_dict()`, `vars`, `dataclasses.asdict`, pickling, `repr`,
`==`, `hash`, `copy`, ...) reads everything. `first_difference(params, reads)` says whether
another set has the same value at every path read, naming the first one that differs.

The view is an instance of a subclass of the set's own class, made once per class, whose
storage is empty: every attribute lookup goes through its `__getattribute__`, which reads the
set's field, records it, and wraps a nested dataclass or mapping in a view of its own. Being a
subclass keeps `isinstance`, `dataclasses.is_dataclass` (so `asdict` works, and reads
everything) and the class's methods, which run with the view as `self` and so are recorded
too. `view.__class__` is the set's class; `type(view)` is the subclass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curifactory_cli.errors import ParamsError
from curifactory_cli.hashing import (
    PARAMETERS_BLACKLIST,
    _representations,
)
from curifactory_cli.parameters.paths import Parts, parse_path, render_path
from curifactory_cli.parameters.read_values import (
    ABSENT,
    ABSENT_DIGEST,
    UNHASHABLE_DIGEST,
    _field_digest,
    _field_names,
    _kind,
    _node_digest,
    _whole_digest,
    current_items,
    first_difference,
    reads_match,
    value_at,
)
from curifactory_cli.parameters.sets import Params, hash_view

_ABSENT = ABSENT
__all__ = [
    "ABSENT_DIGEST",
    "UNHASHABLE_DIGEST",
    "Reads",
    "current_items",
    "first_difference",
    "parse_path",
    "read_whole",
    "reads_match",
    "render_path",
    "unwrap",
    "value_at",
    "watch",
    "watch_records",
    "whole_reads",
]

_get = object.__getattribute__
_set = object.__setattr__

# Reading these through a view takes the whole object (its field names and values).
_WHOLE_ATTRIBUTES = frozenset({"__dict__", "__dataclass_fields__", "__slots__"})
# Special methods that take the whole object; a view class has those its set's class has.
_WHOLE_METHODS = (
    "__iter__",
    "__reversed__",
    "__len__",
    "__bool__",
    "__contains__",
    "__getitem__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__copy__",
    "__deepcopy__",
    "__getstate__",
    "__reduce__",
    "__reduce_ex__",
    "__repr__",
    "__str__",
    "__format__",
    "__dir__",
    "__bytes__",
    "__replace__",  # copy.replace (Python 3.13)
)


class Reads:
    """What a stage call read of its parameter set: `items` (sorted (path, digest) pairs;
    the whole set is the path "") and `everything` (whether it took the whole set)."""

    __slots__ = ("_root", "_seen", "_views", "_written", "everything")

    def __init__(self, root: int = 0) -> None:
        # How many parts of a path name the set read (one: an aggregate's record position).
        self._root = root
        self._seen: dict[Parts, str] = {}
        self._written: set[Parts] = set()
        # The view last made at a path, with the object it wraps: reading `p.model` in a loop
        # makes one view, not one per read.
        self._views: dict[Parts, tuple[Any, Any]] = {}
        self.everything = False

    @property
    def items(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((render_path(parts), d) for parts, d in self._seen.items()))

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self.items)

    def __repr__(self) -> str:
        return f"Reads(everything={self.everything}, items={self.items!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # What was read, without the views (pickling a view would read its whole set).
        return (_restored_reads, (dict(self._seen), self.everything))

    def _note(self, parts: Parts, compute: Any, *args: Any) -> None:
        """Records the first read of a path (a later one may see the stage's own write)."""
        if parts in self._seen or (self._written and _written_over(self._written, parts)):
            return
        try:
            digest = compute(*args)
        except ParamsError:
            digest = UNHASHABLE_DIGEST
        if digest is not None:  # None: a field the parameter hash leaves out
            self._seen[parts] = digest


def _written_over(written: set[Parts], parts: Parts) -> bool:
    """Whether the stage set this path (or one above it) before reading it: what it reads
    there is its own value, a function of what it read before."""
    return any(parts[:n] in written for n in range(1, len(parts) + 1))


def _restored_reads(seen: dict[Parts, str], everything: bool) -> Reads:
    reads = Reads()  # (unpickled: no views will record into it)
    reads._seen.update(seen)
    reads.everything = everything
    return reads


def watch(params: Any) -> tuple[Any, Reads]:
    """A view of `params` that records what is read of it, and the record. A set whose class
    cannot be viewed (a subclass of a built-in type) is given as it is, read in full."""
    reads = Reads()
    params = unwrap(params)  # a view of a view would record in the inner one's Reads too
    if params is None:
        return None, reads
    view = _make_view(params, (), reads, None, None, set_level=True)
    if view is None:
        _take_whole(reads, params, (), None, None)
        return params, reads
    return view, reads


def watch_records(sets: list[Any]) -> tuple[list[Any], Reads]:
    """Views of the parameter sets of an aggregate's records (in the order it gets them),
    recording into one Reads what it reads of each under the record's position (`[0].lr`:
    see read_values.RecordSets). Taking one of them whole takes everything."""
    reads = Reads(root=1)
    views = []
    for position, params in enumerate(sets):
        params = unwrap(params)
        view = None if params is None else _make_view(params, (position,), reads, None, None, True)
        if view is None and params is not None:
            reads.everything = True  # a set no view can be made of is read in full
        views.append(params if view is None else view)
    return views, reads


def whole_reads() -> Reads:
    """What a call keyed on its whole set (`params="all"`) is said to have read: everything
    (with no digest: its key holds the set's hash)."""
    reads = Reads()
    reads.everything = True
    return reads


def unwrap(value: Any) -> Any:
    """The object a view wraps (anything else as it is), without reading it."""
    if type(value).__dict__.get("_rv_view", False):
        return _get(value, "_rv")[0]
    return value


def read_whole(value: Any) -> Any:
    """The object a view wraps, recorded as read in full (what code that hands the object on
    to something the view cannot follow must do); anything else as it is."""
    if type(value).__dict__.get("_rv_view", False):
        state = _get(value, "_rv")
        _whole(state)
        return state[0]
    return value


def _take_whole(reads: Reads, target: Any, parts: Parts, parent: Any, set_level: Any) -> None:
    """A read of everything under `parts` (of the whole set at the root)."""
    if not parts:
        reads.everything = True
        reads._note((), _whole_digest, target)
        return
    if len(parts) <= reads._root:  # a record's whole set, read by an aggregate
        reads.everything = True
        return
    # A nested object's path holds its kind since it was taken: now its kind and its value.
    kind = reads._seen.get(parts)
    if kind is not None and "|" not in kind:
        del reads._seen[parts]
        value = target._data if isinstance(target, Params) else target
        reads._note(parts, _node_digest, parent, parts[-1], value, set_level)


# --------------------------------------------------------------------------------------------
# The views
#
# A view's one slot `_rv` holds its state, a tuple (read on every attribute access):
# (target, parts, reads, set_level, reps, names, target's __dict__ or None, parent,
# parent's set_level). `names`: for a Params view, every attribute of its class; else the
# class's dataclass fields and slots.

_PATH_KEYS = (str, int, float, bool, type(None))
_VIEW_CLASSES: dict[type, tuple[type, frozenset[str]] | None] = {}
_CLASS_CONSTANTS: dict[tuple[type, str], bool] = {}


def _make_view(
    obj: Any, parts: Parts, reads: Reads, parent: Any, parent_set_level: Any, set_level: bool
) -> Any:
    info = _view_class(type(obj))
    if info is None:
        return None
    view_cls, names = info
    view: Any = object.__new__(view_cls)
    reps = _representations(hash_view(obj)) if set_level else {}
    own = None if isinstance(obj, Params) else getattr(obj, "__dict__", None)
    state = (obj, parts, reads, set_level, reps, names, own, parent, parent_set_level)
    _set(view, "_rv", state)
    return view


def _view_class(cls: type) -> tuple[type, frozenset[str]] | None:
    try:
        return _VIEW_CLASSES[cls]
    except KeyError:
        pass
    info: tuple[type, frozenset[str]] | None = None
    try:
        view_cls = _build_view_class(cls)
        object.__new__(view_cls)  # refused for a subclass of a built-in type (dict, tuple...)
        if issubclass(cls, Params):
            names = frozenset(n for klass in cls.__mro__ for n in vars(klass))
        else:
            names = _field_names(cls)
        info = (view_cls, names)
    except TypeError:
        pass
    _VIEW_CLASSES[cls] = info
    return info


def _build_view_class(cls: type) -> type:
    ns: dict[str, Any] = {
        "__slots__": ("_rv",),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "_rv_view": True,
        "__setattr__": _view_setattr,
        "__delattr__": _view_delattr,
        "__eq__": _view_eq,
        "__ne__": _view_ne,
        "__hash__": None if cls.__hash__ is None else _view_hash,
    }
    # Only the special methods the class has: a view of a class that is not iterable is not.
    for name in _WHOLE_METHODS:
        if getattr(cls, name, None) is not None:
            ns[name] = _whole_method(name)
    if issubclass(cls, Params):
        ns.update(
            __getattribute__=_params_getattribute,
            __getattr__=_params_getattr,
            __getitem__=_params_getitem,
            __contains__=_params_contains,
            get=_params_get,
        )
    else:
        ns["__getattribute__"] = _object_getattribute
    return type(cls)(cls.__name__, (cls,), ns)


def _read_field(state: tuple[Any, ...], key: Any, value: Any) -> Any:
    """A field read through a view: recorded, or wrapped in a view of its own."""
    reads: Reads = state[2]
    target = state[0]
    if reads.everything:
        return _wrap_plain(target, key, value)
    path: Parts = (*state[1], key)
    # A path read before: its view, or the value (its digest is the first read's).
    cached = reads._views.get(path)
    if cached is not None and cached[0] is value:
        return cached[1]
    if path in reads._seen:
        return _wrap_plain(target, key, value)
    if not isinstance(key, _PATH_KEYS):  # a key no path can name: the container is read
        _whole(state)
        return _wrap_plain(target, key, value)
    set_level = state[3]
    if set_level and (key in PARAMETERS_BLACKLIST or key in state[4]):
        reads._note(path, _field_digest, hash_view(target), key, value, True)
        return value
    nested_set_level = hasattr(type(value), "__dataclass_fields__") and not isinstance(value, type)
    if nested_set_level or (isinstance(target, Params) and isinstance(value, Mapping)):
        obj = value if nested_set_level else Params(key, value)  # type: ignore[arg-type]
        view = _make_view(obj, path, reads, hash_view(target), set_level, nested_set_level)
        if view is not None:
            reads._views[path] = (value, view)
            reads._note(path, _kind, value)  # taking it tells its kind
            return view
        value = obj
    reads._note(path, _field_digest, hash_view(target), key, value, set_level)
    return value


def _wrap_plain(target: Any, key: Any, value: Any) -> Any:
    return (
        Params(key, value) if isinstance(target, Params) and isinstance(value, Mapping) else value
    )


def _whole(state: tuple[Any, ...]) -> None:
    _take_whole(state[2], state[0], state[1], state[7], state[8])


def _note_absent(state: tuple[Any, ...], name: Any) -> None:
    if not isinstance(name, _PATH_KEYS):
        _whole(state)
    elif not state[2].everything:
        state[2]._note((*state[1], name), _absent)


def _absent() -> str:
    return ABSENT_DIGEST


def _is_dunder(name: str) -> bool:
    return name[:2] == "__" and name[-2:] == "__"


def _object_getattribute(self: Any, name: str) -> Any:
    state = _get(self, "_rv")
    own = state[6]
    if name in state[5] or (own is not None and name in own):
        return _read_field(state, name, getattr(state[0], name))
    target = state[0]
    if name == "__class__":
        return type(target)
    if name in _WHOLE_ATTRIBUTES:
        _whole(state)
        return getattr(target, name)
    try:
        found = _get(self, name)  # a method or property runs with the view as self
    except AttributeError:
        if not _is_dunder(name):
            _note_absent(state, name)
        raise
    if not _is_dunder(name) and _is_class_constant(type(target), name):
        # A class attribute, where another set may hold an instance field of that name.
        _note_absent(state, name)
    return found


def _is_class_constant(cls: type, name: str) -> bool:
    known = _CLASS_CONSTANTS.get((cls, name))
    if known is None:
        raw = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
        known = raw is not None and not hasattr(type(raw), "__get__")
        _CLASS_CONSTANTS[(cls, name)] = known
    return known


def _params_getattribute(self: Any, name: str) -> Any:
    state = _get(self, "_rv")
    target = state[0]
    if name in state[5]:
        if name == "name":
            return target.name  # the set's (or the mapping's) name is not a parameter
        if name == "__class__":
            return type(target)
        if name == "_data" or name in _WHOLE_ATTRIBUTES:
            _whole(state)
            return getattr(target, name)
        return _get(self, name)
    if name in _WHOLE_ATTRIBUTES:
        _whole(state)
        return getattr(target, name)
    data = target._data
    if name in data:
        return _read_field(state, name, data[name])
    if not _is_dunder(name):
        _note_absent(state, name)
    raise AttributeError(name)


def _params_getattr(self: Any, name: str) -> Any:
    target = _get(self, "_rv")[0]
    return type(target).__getattr__(target, name)  # raises, with the set's message


def _params_getitem(self: Any, key: Any) -> Any:
    state = _get(self, "_rv")
    data = state[0]._data
    if key in data:
        return _read_field(state, key, data[key])
    _note_absent(state, key)
    raise KeyError(key)


def _params_contains(self: Any, key: object) -> bool:
    state = _get(self, "_rv")
    data = state[0]._data
    if key in data:
        _read_field(state, key, data[key])
        return True
    _note_absent(state, key)
    return False


def _params_get(self: Any, key: str, default: Any = None) -> Any:
    state = _get(self, "_rv")
    target = state[0]
    if key in target._data:
        return _read_field(state, key, target._data[key])
    _note_absent(state, key)
    return target.get(key, default)


def _whole_method(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = _get(self, "_rv")
        _whole(state)
        return getattr(state[0], name)(*[unwrap(a) for a in args], **kwargs)

    method.__name__ = name
    return method


def _view_eq(self: Any, other: object) -> Any:
    state = _get(self, "_rv")
    _whole(state)
    return state[0] == unwrap(other)


def _view_ne(self: Any, other: object) -> Any:
    state = _get(self, "_rv")
    _whole(state)
    return state[0] != unwrap(other)


def _view_hash(self: Any) -> int:
    state = _get(self, "_rv")
    _whole(state)
    return hash(state[0])


def _view_setattr(self: Any, name: str, value: Any) -> None:
    """A write goes to the set (raising what it raises: a frozen dataclass, a read-only
    Params); what the stage reads there afterwards is its own value, not recorded."""
    state = _get(self, "_rv")
    setattr(state[0], name, unwrap(value))
    state[2]._written.add((*state[1], name))


def _view_delattr(self: Any, name: str) -> None:
    state = _get(self, "_rv")
    delattr(state[0], name)
    state[2]._written.add((*state[1], name))
