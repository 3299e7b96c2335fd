"""A parameter set seen through `watch`: it behaves as the set for the code that reads it, and
records each path read with its value's digest (the whole set for anything that takes it
all); `first_difference` compares another set with what was read."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curifactory_cli.hashing import hash_params, hash_value
from curifactory_cli.parameters.reads import (
    ABSENT_DIGEST,
    first_difference,
    parse_path,
    reads_match,
    render_path,
    unwrap,
    watch,
)
from curifactory_cli.params import ExperimentParameters, Params, set_hash_functions


@dataclass
class Model:
    depth: int = 3
    width: int = 8


@dataclass
class P(ExperimentParameters):
    lr: float = 0.1
    seed: int = 1
    model: Model = field(default_factory=Model)
    options: dict = field(default_factory=lambda: {"a": 1, "b": 2})
    layers: list = field(default_factory=lambda: [4, 8])

    @property
    def scaled_lr(self) -> float:
        return self.lr * 10

    def describe(self) -> str:
        return f"seed {self.seed}"


@dataclass
class WithReps(ExperimentParameters):
    lr: float = 0.1
    workers: int = 4
    hash_representations: dict = set_hash_functions(  # noqa: RUF009 - Curifactory's idiom
        workers=None, lr=lambda params, value: round(value, 2)
    )


@dataclass
class NestedReps(ExperimentParameters):
    model: Model = field(default_factory=Model)
    cluster: Model = field(default_factory=Model)
    hash_representations: dict = set_hash_functions(  # noqa: RUF009 - Curifactory's idiom
        cluster=None, model=lambda params, value: value.depth
    )


@dataclass(frozen=True)
class Frozen:
    lr: float = 0.1
    seed: int = 1


@dataclass(slots=True)
class Slotted:
    lr: float = 0.1
    seed: int = 1


class MappingSet(Mapping):
    """A user's own mapping class as a parameter set."""

    def __init__(self, **values: Any) -> None:
        self.values_ = values

    def __getitem__(self, key: str) -> Any:
        return self.values_[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values_)

    def __len__(self) -> int:
        return len(self.values_)


class DictSet(dict):
    """A subclass of a built-in type: no view can be made of it."""


def yaml_set(**values: Any) -> Params:
    data = {"lr": 0.1, "seed": 1, "model": {"depth": 2, "name": "tree"}}
    data.update(values)
    return Params("s", data)


def digest(value: Any) -> str:
    return hash_value(value, "parameter value")


# --------------------------------------------------------------------------------------------
# What is recorded


def test_attribute_reads_are_recorded_with_the_digest_of_the_value_read():
    view, reads = watch(P(lr=0.5))
    assert view.lr == 0.5
    assert view.seed == 1
    assert view.lr == 0.5  # a second read adds nothing
    assert reads.items == (("lr", digest(0.5)), ("seed", digest(1)))
    assert not reads.everything


def test_item_reads_of_a_yaml_set_are_recorded():
    view, reads = watch(yaml_set(lr=0.3))
    assert view["lr"] == 0.3
    assert view.get("seed") == 1
    assert "missing" not in view
    assert view.get("other", 7) == 7
    assert reads.items == (
        ("lr", digest(0.3)),
        ("missing", ABSENT_DIGEST),
        ("other", ABSENT_DIGEST),
        ("seed", digest(1)),
    )


def test_nested_dataclass_reads_are_recorded_under_their_path():
    view, reads = watch(P(model=Model(depth=5)))
    model = view.model
    assert isinstance(model, Model)
    # Taking the nested object reads only what it is, none of its fields yet.
    assert reads.items == (("model", f"kind:dataclass:{__name__}.Model"),)
    assert model.depth == 5
    assert view.model.depth == 5
    assert reads.items == (
        ("model", f"kind:dataclass:{__name__}.Model"),
        ("model.depth", digest(5)),
    )


def test_nested_mapping_reads_of_a_yaml_set_are_recorded_under_their_path():
    view, reads = watch(yaml_set())
    assert isinstance(view.model, Params)
    assert view.model.depth == 2
    assert view["model"]["name"] == "tree"
    assert view.model.name == "model"  # a nested mapping's own name, as Params gives it
    assert reads.items == (
        ("model", "kind:mapping"),
        ("model.depth", digest(2)),
        ("model.name", digest("tree")),
    )


def test_a_mapping_or_list_inside_a_dataclass_is_read_whole():
    view, reads = watch(P())
    assert view.options["a"] == 1
    assert view.layers[0] == 4
    assert reads.items == (("layers", digest([4, 8])), ("options", digest({"a": 1, "b": 2})))


def test_taking_a_nested_object_whole_reads_its_path_not_the_whole_set():
    view, reads = watch(P(model=Model(depth=5)))
    assert repr(view.model) == "Model(depth=5, width=8)"
    assert not reads.everything
    kind = f"kind:dataclass:{__name__}.Model"
    assert reads.items == (("model", f"{kind}|{digest(Model(depth=5))}"),)
    yaml_view, yaml_reads = watch(yaml_set())
    assert list(yaml_view.model) == ["depth", "name"]
    assert yaml_reads.items == (("model", f"kind:mapping|{digest({'depth': 2, 'name': 'tree'})}"),)
    assert reads_match(P(model=Model(depth=5), lr=0.9), reads)
    assert first_difference(P(model=Model(depth=5, width=1)), reads) == "model"


def test_methods_and_properties_of_the_set_class_run_on_the_view():
    view, reads = watch(P(lr=0.2, seed=3))
    assert view.scaled_lr == 2.0
    assert view.describe() == "seed 3"
    assert reads.paths == ("lr", "seed")


def test_a_missing_attribute_is_recorded_as_absent():
    view, reads = watch(P())
    assert not hasattr(view, "momentum")
    assert reads.items == (("momentum", ABSENT_DIGEST),)
    yaml_view, yaml_reads = watch(yaml_set())
    with pytest.raises(AttributeError, match="parameter set 's' has no parameter 'momentum'"):
        _ = yaml_view.momentum
    with pytest.raises(KeyError):
        _ = yaml_view["momentum"]
    assert yaml_reads.items == (("momentum", ABSENT_DIGEST),)
    assert first_difference(yaml_set(momentum=0.9), yaml_reads) == "momentum"


def test_name_and_hash_reads_are_not_recorded():
    view, reads = watch(P(name="first"))
    assert view.name == "first"
    assert view.hash is None
    assert view.overwrite is False
    yaml_view, yaml_reads = watch(yaml_set())
    assert yaml_view.name == "s"
    assert reads.items == () and yaml_reads.items == ()
    assert not reads.everything and not yaml_reads.everything


def test_a_value_the_stage_wrote_before_reading_is_not_recorded():
    params = P()
    view, reads = watch(params)
    assert view.seed == 1
    view.seed = 2  # a mutable dataclass takes writes, as it does without a view
    view.lr = 0.7
    assert params.seed == 2 and params.lr == 0.7
    assert view.seed == 2 and view.lr == 0.7
    # seed's first read saw the set's value; lr's read sees the stage's own.
    assert reads.items == (("seed", digest(1)),)


# --------------------------------------------------------------------------------------------
# Taking the whole set reads everything: one test per way of taking it


def _set_of_every_kind() -> P:
    return P(name="one", lr=0.25, seed=7)


WHOLE_SET_ACCESS = {
    "iteration": (lambda v: list(v), yaml_set),
    "keys": (lambda v: list(v.keys()), lambda: MappingSet(lr=0.1, seed=1)),
    "items": (lambda v: list(v.items()), lambda: MappingSet(lr=0.1, seed=1)),
    "values": (lambda v: list(v.values()), lambda: MappingSet(lr=0.1, seed=1)),
    "len": (lambda v: len(v), lambda: MappingSet(lr=0.1, seed=1)),
    "to_dict": (lambda v: v.to_dict(), yaml_set),
    "asdict": (dataclasses.asdict, _set_of_every_kind),
    "astuple": (dataclasses.astuple, _set_of_every_kind),
    "fields with values": (
        lambda v: [getattr(v, f.name) for f in dataclasses.fields(v)],
        _set_of_every_kind,
    ),
    "replace": (lambda v: dataclasses.replace(v, seed=8), _set_of_every_kind),
    "vars": (vars, _set_of_every_kind),
    "__dict__": (lambda v: v.__dict__, _set_of_every_kind),
    "__dict__ of a yaml set": (lambda v: getattr(v, "_data"), yaml_set),  # noqa: B009
    "pickle": (lambda v: pickle.loads(pickle.dumps(v)), _set_of_every_kind),
    "repr": (repr, _set_of_every_kind),
    "str": (str, _set_of_every_kind),
    "format": (lambda v: f"{v:}", _set_of_every_kind),
    "==": (lambda v: v == _set_of_every_kind(), _set_of_every_kind),
    "!=": (lambda v: v != _set_of_every_kind(), _set_of_every_kind),
    "hash": (hash, Frozen),
    "hash of a yaml set": (hash, yaml_set),
    "copy": (copy.copy, _set_of_every_kind),
    "deepcopy": (copy.deepcopy, _set_of_every_kind),
    "dir": (dir, _set_of_every_kind),
    "json of to_dict": (lambda v: json.dumps(v.to_dict()), yaml_set),
    "logged": (lambda v: logging.getLogger("x").warning("params: %s", v), _set_of_every_kind),
}


@pytest.mark.parametrize("kind", list(WHOLE_SET_ACCESS))
def test_taking_the_whole_set_reads_everything(kind, caplog):
    fn, make = WHOLE_SET_ACCESS[kind]
    params = make()
    view, reads = watch(params)
    got = fn(view)
    expected = fn(make())
    if kind not in ("hash", "hash of a yaml set", "dir", "logged"):
        assert got == expected  # the same result as on the set itself
    assert reads.everything
    assert "" in reads.paths
    assert first_difference(make(), reads) is None  # the same values read the same


def test_the_whole_set_read_tells_the_classes_of_nested_dataclasses_apart():
    """The parameter hash leaves out which class a nested dataclass is (as Curifactory's
    does); code given the whole set sees it (repr, isinstance), so a read of it does not."""
    first = P(name="s", model=Model(1, 2))
    second = P(name="s", model=OtherModel(1, 2))
    assert hash_params(first) == hash_params(second)
    for take in (repr, lambda p: repr(p.model)):
        view, reads = watch(first)
        take(view)
        assert first_difference(P(name="s", model=Model(1, 2)), reads) is None
        assert first_difference(second, reads) in ("", "model")
    yaml_set = Params("s", {"lr": 0.1, "grid": [1, {"a": 2}]})
    view, reads = watch(yaml_set)
    repr(view)
    assert dict(reads.items)[""] == hash_params(yaml_set._data)  # no dataclass: the hash


def test_copies_and_pickles_of_a_view_are_plain_sets():
    params = _set_of_every_kind()
    view, _ = watch(params)
    for other in (copy.copy(view), copy.deepcopy(view), pickle.loads(pickle.dumps(view))):
        assert type(other) is P
        assert other == params
    assert type(dataclasses.replace(view, seed=9)) is P


def test_a_set_no_view_can_be_made_of_is_given_as_it_is_and_read_whole():
    params = DictSet(lr=0.1)
    view, reads = watch(params)
    assert view is params
    assert reads.everything


# --------------------------------------------------------------------------------------------
# The view behaves as the set


def test_a_dataclass_view_keeps_isinstance_and_dataclass_identity():
    view, reads = watch(P())
    assert isinstance(view, P) and isinstance(view, ExperimentParameters)
    assert view.__class__ is P
    assert dataclasses.is_dataclass(view)
    assert isinstance(view.model, Model) and view.model.__class__ is Model
    assert reads.paths == ("model",)  # its kind
    assert isinstance(watch(yaml_set())[0], Params)
    slotted, slotted_reads = watch(Slotted(lr=0.4))
    assert isinstance(slotted, Slotted) and slotted.lr == 0.4
    assert slotted_reads.items == (("lr", digest(0.4)),)
    assert reads.paths == ("model",)  # isinstance reads nothing more


def test_defaults_are_read_as_the_set_holds_them():
    view, reads = watch(P())
    assert (view.lr, view.seed, view.model.width) == (0.1, 1, 8)
    assert reads_match(P(lr=0.1, seed=1, model=Model(width=8)), reads)
    assert first_difference(P(model=Model(width=9)), reads) == "model.width"


def test_hash_representations_opt_outs_are_not_recorded_and_functions_are_used():
    view, reads = watch(WithReps(lr=0.1, workers=4))
    assert view.workers == 4
    assert view.lr == 0.1
    assert reads.items == (("lr", digest(0.1)),)  # round(0.1, 2)
    assert reads_match(WithReps(lr=0.1, workers=16), reads)
    assert reads_match(WithReps(lr=0.1001), reads)  # the same to two places
    assert first_difference(WithReps(lr=0.2), reads) == "lr"


def test_a_nested_object_with_a_hash_representation_is_read_as_that_representation():
    view, reads = watch(NestedReps(model=Model(depth=2, width=5), cluster=Model(depth=9)))
    assert view.model.width == 5  # the hash sees only the depth: so does the read
    assert view.cluster.depth == 9  # left out of the hash: not read
    assert reads.items == (("model", digest(2)),)
    assert reads_match(NestedReps(model=Model(depth=2, width=6), cluster=Model(depth=1)), reads)
    assert first_difference(NestedReps(model=Model(depth=3, width=5)), reads) == "model"


def test_a_value_changed_in_place_keeps_the_digest_of_its_first_read():
    view, reads = watch(P(layers=[4, 8]))
    view.layers.append(16)  # changes the set itself, as it would without a view
    assert view.layers == [4, 8, 16]
    assert reads.items == (("layers", digest([4, 8])),)


def test_writes_are_refused_as_the_set_refuses_them():
    frozen, frozen_reads = watch(Frozen())
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'lr'"):
        frozen.lr = 0.2
    yaml_view, _ = watch(yaml_set())
    with pytest.raises(AttributeError, match="parameters are read-only inside a run"):
        yaml_view.lr = 0.2
    with pytest.raises(AttributeError, match="read-only"):
        yaml_view.model.depth = 1
    assert frozen.lr == 0.1 and frozen_reads.items == (("lr", digest(0.1)),)


def test_a_record_of_reads_pickles_without_reading_the_set():
    view, reads = watch(P(model=Model(depth=4)))
    assert view.model.depth == 4
    copied = pickle.loads(pickle.dumps(reads))
    assert not reads.everything  # the view it holds was not pickled
    assert (copied.items, copied.everything) == (reads.items, False)
    assert first_difference(P(model=Model(depth=5)), copied) == "model.depth"


def test_unwrap_gives_the_set_without_reading_it():
    params = P()
    view, reads = watch(params)
    assert unwrap(view) is params
    assert unwrap(params) is params
    assert reads.items == ()


# --------------------------------------------------------------------------------------------
# Comparing another set with what was read


def test_first_difference_names_a_changed_read_path_and_ignores_unread_ones():
    view, reads = watch(P(lr=0.1, model=Model(depth=3)))
    assert view.lr == 0.1 and view.model.depth == 3
    assert first_difference(P(lr=0.1, model=Model(depth=3)), reads) is None
    assert first_difference(P(lr=0.1, seed=99, model=Model(width=64)), reads) is None
    assert first_difference(P(name="renamed"), reads) is None
    assert first_difference(P(lr=0.01), reads) == "lr"
    assert first_difference(P(model=Model(depth=4)), reads) == "model.depth"
    assert first_difference(P(lr=0.01, model=Model(depth=4)), reads) == "lr"  # the first


def test_first_difference_works_on_stored_items_and_yaml_sets():
    view, reads = watch(yaml_set())
    assert view.model.depth == 2
    stored = [tuple(pair) for pair in json.loads(json.dumps(reads.items))]
    assert first_difference(yaml_set(lr=9), stored) is None
    assert first_difference(yaml_set(model={"depth": 3}), stored) == "model.depth"
    assert first_difference(yaml_set(model=5), stored) == "model"  # no longer nested


@dataclass
class OtherModel:
    depth: int = 3
    width: int = 8


def test_taking_a_nested_object_reads_what_kind_of_object_it_is():
    view, reads = watch(P(model=Model(depth=3)))
    assert isinstance(view.model, Model)  # the stage may branch on the class
    assert reads_match(P(model=Model(depth=9)), reads)
    assert first_difference(P(model=OtherModel(depth=3)), reads) == "model"
    yaml_view, yaml_reads = watch(yaml_set(model={}))
    assert isinstance(yaml_view.model, Params)
    assert reads_match(yaml_set(model={"depth": 1}), yaml_reads)
    assert first_difference(yaml_set(model=0), yaml_reads) == "model"


def test_after_a_whole_set_read_nested_mappings_are_still_given_as_params():
    view, reads = watch(yaml_set())
    view.to_dict()
    assert isinstance(view.model, Params) and view.model.depth == 2
    assert reads.everything


def test_a_whole_set_read_matches_only_a_set_with_the_same_hash():
    view, reads = watch(P(lr=0.1))
    repr(view)
    assert first_difference(P(lr=0.1, name="other"), reads) is None
    assert first_difference(P(lr=0.1, seed=2), reads) == ""


def test_paths_render_and_parse_back():
    for parts in [("lr",), ("model", "depth"), ("grid", 1), ("a.b", "c"), ('q"', None, 1.5)]:
        assert parse_path(render_path(parts)) == parts
    assert render_path(("model", "depth")) == "model.depth"
    assert render_path(("grid", 1)) == "grid[1]"
    assert render_path(()) == ""


# --------------------------------------------------------------------------------------------
# Nothing wrong is ever matched: code that reads, through the view, values equal in another
# set computes the same from that set.

_KEYS = ["a", "b", "mode", "nest"]
_INNER = ["x", "y", "name"]
_scalars = st.one_of(st.integers(-3, 3), st.booleans(), st.sampled_from(["u", "v"]))
_values = st.one_of(
    _scalars,
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from(_INNER), _scalars, max_size=3),
)
_sets = st.dictionaries(st.sampled_from(_KEYS), _values, max_size=4)
_paths = st.one_of(
    st.tuples(st.sampled_from(_KEYS)),
    st.tuples(st.sampled_from(_KEYS), st.sampled_from(_INNER)),
)
_steps = st.one_of(
    st.tuples(st.just("read"), _paths, st.sampled_from(["attr", "item", "get", "in"])),
    st.tuples(st.just("branch"), st.sampled_from(_KEYS), _paths, _paths),
    st.tuples(st.just("whole"), st.sampled_from(["to_dict", "iter", "repr"]), st.none()),
)


def _observe(value: Any) -> Any:
    # A nested view is observed by its kind only: what is read of it is read by later steps.
    return "<mapping>" if isinstance(value, Params) else value


def _read(params: Any, path: tuple, how: str) -> Any:
    value = params
    for key in path:
        if how == "attr":
            value = getattr(value, key)
        elif how == "item":
            value = value[key]
        elif how == "in":
            if key not in value:
                return "absent"
            value = value[key]
        else:
            value = value.get(key, "default")
    return _observe(value)


def _run(params: Any, steps: list) -> list:
    out = []
    for kind, first, second, *rest in steps:
        try:
            if kind == "read":
                out.append(_read(params, first, second))
            elif kind == "branch":  # which path is read depends on a value
                chosen = second if getattr(params, first) else rest[0]
                out.append(_read(params, chosen, "attr"))
            elif first == "to_dict":
                out.append(params.to_dict())
            elif first == "iter":
                out.append(list(params))
            else:
                out.append(repr(params))
        except (AttributeError, KeyError, TypeError) as error:
            out.append(type(error).__name__)
    return out


@settings(max_examples=300, deadline=None)
@given(
    first=_sets,
    changes=_sets,
    dropped=st.lists(st.sampled_from(_KEYS)),
    steps=st.lists(_steps, max_size=5),
)
def test_a_set_that_matches_what_was_read_gives_the_same_result(first, changes, dropped, steps):
    second = {k: v for k, v in {**first, **changes}.items() if k not in dropped}
    view, reads = watch(Params("s", first))
    result = _run(view, steps)
    assert result == _run(Params("s", first), steps)  # the view changes nothing
    if reads_match(Params("s", second), reads):
        assert _run(Params("s", second), steps) == result
    else:
        changed = first_difference(Params("s", second), reads)
        assert changed is not None and changed in reads.paths


_models = st.builds(
    lambda cls, depth, width: cls(depth, width),
    st.sampled_from([Model, OtherModel]),
    st.integers(0, 2),
    st.integers(0, 2),
)
_dataclass_sets = st.builds(
    lambda lr, seed, model, options: P(name="s", lr=lr, seed=seed, model=model, options=options),
    st.sampled_from([0.1, 0.2, 1]),
    st.integers(0, 2),
    _models,
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 1), max_size=2),
)
_dataclass_steps = st.one_of(
    st.sampled_from(
        [
            ("lr",),
            ("seed",),
            ("model", "depth"),
            ("model", "width"),
            ("options",),
            ("momentum",),
            ("scaled_lr",),
        ]
    ),
    st.sampled_from(["asdict", "repr", "model repr", "model class", "seed branch"]),
)


def _run_dataclass(params: Any, steps: list) -> list:
    out: list = []
    for step in steps:
        if isinstance(step, tuple):
            value: Any = params
            for key in step:
                value = getattr(value, key, "missing")
            out.append(value)
        elif step == "asdict":
            out.append(dataclasses.asdict(params))
        elif step == "repr":
            out.append(repr(params))
        elif step == "model repr":
            out.append(repr(params.model))
        elif step == "model class":
            out.append(isinstance(params.model, OtherModel))
        else:
            out.append(params.model.depth if params.seed else params.model.width)
    return out


@settings(max_examples=300, deadline=None)
@given(first=_dataclass_sets, second=_dataclass_sets, steps=st.lists(_dataclass_steps, max_size=4))
def test_a_dataclass_set_that_matches_what_was_read_gives_the_same_result(first, second, steps):
    view, reads = watch(first)
    result = _run_dataclass(view, steps)
    assert result == _run_dataclass(first, steps)
    if reads_match(second, reads):
        assert _run_dataclass(second, steps) == result
