"""Each run's log: what every stage call printed or logged, wherever it ran, kept next to the
registry, shown by `curi runs show --log` and in the report; a failed call's full traceback."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from curifactory_cli.capture import LOG_LIMIT, captured, overwritten
from curifactory_cli.registry.database import RunRegistry, registry_path
from curifactory_cli.registry.log import log_path, read_log
from curifactory_cli.registry.records import RunRecord

pytestmark = pytest.mark.usefixtures("job_runner")

EXPERIMENT = """
import logging
import os
import sys

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
log = logging.getLogger("talk")


@cf.stage(inputs=None, outputs=["data"], cachers=[JsonCacher])
def load(record):
    print(f"loading {record.params.n} rows in pid {os.getpid()}")
    log.info("loaded %s", record.params.name)
    return list(range(record.params.n))


def helper(data):
    raise ValueError(f"cannot train on {len(data)} rows")


@cf.stage(inputs=["data"], outputs=["total"], cachers=[JsonCacher])
def train(record, data):
    print("training", record.params.name, file=sys.stderr)
    if record.params.get("fail"):
        helper(data)
    return sum(data)


def run(param_sets, manager):
    for p in param_sets:
        train(load(cf.Record(manager, p)))
"""

PARAMS = "- name: a\n  n: 2\n- name: b\n  n: 3\n  fail: true\n"


def setup(project) -> None:
    project.write("experiments/talk.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)


def last_run(project) -> RunRecord:
    registry = RunRegistry(registry_path(project.root), read_only=True)
    return registry.get_run(registry.list_runs(limit=1)[0].reference)


def test_the_log_keeps_what_each_stage_call_printed_and_logged_and_the_full_traceback(project, cli):
    setup(project)
    result = cli("run", "talk", "p", "--keep-going", "--no-progress")
    assert result.exit_code == 1, result.output
    if project.workers == 1:  # still shown as it happens (worker processes print to fd 1)
        assert "loading 2 rows" in result.output
    run = last_run(project)
    entries = read_log(log_path(registry_path(project.root), run.reference))
    by_call = {(e["stage"], e["record"]): e for e in entries}
    assert set(by_call) == {("load", "a"), ("load", "b"), ("train", "a"), ("train", "b")}
    load_a = by_call["load", "a"]
    assert "INFO talk: loaded a" in load_a["log"]  # the root logger's handler, captured too
    pid = int(re.search(r"in pid (\d+)", load_a["log"]).group(1))
    assert (pid == os.getpid()) == (project.workers == 1)  # the output of the worker that ran it
    assert load_a["worker"] == f"pid {pid}"
    assert by_call["train", "a"]["log"] == "training a\n"
    failed = by_call["train", "b"]
    assert failed["outcome"] == "failed"
    assert failed["error"] == "ValueError: cannot train on 3 rows"
    # The whole traceback, through the user's helper, not one line.
    assert "in train\n    helper(data)" in failed["traceback"]
    assert failed["traceback"].rstrip().endswith("ValueError: cannot train on 3 rows")
    assert (
        'in helper\n    raise ValueError(f"cannot train on {len(data)} rows")'
        in (failed["traceback"])
    )

    shown = cli("runs", "show", run.reference, "--log")
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "== load [a]  executed" in text
    assert f"loading 2 rows in pid {pid}\nINFO talk: loaded a\n" in text
    assert "== train [b]  failed" in text
    assert "training b\nTraceback (most recent call last):" in text
    assert "    helper(data)" in text

    only = cli("runs", "show", run.reference, "--log", "--stage", "train")
    assert "== train [a]" in only.output and "== load" not in only.output
    unknown = cli("runs", "show", run.reference, "--log", "--stage", "nope")
    assert unknown.exit_code == 2
    assert "has no stage 'nope'" in unknown.output and "load, train" in unknown.output

    details = cli("runs", "show", run.reference)
    assert "traceback of train [b]" in details.output
    assert "    helper(data)" in details.output


def test_a_cached_stage_call_has_no_output_in_its_run(project, cli):
    setup(project)
    project.write("params/p.yaml", "- name: a\n  n: 2\n")
    assert cli("run", "talk", "p").exit_code == 0
    again = cli("run", "talk", "p", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["log"] is None  # nothing ran, nothing printed
    run = last_run(project)
    shown = cli("runs", "show", run.reference, "--log")
    assert shown.output.splitlines() == [
        "== load: 1 call cached (no output in this run)",
        "== train: 1 call cached (no output in this run)",
    ]


def test_the_report_shows_each_calls_log_collapsed_and_a_failure_open(project, cli):
    setup(project)
    assert cli("run", "talk", "p", "--keep-going").exit_code == 1
    run = last_run(project)
    page = project.root / "reports" / run.reference / "index.html"

    def check(html: str) -> None:
        logs = html[html.index('<section id="logs">') :]
        blocks = re.findall(r'<details class="stage-log"( open)?><summary><code>(\w+)</code>', logs)
        assert blocks == [("", "load"), (" open", "train")]  # the failed stage's block is open
        shown = r'<pre class="log">loading 2 rows in pid \d+\nINFO talk: loaded a\n'
        assert re.search(shown, logs)
        failed = re.search(r'<details class="call failed" open>(.*?)</details>', logs, re.S)
        assert failed, "the failed call is shown open"
        assert "<b>ValueError: cannot train on 3 rows</b>" in failed.group(1)
        assert "    helper(data)" in failed.group(1)

    check(page.read_text())
    page.unlink()
    rebuilt = cli("report", run.reference)  # from the registry and the log on disk
    assert rebuilt.exit_code == 0, rebuilt.output
    check(page.read_text())


def test_a_full_store_keeps_the_runs_log(project, cli):
    setup(project)
    project.write("params/p.yaml", "- name: a\n  n: 2\n")
    assert cli("run", "talk", "p", "--store-full").exit_code == 0
    run = last_run(project)
    stored = read_log(project.root / "data" / "runs" / run.reference / "output.jsonl")
    assert [(e["stage"], e["log"].splitlines()[0][:14]) for e in stored] == [
        ("load", "loading 2 rows"),
        ("train", "training a"),
    ]


def test_output_beyond_the_limit_keeps_its_beginning_and_end():
    with captured() as buffer:
        sys.stdout.write("first line\n")
        for i in range(40_000):
            sys.stdout.write(f"line {i:06d} of filler text\n")
        sys.stdout.write("last line\n")
    text = buffer.text()
    assert text.startswith("first line\n")
    assert text.endswith("line 039999 of filler text\nlast line\n")
    assert len(text) <= LOG_LIMIT + 100
    left_out = int(re.search(r"\[\.\.\. (\d+) characters left out \.\.\.\]", text).group(1))
    written = len("first line\n") + 40_000 * len("line 000000 of filler text\n") + 10
    assert len(text) - len(f"\n[... {left_out} characters left out ...]\n") + left_out == written


def test_a_progress_bar_redrawn_in_place_keeps_its_last_state():
    assert overwritten("epoch 1\n 10%\r 50%\r100%\ndone\n") == "epoch 1\n100%\ndone\n"
    # A nested bar: drawn a line below (newline, then back up with ESC [A), then erased.
    nested = "outer 1/2\r\n\rinner 50%\x1b[A\router 2/2\n\r         \x1b[A\router 2/2 ok\n"
    assert overwritten(nested) == "outer 2/2 ok\n"
    assert overwritten("a\rlonger\rab\n") == "abnger\n"  # as on a terminal
