"""Parameter hashes (`hash_params`, `hash_value`) and stage code fingerprints."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Optional

import pytest
import yaml

from curifactory_cli.errors import ParamsError
from curifactory_cli.fingerprint import CodeFingerprinter
from curifactory_cli.hashing import hash_params, hash_value
from curifactory_cli.params import ExperimentParameters, load_yaml_sets


@dataclass
class Sub:
    a: int = 1
    b: str = "x"


@dataclass
class P(ExperimentParameters):
    n: int = 1
    lr: float = 0.1
    sub: Sub = field(default_factory=Sub)


@dataclass
class PWithNone(ExperimentParameters):
    n: int = 1
    lr: float = 0.1
    sub: Sub = field(default_factory=Sub)
    added_later: Optional[int] = None  # noqa: UP045


class Opaque:
    """No __repr__: the default one contains the object's address."""


def alias_bomb_yaml(levels: int = 9, width: int = 9) -> str:
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# hash_params


def test_hash_is_fixed_width_hex():
    for params in (P(), P(n=10**30), {"x": "y" * 10_000}, {}):
        value = hash_params(params)
        assert re.fullmatch(r"[0-9a-f]{32}", value), value


def test_hash_is_deterministic_and_sensitive_to_values():
    assert hash_params(P(n=2)) == hash_params(P(n=2))
    assert hash_params(P(n=2)) != hash_params(P(n=3))
    assert hash_params(P(lr=0.1)) != hash_params(P(lr=0.2))


def test_name_excluded():
    assert hash_params(P(name="a", n=2)) == hash_params(P(name="renamed", n=2))
    assert hash_params({"name": "a", "x": 1}) == hash_params({"name": "b", "x": 1})


def test_builtin_fields_excluded():
    base = hash_params(P(n=2))
    assert hash_params(P(n=2, overwrite=True)) == base
    assert hash_params(P(n=2, hash="deadbeef")) == base


def test_none_valued_fields_excluded():
    assert hash_params(PWithNone(n=2)) == hash_params(P(n=2))
    assert hash_params(PWithNone(n=2, added_later=5)) != hash_params(P(n=2))
    assert hash_params({"x": 1, "y": None}) == hash_params({"x": 1})


def test_hash_representations_none_excludes_field():
    reps = {"n": None}
    assert hash_params(P(n=1, hash_representations=reps)) == hash_params(
        P(n=999, hash_representations=reps)
    )
    assert hash_params(P(n=1, lr=0.5, hash_representations=reps)) != hash_params(
        P(n=1, hash_representations=reps)
    )


def test_hash_representations_callable_used():
    seen = []

    def parity(params, value):
        seen.append((params.name, value))
        return value % 2

    reps = {"n": parity}
    assert hash_params(P(name="a", n=1, hash_representations=reps)) == hash_params(
        P(name="b", n=3, hash_representations=reps)
    )
    assert hash_params(P(n=1, hash_representations=reps)) != hash_params(
        P(n=2, hash_representations=reps)
    )
    assert ("a", 1) in seen and ("b", 3) in seen


def test_params_hash_method_caches_and_dry():
    p = P(n=4)
    assert p.hash is None
    shown = p.params_hash(dry=True)  # as Curifactory: how each field takes part
    assert shown["n"] == ("repr(n)", "4") and shown["name"] == ("SKIPPED: blacklist", None)
    assert p.hash is None  # dry does not store
    value = p.params_hash()
    assert p.hash == value == hash_params(P(n=4))


def test_dict_order_independent():
    assert hash_value({"a": 1, "b": 2}) == hash_value({"b": 2, "a": 1})
    assert hash_params({"m": {"a": 1, "b": [1, 2]}}) == hash_params({"m": {"b": [1, 2], "a": 1}})
    assert hash_value([1, 2]) != hash_value([2, 1])  # lists keep their order


def test_sets_independent_of_insertion_order():
    words = [f"w{i}" for i in range(50)]
    forward, backward = set(), set()
    for w in words:
        forward.add(w)
    for w in reversed(words):
        backward.add(w)
    assert hash_value(forward) == hash_value(backward)
    assert hash_value(frozenset(words)) == hash_value(set(words))
    assert hash_value({1, 2}) != hash_value({1, 3})
    assert hash_value({1, 2}) != hash_value([1, 2])


def test_number_normalisation():
    assert hash_value(1) == hash_value(1.0)
    assert hash_params({"x": 1}) == hash_params({"x": 1.0})
    assert hash_value(True) != hash_value(1)
    assert hash_value(False) != hash_value(0)
    assert hash_value("1") != hash_value(1)
    assert hash_value(1.5) != hash_value(1)


def test_nested_dataclass():
    assert hash_params(P(sub=Sub(a=1))) == hash_params(P(sub=Sub(a=1)))
    assert hash_params(P(sub=Sub(a=1))) != hash_params(P(sub=Sub(a=2)))
    assert hash_params(P(sub=Sub(b="y"))) != hash_params(P())


def test_nan_and_inf_hash():
    nan, inf = float("nan"), float("inf")
    values = {hash_value(nan), hash_value(inf), hash_value(-inf), hash_value(1e308)}
    assert len(values) == 4
    assert hash_value(nan) == hash_value(float("nan"))
    assert re.fullmatch(r"[0-9a-f]{32}", hash_params({"x": nan, "y": [inf, -inf]}))


def test_address_based_repr_refused():
    with pytest.raises(ParamsError, match="Opaque has no stable representation"):
        hash_value(Opaque())
    with pytest.raises(
        ParamsError, match=r"p\.yaml: set 'a': cannot hash parameter 'model\.thing'"
    ) as info:
        hash_params({"model": {"thing": Opaque()}}, "p.yaml: set 'a'")
    assert "hash_representations" in info.value.hint


def test_self_referencing_list_refused():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(ParamsError, match="contains itself"):
        hash_value(loop)
    with pytest.raises(ParamsError, match=r"cannot hash parameter 'xs\[1\]': it contains itself"):
        hash_params({"xs": loop})


def test_shared_but_acyclic_references_are_fine():
    shared = [1, 2]
    assert hash_value({"a": shared, "b": shared}) == hash_value({"a": [1, 2], "b": [1, 2]})


def test_alias_bomb_refused_quickly():
    doc = yaml.safe_load(alias_bomb_yaml())
    start = time.perf_counter()
    with pytest.raises(ParamsError, match="alias bomb"):
        hash_value(doc)
    with pytest.raises(ParamsError, match="alias bomb"):
        hash_params(doc)
    # Refused before it expands (it would take hours): a bound against a hang, not a timing.
    assert time.perf_counter() - start < 60


def test_alias_bomb_in_parameter_file_refused_quickly(tmp_path):
    body = textwrap.indent(alias_bomb_yaml(), "  ")
    path = tmp_path / "bomb.yaml"
    path.write_text("- name: a\n" + body)
    start = time.perf_counter()
    with pytest.raises(ParamsError, match=r"bomb\.yaml: the document expands to more than"):
        load_yaml_sets(path)  # refused while loading, before any merge or hash walks it
    assert time.perf_counter() - start < 60  # a bound against a hang, not a timing


# --------------------------------------------------------------------------------------------
# CodeFingerprinter


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write a module into tmp_path and import it; forgets the modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    imported: list[str] = []

    def load(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source).lstrip("\n"))
        importlib.invalidate_caches()
        imported.append(name)
        return importlib.import_module(name)

    load.root = tmp_path
    yield load
    for name in imported:
        sys.modules.pop(name, None)


def fingerprints(modules, variants: dict[str, str], attr: str = "stage") -> dict[str, str]:
    fp = CodeFingerprinter(modules.root)
    return {
        name: fp.fingerprint(getattr(modules(name, src), attr)) for name, src in variants.items()
    }


BASE_STAGE = '''
def stage(record, x):
    """Add one."""
    # increment
    y = x + 1
    return y
'''


def test_fingerprint_ignores_comments_docstrings_and_whitespace(modules):
    fps = fingerprints(
        modules,
        {
            "fp_a1": BASE_STAGE,
            "fp_a2_comment": '''
                def stage(record, x):
                    """Add one."""
                    # a completely different comment
                    y = x + 1  # trailing comment
                    return y
                ''',
            "fp_a3_doc": '''
                def stage(record, x):
                    """A rewritten docstring
                    over two lines."""
                    y = x + 1
                    return y
                ''',
            "fp_a4_nodoc": """
                def stage(record, x):
                    y = x + 1
                    return y
                """,
            "fp_a5_space": '''
                # module comment


                def stage( record,x ):
                    """Add one."""

                    y = x+1


                    return (y)
                ''',
        },
    )
    assert len(set(fps.values())) == 1, fps


def test_fingerprint_changes_with_logic(modules):
    fps = fingerprints(
        modules,
        {
            "fp_b1": BASE_STAGE,
            "fp_b2": BASE_STAGE.replace("x + 1", "x + 2"),
            "fp_b3": BASE_STAGE.replace("return y", "return -y"),
        },
    )
    assert len(set(fps.values())) == 3, fps


def test_fingerprint_follows_project_local_helper(modules):
    stage_src = """
        def helper(v):
            {body}

        def stage(record, x):
            return helper(x)
        """
    fps = fingerprints(
        modules,
        {
            "fp_c1": stage_src.format(body="return v * 2"),
            "fp_c2": stage_src.format(body="return v * 3"),
            "fp_c3": stage_src.format(body="return v * 2  # only a comment"),
        },
    )
    assert fps["fp_c1"] != fps["fp_c2"]
    assert fps["fp_c1"] == fps["fp_c3"]


def test_fingerprint_follows_helper_in_another_project_module(modules):
    modules("fp_h_helpers1", "def helper(v):\n    return v * 2\n")
    modules("fp_h_helpers2", "def helper(v):\n    return v * 3\n")
    stage_src = "from {mod} import helper\n\ndef stage(record, x):\n    return helper(x)\n"
    fps = fingerprints(
        modules,
        {
            "fp_h1": stage_src.format(mod="fp_h_helpers1"),
            "fp_h2": stage_src.format(mod="fp_h_helpers2"),
        },
    )
    assert fps["fp_h1"] != fps["fp_h2"]


def test_fingerprint_follows_helpers_transitively(modules):
    src = """
        def inner(v):
            return v {op} 1

        def helper(v):
            return inner(v)

        def stage(record, x):
            return helper(x)
        """
    fps = fingerprints(modules, {"fp_t1": src.format(op="+"), "fp_t2": src.format(op="-")})
    assert fps["fp_t1"] != fps["fp_t2"]


def test_fingerprint_follows_used_module_constants(modules):
    src = """
        SCALE = {scale}
        UNUSED = {unused}

        def stage(record, x):
            return x * SCALE
        """
    fps = fingerprints(
        modules,
        {
            "fp_d1": src.format(scale=2, unused=0),
            "fp_d2": src.format(scale=3, unused=0),
            "fp_d3": src.format(scale=2, unused=99),
        },
    )
    assert fps["fp_d1"] != fps["fp_d2"]
    assert fps["fp_d1"] == fps["fp_d3"]  # a constant the stage does not use is irrelevant


def test_fingerprint_ignores_decorators(modules):
    fps = fingerprints(
        modules,
        {
            "fp_e1": """
                def deco(fn):
                    return fn

                @deco
                def stage(record, x):
                    return x
                """,
            "fp_e2": """
                def stage(record, x):
                    return x
                """,
            "fp_e3": """
                def deco_factory(*args):
                    return lambda fn: fn

                @deco_factory(1, 2)
                @deco_factory("other")
                def stage(record, x):
                    return x
                """,
        },
    )
    assert len(set(fps.values())) == 1, fps


def test_fingerprint_is_hex_digest(modules):
    fp = CodeFingerprinter(modules.root).fingerprint(modules("fp_f1", BASE_STAGE).stage)
    assert re.fullmatch(r"[0-9a-f]{64}", fp)


def test_an_aggregates_record_hash_covers_its_records_in_any_order():
    from curifactory_cli.hashing import combine_hashes

    assert combine_hashes("own", ["a", "b", "c"]) == combine_hashes("own", ["c", "a", "b"])
    assert combine_hashes("own", ["a", "b"]) != combine_hashes("own", ["a", "c"])
    assert combine_hashes("own", ["a", "b"]) != combine_hashes("None", ["a", "b"])
