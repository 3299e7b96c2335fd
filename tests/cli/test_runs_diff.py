"""`curi runs diff [A [B]]`: what differs between two runs, from the run registry: parameter
sets field by field, the code of each stage, the calls run in one and reused in the other,
byte-identical outputs, metric deltas; in text, JSON and Markdown; when entries are gone."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from curifactory_cli.registry.database import RunRegistry, registry_path

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

def _scale(x):
    return x * FACTOR

FACTOR = 2

@cf.stage(inputs=None, outputs=["data"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n_rows))

@cf.stage(inputs=["data"], outputs=["total"], cachers=[JsonCacher])
def fit(record, data):
    total = _scale(sum(data)) + record.params.offset
    record.metric("total", total)
    return total

@cf.stage(inputs=["total"], outputs=["shown"], cachers=None)
def show(record, total):
    return str(total)

def run(param_sets, manager):
    for p in param_sets:
        show(fit(load(cf.Record(manager, p))))
"""

PARAMS = """
- name: a
  n_rows: 3
  offset: 1
- name: b
  n_rows: 4
  offset: 1
- name: c
  n_rows: 5
  offset: 1
"""


@pytest.fixture
def two_runs(project, cli):
    """Run 1; then exactly one field (b's offset) and one helper (_scale) change; run 2."""
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0
    project.write(
        "params/p.yaml", PARAMS.replace("n_rows: 4\n  offset: 1", "n_rows: 4\n  offset: 7")
    )
    project.write(
        "experiments/exp.py", EXPERIMENT.replace("return x * FACTOR", "return FACTOR * x + 0")
    )
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0
    return project


def diff_json(cli, *args: str) -> dict:
    out = cli("runs", "diff", *args, "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_the_diff_names_the_changed_field_the_changed_helper_and_the_reused_calls(
    job_runner, two_runs, cli
):
    """Inline and with worker processes (-j 2): what a worker computed is recorded alike."""
    out = cli("runs", "diff")
    assert out.exit_code == 0, out.output
    text = out.stdout
    # In this order: sets, code, calls, outputs, metrics.
    heads = ["parameter sets:", "code:", "stage calls:", "outputs (by checksum):", "metrics:"]
    assert [text.index(h) for h in heads] == sorted(text.index(h) for h in heads)
    lines = text.splitlines()
    assert lines[0].startswith("A  exp_1  exp_1_") and lines[1].startswith("B  exp_2  exp_2_")
    assert "parameter sets: 1 changed" in text and "  b  offset 1 -> 7" in lines
    assert "code: 1 stage changed" in text and "  fit  changed: _scale" in lines

    doc = diff_json(cli)
    assert doc["a"]["number"] == 1 and doc["b"]["number"] == 2
    assert doc["params"] == {
        "added": [],
        "removed": [],
        "changed": [
            {"set": "b", "values_recorded": True, "fields": [{"key": "offset", "a": 1, "b": 7}]}
        ],
    }
    # Only fit's helper: not the stage function, not load, not the constant it reads.
    assert doc["code"] == {
        "changed": [{"stage": "fit", "changed": ["_scale"], "added": [], "removed": []}],
        "stages_added": [],
        "stages_removed": [],
    }
    outcomes = [r["b"]["outcome"] for r in doc["calls"]["rows"]]
    assert outcomes == sorted(outcomes, key=lambda o: o != "executed")  # what B ran first
    calls = {(r["stage"], r["set"]): r for r in doc["calls"]["rows"]}
    # load ran in run 1 and was reused in run 2 for every set (b's load reads only n_rows).
    reused = {
        k
        for k, r in calls.items()
        if r["a"]["outcome"] == "executed" and r["b"]["outcome"] == "cached"
    }
    assert reused == {("load", "a"), ("load", "b"), ("load", "c")}
    again = {k for k, r in calls.items() if r["a"]["outcome"] == r["b"]["outcome"] == "executed"}
    assert {k for k in again if k[0] == "fit"} == {("fit", "a"), ("fit", "b"), ("fit", "c")}
    assert calls[("fit", "a")]["b"]["reason"] == "stage code changed (helper _scale)"
    # Its code and a value it reads changed: the reason names the first part that differs.
    assert calls[("fit", "b")]["b"]["reason"] == "stage code changed (helper _scale)"
    # show has no cachers: it runs in both runs; its key changes only where fit's output
    # did (a's and c's totals are the same with the new helper).
    assert ("show", "b") in calls and ("show", "a") not in calls
    # load's and fit's bytes, by checksum: only b's total differs. show kept no bytes.
    outputs = {(o["stage"], o["set"], o["output"]): o["status"] for o in doc["outputs"]["rows"]}
    assert outputs == {("fit", "b", "total"): "differ"}
    assert doc["outputs"]["identical"] == 5 and doc["outputs"]["differ"] == 1
    assert doc["outputs"]["unknown"] == 0
    # total = 2 * sum(range(n)) + offset: a 7 -> 7, b 13 -> 19, c 21 -> 21 (same code result).
    metrics = {(m["set"], m["metric"]): m for m in doc["metrics"]["rows"]}
    assert list(metrics) == [("b", "total")]
    assert metrics[("b", "total")] == {
        "set": "b",
        "metric": "total",
        "a": 13,
        "b": 19,
        "delta": 6.0,
        "percent": pytest.approx(6 / 13 * 100),
    }
    assert doc["metrics"]["unchanged"] == 2
    assert doc["notes"] == []
    assert ["b", "total", "13", "19", "+6", "+46.2%"] in [line.split() for line in lines]


def test_all_lists_the_calls_outputs_and_metrics_that_are_the_same(two_runs, cli):
    every = diff_json(cli, "--all")
    some = diff_json(cli)
    assert len(every["calls"]["rows"]) == 9  # 3 sets x 3 stages
    assert len(every["outputs"]["rows"]) == 6 and len(some["outputs"]["rows"]) == 1
    assert len(every["metrics"]["rows"]) == 3 and len(some["metrics"]["rows"]) == 1
    unchanged = [m for m in every["metrics"]["rows"] if m["set"] == "a"]
    assert unchanged == [
        {"set": "a", "metric": "total", "a": 7, "b": 7, "delta": 0.0, "percent": 0.0}
    ]


def test_the_same_run_twice_has_nothing_that_differs(two_runs, cli):
    doc = diff_json(cli, "exp_2", "exp_2")
    assert doc["params"]["changed"] == [] and doc["code"]["changed"] == []
    assert doc["calls"]["rows"] == [] and doc["calls"]["same"] == 9
    assert doc["outputs"]["differ"] == 0 and doc["metrics"]["rows"] == []
    text = cli("runs", "diff", "exp_2", "exp_2").stdout
    assert "parameter sets: the same" in text and "code: the same" in text
    assert "9 the same in both (--all lists them)" in text


def test_the_default_runs_are_the_last_two_of_the_newest_runs_experiment(two_runs, cli):
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0  # exp_3: all cached
    default = diff_json(cli)
    assert (default["a"]["number"], default["b"]["number"]) == (2, 3)
    # One reference: it against the newest run; the newest itself: the run before it.
    assert [diff_json(cli, "exp_1")[s]["number"] for s in "ab"] == [1, 3]
    assert [diff_json(cli, "exp_3")[s]["number"] for s in "ab"] == [2, 3]
    backwards = diff_json(cli, "exp_2", "exp_1")
    assert backwards["params"]["changed"][0]["fields"] == [{"key": "offset", "a": 7, "b": 1}]
    # exp_2 -> exp_3: everything reused, nothing else differs.
    assert default["code"]["changed"] == [] and default["outputs"]["differ"] == 0
    kinds = {(r["a"]["outcome"], r["b"]["outcome"]) for r in default["calls"]["rows"]}
    assert kinds == {("executed", "cached")}


def test_markdown_is_a_pull_request_comment(two_runs, cli):
    out = cli("runs", "diff", "--md")
    assert out.exit_code == 0, out.output
    md = out.stdout
    assert md.startswith("### `exp_1` -> `exp_2`\n")
    assert "**parameter sets: 1 changed**" in md and "- b  offset 1 -> 7" in md
    assert "| stage | set | exp_1 | exp_2 | why (exp_2) |" in md
    assert "| fit | a | executed | executed | stage code changed (helper _scale) |" in md
    assert "| load | a | executed | cached |" in md
    assert "| b | total | 13 | 19 | +6 | +46.2% |" in md
    assert "\x1b" not in md


def test_a_diff_needs_no_cache_entry(two_runs, cli):
    """Code, calls, outputs and metrics come from the registry: the same answer with the
    whole cache gone."""
    before = diff_json(cli, "--all")
    shutil.rmtree(two_runs.cache)
    assert diff_json(cli, "--all") == before


def _as_older_registry(project) -> None:
    """Make the registry as a curi before code and output checksums were kept wrote it."""
    conn = sqlite3.connect(registry_path(project.root))
    conn.execute("UPDATE runs SET code = NULL")
    conn.execute("UPDATE run_stages SET outputs = NULL")
    conn.commit()
    conn.close()


def test_an_older_run_is_read_from_its_entries_metadata_while_they_are_there(two_runs, cli):
    before = diff_json(cli)
    _as_older_registry(two_runs)
    assert RunRegistry(registry_path(two_runs.root), read_only=True).get_run("exp_1").code is None
    older = diff_json(cli)
    assert older["code"] == before["code"]
    assert older["outputs"] == before["outputs"] and older["notes"] == []


def test_an_older_run_whose_entries_are_gone_says_what_it_cannot_tell(two_runs, cli):
    _as_older_registry(two_runs)
    shutil.rmtree(two_runs.cache)
    out = cli("runs", "diff")
    assert out.exit_code == 0, out.output
    assert "code: unknown (see the note below)" in out.stdout
    assert (
        "note: code: not recorded for exp_1 and exp_2 (recorded by an older curi) and their "
        "cache entries are gone: cannot tell which code changed" in out.stdout
    )
    assert "outputs (by checksum): 6 unknown" in out.stdout
    assert "note: outputs: 6 calls of exp_1 kept no output checksums" in out.stdout
    # What the registry holds still answers: the field, the calls, the metrics.
    doc = diff_json(cli)
    assert doc["params"]["changed"][0]["fields"] == [{"key": "offset", "a": 1, "b": 7}]
    assert doc["code"]["changed"] == [] and len(doc["notes"]) == 3
    assert doc["metrics"]["rows"][0]["delta"] == 6.0
    assert {(r["stage"], r["set"]) for r in doc["calls"]["rows"]} >= {("load", "a")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope",), "no run 'nope' in the run registry"),
        (("exp_1", "exp_9"), "no run 'exp_9' in the run registry"),
        (("exp_",), "run reference 'exp_' is ambiguous: it matches 2 runs"),
    ],
)
def test_a_bad_reference_is_one_clear_message_and_exit_2(two_runs, cli, args, message):
    out = cli("runs", "diff", *args)
    assert out.exit_code == 2
    assert message in out.output and "Traceback" not in out.output
    assert "curi runs ls" in out.output


def test_one_run_or_none_has_nothing_to_compare(project, cli):
    out = cli("runs", "diff")
    assert out.exit_code == 2 and "no runs recorded yet" in out.output
    project.write("experiments/exp.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0
    out = cli("runs", "diff")
    assert out.exit_code == 2
    assert "only one run of 'exp' is recorded (exp_1_" in out.output
    assert "curi runs diff A B" in out.output and "Traceback" not in out.output
    both = cli("runs", "diff", "--json", "--md")
    assert both.exit_code == 2 and "--json and --md" in both.output


def test_sets_added_and_removed_and_a_field_only_one_set_has(two_runs, cli):
    two_runs.write(
        "params/p.yaml",
        PARAMS.replace("- name: c", "- name: d").replace(
            "n_rows: 3\n  offset: 1", "n_rows: 3\n  offset: 1\n  seed: 5"
        ),
    )
    assert cli("run", "exp", "p", "-q", "--no-report").exit_code == 0
    doc = diff_json(cli, "exp_1", "exp_3")
    assert doc["params"]["added"] == ["d"] and doc["params"]["removed"] == ["c"]
    fields = {c["set"]: c["fields"] for c in doc["params"]["changed"]}
    assert fields["a"] == [{"key": "seed", "b": 5}]  # no "a": the set did not have it
    text = cli("runs", "diff", "exp_1", "exp_3").stdout
    assert "  a  seed (absent) -> 5" in text.splitlines()
    assert "  added    d" in text and "  removed  c" in text
    calls = {(r["stage"], r["set"]): r for r in doc["calls"]["rows"]}
    assert calls[("load", "d")]["a"] is None and calls[("load", "c")]["b"] is None
    assert "only in exp_3" in text and "only in exp_1" in text
