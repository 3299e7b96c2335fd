"""Curifactory's own example experiments (tests/curifactory_examples/, BSD-3, imports changed
only) run under `curi` as Curifactory's tests run them: from `test/examples/`, with the folder
above it importable (they import `test.examples.stages...`); `examples/experiments/iris.py` from
its project folder, `examples/`."""

from __future__ import annotations

import ast
import html
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VENDORED = Path(__file__).resolve().parents[1] / "curifactory_examples"


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


# Curifactory's examples/experiments/iris.py, with its own get_params() (simple_lr, simple_rf).
# Expected values from Curifactory 0.20.5 on the same file with its original imports, same
# scikit-learn (1.9.1) and numpy (2.4.6): `experiment iris` in a fresh folder printed
# IRIS_SCORES (its report's JsonReporter shows the same); the labels and predictions are those
# of the testing data and models it pickled in data/cache/ (both models miss item 22).
IRIS_SCORES = {"simple_lr": 0.9736842105263158, "simple_rf": 0.9736842105263158}
IRIS_TEST_LABELS = "01102120021021101100111021001212122010"
IRIS_PREDICTIONS = "01102120021021101100112021001212122010"


@pytest.mark.slow
def test_iris_gives_curifactorys_numbers(tmp_path):
    pytest.importorskip("sklearn")
    shutil.copytree(VENDORED / "examples", tmp_path / "examples")
    project = tmp_path / "examples"

    def run_iris() -> tuple[dict, dict]:
        proc = curi(project, "run", "iris", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # Under --json the experiment's own prints go to stderr: test_models prints its scores.
        printed = [line for line in proc.stderr.splitlines() if line.startswith("{'simple_lr'")]
        assert len(printed) == 1, proc.stderr
        return json.loads(proc.stdout), ast.literal_eval(printed[0])

    out, scores = run_iris()
    assert [p["name"] for p in out["param_sets"]] == ["simple_lr", "simple_rf"]
    # load_data reads the same parameters in both sets: computed once, its entry shared.
    assert out["counts"]["executed"] == 4
    shared = next(
        n for n in out["nodes"] if (n["stage"], n["record"]) == ("load_data", "simple_rf")
    )
    assert shared["reason"].startswith("shared with set 'simple_lr' (reads ")
    assert scores == IRIS_SCORES
    page = html.unescape(Path(out["report"]).read_text())
    assert all(f'"{name}": {score!r}' in page for name, score in IRIS_SCORES.items())

    entries = {(n["stage"], n["record"]): Path(n["entry"]) for n in out["nodes"] if n["entry"]}
    for name in IRIS_SCORES:
        model = pickle.loads((entries["train_model", name] / "model.pkl").read_bytes())
        x, y = pickle.loads((entries["load_data", name] / "testing_data.pkl").read_bytes())
        assert "".join(map(str, y)) == IRIS_TEST_LABELS
        assert "".join(map(str, model.predict(x))) == IRIS_PREDICTIONS

    # Again: load_data and train_model come from the cache; test_models has no cachers, so it
    # runs again on them, as in Curifactory (its second `experiment iris` executes it too).
    again, scores = run_iris()
    assert again["counts"] == {"executed": 1, "cached": 4, "skipped": 0, "failed": 0}
    assert [n["stage"] for n in again["nodes"] if n["outcome"] != "cached"] == ["test_models"]
    assert scores == IRIS_SCORES
