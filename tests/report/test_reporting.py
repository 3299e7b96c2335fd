"""Reportables, as Curifactory's: titled by record and stage, each one's HTML and files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curifactory_cli.reporting import (
    DFReporter,
    FigureReporter,
    HTMLReporter,
    ImageReporter,
    JsonReporter,
    LatexTableReporter,
    LinePlotReporter,
    Reportable,
)

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.reporting import JsonReporter, HTMLReporter, Reportable


class Shout(Reportable):
    # A custom reportable, written as for Curifactory.
    def __init__(self, text, name=None, group=None):
        self.text = text
        super().__init__(name=name, group=group)

    def html(self):
        return f"<b>{self.text.upper()}</b>"


@cf.stage(inputs=None, outputs=["fit"], cachers=[JsonCacher])
def fit(record):
    record.report(JsonReporter({"n": record.params.n}))
    record.report(HTMLReporter("<i>hi</i>", name="greeting", group="notes"))
    record.report(Shout("loud"))
    return {"n": record.params.n}


@cf.aggregate(inputs=["fit"], outputs=["table"], cachers=[JsonCacher])
def table(record, records, fit):
    record.report(JsonReporter({r.params.name: fit[r]["n"] for r in records}, name="all"))
    return {r.params.name: fit[r]["n"] for r in records}


def run(param_sets, manager):
    records = [cf.Record(manager, p) for p in param_sets]
    for r in records:
        fit(r)
    table(cf.Record(manager, None), records)
"""


def test_importing_reporting_imports_neither_matplotlib_nor_pandas():
    code = (
        "import sys, curifactory_cli.reporting; "
        "print(sorted(m for m in ('matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reportables_are_titled_by_record_and_stage_as_in_curifactory(project):
    project.write("experiments/rep.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    result = project.run("rep", "params/p.yaml")
    assert result.ok, result.error
    by_name = {r.name: r for r in result.records}
    titles = [rep.qualified_name for rep in by_name["a"].reportables]
    assert titles == ["a_fit_0", "a_fit_greeting", "a_fit_2"]
    aggregate = next(r for r in result.records if r.params is None)
    (summary,) = aggregate.reportables
    assert summary.qualified_name == "(Aggregate)_table_all"
    assert "&quot;a&quot;: 1" in "".join(summary.html())
    shout = by_name["b"].reportables[2]
    assert shout.html() == "<b>LOUD</b>" and shout.stage == "fit" and shout.record is by_name["b"]
    assert by_name["a"].reportables[1].group == "notes"


def test_each_reportable_html(tmp_path):
    assert HTMLReporter("<p>x</p>").html() == "<p>x</p>"
    assert "&lt;script&gt;" in "".join(JsonReporter({"k": "<script>"}).html())
    with pytest.raises(NotImplementedError):
        Reportable().html()


def test_a_big_dataframe_is_shown_by_its_head_and_tail_with_its_shape():
    pd = pytest.importorskip("pandas")
    small = pd.DataFrame({"x": [1.23456789, 2.0], "name": ["<a>", "b"]})
    text = "".join(DFReporter(small, float_prec=2).html())
    assert "2 rows &times; 2 columns" in text and "1.23" in text and "&lt;a&gt;" in text
    big = pd.DataFrame({"i": range(10_000)})
    html = "".join(DFReporter(big).html())
    assert "10000 rows" in html and "&hellip;" in html and html.count("<tr>") < 40
    assert "tabular" in "".join(LatexTableReporter(small).html())


def test_an_image_survives_its_original(tmp_path):
    image = tmp_path / "plot.png"
    image.write_bytes(b"\x89PNG fake")
    reportable = ImageReporter(str(image), name="plot")
    reportable.qualified_name = "a_fit_plot"
    image.unlink()
    out = tmp_path / "report"
    out.mkdir()
    reportable.path = str(out)
    reportable.render()
    assert (out / "a_fit_plot.png").read_bytes() == b"\x89PNG fake"
    assert reportable.html() == f"<img src='{out}/a_fit_plot.png'>"


def test_figures_and_line_plots_render_svg_by_default(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    figure = FigureReporter(fig, name="curve")
    lines = LinePlotReporter({"train": [3, 2, 1], "test": [4, 3, 2]}, name="loss")
    png = LinePlotReporter([1, 2], x=[0, 1], savefig_kwargs={"format": "png"})
    for i, reportable in enumerate((figure, lines, png)):
        reportable.qualified_name = f"r{i}"
        reportable.path = str(tmp_path)
        reportable.render()
    plt.close(fig)
    assert (tmp_path / "r0.svg").read_text().lstrip().startswith("<?xml")
    assert "<svg" in (tmp_path / "r1.svg").read_text()
    assert (tmp_path / "r2.png").read_bytes().startswith(b"\x89PNG")
    assert figure.html() == f"<img src='{tmp_path}/r0.svg'>"


RELOAD = """
# After Curifactory's examples/reload-reportables.py (BSD-3), imports changed.
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.reporting import ImageReporter, LinePlotReporter


@cf.stage(None, ["outputs"], [JsonCacher])
def do_things(record):
    record.report(LinePlotReporter([3, 2, 1]))
    fig, ax = plt.subplots()
    ax.plot([3, 2, 1])
    fig.savefig("testing.png")
    plt.close(fig)
    record.report(ImageReporter("testing.png"))
    return {"lucky_number": 13}


def get_params():
    return [cf.ExperimentParameters(name="test")]


def run(argsets, manager):
    for argset in argsets:
        r = cf.Record(manager, argset)
        r = do_things(r)
"""


def _shown(record) -> list[tuple[str, str]]:
    return [(r.qualified_name, r.html()) for r in record.reportables]


def test_reportables_come_back_with_a_cached_stage(project, job_runner):
    pytest.importorskip("matplotlib")
    project.write("experiments/reload.py", RELOAD)
    first = project.run("reload")
    assert first.ok, first.error
    (record,) = first.records
    titles = [r.qualified_name for r in record.reportables]
    assert titles == ["test_do_things_0", "test_do_things_1"]
    image = record.reportables[1]
    shown = _shown(record)
    png = (project.root / "testing.png").read_bytes()
    (project.root / "testing.png").unlink()  # the report must not need the original

    again = project.run("reload")
    assert again.ok and again.executed() == []
    (cached,) = again.records
    assert _shown(cached) == shown
    src = cached.reportables[1].html().split("src='")[1].rstrip("'>")
    assert Path(src).read_bytes() == png
    assert image.path.startswith(str(project.cache))  # read from the cache entry
    svg = cached.reportables[0].html().split("src='")[1].rstrip("'>")
    assert "<svg" in Path(svg).read_text()


def test_a_reportable_that_fails_to_render_fails_its_stage(project, cli):
    project.write(
        "experiments/bad.py",
        """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.reporting import Reportable


class Broken(Reportable):
    def render(self):
        raise ValueError("no plot today")

    def html(self):
        return ""


@cf.stage(None, ["x"], [JsonCacher])
def make(record):
    record.report(Broken())
    return 1


def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
""",
    )
    project.write("params/p.yaml", "- name: a\n")
    result = cli("run", "bad", "p", "--no-progress")
    assert result.exit_code == 1, result.output
    assert "ValueError: no plot today" in result.output
    assert not project.entries()
