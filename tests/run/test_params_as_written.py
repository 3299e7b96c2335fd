"""Parameters: numbers as people write them, `--set` keys that match nothing,
`--indices` out of range, contradicting options, and where curi looks for files."""

from __future__ import annotations

import math
import re

import pytest

from curifactory_cli.errors import ExitCode, ParamsError, exit_code_for

UNTYPED = '''
"""Scales a number by the model's alpha."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["scaled"], cachers=[JsonCacher])
def scale(record):
    return record.params.n * record.params.model.alpha


def run(param_sets, manager):
    for p in param_sets:
        scale(cf.Record(manager, p))
'''

TYPED = """
from dataclasses import dataclass

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@dataclass
class Params(cf.ExperimentParameters):
    n: int = 2
    alpha: float = 0.5


@cf.stage(inputs=None, outputs=["scaled"], cachers=[JsonCacher])
def scale(record):
    return record.params.n * record.params.alpha


def run(param_sets, manager):
    for p in param_sets:
        scale(cf.Record(manager, p))
"""

PARAMS = """
- name: a
  n: 2
  model: {alpha: 1e-3}
- name: b
  n: 3
  model: {alpha: 0.5}
- name: c
  n: 4
  model: {alpha: 2.0}
"""


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture
def untyped(project):
    project.write("experiments/scaled.py", UNTYPED)
    project.write("params/p.yaml", PARAMS)
    return project


# ------------------------------------------------------------------------ YAML 1.2 floats
def test_floats_in_a_file_read_as_yaml_1_2_writes_them(project):
    project.write("experiments/scaled.py", UNTYPED)
    values = ["1e-3", "1E5", ".5", "-2.5e+3", ".inf", "-.inf", ".nan", "1.0e5", "3"]
    sets = "".join(f"- name: s{i}\n  n: 1\n  model: {{alpha: {v}}}\n" for i, v in enumerate(values))
    project.write("params/many.yaml", sets)
    result = project.run("scaled", "params/many.yaml")
    assert result.ok, result.error
    read = [p.params.model.alpha for p in result.param_sets]
    assert read[:6] == [0.001, 100000.0, 0.5, -2500.0, math.inf, -math.inf]
    assert math.isnan(read[6]) and read[7] == 100000.0 and read[8] == 3
    assert all(isinstance(v, float) for v in read[:8]) and isinstance(read[8], int)
    assert result.records[0].state["scaled"] == 0.001  # computed with a number, not text


def test_set_reads_an_exponent_as_a_float_for_typed_params(project, cli):
    project.write("experiments/typed.py", TYPED)
    project.write("params/t.yaml", "- name: a\n  alpha: 1e-2\n")
    result = cli("run", "typed", "params/t.yaml", "--set", "alpha=1e-3", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = project.entries()
    assert (entry / "scaled.json").read_text().strip() == "0.002"


def test_set_reads_an_exponent_as_a_float_for_untyped_params(untyped):
    result = untyped.run("scaled", "params/p.yaml", overrides=("model.alpha=-25E-1",))
    assert result.ok, result.error
    assert {p.params.model.alpha for p in result.param_sets} == {-2.5}


def test_the_loader_keeps_its_line_numbers_and_safety(untyped, cli):
    untyped.write("params/bad.yaml", "- name: a\n  n: 1\n  n: 2\n")
    result = cli("run", "scaled", "params/bad.yaml")
    assert result.exit_code == ExitCode.USAGE
    assert "params/bad.yaml:3: duplicate key 'n'" in flat(result.output)
    untyped.write("params/py.yaml", "- name: a\n  n: !!python/name:os.system\n")
    result = cli("run", "scaled", "params/py.yaml")
    assert result.exit_code == ExitCode.USAGE and "no python tags" in flat(result.output)


# ------------------------------------------------------------------------ --set matching nothing
def test_a_set_key_matching_no_parameter_warns_with_a_close_match(untyped, cli):
    result = cli("run", "scaled", "params/p.yaml", "--set", "model.alpah=0.1")
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "warning: --set model.alpah: no parameter set has a parameter 'model.alpah'" in out
    assert "did you mean 'model.alpha'?" in out and "--strict" in out


def test_a_known_set_key_does_not_warn(untyped):
    result = untyped.run("scaled", "params/p.yaml", overrides=("model.alpha=0.1", "n=5"))
    assert result.ok and result.warnings == []


def test_strict_makes_an_unknown_set_key_an_error_before_anything_is_written(untyped):
    with pytest.raises(ParamsError) as caught:
        untyped.run("scaled", "params/p.yaml", overrides=("nn=5",), strict=True)
    assert caught.value.message == "--set nn: no parameter set has a parameter 'nn'"
    assert "did you mean 'n'?" in caught.value.hint
    assert exit_code_for(caught.value) == ExitCode.USAGE
    assert not untyped.cache.exists() or untyped.entries() == []


def test_set_keys_are_checked_against_get_params_sets_too(project):
    project.write("experiments/scaled.py", UNTYPED)
    project.write(
        "params/gp.py",
        "def get_params():\n    return [{'name': 'a', 'n': 1, 'model': {'alpha': 2.0}}]\n",
    )
    result = project.run("scaled", "params/gp.py", overrides=("model.beta=1",))
    assert result.ok, result.error
    assert any("--set model.beta" in w for w in result.warnings), result.warnings
    with pytest.raises(ParamsError, match=r"model\.beta"):
        project.run("scaled", "params/gp.py", overrides=("model.beta=1",), strict=True)


# ------------------------------------------------------------------------ --indices, --lazy
def test_an_index_out_of_range_is_an_error_naming_the_file_and_count(untyped, cli):
    result = cli("run", "scaled", "params/p.yaml", "--indices", "0,9")
    assert result.exit_code == ExitCode.USAGE, result.output
    out = flat(result.output)
    assert "--indices 9 selects no parameter sets" in out
    assert "params/p.yaml has 3" in out and "use 0 to 2" in out
    assert not untyped.cache.exists() or untyped.entries() == []
    assert cli("run", "scaled", "params/p.yaml", "--indices", "0-3").exit_code == 0


def test_lazy_and_ignore_lazy_together_are_refused(untyped, cli):
    result = cli("run", "scaled", "params/p.yaml", "--lazy", "--ignore-lazy")
    assert result.exit_code == ExitCode.USAGE
    assert "--lazy and --ignore-lazy cannot be used together" in flat(result.output)
    assert not untyped.cache.exists() or untyped.entries() == []


# ------------------------------------------------------------------------ finding files
def test_a_missing_params_path_is_not_looked_for_under_params_twice(untyped, cli):
    result = cli("run", "scaled", "params/nope.yaml")
    assert result.exit_code == ExitCode.USAGE
    out = flat(result.output)
    assert "no parameter file 'params/nope.yaml'" in out
    assert "params/params" not in out and ".yaml.yaml" not in out


def test_run_from_a_subfolder_runs_the_project(untyped, cli, monkeypatch):
    # The project is found by looking upward, as git does (tests/run/test_project_root.py
    # covers the rest); the cache is the project's, not the subfolder's.
    sub = untyped.root / "notes" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    result = cli("run", "scaled", "p")
    assert result.exit_code == 0, result.output
    assert (untyped.root / "data" / "cache").is_dir()
    assert not (sub / "data").exists()
