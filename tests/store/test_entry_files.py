"""An entry's metadata lists exactly the files it holds, with their true sizes and checksums,
whoever wrote them: the cachers (whose checksums are taken while writing, so the folder need
not be listed again), the stage through a path it was given, a cacher subclass writing more
than its parent, or a reportable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher
from curifactory_cli.reporting import JsonReporter


class CopyingJsonCacher(JsonCacher):
    # A subclass that writes a second file beside its artifact.
    def save(self, obj):
        path = super().save(obj)
        with open(self.get_path("_copy"), "w") as out:
            out.write("copy")
        return path


class CircularMetaCacher(JsonCacher):
    def save(self, obj):
        self.extra_metadata["self"] = self.extra_metadata
        self.extra_metadata["rows"] = 3
        return super().save(obj)


@cf.stage(inputs=None, outputs=["model", "model_b"], cachers=[PickleCacher, JsonCacher])
def plain(record):
    return {"w": [1, 2]}, {"b": record.params.x}


@cf.stage(inputs=["model_b"], outputs=["noted"], cachers=[JsonCacher])
def sidefile(record, model_b):
    with open(record.get_path("notes.txt"), "w") as out:
        out.write("a note")
    return model_b["b"] + 1


@cf.stage(inputs=["noted"], outputs=["peeked"], cachers=[JsonCacher])
def peek(record, noted):
    with open(record.stage_cachers[0].get_path("_side"), "w") as out:
        out.write("beside the artifact")
    return noted + 1


@cf.stage(inputs=["peeked"], outputs=["copied"], cachers=[CopyingJsonCacher])
def subclassed(record, peeked):
    return peeked + 1


@cf.stage(inputs=["copied"], outputs=["told"], cachers=[JsonCacher])
def reporting(record, copied):
    record.report(JsonReporter({"copied": copied}, name="copied"))
    return copied + 1


@cf.stage(inputs=["told"], outputs=["circular"], cachers=[CircularMetaCacher])
def circular(record, told):
    return told + 1


def run(param_sets, manager):
    for params in param_sets:
        record = cf.Record(manager, params)
        for step in (plain, sidefile, peek, subclassed, reporting, circular):
            record = step(record)
"""


def _on_disk(directory: Path) -> dict[str, tuple[int, str]]:
    return {
        path.relative_to(directory).as_posix(): (
            path.stat().st_size,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in directory.rglob("*")
        if path.is_file() and path.name != "meta.json"
    }


def _listed(meta: dict) -> dict[str, tuple[int, str]]:
    files = [f for info in meta["outputs"].values() for f in info["files"]]
    files += meta["extra_files"]
    listed = {f["path"]: (f["size"], f["sha256"]) for f in files}
    assert len(listed) == len(files), f"a file is listed twice: {files}"
    return listed


def test_every_entry_lists_exactly_the_files_it_holds(project, job_runner):
    project.write("experiments/files.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  x: 1\n- name: b\n  x: 2\n")
    first = project.run("files", "params/p.yaml")
    assert first.ok, first.error
    assert len(first.executed()) == 12

    metas = {}
    for directory in project.entries():
        meta = json.loads((directory / "meta.json").read_text())
        assert _listed(meta) == _on_disk(directory), directory
        metas.setdefault(meta["stage"], meta)

    def files_of(stage: str, output: str) -> list[str]:
        return [f["path"] for f in metas[stage]["outputs"][output]["files"]]

    # Each file goes with the output whose name is the longest prefix of its path.
    assert files_of("plain", "model") == ["model.pkl"]
    assert files_of("plain", "model_b") == ["model_b.json"]
    assert [f["path"] for f in metas["sidefile"]["extra_files"]] == ["files/notes.txt"]
    assert files_of("peek", "peeked") == ["peeked.json", "peeked_side"]
    assert files_of("subclassed", "copied") == ["copied.json", "copied_copy"]
    assert metas["reporting"]["extra_files"], "the reportable is kept with its entry"
    extra = metas["circular"]["outputs"]["circular"]["extra"]
    assert "rows" in json.dumps(extra)  # kept, as text: it refers to itself

    # Every listed checksum is right: the next run verifies them and serves every entry.
    second = project.run("files", "params/p.yaml")
    assert second.ok, second.error
    assert second.executed() == []
    assert not second.warnings
    assert [r.state["circular"] for r in second.records if r.name in ("a", "b")] == [6, 7]


MIXED = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


class CopyingJsonCacher(JsonCacher):
    def save(self, obj):
        path = super().save(obj)
        with open(self.get_path("_copy"), "w") as out:
            out.write("copy")
        return path


@cf.stage(inputs=None, outputs=["plain", "copied"], cachers=[JsonCacher, CopyingJsonCacher])
def mixed(record):
    return 1, 2


def run(param_sets, manager):
    for params in param_sets:
        mixed(cf.Record(manager, params))
"""


def test_a_stage_with_one_cacher_that_writes_more_lists_its_whole_folder(project, job_runner):
    """Only when every cacher of a stage checksums all it writes can the draft folder go
    unlisted: one other cacher among them is enough to list it."""
    project.write("experiments/mixed.py", MIXED)
    project.write("params/p.yaml", "- name: a\n")
    result = project.run("mixed", "params/p.yaml")
    assert result.ok, result.error
    (directory,) = project.entries()
    meta = json.loads((directory / "meta.json").read_text())
    assert _listed(meta) == _on_disk(directory)
    assert [f["path"] for f in meta["outputs"]["copied"]["files"]] == ["copied.json", "copied_copy"]
