"""Values of a typed parameter file checked against the class's annotations: what each kind
of annotation accepts (and converts), and the message naming what it refuses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from curifactory_cli.errors import ParamsError
from curifactory_cli.params import ExperimentParameters, load_yaml_sets


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclass
class Sub:
    a: int = 1


@dataclass
class Typed(ExperimentParameters):
    flag: bool = False
    count: int = 0
    ratio: float = 0.0
    label: str = ""
    mode: Literal["fast", "slow", 3] = "fast"
    color: Color = Color.RED
    where: Path = Path(".")
    pair: tuple[int, str] = (0, "")
    ints: tuple[int, ...] = ()
    unique: set[int] = field(default_factory=set)
    frozen: frozenset[str] = frozenset()
    weights: dict[str, float] = field(default_factory=dict)
    subs_by_name: dict[str, Sub] = field(default_factory=dict)
    either: int | str = 0
    maybe_sub: Sub | None = None
    subs: list[Sub] = field(default_factory=list)
    anything: Any = None
    nothing: None = None


def load_one(tmp_path: Path, key: str, yaml_value: str) -> Typed:
    path = tmp_path / "p.yaml"
    path.write_text(f"- name: a\n  {key}: {yaml_value}\n", encoding="utf-8")
    (param_set,) = load_yaml_sets(path, Typed)
    return param_set.params


@pytest.mark.parametrize(
    ("key", "yaml_value", "expected"),
    [
        ("flag", "true", True),
        ("count", "7", 7),
        ("ratio", "3", 3.0),  # an int is a float
        ("ratio", "1e-3", 0.001),
        ("label", "'3'", "3"),
        ("mode", "slow", "slow"),
        ("mode", "3", 3),
        ("color", "red", Color.RED),  # an Enum by value
        ("color", "2", Color.BLUE),
        ("where", "data/x.csv", Path("data/x.csv")),
        ("pair", "[1, b]", (1, "b")),
        ("ints", "[1, 2, 3]", (1, 2, 3)),
        ("unique", "[1, 2, 2]", {1, 2}),
        ("frozen", "[a, b]", frozenset({"a", "b"})),
        ("weights", "{x: 1, y: 0.5}", {"x": 1.0, "y": 0.5}),
        ("subs_by_name", "{s: {a: 4}}", {"s": Sub(4)}),
        ("either", "abc", "abc"),  # the first member that accepts it
        ("either", "5", 5),
        ("maybe_sub", "{a: 2}", Sub(2)),
        ("maybe_sub", "null", None),
        ("subs", "[{a: 1}, {a: 2}]", [Sub(1), Sub(2)]),
        ("anything", "{x: [1]}", {"x": [1]}),
        ("nothing", "null", None),
    ],
)
def test_accepted_values_are_converted_to_the_annotation(tmp_path, key, yaml_value, expected):
    value = getattr(load_one(tmp_path, key, yaml_value), key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("key", "yaml_value", "message"),
    [
        ("flag", "1", "parameter 'flag': expected bool, got int 1"),
        ("count", "true", "parameter 'count': expected int, got bool True"),
        ("count", "1.5", "parameter 'count': expected int, got float 1.5"),
        ("ratio", "true", "parameter 'ratio': expected float, got bool True"),
        ("label", "3", "parameter 'label': expected str, got int 3"),
        ("mode", "medium", "parameter 'mode': expected Literal, got str 'medium'"),
        ("color", "green", "parameter 'color': expected Color, got str 'green'"),
        ("where", "5", "parameter 'where': expected Path, got int 5"),
        ("pair", "[1]", "parameter 'pair': expected tuple, got list [1]"),
        ("pair", "[a, b]", "parameter 'pair': expected int, got str 'a'"),
        ("ints", "7", "parameter 'ints': expected tuple, got int 7"),
        ("unique", "{a: 1}", "parameter 'unique': expected set, got dict {'a': 1}"),
        ("weights", "{x: a}", "parameter 'weights': expected float, got str 'a'"),
        ("weights", "[1]", "parameter 'weights': expected dict, got list [1]"),
        ("subs_by_name", "{s: {a: x}}", "parameter 'subs_by_name.s.a': expected int, got str 'x'"),
        ("either", "[1]", "parameter 'either': expected int | str, got list [1]"),
        ("maybe_sub", "{b: 1}", "unknown parameter 'maybe_sub.b' for Sub"),
        ("subs", "[{a: x}]", "parameter 'subs.a': expected int, got str 'x'"),
        ("nothing", "1", "parameter 'nothing': expected NoneType, got int 1"),
    ],
)
def test_refused_values_name_the_parameter_and_the_expected_type(
    tmp_path, key, yaml_value, message
):
    with pytest.raises(ParamsError) as info:
        load_one(tmp_path, key, yaml_value)
    assert info.value.message == f"{tmp_path / 'p.yaml'}:2: set 'a': {message}"
