"""Curifactory's own example experiments (tests/curifactory_examples/, BSD-3, imports changed
only) run under `curi` as Curifactory's tests run them: from `test/examples/`, with the folder
above it importable (they import `test.examples.stages...`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VENDORED = Path(__file__).resolve().parent / "curifactory_examples"


@pytest.fixture
def examples(tmp_path) -> Path:
    shutil.copytree(VENDORED / "test", tmp_path / "test")
    return tmp_path / "test" / "examples"


def curi(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder.parent.parent), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "curifactory_cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_json(folder: Path, *args: str) -> dict:
    proc = curi(folder, "run", *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_basic_over_each_parameter_file(examples):
    # Curifactory's test_experiment: 3 parameter sets over params1 and params2.
    out = run_json(examples, "basic", "params1", "params2")
    assert [p["name"] for p in out["param_sets"]] == ["test1", "test2", "test3"]
    assert out["counts"]["executed"] == 6  # get_data and sum_data for each
    # Both stages keep their outputs in memory (no cachers): they run again, as there.
    again = run_json(examples, "basic", "params1", "params2")
    assert again["counts"]["executed"] == 6
    sums = [n for n in again["nodes"] if n["stage"] == "sum_data"]
    assert len(sums) == 3


def test_subexp_example_returns_the_record_with_its_output(examples):
    # Curifactory's test_experiment: run_experiment("subexp.example", ["subparams.thing"]).
    script = (
        "from curifactory_cli.experiment import run_experiment\n"
        "results, mngr = run_experiment('subexp.example', ['subparams.thing'], report=False)\n"
        "print(results.output)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(examples.parent.parent), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=examples, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[-1, 2, 5]"


def test_simple_cache_with_its_own_parameters_and_an_aggregate(examples):
    out = run_json(examples, "simple_cache")
    assert out["ok"] and [p["name"] for p in out["param_sets"]] == [
        "thing1",
        "thing2",
        "thing3",
        "thing4",
    ]
    again = run_json(examples, "simple_cache")
    assert again["counts"]["executed"] == 0


def test_image_reporter_shows_its_image_in_the_report(examples):
    pytest.importorskip("matplotlib")
    out = run_json(examples, "image_reporter", "params1")
    page = Path(out["report"]).read_text()
    assert "<img" in page and "test1_save_manual_image" in page


def test_badly_made_parameter_files_get_clear_errors(examples):
    # Curifactory's examples of get_params() mistakes: a list not returned, an empty list.
    for params, message in (
        ("nonarrayargs", "get_params() returned a Args, not a list"),
        ("empty", "get_params() returned no parameter sets"),
    ):
        proc = curi(examples, "run", "basic", params)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_lazy_example(tmp_path):
    pytest.importorskip("numpy")
    (tmp_path / "experiments").mkdir()
    shutil.copy(VENDORED / "lazy.py", tmp_path / "experiments" / "lazy.py")
    proc = curi(tmp_path, "run", "lazy", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    # use_big_data_no_resolve prints its Lazy's path in the cache, then the loaded length.
    assert "10485760" in lines
    path = next(line for line in lines if line.endswith("big_data.pkl"))
    assert Path(path).is_file() and str(tmp_path / "data" / "cache") in path
