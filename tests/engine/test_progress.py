"""How far a running stage is (`record.progress`): in the live display, in the `running` lines
of a log, from a stage in this process, in a worker process or on a Dask worker."""

from __future__ import annotations

import io
import re

import pytest

from curifactory_cli.capture import progress_to, report_progress
from curifactory_cli.cli import console as ui
from curifactory_cli.cli import live
from curifactory_cli.cli.eta import TimeLeft, left_text
from curifactory_cli.events import NodeFinished, NodeProgress, NodeStarted, RunStarted

EXPERIMENT = """
import time
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["n"], cachers=[JsonCacher])
def count(record):
    for i in range(1, 21):
        record.progress(i, 20)
        time.sleep(0.06)
    return 20

def run(param_sets, manager):
    for p in param_sets:
        count(cf.Record(manager, p))
"""


def setup(project) -> None:
    project.write("experiments/prog.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n")


def heartbeat_fractions(output: str) -> list[int]:
    """The `done` of every `running  count [a] ... for 0.2s: 5/20 (25%)` line (a progress bar
    on stderr may have left its line unfinished before it)."""
    return [
        int(m.group(1))
        for m in re.finditer(
            r" running  count \[a\][^\n]* for [^\n]*: (\d+)/20 \(\d+%\)$", output, re.M
        )
    ]


@pytest.mark.usefixtures("job_runner")
def test_log_lines_of_a_running_stage_say_how_far_it_is(project, cli, monkeypatch):
    setup(project)
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.3)
    result = cli("run", "prog", "p", "--no-progress")
    assert result.exit_code == 0, result.output
    done = heartbeat_fractions(result.output)
    assert done, result.output  # sent from the worker process too, with -j 2
    assert done == sorted(done) and done[0] >= 1 and done[-1] <= 20


TQDM_EXPERIMENT = """
import time
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.progress import tqdm

@cf.stage(inputs=None, outputs=["n"], cachers=[JsonCacher])
def count(record):
    total = 0
    for i in tqdm(range(20), desc="counting"):
        for _ in tqdm(range(3), leave=False):  # a nested bar does not report
            time.sleep(0.02)
        total += 1
    return total

def run(param_sets, manager):
    for p in param_sets:
        count(cf.Record(manager, p))
"""


@pytest.mark.usefixtures("job_runner")
def test_a_stage_using_curis_tqdm_reports_its_progress(project, cli, monkeypatch):
    pytest.importorskip("tqdm")
    from test_run_logs import last_run

    from curifactory_cli.registry.database import registry_path
    from curifactory_cli.registry.log import log_path, read_log

    project.write("experiments/prog.py", TQDM_EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n")
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.3)
    result = cli("run", "prog", "p", "--no-progress")
    assert result.exit_code == 0, result.output
    done = heartbeat_fractions(result.output)
    assert done and done == sorted(done), result.output
    assert not re.search(r"running  count [^\n]*: \d+/3 \(", result.output)  # not the inner bar
    (entry,) = read_log(log_path(registry_path(project.root), last_run(project).reference))
    # The bar as the terminal leaves it: its last state, not every redraw.
    assert entry["log"].count("counting: 100%") == 1, entry["log"]
    assert entry["log"].startswith("counting: 100%") and "20/20" in entry["log"]


def test_the_live_display_shows_a_running_calls_progress():
    out = io.StringIO()
    events = live.LiveProgress(ui.Output(), ui.Output(stderr=True))
    events.show(RunStarted("r", "prog", 1, (("count", 2),), workers=2))
    try:
        events.show(NodeStarted(0, "count", "a", "not computed yet", "worker 1"))
        events.show(NodeStarted(1, "count", "b", "not computed yet", "worker 2"))
        events.show(NodeProgress(0, "count", "a", 450, 1000))
        events.show(NodeProgress(1, "count", "b", 7))
        from rich.console import Console

        Console(file=out, width=200).print(events._render())
    finally:
        events.close()
    assert "running a (w1) 450/1000 (45%), b (w2) 7" in out.getvalue()


def test_progress_is_sent_at_most_four_times_a_second_and_its_last_value_at_the_end():
    sent = []
    with progress_to(lambda done, total: sent.append((done, total))):
        for i in range(1, 1001):
            report_progress(i, 2000)
    assert sent == [(1, 2000), (1000, 2000)]  # the first at once, the last when the call ends
    report_progress(5, 10)  # outside a stage call: nothing to send it to, nothing fails
    assert len(sent) == 2


SLOW = """
import time
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["n"], cachers=[JsonCacher])
def slow(record):
    time.sleep(0.8)
    return record.params.n

def run(param_sets, manager):
    for p in param_sets:
        slow(cf.Record(manager, p))
"""


def test_log_lines_say_the_time_left_from_past_runs_of_the_same_stages(project, cli, monkeypatch):
    project.write("experiments/slow.py", SLOW)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.3)
    first = cli("run", "slow", "p", "--no-progress")
    assert first.exit_code == 0, first.output
    # Before any call of `slow` has finished, nothing tells how long one takes.
    before = first.output[: first.output.index("executed  slow [a]")]
    assert "running  slow [a]" in before and "eta" not in before
    again = cli("run", "slow", "p", "--no-progress", "--overwrite")
    assert again.exit_code == 0, again.output
    before = again.output[: again.output.index("executed  slow [a]")]
    # Two calls of about 0.8 s each, from the first run: about a second left at 0.3 s.
    left = re.findall(r"^     eta  about (\d+)s left in the run$", before, re.M)
    assert left and all(1 <= int(s) <= 2 for s in left), again.output


def test_the_time_left_counts_waiting_calls_progress_and_cached_calls():
    eta = TimeLeft()
    assert eta.seconds() is None  # nothing known
    eta.add(RunStarted("r", "e", 4, (("fit", 4),), workers=2, expected=(("fit", 10.0),)))
    assert eta.seconds() == pytest.approx(20.0)  # 4 calls of 10 s on 2 workers
    eta.add(NodeStarted(0, "fit", "a", "", "worker 1"))
    started = eta.running[0][1]
    eta.add(NodeProgress(0, "fit", "a", 1, 2))
    # Half done after 4 s: 4 s more, and the 3 waiting calls will take 8 s each as it does
    # (this run's evidence before the recent runs' 10 s).
    assert eta.seconds(started + 4) == pytest.approx((4 + 3 * 8) / 2)
    eta.add(NodeFinished(0, "fit", "a", "executed", "", 6.0))
    eta.add(NodeFinished(1, "fit", "b", "cached", ""))
    # This run's own calls now: 6 s each, and half of the calls were cached.
    assert eta.seconds() == pytest.approx(2 * 6.0 * 0.5 / 2)
    assert left_text(0.4) == "less than a second left"
    assert left_text(42.4) == "about 42s left"
    assert left_text(131) == "about 2m10s left"
    assert left_text(7300) == "about 2h01m left"
