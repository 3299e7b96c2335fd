"""Interactive use: a manager made in a script or a notebook runs each stage call at once.

NOTEBOOK_0 and MANUAL are Curifactory's `examples/notebooks/0_BasicComponents.ipynb` (its
code cells, run as a script) and `examples/experiments/manual.py`, BSD-3-licensed, with only
their import lines changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from curifactory_cli.errors import StageError

NOTEBOOK_0 = """
from curifactory_cli import ArtifactManager

manager = ArtifactManager("notebook_example_0") # we pass in a name to associate with this run.
from dataclasses import dataclass
from curifactory_cli import ExperimentParameters

@dataclass
class MyParams(ExperimentParameters):
    some_scalar_multiplier: float = 1.0

# define a couple argument sets
default_params = MyParams(name="default")
doubled_params = MyParams(name="doubled", some_scalar_multiplier=2.0)
from curifactory_cli import Record

r0 = Record(manager, default_params)
r1 = Record(manager, doubled_params)

print(r0.state, r0.params)
print(r1.state, r1.params)
from curifactory_cli import stage

@stage(inputs=None, outputs=["initial_value"])
def get_initial_value(record):
    my_value = 5
    return my_value * record.params.some_scalar_multiplier

r0 = get_initial_value(r0)
r1 = get_initial_value(r1)
print(r0.state, r1.state)

@stage(inputs=["initial_value"], outputs=["final_value"])
def multiply_again(record, initial_value):
    return initial_value * record.params.some_scalar_multiplier

r1 = multiply_again(r1)
print(r1.state)
r2 = Record(manager, MyParams(name="uber-double", some_scalar_multiplier=4.0))

r2 = multiply_again(get_initial_value(r2))
print(r2.state, r2.params)
from curifactory_cli import aggregate

@aggregate(inputs=["final_value"], outputs=["all_final_values", "maximum_value"])
def find_maximum_final_value(record, records, final_value: dict[Record, float]):
    all_vals = {}
    for r, value in final_value.items():
        all_vals[r.params.name] = value

    maximum = max(all_vals.values())
    return all_vals, maximum
final_record = Record(manager, None)
final_record = find_maximum_final_value(final_record, [r0, r1, r2])
print(final_record.state)
"""

MANUAL = '''
"""An example of a manual experiment script, bypassing cf's CLI.

This isn't recommended for most use-cases, this is primarily to demonstrate
how curifactory can be used/run from a non "curifactory context".
"""

from dataclasses import dataclass
from logging import basicConfig, getLogger

from curifactory_cli import ArtifactManager, ExperimentParameters, Record, stage
from curifactory_cli.caching import Lazy, PickleCacher

LOGGER = getLogger(__name__)


@dataclass
class MyParams(ExperimentParameters):
    number: float = 1.0


@stage(inputs=None, outputs=[Lazy("initial_value")], cachers=[PickleCacher])
def get_initial_value(record):
    my_value = 5
    LOGGER.error("THIS IS A LOG MESSAGE")
    return my_value * record.params.number


@stage(inputs=["initial_value"], outputs=["final_value"], cachers=[PickleCacher])
def multiply_again(record, initial_value):
    return initial_value * record.params.number


if __name__ == "__main__":
    manager = ArtifactManager("experiment_one", disable_non_cf_loggers=False)
    basicConfig(filename="logs/this.log", force=True)
    param_grid = [MyParams(number=number) for number in (0, 1, 2, 2)]
    for param in param_grid:
        record = Record(manager, param)
        result = multiply_again(get_initial_value(record))
        print(result.state["final_value"])
    manager.generate_report()
'''


def run_script(folder: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    script = folder / name
    script.write_text(textwrap.dedent(text).lstrip("\n"))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def runs(folder: Path) -> list[dict]:
    from curifactory_cli.registry.database import RunRegistry, registry_path

    return RunRegistry(registry_path(folder), read_only=True).list_runs()


def test_notebook_0_gives_curifactorys_values(tmp_path):
    out = run_script(tmp_path, "nb0.py", NOTEBOOK_0).stdout.splitlines()
    assert out[0].startswith("{} MyParams(name='default', hash='")
    assert out[2:4] == [
        "{'initial_value': 5.0} {'initial_value': 10.0}",
        "{'initial_value': 10.0, 'final_value': 20.0}",
    ]
    assert out[4].startswith("{'initial_value': 20.0, 'final_value': 80.0} MyParams(")
    assert out[5] == (
        "{'all_final_values': {'doubled': 20.0, 'uber-double': 80.0}, 'maximum_value': 80.0}"
    )
    (run,) = runs(tmp_path)
    assert run.experiment == "notebook_example_0" and run.status == "complete"
    assert run.counts["executed"] == 6


def test_manual_script_runs_through_the_cache_and_writes_a_report(tmp_path):
    (tmp_path / "logs").mkdir()
    first = run_script(tmp_path, "manual.py", MANUAL)
    assert first.stdout.split() == ["0", "5", "20", "20"]  # ints in, ints out, as there
    again = run_script(tmp_path, "manual.py", MANUAL)
    assert again.stdout == first.stdout
    newest, oldest = runs(tmp_path)
    # (2, 2): the same parameters twice, so the second one is served from the first's entry.
    assert oldest.counts == {"executed": 6, "cached": 2, "skipped": 0, "failed": 0}
    assert newest.counts == {"executed": 0, "cached": 8, "skipped": 0, "failed": 0}
    assert "THIS IS A LOG MESSAGE" in (tmp_path / "logs" / "this.log").read_text()
    page = tmp_path / "reports" / newest.reference / "index.html"
    assert "multiply_again" in page.read_text()
    assert (tmp_path / "reports" / "_latest").resolve() == page.parent


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_session_reuses_the_cache_of_an_earlier_one(session):
    import curifactory_cli as cf
    from curifactory_cli.caching import JsonCacher

    calls = []

    @cf.stage(inputs=None, outputs=["total"], cachers=[JsonCacher])
    def total(record):  # defined inside a function: it runs in this process
        calls.append(record.params.name)
        return {"sum": record.params.a + record.params.b}

    params = cf.ExperimentParameters(name="x")
    params.a, params.b = 1, 2
    first = total(cf.Record(cf.ArtifactManager("sums"), params))
    assert first.state["total"] == {"sum": 3} and calls == ["x"]
    again = total(cf.Record(cf.ArtifactManager("sums"), params))
    assert again.state["total"] == {"sum": 3} and calls == ["x"]  # served from the cache
    assert len(list((session / "data" / "cache" / "sums").rglob("meta.json"))) == 1
    ran = cf.ArtifactManager("sums", overwrite=True)
    total(cf.Record(ran, params))
    assert calls == ["x", "x"]
    assert [r.counts["cached"] for r in runs(session)] == [0, 1, 0]
    # Each session records its stage's code by part and its output's version, as a run does
    # (what `curi runs diff` compares): the same bytes each time.
    from curifactory_cli.registry.database import RunRegistry, registry_path

    registry = RunRegistry(registry_path(session), read_only=True)
    recorded = [registry.get_run(r.reference) for r in runs(session)]
    assert [list(r.code or {}) for r in recorded] == [["total"]] * 3
    versions = [r.stages[0].outputs for r in recorded]
    assert versions[0] == versions[1] == versions[2] and list(versions[0]) == ["total"]


def test_a_failing_stage_raises_is_recorded_and_the_session_goes_on(session):
    import curifactory_cli as cf

    @cf.stage(inputs=None, outputs=["v"])
    def shaky(record):
        if record.params.name == "bad":
            raise ValueError("no good")
        return 1

    manager = cf.ArtifactManager("shaky")
    with pytest.raises(StageError, match="no good"):
        shaky(cf.Record(manager, cf.ExperimentParameters(name="bad")))
    (run,) = runs(session)
    assert run.status == "error" and "no good" in run.error
    fine = shaky(cf.Record(manager, cf.ExperimentParameters(name="good")))
    assert fine.state["v"] == 1
    (run,) = runs(session)
    assert run.counts["executed"] == 1 and run.counts["failed"] == 1


def test_a_sessions_log_keeps_what_its_stages_printed_and_the_traceback(session, capsys):
    import curifactory_cli as cf
    from curifactory_cli.registry.database import registry_path
    from curifactory_cli.registry.log import log_path, read_log

    @cf.stage(inputs=None, outputs=["v"])
    def talkative(record):
        print("hello from", record.params.name)
        if record.params.name == "bad":
            raise ValueError("no good")
        return 1

    manager = cf.ArtifactManager("talk")
    talkative(cf.Record(manager, cf.ExperimentParameters(name="good")))
    assert "hello from good" in capsys.readouterr().out  # still printed as it happens
    with pytest.raises(StageError, match="no good"):
        talkative(cf.Record(manager, cf.ExperimentParameters(name="bad")))
    (run,) = runs(session)
    entries = read_log(log_path(registry_path(session), run.reference))
    assert [(e["record"], e["outcome"], e["log"]) for e in entries] == [
        ("good", "executed", "hello from good\n"),
        ("bad", "failed", "hello from bad\n"),
    ]
    assert 'raise ValueError("no good")' in entries[1]["traceback"]


def test_a_dry_session_writes_nothing(session):
    import curifactory_cli as cf
    from curifactory_cli.caching import JsonCacher

    @cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher])
    def value(record):
        return [1, 2]

    record = value(cf.Record(cf.ArtifactManager("dry", dry=True), cf.ExperimentParameters()))
    assert record.state["v"] == [1, 2]
    assert not (session / "data").exists() or not any((session / "data").rglob("meta.json"))
    assert runs(session) == []


def test_a_dry_session_keeps_no_memo_of_the_files_a_stage_reads(session):
    """A stage's `depends_on` files are checksummed for its key; a dry session, like `curi
    run --dry`, leaves no memo of them behind."""
    import curifactory_cli as cf
    from curifactory_cli.caching import JsonCacher

    (session / "inputs").mkdir()
    (session / "inputs" / "in.txt").write_text("42")

    @cf.stage(inputs=None, outputs=["v"], cachers=[JsonCacher], depends_on=["inputs/in.txt"])
    def read(record):
        return int((session / "inputs" / "in.txt").read_text())

    record = read(cf.Record(cf.ArtifactManager("dry", dry=True), cf.ExperimentParameters()))
    assert record.state["v"] == 42
    assert not (session / "data").exists(), sorted((session / "data").rglob("*"))


def test_unknown_manager_options_are_refused(session):
    import curifactory_cli as cf

    with pytest.raises(TypeError, match="'colour'"):
        cf.ArtifactManager("x", colour="blue")
    cf.ArtifactManager("x", run_line="experiment x", disable_non_cf_loggers=True)
    assert json.dumps(runs(session)) == "[]"  # no stage call, no run


# Curifactory's examples/notebooks/1_CachingAndReporting.ipynb, code cells run as a script,
# imports changed. Left out: the two cells that list and open the files of Curifactory's cache
# layout (ours keeps one folder per entry: README, "Compatibility"), and `%%time`; the
# display calls' HTML is written to files so the test can read it.
NOTEBOOK_1 = """
from dataclasses import dataclass
import curifactory_cli as cf

manager = cf.ArtifactManager("notebook_example_1")

@dataclass
class Params(cf.ExperimentParameters):
    my_parameter: int = 1

default_params = Params(name="default")
doubled_params = Params(name="doubled", my_parameter=2)
from time import sleep
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["long-compute-data"], cachers=[JsonCacher])
def long_compute_step(record):
    some_data = {
        "my_value": record.params.my_parameter,
        "magic_value": 42
    }
    sleep(5)  # making dictionaries is hard work
    return some_data
import os
import shutil
import time

# to demonstrate cache files, we first clear our cache path
for file in os.listdir("data/cache"):
    if os.path.isdir(os.path.join("data/cache", file)):
        shutil.rmtree(f"data/cache/{file}")
    else:
        os.remove(f"data/cache/{file}")
print(os.listdir("data/cache"))
started = time.perf_counter()
r0 = cf.Record(manager, default_params)
r0 = long_compute_step(r0)
print("first", round(time.perf_counter() - started))
started = time.perf_counter()
r1 = cf.Record(manager, default_params)
r1 = long_compute_step(r1)
print("again", round(time.perf_counter() - started))
r2 = cf.Record(manager, doubled_params)
r2 = long_compute_step(r2)
from curifactory_cli.caching import Lazy
import sys

@cf.stage(inputs=None, outputs=[Lazy("very-large-object")], cachers=[JsonCacher])
def make_mega_big_object(record):
    mega_big = [1]*1024*1024
    print(sys.getsizeof(mega_big))
    return mega_big

r3 = cf.Record(manager, default_params)
r3 = make_mega_big_object(r3)
r3.state.resolve = False
print(type(r3.state['very-large-object']))
print(sys.getsizeof(r3.state['very-large-object']))
r3.state.resolve = True
print(type(r3.state['very-large-object']))
print(sys.getsizeof(r3.state['very-large-object']))
from curifactory_cli.reporting import LinePlotReporter

@cf.stage(inputs=None, outputs=["line_history"])
def make_pretty_graphs(record):
    multiplier = record.params.my_parameter

    # here we just make a bunch of example arrays of data to plot
    line_0 = [1 * multiplier, 2 * multiplier, 3 * multiplier]
    line_1 = [3 * multiplier, 2 * multiplier, 1 * multiplier]
    line_2 = [4, 0, 3]

    # a LinePlotReporter makes a nicely formatted matplotlib graph
    record.report(LinePlotReporter(line_0, name="single_line_plot"))
    record.report(LinePlotReporter(
        y={
            "ascending": line_0,
            "descending": line_1,
            "static": line_2
        },
        name="multi_line_plot"
    ))
    return [line_0, line_1, line_2]
r4 = cf.Record(manager, default_params)
r5 = cf.Record(manager, doubled_params)

r4 = make_pretty_graphs(r4)
r5 = make_pretty_graphs(r5)
open("INFO.html", "w").write(str(manager.display_info()))
open("ALL.html", "w").write(str(manager.display_all_reportables()))
open("R4.html", "w").write(str(manager.display_record_reportables(r4)))
open("GRAPH.html", "w").write(str(manager.display_stage_graph()))
manager.generate_report()
print(sorted(os.listdir("reports")))
"""


@pytest.mark.slow  # the notebook's stage sleeps 5 s, twice
def test_notebook_1_caches_lazies_and_reports(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "data" / "cache").mkdir(parents=True)
    out = run_script(tmp_path, "nb1.py", NOTEBOOK_1).stdout.splitlines()
    assert out[:3] == ["[]", "first 5", "again 0"]  # the second call is a cache hit
    # The list is built, saved and not kept: the state holds a small Lazy handle until read.
    assert out[3:5] == ["8388664", "<class 'curifactory_cli.caching.Lazy'>"]
    assert int(out[5]) < 100  # Curifactory's handle: 48 bytes
    assert out[6:8] == ["<class 'list'>", "8448728"]
    shown = {
        name: (tmp_path / f"{name}.html").read_text() for name in ("INFO", "ALL", "R4", "GRAPH")
    }
    assert "notebook_example_1" in shown["INFO"] and "doubled" in shown["INFO"]
    assert shown["ALL"].count("data:image/svg+xml;base64,") == 4
    assert "default_make_pretty_graphs_single_line_plot" in shown["R4"]
    assert shown["R4"].count("data:image/svg+xml;base64,") == 2
    assert shown["GRAPH"].count('class="node ') == 6  # r0 to r5, one stage call each
    assert out[-1].startswith("['_latest', 'index.html', 'notebook_example_1_1_")
