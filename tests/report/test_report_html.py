"""The HTML run report: written by every run, rebuilt by `curi report`, listed in the index."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest

from curifactory_cli.registry.records import (
    GitInfo,
    HostInfo,
    ParamSetRecord,
    RunRecord,
    StageRecord,
)
from curifactory_cli.report.layout import FULL_MAX, graph_svg, stage_summary

EXPERIMENT = '''
"""Fits, reported. A second line that only the run page shows."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.reporting import HTMLReporter, JsonReporter


@cf.stage(inputs=None, outputs=["fit"], cachers=[JsonCacher])
def fit(record):
    record.report(JsonReporter({"n": record.params.n}, name="params"))
    record.report(HTMLReporter("<i>note of " + record.params.name + "</i>", group="notes"))
    return {"n": record.params.n}


@cf.stage(inputs=["fit"], outputs=["score"])
def score(record, fit):
    # No cachers: its reportable lives in memory only.
    record.report(HTMLReporter(f"<b>score {fit['n'] * 10}</b>", name="score"))
    return fit["n"] * 10


@cf.aggregate(inputs=["fit"], outputs=["table"], cachers=[JsonCacher])
def table(record, records, fit):
    record.report(JsonReporter({r.params.name: fit[r]["n"] for r in records}, name="all"))
    return {r.params.name: fit[r]["n"] for r in records}


def run(param_sets, manager):
    records = [cf.Record(manager, p) for p in param_sets]
    for r in records:
        score(fit(r))
    table(cf.Record(manager, None), records)
'''

PARAMS = "- name: a\n  n: 1\n- name: b\n  n: 2\n"


def run_data(page: Path) -> dict:
    text = page.read_text()
    match = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', text, re.S)
    assert match, "the page embeds its run's data"
    return json.loads(match.group(1))


def titles(page: Path) -> list[str]:
    return re.findall(r'<div class="reportable" id="[^"]*"><h4>([^<]*)</h4>', page.read_text())


@pytest.fixture
def reported(project):
    project.write("experiments/rep.py", EXPERIMENT)
    project.write("params/p.yaml", PARAMS)
    return project


def test_a_run_writes_its_report_the_index_and_latest(reported, cli, job_runner):
    result = cli("run", "rep", "p", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    page = Path(out["report"])
    reports = reported.root / "reports"
    assert page == reports / out["run_id"] / "index.html"
    assert os.readlink(reports / "_latest") == out["run_id"]

    data = run_data(page)
    calls = [(data["stages"][c[0]], data["records"][c[1]]) for c in data["calls"]]
    assert sorted(calls) == sorted(
        [("fit", "a"), ("score", "a"), ("fit", "b"), ("score", "b"), ("table", "aggregate")]
    )
    assert {data["outcomes"][c[2]] for c in data["calls"]} == {"executed"}
    html = page.read_text()
    # Every stage call is a box of the graph, coloured by its outcome.
    assert len(re.findall(r'<g class="node executed[^"]*" data-i="\d+"', html)) == 5
    assert "Fits, reported. A second line" in html  # the experiment's docstring
    assert ">n</th>" in html and "params/p.yaml" in html  # parameter sets with their values
    # By record in run order; within one, grouped reportables first (as in Curifactory).
    assert titles(page) == [
        "a_fit_1",
        "a_fit_params",
        "a_score_score",
        "b_fit_1",
        "b_fit_params",
        "b_score_score",
        "(Aggregate)_table_all",
    ]
    assert "<b>score 20</b>" in html and "<i>note of b</i>" in html
    # Nothing is fetched from elsewhere: no scripts, styles or images from a URL.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)

    index = (reports / "index.html").read_text()
    assert f'href="{out["run_id"]}/index.html"' in index
    assert "Fits, reported." in index and "complete" in index
    assert "report: reports/" in cli("run", "rep", "p", "--no-progress").output


def test_a_cached_run_shows_the_same_reportables(reported, cli, job_runner):
    first = json.loads(cli("run", "rep", "p", "--json").stdout)
    again = json.loads(cli("run", "rep", "p", "--json").stdout)
    assert again["counts"]["cached"] == 3 and again["counts"]["executed"] == 2
    before, after = Path(first["report"]), Path(again["report"])
    assert before != after
    assert titles(after) == titles(before)
    strip = re.compile(r"reportables/\d+")
    bodies = re.findall(r'<div class="reportable".*?</div>', before.read_text(), re.S)
    again_bodies = re.findall(r'<div class="reportable".*?</div>', after.read_text(), re.S)
    assert [strip.sub("", b) for b in again_bodies] == [strip.sub("", b) for b in bodies]


def test_no_report_writes_nothing(reported, cli):
    result = cli("run", "rep", "p", "--no-report", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] is None
    assert not (reported.root / "reports").exists()


def test_dry_runs_write_no_report(reported, cli):
    assert cli("run", "rep", "p", "--dry").exit_code == 0
    assert not (reported.root / "reports").exists()


def test_curi_report_rebuilds_a_deleted_report_from_the_registry_and_the_cache(reported, cli):
    import shutil

    run = json.loads(cli("run", "rep", "p", "--json").stdout)
    page = Path(run["report"])
    shown = titles(page)
    shutil.rmtree(reported.root / "reports")

    rebuilt = cli("report", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    out = json.loads(rebuilt.stdout)
    assert out["run"] == run["run_id"] and Path(out["report"]) == page
    # Reportables kept in cache entries come back; the in-memory stage's do not.
    assert titles(page) == [t for t in shown if "_score_" not in t]
    assert (reported.root / "reports" / "index.html").exists()
    by_prefix = cli("report", run["run_id"][:5])
    assert by_prefix.exit_code == 0 and "report: reports/" in by_prefix.output


def test_curi_report_without_runs_or_with_an_unknown_run(reported, cli):
    result = cli("report")
    assert result.exit_code == 2, result.output
    assert "no runs recorded yet" in result.output
    cli("run", "rep", "p", "-q")
    unknown = cli("report", "nosuchrun_9")
    assert unknown.exit_code == 2 and "nosuchrun_9" in unknown.output


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failure(reported, cli):
    (reported.root / "reports").write_text("a file where the folder goes")
    result = cli("run", "rep", "p", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "warning: the run's report was not written" in result.output
    assert reported.entries()  # the results stand


def test_a_failed_run_reports_its_error_and_failed_stage(project, cli):
    project.write(
        "experiments/boom.py",
        """
        import curifactory_cli as cf


        @cf.stage(inputs=None, outputs=["x"])
        def explode(record):
            raise ValueError("bad value " + record.params.name)


        def run(param_sets, manager):
            for p in param_sets:
                explode(cf.Record(manager, p))
        """,
    )
    project.write("params/p.yaml", "- name: a\n")
    result = cli("run", "boom", "p", "--json")
    assert result.exit_code == 1
    html = Path(json.loads(result.stdout)["report"]).read_text()
    assert 'class="status error"' in html and "bad value a" in html
    assert '<g class="node failed"' in html


def test_serving_on_a_port_in_use_is_a_clear_error(reported, cli):
    cli("run", "rep", "p", "-q")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("report", "--serve", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"cannot serve on 127.0.0.1:{port}" in result.output and "--port" in result.output


def _calls(records: int, stages: int, outcome: str = "cached") -> list[StageRecord]:
    calls = []
    for r in range(records):
        for s in range(stages):
            inputs = [len(calls) - 1] if s else []
            calls.append(StageRecord(stage=f"s{s}", record=f"r{r}", outcome=outcome, inputs=inputs))
    calls.append(
        StageRecord(
            stage="agg",
            record="aggregate",
            outcome="executed",
            inputs=[i for i, c in enumerate(calls) if c.stage == f"s{stages - 1}"],
            aggregate=True,
        )
    )
    return calls


def _run(number: int = 1, **fields) -> RunRecord:
    return RunRecord(
        reference=f"exp_{number}_2026-01-01-T000000",
        experiment="exp",
        number=number,
        status="complete",
        started="2026-01-01T00:00:00+00:00",
        **fields,
    )


def test_the_graph_draws_every_call_when_readable_and_by_stage_when_not():
    small = _calls(4, 3)
    svg, full = graph_svg(small, stage_summary(small))
    assert full and svg.count('class="node ') == len(small)
    assert svg.count('class="edge"') == sum(len(c.inputs) for c in small)
    assert 'class="node executed aggregate"' in svg

    big = _calls(FULL_MAX, 5)
    svg, full = graph_svg(big, stage_summary(big))
    assert not full
    assert svg.count('class="node stage') == 6  # s0..s4 and agg
    assert f"s0 \u00d7{FULL_MAX}" in svg and 'data-stage="agg"' in svg
    assert svg.count('class="edge"') == 5  # s0->s1->...->s4->agg


def test_a_report_of_a_thousand_records_stays_small(tmp_path):
    from curifactory_cli.report import write_run_report

    calls = _calls(1000, 5)
    for i, c in enumerate(calls):
        c.reason, c.seconds, c.key = "cached", 0.001, f"{i:064x}"
        c.entry = f"exp/{i:016x}/{c.stage}-{i:016x}"
    run = _run(
        param_sets=[
            ParamSetRecord(name=f"r{i}", hash=f"{i:032x}", source="params/p.yaml", values={"i": i})
            for i in range(1000)
        ],
        stages=calls,
    )
    page = write_run_report(tmp_path, run, [], [])
    assert page.stat().st_size < 5 * 2**20
    assert len(run_data(page)["calls"]) == len(calls)


def test_the_index_shows_a_run_whose_process_died(tmp_path):
    import socket
    import subprocess
    import sys

    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.report import update_index
    from curifactory_cli.store.index import latest_runs

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    registry = RunRegistry(registry_path(tmp_path))
    registry.start_run(
        experiment="exp",
        command=["curi", "run", "exp"],
        param_files=[],
        param_sets=[],
        git=GitInfo(),
        host=HostInfo(host=socket.gethostname(), pid=int(gone.stdout)),
        versions={},
        notes=None,
        cache_dir="data/cache",
        dry=False,
    )
    (run,) = registry.list_runs(limit=None, brief=True)
    assert run.status == "died"
    page = update_index(tmp_path, registry.list_runs(limit=None, brief=True)).read_text()
    assert 'class="status died"' in page
    assert latest_runs(registry) == []  # it recorded no stage calls: nothing current


def test_nested_parameters_are_flattened_to_dotted_columns(tmp_path):
    from curifactory_cli.report import write_run_report

    values = {"model": {"kind": "svm", "C": 1.0}, "split": {"test": 0.2, "folds": []}, "n": 3}
    run = _run(
        param_sets=[
            ParamSetRecord(name="a", hash="0" * 32, source="params/p.yaml", values=values),
            ParamSetRecord(
                name="b",
                hash="1" * 32,
                source="params/p.yaml",
                values={**values, "model": {"kind": "svm", "C": 10.0}},
            ),
        ],
        stages=[],
    )
    html = write_run_report(tmp_path, run, [], []).read_text()
    table = re.search(r'<table class="grid params">.*?</table>', html, re.S).group(0)
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert heads == ["name", "hash", "model.kind", "model.C", "split.test", "split.folds", "n"]
    # Only model.C tells the sets apart: the other parameters are greyed.
    assert re.findall(r"<th>([^<]*)</th>", table) == ["name", "hash", "model.C"]
    assert "<td>10.0</td>" in table and "<td>[]</td>" in table
    assert "&quot;kind&quot;" not in table  # no mapping shown as one JSON cell


def test_graph_labels_wrap_and_names_alike_stay_apart():
    from curifactory_cli.report.layout import _short, wrap

    a = "rf_model.n_estimators=100_rf_model.max_depth=3"
    b = "rf_model.n_estimators=100_rf_model.max_depth=8"
    assert "".join(wrap(a, 18)) == a and all(len(line) <= 18 for line in wrap(a, 18))
    assert wrap(a, 18) != wrap(b, 18)
    # A grid name breaks where a value ends when that takes no more lines.
    assert wrap("sweep_slope=0.5_n_rows=500", 18) == ["sweep_slope=0.5_", "n_rows=500"]
    assert _short(a) != _short(b) and len(_short(a)) == 21
    too_long = "_".join(f"key{k}=value{k}" for k in range(12))
    lines = wrap(too_long, 18)
    assert len(lines) == 4 and lines[-1].endswith("key11=value11")  # cut in the middle
    calls = [StageRecord(stage="fit", record=name, outcome="executed") for name in (a, b)]
    svg, _ = graph_svg(calls, stage_summary(calls))
    labels = re.findall(r'<g class="band">.*?<text[^>]*>(.*?)</text>', svg)
    assert len(labels) == 2 and labels[0] != labels[1]
    assert re.sub("<[^>]+>", "", labels[1]) == b


def test_the_index_shows_only_the_outcomes_that_happened(tmp_path):
    from curifactory_cli.report import update_index

    run = _run(counts={"executed": 3, "cached": 16, "failed": 0, "skipped": 0})
    empty = _run(2, counts={})
    index = update_index(tmp_path, [empty, run]).read_text()
    assert '<span class="counts"><span class="pill executed">3 executed</span> ' in index
    assert "16 cached" in index and "0 failed" not in index and "0 skipped" not in index
    assert '<span class="muted">none</span>' in index  # a run without stage calls


@pytest.mark.parametrize("forge", ["index only", "index and its checksum"])
def test_curi_report_shows_no_reportable_from_a_tampered_index(reported, cli, monkeypatch, forge):
    """A rebuilt report reads reportables from cache entries: an index changed after the run
    does not match its checksum, and one whose checksum was changed with it is not signed."""
    import hashlib

    monkeypatch.setenv("CURI_CACHE_KEY", "s3cret")
    run = json.loads(cli("run", "rep", "p", "--json").stdout)
    page = Path(run["report"])
    assert "note of a" in page.read_text()
    forged = 0
    for meta_path in reported.cache.rglob("meta.json"):
        meta = json.loads(meta_path.read_text())
        if meta["stage"] != "fit" or meta["record"] != "a":
            continue
        index_path = meta_path.parent / "_reportables" / "index.json"
        data = index_path.read_text().replace("note of a", "FORGED").encode()
        index_path.write_bytes(data)
        if forge == "index and its checksum":
            for info in meta["extra_files"]:
                if info["path"] == "_reportables/index.json":
                    info.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
            meta_path.write_text(json.dumps(meta))
        forged += 1
    assert forged == 1

    rebuilt = cli("report")
    assert rebuilt.exit_code == 0, rebuilt.output
    problem = "does not match its checksum" if forge == "index only" else "not signed"
    said = " ".join(rebuilt.output.split())
    assert "fit [a]: reportables not read" in said and problem in said
    text = page.read_text()
    assert "FORGED" not in text and "note of a" not in text
    assert "note of b" in text  # the other entry's reportables are shown


FILE_REPORTER = """
from curifactory_cli.reporting import Reportable


class FileReporter(Reportable):
    def render(self):
        with open(f"{self.path}/rows.txt", "w") as out:
            out.write("7 rows")

    def html(self):
        return f'<a href="{self.path}/rows.txt">rows</a>'


@cf.stage(inputs=["table"], outputs=["rows"], cachers=[JsonCacher])
def rows(record, table):
    record.report(FileReporter(name="rows"))
    return 7


"""


def test_the_run_and_curi_report_build_the_same_page(reported, cli):
    """A report is written by the run (from its records) and rebuilt by `curi report` (from
    the registry and the cache): both give each cached reportable the same title and body."""
    import shutil

    source = EXPERIMENT.replace("def run(", FILE_REPORTER + "def run(").replace(
        "    table(cf.Record(manager, None), records)",
        "    rows(table(cf.Record(manager, None), records))",
    )
    reported.write("experiments/rep.py", source)
    run = json.loads(cli("run", "rep", "p", "--json").stdout)
    page = Path(run["report"])
    written = page.read_text()
    written_data = run_data(page)
    assert "rows.txt" in written
    shutil.rmtree(reported.root / "reports")
    assert cli("report").exit_code == 0
    rebuilt = page.read_text()

    def reportables(text: str) -> dict[str, str]:
        found = re.findall(
            r'<div class="reportable" id="[^"]*"><h4>([^<]*)</h4>(.*?)</div>', text, re.S
        )
        # Files are numbered by position: the in-memory stage's reportables are not rebuilt.
        return {t: re.sub(r"reportables/\d+/", "", b) for t, b in found if "_score_" not in t}

    assert reportables(rebuilt) == reportables(written)
    assert len(reportables(written)) == 6  # two of fit for each set, the aggregate's, a file
    (link,) = re.findall(r'<a href="([^"]+/rows\.txt)">', rebuilt)
    assert (page.parent / link).read_text() == "7 rows"  # its file is in the rebuilt report
    assert run_data(page) == written_data  # the same calls, outcomes and timings


@pytest.fixture(params=["memory", "s3"])
def url_cache(request, reported):
    """A cache at a URL: fsspec's in-memory filesystem, or a bucket on moto's S3."""
    if request.param == "memory":
        pytest.importorskip("fsspec")
        return f"memory://reports-{reported.root.name}/cache"
    return request.getfixturevalue("bucket")


def test_a_report_rebuilt_for_a_run_cached_at_a_url_keeps_its_reportables(url_cache, cli):
    """`curi report` reads the entries of a run cached at a URL through its store, as the
    run did: the rebuilt page has every reportable kept in the cache (`score` has no
    cachers: its reportable lived in the run's memory only)."""
    result = cli("run", "rep", "p", "--cache", url_cache, "--json")
    assert result.exit_code == 0, result.output
    page = Path(json.loads(result.stdout)["report"])
    written = titles(page)
    assert len(written) == 7
    page.unlink()
    rebuilt = cli("report", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert json.loads(rebuilt.stdout)["warnings"] == []
    assert titles(page) == [t for t in written if not t.endswith("_score_score")]
