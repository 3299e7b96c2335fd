"""Cache keys do not depend on where the project lives or which machine computes them, so a
cache can be moved, shared, and filled by workers elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from test_workers import setup

from curifactory_cli.engine.keys import KeyMaker
from curifactory_cli.fingerprint import CodeFingerprinter


def test_a_moved_project_finds_its_whole_cache(project, tmp_path):
    setup(project)
    first = project.run("work", "params/p.yaml")
    assert first.ok and first.counts()["executed"] == 25
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(project.root, moved)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONHASHSEED": "123"}
    proc = subprocess.run(
        [sys.executable, "-m", "curifactory_cli", "run", "work", "p", "--json"],
        cwd=moved,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["counts"]["executed"] == 0, doc["nodes"]
    keys = {(n.stage.name, n.record_name): n.key for n in first.graph.nodes}
    assert {(n["stage"], n["record"]): n["key"] for n in doc["nodes"]} == keys


def test_fingerprints_do_not_contain_the_project_path(project):
    setup(project)
    result = project.run("work", "params/p.yaml")
    keys = KeyMaker("work", CodeFingerprinter(project.root))
    for node in result.graph.nodes:
        text = json.dumps(keys.base(node))
        assert str(project.root) not in text
        host = os.uname().nodename
        assert len(host) < 6 or host not in text


# ------------------------------------------------------------------------------ key parts
OPTION_CACHER = """
import curifactory_cli as cf
from curifactory_cli.caching import Cacheable


class SepCacher(Cacheable):
    def __init__(self, *args, sep=",", **kwargs):
        super().__init__(*args, extension=".txt", **kwargs)
        self.sep = sep

    def save(self, obj):
        with open(self.get_path(), "w") as out:
            out.write(self.sep.join(str(x) for x in obj))
        return self.get_path()

    def load(self):
        with open(self.get_path()) as infile:
            return infile.read()


@cf.stage(outputs=["row"], cachers=[SepCacher(sep=",")])
def write_row(record):
    return [1, 2, 3]


def run(param_sets, manager):
    for p in param_sets:
        write_row(cf.Record(manager, p))
"""


def test_a_cachers_option_values_are_part_of_the_key(project):
    """Two instances of one cacher class with other option values write other files: an
    entry written with one is not the other's (only the option names would be the same)."""
    project.write("experiments/opt.py", OPTION_CACHER)
    project.write("params/p.yaml", "- name: a\n")
    first = project.run("opt", "params/p.yaml")
    assert first.ok, first.error
    assert [p.read_text() for p in project.cache.rglob("row.txt")] == ["1,2,3"]
    project.write("experiments/opt.py", OPTION_CACHER.replace('sep=",")]', 'sep=";")]'))
    again = project.run("opt", "params/p.yaml")
    assert again.ok, again.error
    assert again.executed() == [("write_row", "a")]
    assert sorted(p.read_text() for p in project.cache.rglob("row.txt")) == ["1,2,3", "1;2;3"]


# An experiment that wires one of two outputs of `split` into `use` under another name: which
# of the two `use` reads is part of its identity, whether `split` is cached or in memory.
WIRED = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["a", "b"], cachers=CACHERS)
def split(record):
    return [1], [2]


@cf.stage(inputs=["x"], outputs=["y"], cachers=[JsonCacher])
def use(record, x):
    return x[0] * 10


def run(param_sets, manager):
    for p in param_sets:
        record = split(cf.Record(manager, p))
        record.state["x"] = record.state.raw("READ")
        use(record)
"""


def _wired(cachers: str, read: str) -> str:
    return WIRED.replace("CACHERS", cachers).replace("READ", read)


def test_the_lineage_key_names_which_output_of_the_upstream_call_is_read(project):
    """With the upstream entry gone, a stage is found by its lineage key alone: reading the
    other output of the same upstream call is another lineage, never the old entry."""
    project.write("experiments/wired.py", _wired("[JsonCacher, JsonCacher]", "a"))
    project.write("params/p.yaml", "- name: p\n")
    first = project.run("wired", "params/p.yaml")
    assert first.ok, first.error
    assert first.records[0].state["y"] == 10
    for meta in list(project.cache.rglob("meta.json")):
        if json.loads(meta.read_text())["stage"] == "split":
            shutil.rmtree(meta.parent)
    project.write("experiments/wired.py", _wired("[JsonCacher, JsonCacher]", "b"))
    again = project.run("wired", "params/p.yaml")
    assert again.ok, again.error
    assert sorted(again.executed()) == [("split", "p"), ("use", "p")]
    assert again.records[0].state["y"] == 20


def test_the_version_of_an_in_memory_output_follows_the_outputs_name(project):
    """Outputs of a stage without cachers have no bytes to checksum: each one's version still
    differs from its sibling's, so a consumer switched to the other output runs again."""
    project.write("experiments/wired.py", _wired("None", "a"))
    project.write("params/p.yaml", "- name: p\n")
    first = project.run("wired", "params/p.yaml")
    assert first.ok, first.error
    assert first.records[0].state["y"] == 10
    project.write("experiments/wired.py", _wired("None", "b"))
    again = project.run("wired", "params/p.yaml")
    assert again.ok, again.error
    assert ("use", "p") in again.executed()
    assert again.records[0].state["y"] == 20


# ------------------------------------------------------------------------------ the key format
FORMAT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    return [1, 2, 3]


@cf.stage(inputs=["numbers", "offset"], outputs=["scaled"], cachers=[JsonCacher])
def scale(record, numbers, offset, factor=1):
    return [x * factor + offset for x in numbers]


def run(param_sets, manager):
    for p in param_sets:
        record = load(cf.Record(manager, p))
        record.state["offset"] = 5
        scale(record, factor=2)
"""


def test_the_parts_of_a_stage_calls_keys_are_these_and_no_others(project):
    """A cache outlives the version of curi that wrote it: what goes into a key (and how it is
    spelled) is fixed, and changing it is a new KEY_FORMAT, never a silent miss of every
    entry (or worse, a hit across calls that differ)."""
    from curifactory_cli.engine.keys import KEY_FORMAT
    from curifactory_cli.hashing import canonical_json, digest, hash_value

    project.write("experiments/fmt.py", FORMAT)
    project.write("params/p.yaml", "- name: a\n")
    result = project.run("fmt", "params/p.yaml")
    assert result.ok, result.error
    assert result.records[0].state["scaled"] == [7, 9, 11]
    (node,) = [n for n in result.graph.nodes if n.stage.name == "scale"]
    fingerprinter = CodeFingerprinter(project.root)
    keys = KeyMaker("fmt", fingerprinter)
    base = {
        "format": KEY_FORMAT,
        "experiment": "fmt",
        "stage": "scale",
        "params": node.record.get_hash(),
        "code": fingerprinter.fingerprint(node.stage.fn),
        "outputs": ["scaled"],
        "cachers": [{"type": "curifactory_cli.caching.JsonCacher"}],
        "kwargs": hash_value({"factor": 2}),
    }
    inputs = {"numbers": "V", "offset": "value:" + hash_value(5)}
    parts, key, probe_source = keys.data_key(node, lambda ref: "V")
    assert parts == {**base, "inputs": inputs}
    assert key == digest(canonical_json({**base, "inputs": inputs}))
    # The probe (engine.sharing) digests the same parts but the parameters.
    without_params = {k: v for k, v in {**base, "inputs": inputs}.items() if k != "params"}
    assert probe_source == canonical_json(without_params)
    # What the run used: the same parts, with the data version of `numbers`.
    (numbers,) = [ref for ref in node.upstream() if ref.name == "numbers"]
    used = {**base, "inputs": {**inputs, "numbers": numbers.version}}
    assert numbers.version and node.key == digest(canonical_json(used))

    lineage_parts = {**base, "inputs": {**inputs, "numbers": "L:numbers"}, "lineage": True}
    assert keys.lineage_key(node, lambda n: "L") == digest(canonical_json(lineage_parts))
    # The lineage probe (how `curi plan` tells which calls may share): the lineage key's
    # parts but the parameters, with the probes of the calls it reads from.
    probe_parts = {k: v for k, v in lineage_parts.items() if k != "params"}
    probe_parts["inputs"] = {**inputs, "numbers": "P:numbers"}
    assert keys.lineage_probe(node, lambda n: "P") == digest(canonical_json(probe_parts))

    # A cacher instance is its type and its options (a class has no options).
    from curifactory_cli.caching import JsonCacher
    from curifactory_cli.engine.keys import _CACHER_PRIVATE, cacher_id

    instance = JsonCacher(prefix="v2")
    options = {k: v for k, v in vars(instance).items() if k not in _CACHER_PRIVATE}
    assert options["prefix"] == "v2"
    assert cacher_id(instance) == {
        "type": "curifactory_cli.caching.JsonCacher",
        "config": hash_value(options),
    }

    # Another experiment's call of the same stage is another call.
    assert KeyMaker("other", fingerprinter).data_key(node, lambda ref: "V")[1] != key


def test_a_value_put_in_a_records_state_is_part_of_the_key(project):
    """An input that no stage produced (a value the experiment put in the record's state)
    is keyed by its value: another value runs the stage again."""
    project.write("experiments/fmt.py", FORMAT)
    project.write("params/p.yaml", "- name: a\n")
    assert project.run("fmt", "params/p.yaml").ok
    project.write("experiments/fmt.py", FORMAT.replace('["offset"] = 5', '["offset"] = 6'))
    again = project.run("fmt", "params/p.yaml")
    assert again.ok, again.error
    assert again.executed() == [("scale", "a")]
    assert again.records[0].state["scaled"] == [8, 10, 12]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("factor=2)", "factor=object())"), "keyword arguments of 'scale'"),
        (('["offset"] = 5', '["offset"] = object()'), "input of 'scale'"),
    ],
    ids=["keyword argument", "input value"],
)
def test_a_value_that_cannot_be_keyed_is_an_error_naming_the_stage(project, change, named):
    from curifactory_cli.errors import ParamsError

    project.write("experiments/fmt.py", FORMAT.replace(*change))
    project.write("params/p.yaml", "- name: a\n")
    with pytest.raises(ParamsError, match="no stable representation") as info:
        project.run("fmt", "params/p.yaml")
    assert info.value.message.startswith(named)


SWITCHED = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


class Upper(JsonCacher):
    def save(self, obj):
        return super().save([str(x).upper() for x in obj])


class Lower(JsonCacher):
    def save(self, obj):
        return super().save([str(x).lower() for x in obj])


@cf.stage(outputs=["words"], cachers=[Upper()])
def words(record):
    return ["a", "B"]


def run(param_sets, manager):
    for p in param_sets:
        words(cf.Record(manager, p))
"""


def test_switching_to_an_instance_of_another_cacher_class_reruns_the_stage(project):
    """Two cacher instances with the same options but of other classes store differently."""
    project.write("experiments/sw.py", SWITCHED)
    project.write("params/p.yaml", "- name: a\n")
    assert project.run("sw", "params/p.yaml").ok
    project.write("experiments/sw.py", SWITCHED.replace("cachers=[Upper()]", "cachers=[Lower()]"))
    again = project.run("sw", "params/p.yaml")
    assert again.ok, again.error
    assert again.executed() == [("words", "a")]
    stored = sorted(p.read_text() for p in project.cache.rglob("words.json"))
    assert [json.loads(text) for text in stored] == [["A", "B"], ["a", "b"]]


UNHASHABLE_OPTION = (
    OPTION_CACHER.replace(
        'cachers=[SepCacher(sep=",")]', 'cachers=[SepCacher(sep=",", hook=object())]'
    )
    .replace(
        'def __init__(self, *args, sep=",", **kwargs):',
        'def __init__(self, *args, sep=",", hook=None, **kwargs):',
    )
    .replace("        self.sep = sep\n", "        self.sep = sep\n        self.hook = hook\n")
)


def test_a_cacher_whose_options_cannot_be_hashed_is_keyed_by_their_names(project):
    """An option without a stable value (an object's address) cannot be in the key: its name
    is, and the stage is still cached from one run to the next."""
    assert "hook=object()" in UNHASHABLE_OPTION and "self.hook = hook" in UNHASHABLE_OPTION
    project.write("experiments/opt.py", UNHASHABLE_OPTION)
    project.write("params/p.yaml", "- name: a\n")
    first = project.run("opt", "params/p.yaml")
    assert first.ok, first.error
    again = project.run("opt", "params/p.yaml")
    assert again.ok and again.executed() == []
    from curifactory_cli.engine.keys import cacher_id

    (template,) = again.graph.nodes[0].cacher_templates
    assert cacher_id(template)["config"] == repr(sorted(["hook", "sep", *_BUILTIN]))


_BUILTIN: list[str] = []  # filled below from a bare instance


def _fill_builtin() -> None:
    from curifactory_cli.caching import Cacheable
    from curifactory_cli.engine.keys import _CACHER_PRIVATE

    class Bare(Cacheable):
        pass

    _BUILTIN.extend(k for k in vars(Bare()) if k not in _CACHER_PRIVATE)


_fill_builtin()


# ------------------------------------------------------------------------------ params_json
def test_the_parameters_in_an_entrys_metadata_are_the_sets_name_and_values(project):
    from dataclasses import dataclass

    from curifactory_cli.engine.keys import params_json
    from curifactory_cli.params import ExperimentParameters

    project.write("experiments/fmt.py", FORMAT)
    project.write("params/p.yaml", "- name: a\n  n: 3\n  sub: {x: 1}\n")
    assert project.run("fmt", "params/p.yaml").ok
    metas = [json.loads(p.read_text()) for p in project.cache.rglob("meta.json")]
    assert [m["params"] for m in metas] == [{"name": "a", "n": 3, "sub": {"x": 1}}] * 2

    @dataclass
    class Typed(ExperimentParameters):
        n: int = 1
        skipped: str | None = None

    assert params_json(Typed(name="t", n=4)) == {"name": "t", "n": 4}

    @dataclass
    class Nameless:  # Curifactory takes any dataclass as parameters
        n: int = 2

    assert params_json(Nameless()) == {"name": None, "n": 2}
    assert params_json(None) is None

    @dataclass
    class Hooked(ExperimentParameters):
        hook: object = None

    # A value with no stable representation is not hashed: the set is shown by its repr.
    hooked = Hooked(name="h", hook=object())
    assert params_json(hooked) == {"name": "h", "repr": repr(hooked)}
