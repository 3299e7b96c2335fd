"""Metrics in the HTML report: the table at the top of a run's page (only the parameters that
differ, means over seed-named sets or `curi report --group-by`), the metric columns of the
index, and the page `curi report --compare A B` writes (the runs diff and a chart per metric).
What the browser does with them (sorting, offline) is in test_report_browser.py."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest

EXPERIMENT = '''
"""A fit per seed."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["score"], cachers=[JsonCacher])
def fit(record):
    p = record.params
    score = p.lr * 10 + p.seed
    record.metrics({"score": score, "loss": 1.0 / score})
    return {"score": score}


def run(param_sets, manager):
    for p in param_sets:
        fit(cf.Record(manager, p))
'''

# Two learning rates x three seeds, named `lr=..._seed=N` by the grid, and one set of its own.
PARAMS = """
defaults: {lr: 0.1, seed: 0, width: 8}
sets:
  - name: single
    lr: 0.5
grid:
  vary:
    lr: [0.1, 0.2]
    seed: [1, 2, 3]
"""


def _table(html: str, ident: str) -> list[list[str]]:
    """The header and rows of the table with that id, as text."""
    match = re.search(rf'<table[^>]*id="{ident}"[^>]*>(.*?)</table>', html, re.S)
    assert match, f"no table #{ident}"
    rows = re.findall(r"<tr>(.*?)</tr>", match.group(1), re.S)
    return [
        [unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r)]
        for r in rows
    ]


@pytest.fixture
def seeded(project, cli):
    project.write("experiments/seeds.py", EXPERIMENT)
    project.write("params/seeds.yaml", PARAMS)
    result = cli("run", "seeds", "seeds", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_run_page_opens_with_its_metrics_and_only_the_parameters_that_differ(seeded):
    html = Path(seeded["report"]).read_text()
    # First on the page, before the run's details.
    assert html.index('id="metrics"') < html.index('id="run"')
    header, *rows = _table(html, "metrics-sets")
    assert header == ["set", "lr", "seed", "score", "loss"]  # width is 8 in every set
    by_set = {r[0]: r for r in rows}
    assert len(rows) == 7
    assert by_set["lr=0.2_seed=3"][1:4] == ["0.2", "3", "5"]
    # Each cell carries the number it sorts by.
    assert 'data-n="5.0"' in html or 'data-n="5"' in html


def test_sets_named_alike_but_for_a_seed_number_are_averaged(seeded):
    html = Path(seeded["report"]).read_text()
    header, *rows = _table(html, "metrics-groups")
    assert header == ["sets", "n", "lr", "score", "loss"]  # seed varies within each group
    by_label = {r[0]: r for r in rows}
    assert set(by_label) == {"single", "lr=0.1_seed=*", "lr=0.2_seed=*"}
    # Scores 3, 4, 5: mean 4, sample std 1, over 3 sets.
    assert by_label["lr=0.2_seed=*"][1:4] == ["3", "0.2", "4 ± 1 (3)"]
    assert by_label["lr=0.1_seed=*"][3] == "3 ± 1 (3)"
    assert by_label["single"][1] == "1" and by_label["single"][3] == "5 (1)"
    assert html.index('id="metrics-groups"') < html.index('id="metrics-sets"')


def test_report_group_by_gives_the_means_by_those_parameters(seeded, cli):
    result = cli("report", "--group-by", "seed", "--json")
    assert result.exit_code == 0, result.output
    html = Path(json.loads(result.stdout)["report"]).read_text()
    header, *rows = _table(html, "metrics-groups")
    assert header == ["seed", "score", "loss"]
    by_seed = {r[0]: r for r in rows}
    # seed 1: scores 2 and 3 (lr 0.1, 0.2); the single set keeps seed 0.
    assert by_seed["1"][1] == "2.5 ± 0.707107 (2)"
    assert by_seed["0"][1] == "5 (1)"


def test_report_group_by_an_unknown_parameter_names_it(seeded, cli):
    result = cli("report", "--group-by", "sed")
    assert result.exit_code == 2
    assert "'sed'" in result.output and "seed" in result.output


def test_a_run_without_metrics_has_no_metrics_section(project, cli):
    project.write("experiments/plain.py", EXPERIMENT.replace("record.metrics", "dict"))
    project.write("params/seeds.yaml", PARAMS)
    result = cli("run", "plain", "seeds", "--json")
    assert result.exit_code == 0, result.output
    html = Path(json.loads(result.stdout)["report"]).read_text()
    assert 'id="metrics"' not in html and 'href="#metrics"' not in html


def test_the_index_shows_each_runs_metric_range(seeded, project, cli):
    result = cli("run", "seeds", "seeds", "--set", "lr=1.0", "--json")
    assert result.exit_code == 0, result.output
    html = (project.root / "reports" / "index.html").read_text()
    header, *rows = _table(html.replace("<table", '<table id="runs"', 1), "runs")
    assert header[5:7] == ["score", "loss"]
    newest, first = rows
    # The first run's scores: 5 (single), 2 to 4 (lr 0.1), 3 to 5 (lr 0.2).
    assert first[5] == "2 – 5"
    assert 'title="7 sets: 2 to 5, mean 3.71429"' in html
    assert newest[5] == "10 – 13"  # lr 1.0 everywhere: 10 + seed (0 for the single set)


def test_the_index_shows_one_value_when_every_set_has_it(tmp_path):
    from curifactory_cli.registry.records import GitInfo, RunRecord
    from curifactory_cli.report import update_index
    from curifactory_cli.report.metrics_html import INDEX_METRICS, Summary

    run = RunRecord(
        reference="exp_1_2026-01-01-T000000",
        experiment="exp",
        number=1,
        status="complete",
        started="2026-01-01T00:00:00+00:00",
        git=GitInfo(),
    )
    names = [f"m{k}" for k in range(INDEX_METRICS + 2)]
    summaries = {n: Summary(0.25, 0.25, 0.25, 4) for n in names}
    html = update_index(tmp_path, [run], {run.reference: summaries}).read_text()
    assert html.count("<th class=metric>") == INDEX_METRICS  # the rest on the run's page
    assert "2 more metrics on the runs' pages" in unescape(html)
    assert '<td class=range title="4 sets: 0.25"><span class=nowrap>0.25</span></td>' in html


def test_compare_writes_the_diff_and_a_chart_per_metric(seeded, project, cli):
    result = cli("run", "seeds", "seeds", "--set", "lr=1.0", "--json")
    assert result.exit_code == 0, result.output
    result = cli("report", "--compare", "seeds_1", "seeds_2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["a"].startswith("seeds_1_") and out["b"].startswith("seeds_2_")
    page = Path(out["compare"])
    assert page == project.root / "reports" / "compare" / "seeds_1-vs-seeds_2.html"
    html = page.read_text()
    # The diff's content: the changed field, the calls that ran again and why, the deltas.
    header, *fields = _table(html, "set-changes")
    assert ["lr=0.1_seed=1", "lr", "0.1", "1.0"] in fields
    # lr=1.0 everywhere makes the two sets of a seed alike: the second is served by the first.
    assert "Stage calls: 4 executed in both; 3 executed in seeds_1, reused in seeds_2" in html
    assert "parameters changed (lr: 0.1 -&gt; 1.0)" in html
    header, *deltas = _table(html, "metric-deltas")
    assert header == ["set", "metric", "seeds_1", "seeds_2", "delta", "%"]
    assert ["lr=0.1_seed=1", "score", "2", "11", "+9", "+450.0%"] in deltas
    # A chart per metric, a row (and two points) per set.
    charts = re.findall(r'<figure class="chart" data-metric="([^"]+)">(.*?)</figure>', html, re.S)
    assert [name for name, _ in charts] == ["score", "loss"]
    svg = charts[0][1]
    assert svg.count('<circle class="a"') == 7 and svg.count('<circle class="b"') == 7
    # Links to both runs' reports; nothing outside the page.
    assert html.count('href="../seeds_') == 2
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_compare_with_an_unknown_run_names_it(seeded, cli):
    result = cli("report", "--compare", "seeds_1", "seeds_9")
    assert result.exit_code == 2
    assert "seeds_9" in result.output


def test_compare_takes_no_run_argument(seeded, cli):
    result = cli("report", "seeds_1", "--compare", "seeds_1", "seeds_1")
    assert result.exit_code == 2
    assert "--compare A B names the runs of the comparison page: RUN does not apply" in (
        " ".join(result.output.split())
    )


def test_the_index_range_leaves_out_nan_and_says_the_mean_is_nan(project, cli):
    nan_for_seed_2 = 'float("nan") if p.seed == 2 else 1.0 / score'
    project.write("experiments/seeds.py", EXPERIMENT.replace("1.0 / score", nan_for_seed_2))
    project.write("params/seeds.yaml", PARAMS)
    result = cli("run", "seeds", "seeds")
    assert result.exit_code == 0, result.output
    html = unescape((project.root / "reports" / "index.html").read_text())
    # loss: 1/5 (single), 1/2, 1/4 (lr 0.1), 1/3, 1/5 (lr 0.2); seed 2 NaN in both.
    assert 'title="7 sets: 0.2 to 0.5, mean nan"' in html


def test_a_chart_of_many_sets_shows_those_that_moved_most():
    from curifactory_cli.report.compare import CHART_SETS, _chart
    from curifactory_cli.run.runs_diff import Metric

    rows = [
        Metric(f"s{k}", "m", float(k), float(k) + (100 if k % 10 == 0 else 0)) for k in range(90)
    ]
    html = _chart("m", rows)
    assert f"the {CHART_SETS} of 90 sets that moved most" in html
    assert html.count('<g class="set">') == CHART_SETS
    labels = re.findall(r'<text x="4" y="[^"]+">([^<]+)</text>', html)
    assert {"s0", "s10", "s80"} <= set(labels)  # the nine that moved by 100 are all there
    assert labels == sorted(labels, key=lambda s: int(s[1:]))  # in the sets' order
