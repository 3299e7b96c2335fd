"""Cache keys do not depend on where the project lives or which machine computes them, so a
cache can be moved, shared, and filled by workers elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from test_workers import setup

from curifactory_cli.engine.keys import KeyMaker
from curifactory_cli.hashing import CodeFingerprinter


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
