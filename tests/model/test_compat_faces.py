"""Curifactory's public modules under their own names (`curifactory.X` -> `curifactory_cli.X`),
and the pieces of their API that live there: Procedure, run_experiment, set_hash_functions,
params_hash(dry=True), utils."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass

import pytest

import curifactory_cli as cf
from curifactory_cli.errors import ConfigError, StageError

FACES = {
    "manager": ["ArtifactManager"],
    "record": ["Record"],
    "staging": ["stage", "aggregate"],
    "params": ["ExperimentParameters", "set_hash_functions"],
    "caching": ["Cacheable", "JsonCacher", "PickleCacher", "Lazy"],
    "reporting": ["Reportable", "JsonReporter", "LinePlotReporter"],
    "procedure": ["Procedure"],
    "hashing": ["set_hash_functions"],
    "utils": ["human_readable_time", "get_current_commit"],
    "experiment": ["run_experiment"],
}


@pytest.mark.parametrize("module", sorted(FACES))
def test_every_public_module_of_curifactory_has_its_face(module):
    face = importlib.import_module(f"curifactory_cli.{module}")
    for name in FACES[module]:
        assert hasattr(face, name), f"curifactory_cli.{module}.{name}"
    assert getattr(cf, module) is face  # `cf.reporting.JsonReporter` works too


@dataclass
class Params(cf.ExperimentParameters):
    a: int = 1
    n_workers: int = 4
    hash_representations: dict = cf.set_hash_functions(n_workers=None)  # noqa: RUF009


@dataclass
class Merged(cf.ExperimentParameters):
    a: int = 1
    b: int = 2
    hash_representations: dict = cf.set_hash_functions(  # noqa: RUF009 - Curifactory's idiom
        {"a": None}, b=lambda self, v: v % 2
    )


def test_set_hash_functions_is_a_field_default_as_in_curifactory():
    assert Params(name="x").params_hash() == Params(name="y", n_workers=16).params_hash()
    assert Params(a=1).params_hash() != Params(a=2).params_hash()
    assert Params().hash_representations == {"n_workers": None}
    assert Params().hash_representations is not Params().hash_representations
    # b is hashed by its parity, a not at all
    assert Merged(a=1, b=2).params_hash() == Merged(a=5, b=4).params_hash()
    assert Merged(b=2).params_hash() != Merged(b=3).params_hash()
    with pytest.raises(ValueError, match="must be a dictionary"):
        cf.set_hash_functions(["a"])


def test_params_hash_dry_shows_how_each_field_is_hashed():
    shown = Merged(a=3, b=5).params_hash(dry=True)
    assert shown["name"] == ("SKIPPED: blacklist", None)
    assert shown["a"] == ("SKIPPED: set to None in hash_representations", None)
    assert shown["b"] == ("param_set.hash_representations['b'](param_set, b)", 1)
    assert Params(a=7).params_hash(dry=True)["a"] == ("repr(a)", "7")


def test_procedure_runs_its_stages_on_a_record_per_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from curifactory_cli.procedure import NoArtifactManagerError, Procedure

    @cf.stage(inputs=None, outputs=["x"])
    def start(record):
        return record.params.a

    @cf.stage(inputs=["x"], outputs=["y"])
    def double(record, x):
        return 2 * x

    @cf.aggregate(inputs=["y"], outputs=["total"])
    def total(record, records, y):
        return sum(y.values())

    with pytest.raises(NoArtifactManagerError):
        Procedure([start]).run(Params())
    manager = cf.ArtifactManager("proc")
    first = Procedure([start, double], manager, name="first")
    outputs = [first.run(Params(name=f"p{a}", a=a)) for a in (1, 2, 3)]
    assert [r.state["y"] for r in outputs] == [2, 4, 6]
    assert first.records == outputs
    summed = Procedure([total], manager, previous_proc=first).run(None)
    assert summed.state["total"] == 12


def test_run_experiment_with_curifactorys_signature(project):
    project.write(
        "experiments/twice.py",
        """
        import curifactory_cli as cf
        from curifactory_cli.caching import JsonCacher


        @cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
        def value(record):
            if record.params.n < 0:
                raise ValueError("negative")
            return record.params.n * 2


        def run(param_sets, manager):
            return {p.name: value(cf.Record(manager, p)).state["v"] for p in param_sets}
        """,
    )
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    project.write("params/bad.yaml", "- name: c\n  n: -1\n")
    from curifactory_cli.experiment import run_experiment

    results, manager = run_experiment("twice", ["p"], report=False, log=True)
    assert [r.name for r in manager.records] == ["a", "b"]
    assert [r.state["v"] for r in manager.records] == [2, 4]
    assert results is not None
    _, again = run_experiment("twice", "p", param_set_names=["b"], report=False)
    assert [r.name for r in again.records] == ["b"]
    with pytest.raises(StageError, match="negative"):
        run_experiment("twice", ["bad"], report=False)
    with pytest.raises(ConfigError) as refused:
        run_experiment("twice", ["p"], map_only=True)
    assert "curi plan" in (refused.value.hint or "")
    with pytest.raises(TypeError, match="colour"):
        run_experiment("twice", ["p"], colour="red")


def test_utils():
    from curifactory_cli import utils

    assert utils.human_readable_time(0.005) == "5.00ms"
    assert utils.human_readable_time(90) == "1.50m"
    assert utils.human_readable_mem_usage(1_500_000) == "1.50MB"
    assert utils.human_readable_mem_usage(-2_000) == "-2.00KB"
    assert utils.get_command_output(["echo", "hello"]) == "hello"
    assert utils.get_command_output(["no-such-command-here"], silent=True) == ""
    assert utils.get_py_opening_comment(['"""One line."""', "x = 1"]) == "One line."
    assert utils.get_py_opening_comment(['"""Two', "  lines", '"""']) == "Two lines"


def test_dotted_parameter_module_names_and_an_empty_get_params(project, cli):
    project.write(
        "experiments/e.py",
        """
        import curifactory_cli as cf


        @cf.stage(inputs=None, outputs=["x"])
        def s(record):
            return record.params.a


        def run(param_sets, manager):
            for p in param_sets:
                s(cf.Record(manager, p))
        """,
    )
    project.write(
        "params/subparams/thing.py",
        """
        from dataclasses import dataclass
        import curifactory_cli as cf


        @dataclass
        class P(cf.ExperimentParameters):
            a: int = 1


        def get_params():
            return [P(name="one")]
        """,
    )
    project.write("params/empty.py", "def get_params():\n    return []\n")
    ran = cli("run", "e", "subparams.thing", "--json")
    assert ran.exit_code == 0, ran.output
    assert [p["name"] for p in json.loads(ran.stdout)["param_sets"]] == ["one"]
    empty = cli("run", "e", "empty")
    assert empty.exit_code == 2
    assert "params/empty.py: get_params() returned no parameter sets" in empty.output
    assert "--names" not in empty.output


def test_a_single_output_takes_tuples_as_curifactory_does(project):
    project.write(
        "experiments/tup.py",
        """
        import curifactory_cli as cf


        @cf.stage(inputs=None, outputs=["pair"])
        def wrapped(record):
            return ((1, 2),)


        @cf.stage(inputs=None, outputs=["one"])
        def single(record):
            return (5,)


        @cf.stage(inputs=None, outputs=["bad"])
        def bare(record):
            return (1, 2)


        def run(param_sets, manager):
            for p in param_sets:
                r = single(wrapped(cf.Record(manager, p)))
                if p.name == "b":
                    bare(r)
        """,
    )
    project.write("params/p.yaml", "- name: a\n- name: b\n")
    good = project.run("tup", "params/p.yaml", names=("a",))
    assert good.ok, good.error
    assert good.records[0].state["pair"] == (1, 2) and good.records[0].state["one"] == 5
    from curifactory_cli.errors import OutputSignatureError

    with pytest.raises(OutputSignatureError, match="returned a tuple of 2 values") as bad:
        project.run("tup", "params/p.yaml", names=("b",))
    assert "((a, b),)" in bad.value.hint
