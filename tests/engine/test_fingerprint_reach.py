"""What a stage's cache key sees: project code reached through values, modules and constants,
and the files it declares with `depends_on`. Each edit here used to re-run nothing."""

from __future__ import annotations

import json
import os
import sys

import pytest


def forget(prefix: str) -> None:
    for name in list(sys.modules):
        if name == prefix or name.startswith(prefix + "."):
            del sys.modules[name]


@pytest.fixture
def lib(project):
    """A project package `mylib`, re-imported fresh by every run."""
    project.write("mylib/__init__.py", "")
    yield project
    forget("mylib")


def run(project, *args):
    forget("mylib")
    return project.run(*args)


MODELS = """
class Model:
    def __init__(self, slope):
        self.slope = slope

    def predict(self, x):
        return self.slope * x
"""

PREDICT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher
from mylib.models import Model


@cf.stage(inputs=None, outputs=["model"], cachers=[PickleCacher])
def train(record):
    return Model(3.0)


@cf.stage(inputs=["model"], outputs=["y"], cachers=[JsonCacher])
def predict(record, model):
    return model.predict(2.0)


def run(param_sets, manager):
    for p in param_sets:
        predict(train(cf.Record(manager, p)))
"""


def test_editing_a_method_of_a_pickled_project_class_reruns_its_consumers(lib, cli):
    lib.write("mylib/models.py", MODELS)
    lib.write("experiments/fit.py", PREDICT)
    lib.write("params/p.yaml", "- name: a\n")
    first = run(lib, "fit", "params/p.yaml")
    assert first.records[0].state["y"] == 6.0
    lib.write("mylib/models.py", MODELS.replace("self.slope * x", "self.slope * x + 1"))
    forget("mylib")
    plan = json.loads(cli("plan", "fit", "params/p.yaml", "--json").stdout)
    reasons = {n["stage"]: n["reason"] for n in plan["nodes"]}
    assert reasons["train"] == "stage code changed (class Model)"
    again = run(lib, "fit", "params/p.yaml")
    # train's pickle has the same bytes, but the code inside it changed: predict re-runs.
    assert set(again.executed()) == {("train", "a"), ("predict", "a")}
    assert again.records[0].state["y"] == 7.0
    assert run(lib, "fit", "params/p.yaml").executed() == []


CONSTANTS = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

FEATURES = ["a", "b"]
WEIGHTS = {"a": 1.0, "b": 2.0}
ORDER = (1, 2)
TAGS = {"x", "y"}


@cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
def use(record):
    return [FEATURES, WEIGHTS, list(ORDER), sorted(TAGS)]


def run(param_sets, manager):
    for p in param_sets:
        use(cf.Record(manager, p))
"""


@pytest.mark.parametrize(
    ("edit", "reruns"),
    [
        (('["a", "b"]', '["a", "c"]'), True),
        (('"b": 2.0', '"b": 2.5'), True),
        (("(1, 2)", "(2, 1)"), True),  # a tuple's order is its value
        (('{"x", "y"}', '{"y", "x"}'), False),  # a set's is not
    ],
)
def test_module_constants_of_every_plain_type_count(project, edit, reruns):
    project.write("experiments/c.py", CONSTANTS)
    project.write("params/p.yaml", "- name: a\n")
    assert project.run("c", "params/p.yaml").executed() == [("use", "a")]
    project.write("experiments/c.py", CONSTANTS.replace(*edit))
    assert bool(project.run("c", "params/p.yaml").executed()) is reruns


FEATURES = """
def scale(x):
    return x * 2
"""

VIA_MODULES = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
import mylib.features as F
from mylib import features


@cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
def aliased(record):
    return F.scale(1)


@cf.stage(inputs=None, outputs=["w"], cachers=[JsonCacher])
def from_package(record):
    return features.scale(2)


def run(param_sets, manager):
    for p in param_sets:
        from_package(aliased(cf.Record(manager, p)))
"""


def test_code_reached_through_a_project_module_counts(lib, cli):
    lib.write("mylib/features.py", FEATURES)
    lib.write("experiments/m.py", VIA_MODULES)
    lib.write("params/p.yaml", "- name: a\n")
    assert len(run(lib, "m", "params/p.yaml").executed()) == 2
    assert run(lib, "m", "params/p.yaml").executed() == []
    lib.write("mylib/features.py", FEATURES.replace("x * 2", "x * 3"))
    forget("mylib")
    plan = json.loads(cli("plan", "m", "params/p.yaml", "--json").stdout)
    reasons = {n["stage"]: n["reason"] for n in plan["nodes"]}
    assert reasons == {
        "aliased": "stage code changed (helper F.scale)",
        "from_package": "stage code changed (helper features.scale)",
    }
    again = run(lib, "m", "params/p.yaml")
    assert len(again.executed()) == 2 and again.records[0].state["w"] == 6


READS = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["rows"], cachers=[JsonCacher],
          depends_on=["data/raw/in.csv", "data/raw/*.part"])
def load(record):
    import glob
    parts = sorted(glob.glob("data/raw/*.part"))
    return open("data/raw/in.csv").read().splitlines() + [open(p).read() for p in parts]


def run(param_sets, manager):
    for p in param_sets:
        load(cf.Record(manager, p))
"""


def test_files_a_stage_declares_are_part_of_its_key(project, cli):
    project.write("experiments/r.py", READS)
    project.write("params/p.yaml", "- name: a\n")
    project.write("data/raw/in.csv", "x\n1\n")
    project.write("data/raw/1.part", "p1")
    assert project.run("r", "params/p.yaml").executed() == [("load", "a")]
    # Touched, same content: nothing re-runs.
    path = project.root / "data" / "raw" / "in.csv"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    assert project.run("r", "params/p.yaml").executed() == []
    # Changed content, and a new file matching the glob: it re-runs, and plan says why.
    project.write("data/raw/in.csv", "x\n2\n")
    plan = json.loads(cli("plan", "r", "params/p.yaml", "--json").stdout)
    assert plan["nodes"][0]["reason"] == "input files changed (data/raw/in.csv)"
    again = project.run("r", "params/p.yaml")
    assert again.executed() == [("load", "a")] and again.records[0].state["rows"][1] == "2"
    project.write("data/raw/2.part", "p2")
    assert project.run("r", "params/p.yaml").records[0].state["rows"][-1] == "p2"
    # A declared file that is gone is a clear error naming it.
    path.unlink()
    result = cli("run", "r", "params/p.yaml")
    assert result.exit_code == 2
    assert "stage 'load' depends on 'data/raw/in.csv', which names no file" in " ".join(
        result.output.split()
    )


AGGREGATE_READS = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["n"], cachers=[JsonCacher])
def one(record):
    return record.params.n


@cf.aggregate(inputs=["n"], outputs=["joined"], cachers=[JsonCacher], depends_on=["data/agg.txt"])
def join(record, records, n):
    with open("data/agg.txt") as infile:
        return infile.read() + str(sorted(n.values()))


def run(param_sets, manager):
    join(cf.Record(manager, None), [one(cf.Record(manager, p)) for p in param_sets])
"""


def test_an_aggregate_declares_files_too_and_unchanged_files_are_not_read_again(
    project, cli, monkeypatch
):
    project.write("experiments/agg.py", AGGREGATE_READS)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    project.write("data/agg.txt", "v1")
    first = project.run("agg", "params/p.yaml")
    assert ("join", first.graph.nodes[-1].record_name) in first.executed()
    memo = project.root / "data" / "file_digests.json"
    assert "data/agg.txt" in json.loads(memo.read_text())
    # Unchanged (size, mtime, inode): the memo answers, the file is not opened again.
    import builtins

    opened = []
    real_open = builtins.open

    def spying(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spying)
    assert project.run("agg", "params/p.yaml").executed() == []
    monkeypatch.setattr(builtins, "open", real_open)
    assert not [f for f in opened if f.endswith("agg.txt")]
    # Changed: the aggregate re-runs, and plan names the file.
    project.write("data/agg.txt", "v2")
    plan = json.loads(cli("plan", "agg", "params/p.yaml", "--json").stdout)
    [joined] = [n for n in plan["nodes"] if n["stage"] == "join"]
    assert joined["reason"] == "input files changed (data/agg.txt)"
    assert [s for s, _ in project.run("agg", "params/p.yaml").executed()] == ["join"]


def test_plan_and_dry_runs_leave_the_file_memo_alone(project, cli):
    project.write("experiments/agg.py", AGGREGATE_READS)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    project.write("data/agg.txt", "v1")
    assert cli("plan", "agg", "params/p.yaml").exit_code == 0
    assert cli("run", "agg", "params/p.yaml", "--dry").exit_code == 0
    assert not (project.root / "data" / "file_digests.json").exists()


def test_declaration_slips_get_a_clear_message(project, cli):
    project.write(
        "experiments/slip.py",
        """
        import curifactory_cli as cf
        from curifactory_cli.caching import JsonCacher


        @cf.stage(inputs=None, outputs=["x"], cachers=JsonCacher)
        def make(record):
            return 1


        def run(param_sets, manager):
            pass
        """,
    )
    project.write("params/p.yaml", "- name: a\n")
    result = cli("run", "slip", "params/p.yaml")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cachers must be a list, not JsonCacher" in result.output
    assert "cachers=[JsonCacher]" in result.output


def test_stage_names_may_use_any_alphabet(project):
    project.write(
        "experiments/fr.py",
        """
        import curifactory_cli as cf
        from curifactory_cli.caching import JsonCacher


        @cf.stage(inputs=None, outputs=["résultat"], cachers=[JsonCacher])
        def étape(record):
            return {"ok": True}


        def run(param_sets, manager):
            for p in param_sets:
                étape(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", "- name: a\n")
    result = project.run("fr", "params/p.yaml")
    assert result.ok and result.records[0].state["résultat"] == {"ok": True}
    assert any(e.name.startswith("étape-") for e in project.entries())


STALE = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from mylib.scale import scale


@cf.stage(inputs=None, outputs=["y"], cachers=[JsonCacher])
def compute(record):
    return scale(record.params.x)


def run(param_sets, manager):
    for p in param_sets:
        compute(cf.Record(manager, p))
"""


def test_an_edit_in_the_same_second_runs_the_new_code(lib, job_runner, monkeypatch):
    """Python trusts a .pyc while its source keeps the same size and modification second;
    project code is compiled from its source, so the edit the key sees is the code that runs
    (in this process and in workers)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    helper = lib.root / "mylib" / "scale.py"
    lib.write("mylib/scale.py", "def scale(x):\n    return x * 2\n")
    lib.write("experiments/stale.py", STALE)
    lib.write("params/p.yaml", "- name: a\n  x: 5\n")
    import py_compile

    py_compile.compile(str(helper))  # the .pyc a first import leaves
    stamp = helper.stat()
    assert run(lib, "stale", "params/p.yaml").records[0].state["y"] == 10
    lib.write("mylib/scale.py", "def scale(x):\n    return x * 3\n")  # same size
    os.utime(helper, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # and the same second
    again = run(lib, "stale", "params/p.yaml")
    assert again.executed() == [("compute", "a")]
    assert again.records[0].state["y"] == 15
