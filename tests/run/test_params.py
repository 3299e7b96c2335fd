"""YAML parameter files, validation into ExperimentParameters, `--set` overrides, get_params()."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from curifactory_cli.errors import ParamsError
from curifactory_cli.params import (
    ExperimentParameters,
    Params,
    load_yaml_sets,
    parse_override,
    sets_from_objects,
)


@dataclass
class Sub:
    a: int = 1
    b: str = "x"


@dataclass
class P(ExperimentParameters):
    n: int = 1
    lr: float = 0.1
    tags: list[str] = field(default_factory=list)
    opt: Optional[int] = None  # noqa: UP045 - the Optional spelling is what users write
    sub: Sub = field(default_factory=Sub)


@dataclass
class Required(ExperimentParameters):
    k: int = field(kw_only=True)
    n: int = 1


@pytest.fixture
def write(tmp_path):
    def _write(text: str, name: str = "p.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


def names(sets) -> list[str]:
    return [s.name for s in sets]


# --------------------------------------------------------------------------------------------
# Shapes of a parameter file


def test_list_form(write):
    path = write(
        """
        - name: a
          x: 1
        - name: b
          x: 2
          y: hello
        """
    )
    sets = load_yaml_sets(path)
    assert names(sets) == ["a", "b"]
    assert [s.index for s in sets] == [0, 1]
    assert [s.line for s in sets] == [1, 3]
    assert sets[0].source == str(path)
    assert isinstance(sets[0].params, Params)
    assert sets[0].params.x == 1
    assert sets[1].params.x == 2 and sets[1].params.y == "hello"
    assert "y" not in sets[0].params
    assert sets[0].params.name == "a"


def test_mapping_with_defaults_and_sets(write):
    path = write(
        """
        defaults:
          x: 1
          y: 2
        sets:
          - name: a
          - name: b
            y: 3
        """
    )
    sets = load_yaml_sets(path)
    assert names(sets) == ["a", "b"]
    assert sets[0].params.to_dict() == {"x": 1, "y": 2}
    assert sets[1].params.to_dict() == {"x": 1, "y": 3}


def test_grid_cartesian_product_in_order_with_prefix(write):
    path = write(
        """
        defaults:
          epochs: 1
        grid:
          name: sweep
          vary:
            lr: [0.1, 0.01]
            depth: [3, 5]
          batch: 32
        """
    )
    sets = load_yaml_sets(path)
    assert names(sets) == [
        "sweep_lr=0.1_depth=3",
        "sweep_lr=0.1_depth=5",
        "sweep_lr=0.01_depth=3",
        "sweep_lr=0.01_depth=5",
    ]
    assert [(s.params.lr, s.params.depth) for s in sets] == [
        (0.1, 3),
        (0.1, 5),
        (0.01, 3),
        (0.01, 5),
    ]
    for s in sets:
        assert s.params.batch == 32  # fixed grid key
        assert s.params.epochs == 1  # defaults apply to grids
        assert "name" not in s.params and "vary" not in s.params


def test_grid_without_prefix_and_bool_label(write):
    path = write(
        """
        grid:
          vary:
            lr: [0.1]
            flag: [true, false]
        """
    )
    assert names(load_yaml_sets(path)) == ["lr=0.1_flag=true", "lr=0.1_flag=false"]


def test_list_of_grids_and_sets_together(write):
    path = write(
        """
        sets:
          - name: base
            x: 0
        grid:
          - name: a
            vary:
              x: [1, 2]
          - name: b
            vary:
              y: [3]
        """
    )
    sets = load_yaml_sets(path)
    assert names(sets) == ["base", "a_x=1", "a_x=2", "b_y=3"]
    assert sets[3].params.y == 3 and "x" not in sets[3].params


def test_dotted_keys_nest_in_sets(write):
    path = write(
        """
        - name: a
          model.depth: 3
          model.width: 8
          lr: 0.1
        """
    )
    (s,) = load_yaml_sets(path)
    assert s.params.to_dict() == {"model": {"depth": 3, "width": 8}, "lr": 0.1}
    assert s.params.model.depth == 3
    assert s.params.model.width == 8


def test_dotted_keys_nest_in_grid_vary(write):
    path = write(
        """
        defaults:
          model:
            width: 8
        grid:
          name: g
          vary:
            model.depth: [3, 5]
        """
    )
    sets = load_yaml_sets(path)
    assert names(sets) == ["g_model.depth=3", "g_model.depth=5"]
    assert sets[0].params.to_dict() == {"model": {"width": 8, "depth": 3}}
    assert sets[1].params.model.depth == 5
    assert sets[1].params.model.width == 8


def test_dotted_keys_in_overrides(write):
    path = write(
        """
        - name: a
          model:
            depth: 3
            width: 8
        - name: b
          lr: 0.5
        """
    )
    sets = load_yaml_sets(path, overrides=[parse_override("model.depth=7")])
    assert sets[0].params.to_dict() == {"model": {"depth": 7, "width": 8}}
    assert sets[1].params.to_dict() == {"lr": 0.5, "model": {"depth": 7}}


def test_dotted_keys_nest_in_defaults(write):
    # "Dotted keys (`model.depth`) address nested mappings everywhere" - defaults included.
    path = write(
        """
        defaults:
          model.depth: 3
        sets:
          - name: a
            model:
              width: 2
          - name: b
        """
    )
    a, b = load_yaml_sets(path)
    assert a.params.to_dict() == {"model": {"depth": 3, "width": 2}}
    assert b.params.model.depth == 3


def test_defaults_deep_merged_and_not_shared_between_sets(write):
    path = write(
        """
        defaults:
          model:
            depth: 3
            width: 8
            opt:
              name: adam
              lr: 0.1
        sets:
          - name: a
            model:
              depth: 5
              opt:
                lr: 0.01
          - name: b
            model.width: 16
          - name: c
        """
    )
    a, b, c = load_yaml_sets(path)
    assert a.params.to_dict() == {
        "model": {"depth": 5, "width": 8, "opt": {"name": "adam", "lr": 0.01}}
    }
    assert b.params.to_dict() == {
        "model": {"depth": 3, "width": 16, "opt": {"name": "adam", "lr": 0.1}}
    }
    # earlier sets' edits must not leak into the shared defaults
    assert c.params.to_dict() == {
        "model": {"depth": 3, "width": 8, "opt": {"name": "adam", "lr": 0.1}}
    }


def test_params_view_is_read_only_record(write):
    path = write(
        """
        - name: a
          x: 1
          model:
            depth: 3
        """
    )
    p = load_yaml_sets(path)[0].params
    assert p.model.depth == 3
    assert p["model"]["depth"] == 3
    assert p.get("missing", 7) == 7
    with pytest.raises(AttributeError, match="read-only"):
        p.x = 2
    with pytest.raises(AttributeError):
        p.model.depth = 4
    with pytest.raises(AttributeError):
        p.name = "other"
    assert p.x == 1 and p.model.depth == 3 and p.name == "a"


def test_params_view_unknown_attribute_names_known_keys(write):
    path = write(
        """
        - name: a
          x: 1
          model:
            depth: 3
        """
    )
    p = load_yaml_sets(path)[0].params
    with pytest.raises(AttributeError, match=r"'a' has no parameter 'y' \(it has: model, x\)"):
        _ = p.y
    with pytest.raises(AttributeError, match=r"no parameter 'width' \(it has: depth\)"):
        _ = p.model.width
    assert getattr(p, "y", "fallback") == "fallback"


# --------------------------------------------------------------------------------------------
# File errors, each naming the file and line


def test_malformed_yaml_reports_line_and_column(write):
    path = write(
        """
        - name: a
          x: 1
         y: 2
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:3:2: "):
        load_yaml_sets(path)


def test_malformed_flow_sequence_reports_line_and_column(write):
    path = write(
        """
        - name: a
          x: [1, 2
        - name: b
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:3:\d+: (did not find )?expected ',' or ']'"):
        load_yaml_sets(path)


def test_python_tag_refused_and_not_executed(write, tmp_path):
    marker = tmp_path / "pwned"
    path = write(
        f"""
        - name: a
          x: !!python/object/apply:os.system ["touch {marker}"]
        """
    )
    with pytest.raises(
        ParamsError, match=r"p\.yaml:2:\d+: could not determine a constructor"
    ) as info:
        load_yaml_sets(path)
    assert "python tags" in (info.value.hint or "")
    assert not marker.exists()


def test_python_object_tag_with_echo_refused(write):
    path = write('- name: a\n  x: !!python/object/apply:os.system ["echo hi"]\n')
    with pytest.raises(ParamsError, match=r"python/object/apply:os\.system"):
        load_yaml_sets(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file(write, text):
    path = write(text)
    with pytest.raises(ParamsError, match=r"p\.yaml: the file is empty"):
        load_yaml_sets(path)


def test_unknown_top_level_key(write):
    path = write(
        """
        defaults:
          x: 1
        setz:
          - name: a
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:3: unknown top-level key 'setz'") as info:
        load_yaml_sets(path)
    assert "defaults" in info.value.hint and "sets" in info.value.hint and "grid" in info.value.hint


def test_set_without_name(write):
    path = write(
        """
        - name: a
          x: 1
        - x: 2
          y: 3
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:3: set #1 has no `name`") as info:
        load_yaml_sets(path)
    assert "name" in info.value.hint


def test_duplicate_set_names_name_both_lines(write):
    path = write(
        """
        - name: a
          x: 1
        - name: b
          x: 2
        - name: a
          x: 3
        """
    )
    with pytest.raises(
        ParamsError,
        match=r"p\.yaml:5: duplicate parameter set name 'a' \(first defined at line 1\)",
    ):
        load_yaml_sets(path)


def test_duplicate_set_name_between_set_and_grid(write):
    path = write(
        """
        sets:
          - name: x=1
        grid:
          vary:
            x: [1, 2]
        """
    )
    with pytest.raises(ParamsError, match=r"duplicate parameter set name 'x=1'.*line 2"):
        load_yaml_sets(path)


def test_duplicate_key_in_mapping(write):
    path = write(
        """
        - name: a
          x: 1
          x: 2
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:3: duplicate key 'x'"):
        load_yaml_sets(path)


def test_duplicate_top_level_key(write):
    path = write(
        """
        sets:
          - name: a
        sets:
          - name: b
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:3: duplicate key 'sets'"):
        load_yaml_sets(path)


def test_grid_without_vary(write):
    path = write(
        """
        grid:
          name: g
          lr: 0.1
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:2: a grid needs a `vary` mapping"):
        load_yaml_sets(path)


def test_grid_with_empty_list(write):
    path = write(
        """
        grid:
          name: g
          vary:
            depth: [3]
            lr: []
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:5: grid key 'lr' needs a non-empty list"):
        load_yaml_sets(path)


def test_grid_with_scalar_instead_of_list(write):
    path = write(
        """
        grid:
          vary:
            lr: 0.1
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:3: grid key 'lr' needs a non-empty list"):
        load_yaml_sets(path)


@pytest.mark.parametrize(("text", "kind"), [("hello\n", "str"), ("42\n", "int")])
def test_top_level_scalar(write, text, kind):
    path = write(text)
    with pytest.raises(
        ParamsError, match=rf"p\.yaml: expected a list of parameter sets or a mapping, got {kind}"
    ):
        load_yaml_sets(path)


def test_mapping_without_sets_or_grid(write):
    path = write("defaults:\n  x: 1\n")
    with pytest.raises(ParamsError, match=r"p\.yaml: defines no parameter sets"):
        load_yaml_sets(path)


def test_set_that_is_not_a_mapping(write):
    path = write("sets:\n  - a\n")
    with pytest.raises(ParamsError, match=r"p\.yaml:1: set #0 is a str, not a mapping"):
        load_yaml_sets(path)


# --------------------------------------------------------------------------------------------
# Validation into an ExperimentParameters subclass


def test_typed_sets_built_and_int_converted_to_float(write):
    path = write(
        """
        - name: a
          n: 3
          lr: 1
          tags: [x, y]
          opt: 4
          sub:
            a: 5
        - name: b
        """
    )
    a, b = load_yaml_sets(path, params_class=P)
    assert isinstance(a.params, P)
    assert a.params == P(name="a", n=3, lr=1.0, tags=["x", "y"], opt=4, sub=Sub(a=5, b="x"))
    assert type(a.params.lr) is float
    assert isinstance(a.params.sub, Sub)
    assert b.params == P(name="b")


def test_typed_optional_accepts_null(write):
    path = write("- name: a\n  opt: null\n")
    assert load_yaml_sets(path, params_class=P)[0].params.opt is None


def test_typed_bool_rejected_for_int(write):
    path = write(
        """
        - name: a
          lr: 0.5
          n: true
        """
    )
    with pytest.raises(
        ParamsError, match=r"p\.yaml:3: set 'a': parameter 'n': expected int, got bool True"
    ):
        load_yaml_sets(path, params_class=P)


def test_typed_str_rejected_for_int(write):
    path = write(
        """
        - name: first
          n: 2
        - name: second
          lr: 0.5
          n: "three"
        """
    )
    with pytest.raises(
        ParamsError, match=r"p\.yaml:5: set 'second': parameter 'n': expected int, got str 'three'"
    ):
        load_yaml_sets(path, params_class=P)


def test_typed_error_line_points_at_the_set_not_the_defaults(write):
    # The wrong value is written in the set (line 5); defaults only hold a valid value (line 2).
    path = write(
        """
        defaults:
          n: 1
        sets:
          - name: a
            n: three
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:5: set 'a': parameter 'n': expected int"):
        load_yaml_sets(path, params_class=P)


def test_typed_error_line_in_grid_points_at_vary(write):
    path = write(
        """
        defaults:
          n: 1
        grid:
          name: g
          vary:
            n: [x]
        """
    )
    with pytest.raises(ParamsError, match=r"p\.yaml:6: set 'g_n=x': parameter 'n': expected int"):
        load_yaml_sets(path, params_class=P)


def test_typed_wrong_list_item_and_wrong_optional(write):
    path = write("- name: a\n  tags: [1]\n")
    with pytest.raises(ParamsError, match=r"p\.yaml:2: set 'a': parameter 'tags'"):
        load_yaml_sets(path, params_class=P)
    path = write("- name: a\n  opt: many\n")
    with pytest.raises(ParamsError, match=r"p\.yaml:2: set 'a': parameter 'opt'"):
        load_yaml_sets(path, params_class=P)


def test_typed_unknown_key_with_close_match_hint(write):
    path = write(
        """
        - name: a
          n: 1
          lrr: 0.2
        """
    )
    with pytest.raises(
        ParamsError, match=r"p\.yaml:3: set 'a': unknown parameter 'lrr' for P"
    ) as info:
        load_yaml_sets(path, params_class=P)
    assert info.value.hint == "did you mean 'lr'?"


def test_typed_unknown_key_without_close_match_lists_known(write):
    path = write("- name: a\n  zzzzzz: 1\n")
    with pytest.raises(ParamsError, match="unknown parameter 'zzzzzz'") as info:
        load_yaml_sets(path, params_class=P)
    assert "known parameters:" in info.value.hint
    assert "lr" in info.value.hint and "sub" in info.value.hint


def test_typed_missing_required_field(write):
    path = write(
        """
        - name: ok
          k: 2
        - name: bad
          n: 1
        """
    )
    with pytest.raises(
        ParamsError, match=r"p\.yaml:3: set 'bad': missing required parameter 'k' for Required"
    ):
        load_yaml_sets(path, params_class=Required)


def test_typed_nested_unknown_key(write):
    path = write(
        """
        - name: a
          sub:
            a: 2
            x: 1
        """
    )
    with pytest.raises(
        ParamsError, match=r"p\.yaml:\d+: set 'a': unknown parameter 'sub\.x' for Sub"
    ) as info:
        load_yaml_sets(path, params_class=P)
    assert info.value.hint == "known parameters: a, b"


def test_typed_nested_wrong_type(write):
    path = write("- name: a\n  sub:\n    a: nope\n")
    with pytest.raises(
        ParamsError, match=r"set 'a': parameter 'sub\.a': expected int, got str 'nope'"
    ):
        load_yaml_sets(path, params_class=P)


def test_typed_sets_have_stable_hash_without_name(write):
    path = write("- name: a\n  n: 2\n- name: b\n  n: 2\n- name: c\n  n: 3\n")
    a, b, c = load_yaml_sets(path, params_class=P)
    assert a.hash == b.hash != c.hash
    assert a.params.hash == a.hash  # stored on the ExperimentParameters object


# --------------------------------------------------------------------------------------------
# --set overrides


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b=3", ("a.b", 3)),
        ("lr=0.1", ("lr", 0.1)),
        ("flag=true", ("flag", True)),
        ("xs=[1, 2]", ("xs", [1, 2])),
        ("s=hello", ("s", "hello")),
        (" k = v ", ("k", "v")),
        ("empty=", ("empty", "")),
        ("eq=a=b", ("eq", "a=b")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=3", ""])
def test_parse_override_rejects_missing_key_or_equals(text):
    with pytest.raises(ParamsError, match="expected KEY=VALUE"):
        parse_override(text)


def test_overrides_apply_to_every_set(write):
    path = write("- name: a\n  n: 1\n- name: b\n  n: 2\n  lr: 0.5\n")
    a, b = load_yaml_sets(path, params_class=P, overrides=[("n", 9), ("sub.a", 4)])
    assert (a.params.n, b.params.n) == (9, 9)
    assert b.params.lr == 0.5
    assert a.params.sub == Sub(a=4, b="x")


def test_override_unknown_key_on_typed_class_starts_with_set(write):
    path = write("- name: a\n  n: 1\n")
    with pytest.raises(ParamsError, match=r"^--set nn: unknown parameter 'nn' for P") as info:
        load_yaml_sets(path, params_class=P, overrides=[("nn", 5)])
    assert info.value.hint == "did you mean 'n'?"


def test_override_wrong_type_on_typed_class(write):
    path = write("- name: a\n  n: 1\n")
    with pytest.raises(ParamsError, match=r"^--set n: parameter 'n': expected int, got str 'x'"):
        load_yaml_sets(path, params_class=P, overrides=[("n", "x")])


# --------------------------------------------------------------------------------------------
# Python get_params() lists


def test_sets_from_objects_requires_a_list():
    with pytest.raises(ParamsError, match=r"exp\.py: get_params\(\) returned a P, not a list"):
        sets_from_objects(P(name="a"), "exp.py", None)


def test_sets_from_objects_duplicate_names():
    with pytest.raises(ParamsError, match=r"exp\.py: duplicate parameter set name 'a'"):
        sets_from_objects([P(name="a"), P(name="b"), P(name="a", n=2)], "exp.py", None)


def test_sets_from_objects_keeps_objects_without_overrides():
    objs = [P(name="a"), P(name="b", n=2)]
    sets = sets_from_objects(objs, "exp.py", None)
    assert names(sets) == ["a", "b"]
    assert sets[0].params is objs[0] and sets[1].params is objs[1]
    assert [s.index for s in sets] == [0, 1]


def test_sets_from_objects_overrides_make_new_objects_and_reset_hash():
    orig = P(name="a", n=1, sub=Sub(a=1))
    old_hash = orig.params_hash()
    assert orig.hash == old_hash
    (s,) = sets_from_objects([orig], "exp.py", [("n", 5), ("sub.a", 7), ("lr", 2)])
    new = s.params
    assert new is not orig and isinstance(new, P)
    assert (new.n, new.sub.a, new.lr) == (5, 7, 2.0)
    assert type(new.lr) is float
    assert new.hash is None
    assert (orig.n, orig.sub.a, orig.lr, orig.hash) == (1, 1, 0.1, old_hash)  # untouched
    assert s.hash != old_hash
    assert s.hash == P(name="a", n=5, lr=2.0, sub=Sub(a=7)).params_hash()


def test_sets_from_objects_override_unknown_key():
    with pytest.raises(
        ParamsError, match=r"^--set nn: unknown parameter 'nn' for P \(exp\.py\)"
    ) as info:
        sets_from_objects([P(name="a")], "exp.py", [("nn", 1)])
    assert info.value.hint == "did you mean 'n'?"


def test_sets_from_objects_override_wrong_type():
    with pytest.raises(ParamsError, match=r"^--set n: expected int, got str 'x'"):
        sets_from_objects([P(name="a")], "exp.py", [("n", "x")])


def test_sets_from_objects_accepts_mappings():
    (s,) = sets_from_objects(
        [{"name": "a", "x": 1, "model": {"depth": 2}}], "exp.py", [("model.depth", 3)]
    )
    assert s.name == "a"
    assert isinstance(s.params, Params)
    assert s.params.x == 1 and s.params.model.depth == 3


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e5", 1e5), ("1E5", 1e5), ("2e+3", 2e3), ("1e-3", 1e-3), (".5e2", 50.0), ("1.5e2", 150.0)],
)
def test_yaml_floats_read_as_yaml_1_2_writes_them(write, text, value):
    """YAML 1.1 (PyYAML) needs a dot and a signed exponent: `1e5` would be the string "1e5"."""
    path = write(f"- name: a\n  lr: {text}\n  label: '{text}'\n")
    (params,) = load_yaml_sets(path)
    assert type(params.params.lr) is float and params.params.lr == value
    assert params.params.label == text  # quoted: still a string
