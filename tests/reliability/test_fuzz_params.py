"""Fuzzing the YAML parameter loader: whatever a parameter file contains, loading it (and
hashing its sets, as `curi run` does next) gives either parameter sets or a ParamsError whose
message is one line naming the file. Never another exception type, never a traceback."""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import curifactory_cli as cf
from curifactory_cli.errors import ParamsError
from curifactory_cli.params import ParamSet, load_yaml_sets


@dataclasses.dataclass
class Model:
    depth: int = 3
    kind: Literal["tree", "linear"] = "tree"


@dataclasses.dataclass
class TypedParams(cf.ExperimentParameters):
    n: int = 1
    lr: float = 0.1
    tags: list[str] = dataclasses.field(default_factory=list)
    model: Model = dataclasses.field(default_factory=Model)
    opt: int | None = None
    mode: Literal["fast", "slow"] = "fast"
    table: dict[str, int] = dataclasses.field(default_factory=dict)
    path: Path = Path("data")


KEYS = ["n", "lr", "tags", "model", "model.depth", "model.kind", "opt", "mode", "table", "path"]

# Pieces of YAML that exercise tags, anchors and aliases, merges, implicit types whose
# construction can fail, directives, flow/block syntax, control and odd unicode characters.
# fmt: off
FRAGMENTS = [
    "name: a", "- name: b", "n: 1", "lr: 0.5", "defaults:", "sets:", "grid:", "vary:",
    "x: [1, 2]", "name", "&a", "*a", "&b {x: 1}", "*b", "<<: *a", "<<: *b", "<<: 1",
    "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!!binary aGVsbG8=",
    "!!binary a", "!!set {a, b}", "!!omap [a: 1]", "!!pairs [a: 1]", "!!timestamp 2001-12-14",
    "!!timestamp x", "2001-13-45", "2001-12-14 21:59:43.10 -5", "!!float abc", "!!int abc",
    "!!int 0x1F", "!!bool maybe", "!!null x", "!!str 1", "!!map [1]", "!!seq {a: 1}",
    "!custom x", "!<tag:example.com,2000:x> 1", "? [1, 2]\n: 3", "? {a: 1}\n: 3", "1" * 4400,
    "9" * 20, ".nan", "-.inf", "1e999", "0o17", "1_000", "190:20:30", "0b101", "~", "null",
    "'quoted'", '"dq \\x00 \\u2028"', "|\n  block", ">-\n  folded", "{", "}", "[", "]", ":",
    ",", "- ", "---", "...", "%YAML 1.1", "%TAG ! tag:x,2000:", "\t", "\x00", "\x07", "\ufeff",
    "é", "𝔘", "\u2028", "\x85", "\ud7ff", "#comment", "a.b: 1", "a: 2", "model.depth: 3",
    "model: 3", "tags: [x, 1]", "mode: medium", "opt: ~", "table: {a: 1, 2: b}",
]
# fmt: on

SEPARATORS = ["\n", "\n  ", "\n    ", "\n- ", " ", ": ", ", ", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["fast", "slow", "tree", "x", "1.0", "yes", "~", "a.b", "2001-12-14"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
names = st.one_of(st.text(min_size=1, max_size=10), st.integers(0, 5), st.sampled_from(["a", "b"]))
param_sets = st.builds(
    lambda name, extra: {"name": name, **extra},
    names,
    st.dictionaries(keys, values, max_size=4),
)
grids = st.fixed_dictionaries(
    {"vary": st.dictionaries(keys, st.lists(values, min_size=0, max_size=3), max_size=3)},
    optional={"name": names, "n": values, "lr": values},
)
documents = st.one_of(
    st.lists(param_sets, max_size=4),
    st.fixed_dictionaries(
        {},
        optional={
            "defaults": st.one_of(st.dictionaries(keys, values, max_size=4), values),
            "sets": st.one_of(st.lists(param_sets, max_size=3), values),
            "grid": st.one_of(grids, st.lists(grids, max_size=2), values),
        },
    ),
    values,
)


@st.composite
def dumped(draw) -> str:
    """A well-formed document of random structure, as `yaml.safe_dump` writes it."""
    return yaml.safe_dump(
        draw(documents),
        allow_unicode=draw(st.booleans()),
        default_flow_style=draw(st.sampled_from([None, True, False])),
        sort_keys=draw(st.booleans()),
    )


@st.composite
def assembled(draw) -> str:
    """Fragments glued with separators: mostly broken YAML, some of it surprising YAML."""
    parts = draw(st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(SEPARATORS))))
    return "".join(f + s for f, s in parts)


@st.composite
def templated(draw) -> str:
    """A valid-looking parameter file with fragments (tags, aliases, bad scalars) as values."""
    fragment = st.sampled_from(FRAGMENTS)
    lines = ["defaults: &d", f"  {draw(st.sampled_from(KEYS))}: {draw(fragment)}", "sets:"]
    for i in range(draw(st.integers(1, 3))):
        lines.append(f"  - &s{i} {{name: {draw(fragment)}, {draw(st.sampled_from(KEYS))}: *d}}")
        lines.append(f"  - <<: *s{i}")
        lines.append(f"    name: set{i}")
        lines.append(f"    {draw(st.sampled_from(KEYS))}: {draw(fragment)}")
    if draw(st.booleans()):
        lines.append(
            f"grid: {{name: g, vary: {{{draw(st.sampled_from(KEYS))}: [{draw(fragment)}]}}}}"
        )
    return "\n".join(lines) + "\n"


@st.composite
def mutated(draw) -> str:
    """A dumped document with characters or fragments inserted, deleted or replaced."""
    text = draw(dumped())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        end = draw(st.integers(at, min(len(text), at + 5)))
        piece = draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)))
        text = text[:at] + piece + text[end:]
    return text


garbage = st.text(
    alphabet=st.one_of(
        st.sampled_from([*string.printable, "\x00", "\ufeff", "\u2028", "é", "𝔘", "&", "*", "!"]),
        st.characters(),
    ),
    max_size=80,
)

TEXTS = st.one_of(dumped(), assembled(), templated(), mutated(), garbage)
# Text (encoded as UTF-8, with lone surrogates kept as invalid bytes) or raw bytes.
CONTENTS = st.one_of(
    TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
)


def check_outcome(path: Path, params_class: type | None) -> None:
    try:
        sets = load_yaml_sets(path, params_class)
        for param_set in sets:
            assert isinstance(param_set, ParamSet)
            assert isinstance(param_set.hash, str)  # `curi run` hashes every set up front
    except ParamsError as exc:
        assert "\n" not in exc.message, f"message is not one line: {exc.message!r}"
        assert str(path) in exc.message, f"message does not name the file: {exc.message!r}"
    else:
        assert isinstance(sets, list) and sets


@pytest.fixture(scope="module")
def param_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "params ß" / "p.yaml"


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(content=CONTENTS)
def test_any_yaml_loads_or_fails_with_a_one_line_params_error(param_file, content):
    param_file.parent.mkdir(parents=True, exist_ok=True)
    param_file.write_bytes(content)
    check_outcome(param_file, None)
    check_outcome(param_file, TypedParams)


# Documents of the kinds the fuzzer finds, kept as named cases so each reports on its own.
KNOWN = {
    "self-referencing mapping": "- &a {name: x, self: *a}\n",
    "mapping as a grid value": "grid: {vary: {x: [{a: 1}]}}\n",
    "dotted key below a scalar": "- name: a\n  a: 2\n  a.b: 1\n",
    "dotted key below a default scalar": "defaults: {a: 1}\nsets: [{name: x, a.b: 2}]\n",
    "int with too many digits": "- name: a\n  n: " + "1" * 5000 + "\n",
    "impossible date": "- name: a\n  d: 2001-13-45\n",
    "explicit float tag on a word": "- name: a\n  d: !!float abc\n",
    "explicit int tag on a word": "- name: a\n  d: !!int abc\n",
    "explicit bool tag on a word": "- name: a\n  d: !!bool abc\n",
    "explicit timestamp tag on a word": "- name: a\n  d: !!timestamp abc\n",
    "alias bomb": "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg"))
    + "sets: [{name: x, v: *g}]\n",
    "python tag": "- name: a\n  b: !!python/object/apply:os.system ['true']\n",
    "nul character": "- name: a\x00\n",
    "invalid utf-8": b"- name: \xff\xfe\n",
    "binary, set and date values": "- name: a\n  b: !!binary aGVsbG8=\n  s: !!set {x, y}\n"
    "  d: 2001-12-14\n",
}


@pytest.mark.parametrize("content", list(KNOWN.values()), ids=list(KNOWN))
def test_tricky_documents(param_file, content):
    param_file.parent.mkdir(parents=True, exist_ok=True)
    param_file.write_bytes(content.encode() if isinstance(content, str) else content)
    check_outcome(param_file, None)
    check_outcome(param_file, TypedParams)


BOMB_CHILD = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (1 << 29, 1 << 29))  # 512 MB: a blow-up fails fast
from curifactory_cli.errors import ParamsError
from curifactory_cli.params import load_yaml_sets
try:
    for param_set in load_yaml_sets(Path(sys.argv[1])):
        param_set.hash
    print("sets")
except ParamsError as exc:
    print("ParamsError:", exc.message)
"""


def test_mapping_alias_bomb_is_refused_quickly(tmp_path):
    """Twelve lines whose aliases expand to 10**8 mappings: refused (or loaded) in seconds,
    not expanded until the machine runs out of time or memory."""
    import subprocess
    import sys

    lines = ["defaults:", "  k0: &k0 {x: 1}"]
    for level in range(1, 9):
        refs = ", ".join(f"m{j}: *k{level - 1}" for j in range(10))
        lines.append(f"  k{level}: &k{level} {{{refs}}}")
    lines.append("sets: [{name: a}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", BOMB_CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading a 12-line alias bomb took more than 10 s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(("sets", "ParamsError:")), proc.stdout
    if proc.stdout.startswith("ParamsError:"):
        assert str(path) in proc.stdout
