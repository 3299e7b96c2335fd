"""The copy a stage's cacher keeps at its path_override (engine.exports) is never half-written:
a copy that fails part-way leaves no file at the path (nor the one that was there changed) and
no temporary beside it, the run says why, and the next run writes it whole from the entry."""

from __future__ import annotations

import shutil

import pytest

from curifactory_cli.engine import exports
from curifactory_cli.errors import CacheError

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import PickleCacher

@cf.stage(inputs=None, outputs=["blob"], cachers=[PickleCacher("shared/{params.name}.pkl")])
def make(record):
    return bytes(range(256)) * (4096 * record.params.n)

def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
"""


def test_a_copy_that_fails_part_way_leaves_nothing_half_written(project, monkeypatch):
    project.write("experiments/copies.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 2\n")
    real_copy = shutil.copyfile

    def dies_half_way(src, dst):
        with open(src, "rb") as infile, open(dst, "wb") as outfile:
            outfile.write(infile.read(1000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exports.shutil, "copyfile", dies_half_way)
    with pytest.raises(CacheError, match="the copy of output 'blob' at its path_override"):
        project.run("copies", "params/p.yaml")
    folder = project.root / "shared"
    assert list(folder.iterdir()) == []  # neither a half file nor a temporary
    (entry,) = project.entries()  # the output itself is cached, whole

    monkeypatch.setattr(exports.shutil, "copyfile", real_copy)
    again = project.run("copies", "params/p.yaml")
    assert again.error is None and again.executed() == []
    assert (folder / "a.pkl").read_bytes() == (entry / "blob.pkl").read_bytes()

    # replacing a good copy that was changed by hand: until the new one is whole, the
    # old one stays as it was
    (folder / "a.pkl").write_bytes(b"edited")
    monkeypatch.setattr(exports.shutil, "copyfile", dies_half_way)
    with pytest.raises(CacheError, match="No space left on device"):
        project.run("copies", "params/p.yaml")
    assert (folder / "a.pkl").read_bytes() == b"edited"
    assert [p.name for p in folder.iterdir()] == ["a.pkl"]
