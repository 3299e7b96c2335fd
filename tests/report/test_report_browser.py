"""The demo's HTML report in a real browser: headless Chromium (Debian's `chromium`), driven
by playwright. Without a Chromium these tests skip, unless CURI_REQUIRE_BROWSER=1 (as in CI,
whose script installs it) makes a missing browser a failure.

A screenshot of the report is kept in test-artifacts/ (CURI_TEST_ARTIFACTS overrides it).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CURI_TEST_ARTIFACTS", REPO / "test-artifacts"))


def _chromium() -> str | None:
    given = os.environ.get("CURI_CHROMIUM")
    if given:
        return given
    return next((p for name in ("chromium", "chromium-browser") if (p := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("CURI_REQUIRE_BROWSER") == "1":
            pytest.fail("CURI_REQUIRE_BROWSER=1 but no chromium or playwright is installed")
        pytest.skip("needs Debian's chromium and playwright (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


class Page:
    """A page opened with the network off, recording console errors and failed requests."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(offline=True, viewport={"width": 1300, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        self.page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith(("file:", "data:", "about:"))
                else self.problems.append(f"fetched: {r.url}")
            ),
        )
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def demo(project, cli):
    """The repository's demo experiment, run cold and then again from the cache."""
    for rel in ("experiments/demo.py", "params/demo.yaml"):
        project.write(rel, (REPO / rel).read_text())
    runs = []
    for _ in range(2):
        result = cli("run", "demo", "params/demo.yaml", "--json")
        assert result.exit_code == 0, result.output
        runs.append(json.loads(result.stdout))
    assert runs[1]["counts"]["cached"] == 19
    return runs


def test_the_demo_report_in_chromium(browser, demo):
    cold, cached = demo
    shown = []
    for run in (cold, cached):
        view = Page(browser, Path(run["report"]).as_uri())
        page = view.page
        try:
            # Every stage call is a box carrying its outcome, and a row of the calls table.
            nodes = page.locator("svg.graph g.node")
            assert nodes.count() == 19
            outcome = "executed" if run is cold else "cached"
            assert page.locator(f"svg.graph g.node.{outcome}").count() == 19
            assert page.locator("#calls-body tr").count() == 19
            # Clicking a box shows that call's details.
            page.locator("svg.graph g.node[data-i='1']").click()
            assert "fit_line [clean]" in page.locator("#details").inner_text()
            page.fill("#filter", "summarize noisy")
            assert page.locator("#calls-body tr:visible").count() == 1
            # Every reportable is there and every image was drawn (from files beside the page).
            titles = page.locator(".reportable h4").all_inner_texts()
            assert len(titles) == 13 and "clean_fit_line_fit" in titles
            assert "(Aggregate)_compare_comparison" in titles
            images = page.locator(".reportable img")
            assert images.count() == 6
            widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
            assert all(w > 0 for w in widths), widths
            assert page.locator(".reportable table.df").count() == 1
            assert view.problems == []
            if run is cold:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "demo-report.png"), full_page=True)
            shown.append(titles)
        finally:
            view.close()
    assert shown[0] == shown[1]  # a cached re-run shows the same reportables


def _column(page, table: str, index: int) -> list[str]:
    return page.locator(f"{table} tbody tr").evaluate_all(
        f"rs => rs.map(r => r.cells[{index}].textContent)"
    )


def test_the_metrics_table_sorts_by_the_column_clicked(browser, demo):
    view = Page(browser, Path(demo[0]["report"]).as_uri())
    page = view.page
    try:
        heads = page.locator("#metrics-sets thead th").all_inner_texts()
        names = [h.rstrip(" \u2195\u25b2\u25bc") for h in heads]
        # The parameters that differ between the demo's sets, then its metrics; the seed
        # (the same in every set) is left out.
        assert names == ["set", "n_rows", "noise", "slope", "slope_error", "residual_std"]
        error = names.index("slope_error")
        before = _column(page, "#metrics-sets", 0)
        assert before[0] == "clean"  # the run's order until a column is clicked
        unsorted = [float(v) for v in _column(page, "#metrics-sets", error)]
        page.locator("#metrics-sets thead th").nth(error).click()
        values = [float(v) for v in _column(page, "#metrics-sets", error)]
        assert values == sorted(values) and values != unsorted
        assert _column(page, "#metrics-sets", 0)[0] == "clean"  # the smallest error
        page.locator("#metrics-sets thead th").nth(error).click()
        values = [float(v) for v in _column(page, "#metrics-sets", error)]
        assert values == sorted(values, reverse=True)
        # Whole rows move: each set keeps its value.
        pairs = dict(zip(before, unsorted, strict=True))
        assert [pairs[name] for name in _column(page, "#metrics-sets", 0)] == values
        arrow = page.locator("#metrics-sets thead th").nth(error)
        assert arrow.get_attribute("aria-sort") == "descending"
        # By keyboard too, and text columns as text.
        page.locator("#metrics-sets thead th").nth(0).focus()
        page.keyboard.press("Enter")
        assert _column(page, "#metrics-sets", 0) == sorted(before, key=str.lower)
        assert page.locator("#metrics-sets thead th[aria-sort]").count() == 1
        assert view.problems == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#metrics").screenshot(path=str(ARTIFACTS / "demo-metrics.png"))
    finally:
        view.close()


def test_the_comparison_page_renders_offline(browser, demo, project, cli):
    project.write("params/demo.yaml", (REPO / "params/demo.yaml").read_text().replace("5.0", "4.0"))
    result = cli("run", "demo", "params/demo.yaml", "--json")
    assert result.exit_code == 0, result.output
    result = cli("report", "--compare", "demo_1", "demo_3", "--json")
    assert result.exit_code == 0, result.output
    view = Page(browser, Path(json.loads(result.stdout)["compare"]).as_uri())
    page = view.page
    try:
        assert page.locator("h1").inner_text() == "demo_1 \u2192 demo_3"
        headings = page.locator("h2").all_inner_texts()
        assert headings[:4] == [
            "Runs",
            "Parameter sets: 1 changed",
            "Code: the same",
            "Stage calls: 4 executed in both; 15 executed in demo_1, reused in demo_3",
        ]
        assert page.locator("#set-changes td").all_inner_texts() == ["noisy", "noise", "5.0", "4.0"]
        # A chart per metric, each point drawn inside its chart.
        charts = page.locator("figure.chart")
        assert charts.count() == 2
        boxes = page.locator("figure.chart svg").evaluate_all(
            """svgs => svgs.map(s => { const r = s.getBoundingClientRect();
                 return [...s.querySelectorAll('circle')].map(c => {
                   const b = c.getBoundingClientRect();
                   return b.width > 0 && b.left >= r.left && b.right <= r.right
                          && b.top >= r.top && b.bottom <= r.bottom; }); })"""
        )
        assert [len(b) for b in boxes] == [12, 12] and all(all(b) for b in boxes)
        # The deltas sort; both runs' reports are linked and open.
        deltas = page.locator("#metric-deltas thead th")
        deltas.nth(4).click()
        values = [float(v) for v in _column(page, "#metric-deltas", 4)]
        assert values == sorted(values)
        links = page.locator("#runs a").evaluate_all("els => els.map(e => e.href)")
        assert len(links) == 2
        for link in links:
            target = view.context.new_page()
            response = target.goto(link)
            assert response is not None and response.ok, link
            assert target.locator("#metrics-sets").count() == 1
            target.close()
        assert view.problems == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")  # sticky headers are drawn where scrolled
        page.screenshot(path=str(ARTIFACTS / "demo-compare.png"), full_page=True)
    finally:
        view.close()


def test_the_index_lists_both_runs_and_its_links_resolve(browser, demo, project):
    view = Page(browser, (project.root / "reports" / "index.html").as_uri())
    try:
        links = view.page.locator("a").evaluate_all("els => els.map(e => e.href)")
        assert len(links) == 2
        heads = view.page.locator("th.metric").all_inner_texts()
        assert sorted(heads) == ["residual_std", "slope_error"]
        ranges = view.page.locator("td.range").all_inner_texts()
        assert len(ranges) == 4 and ranges[0] == ranges[2]  # the cached run: the same values
        assert view.page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
        for link in links:
            target = view.context.new_page()
            response = target.goto(link)
            assert response is not None and response.ok, link
            assert target.locator("svg.graph").count() == 1
            target.close()
        assert view.problems == []
    finally:
        view.close()


LAYOUT_EXPERIMENT = '''
"""Tables of every width, nested parameters and a grid."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.reporting import DFReporter, JsonReporter


@cf.stage(inputs=None, outputs=["scores"], cachers=[JsonCacher])
def train(record):
    import pandas as pd

    rows = range(4)
    # Wider than half the page, narrower than all of it.
    folds = {f"accuracy_fold_{k}": [0.5 + r / 10 + k / 100 for r in rows] for k in range(6)}
    folds["final"] = ["last"] * 4
    record.report(DFReporter(pd.DataFrame(folds), name="folds"))
    # Wider than the page.
    every = {f"metric_number_{k:02d}": [float(r + k) for r in rows] for k in range(24)}
    record.report(DFReporter(pd.DataFrame(every), name="every"))
    record.report(JsonReporter({"C": record.params.model.C}, name="c"))
    record.report(JsonReporter({"kind": record.params.model.kind}, name="kind"))
    return {"C": record.params.model.C}


def run(param_sets, manager):
    for p in param_sets:
        train(cf.Record(manager, p))
'''

LAYOUT_PARAMS = """
defaults:
  model: {kind: svm, C: 1.0}
  rf_model: {n_estimators: 10, max_depth: 3}
sets:
  - name: stronger
    model.C: 10.0
grid:
  vary:
    rf_model.n_estimators: [10, 100]
    rf_model.max_depth: [3, 8]
"""


@pytest.fixture
def layout_run(project, cli):
    project.write("experiments/layout.py", LAYOUT_EXPERIMENT)
    project.write("params/layout.yaml", LAYOUT_PARAMS)
    long_note = "a note long enough to squeeze the other columns of the index " * 3
    result = cli("run", "layout", "layout", "--json", "--notes", long_note)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _boxes(page, selector: str) -> list[dict]:
    return page.locator(selector).evaluate_all(
        """els => els.map(e => { const r = e.getBoundingClientRect();
             return {left: r.left, right: r.right, top: r.top, width: r.width,
                     scrollWidth: e.scrollWidth, clientWidth: e.clientWidth}; })"""
    )


def test_report_tables_take_the_width_they_need(browser, layout_run):
    view = Page(browser, Path(layout_run["report"]).as_uri())
    page = view.page
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "layout-report.png"), full_page=True)
        row = _boxes(page, ".record-reportables")[0]
        for name, wide_as_page in (("folds", False), ("every", True)):
            cells = page.locator(f".reportable[id$='_train_{name}']")
            assert cells.count() == 5
            cell = _boxes(page, f".reportable[id$='_train_{name}']")[0]
            table = _boxes(page, f".reportable[id$='_train_{name}'] table.df")[0]
            if wide_as_page:
                # It cannot fit: it gets the whole row, and scrolls there.
                assert cell["width"] >= row["clientWidth"] - 1, (cell, row)
            else:
                # Wider than half the row: shown whole, its last column not behind a scrollbar.
                assert table["width"] > row["clientWidth"] / 2, (table, row)
                assert cell["scrollWidth"] <= cell["clientWidth"], (cell, table)
                assert table["right"] <= cell["right"] + 0.5
        # Nothing widens the page itself (the long note wraps).
        assert page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
        # Small reportables still share a row.
        small = _boxes(page, ".reportable[id^='r-stronger_train_']:not(:has(table))")
        assert len(small) == 2 and small[0]["top"] == small[1]["top"], small
        assert view.problems == []
    finally:
        view.close()


def test_graph_labels_of_sets_named_alike_are_told_apart(browser, layout_run):
    view = Page(browser, Path(layout_run["report"]).as_uri())
    page = view.page
    try:
        bands = page.locator("svg.graph g.band").evaluate_all(
            """els => els.map(g => { const r = g.querySelector('rect').getBBox();
                 const t = g.querySelector('text'); const b = t.getBBox();
                 return {label: t.textContent, full: g.querySelector('title').textContent,
                         inside: b.x >= r.x && b.x + b.width <= r.x + r.width
                                 && b.y >= r.y && b.y + b.height <= r.y + r.height}; })"""
        )
        grid = [b for b in bands if b["full"].startswith("rf_model.n_estimators=")]
        assert len(grid) == 4
        labels = [b["label"] for b in grid]
        assert len(set(labels)) == 4, labels
        assert all(b["inside"] for b in bands), bands  # no label runs out of its band
        # Every box's label stays inside its box.
        nodes = page.locator("svg.graph g.node").evaluate_all(
            """els => els.map(g => { const r = g.querySelector('rect').getBBox();
                 const b = g.querySelector('text').getBBox();
                 return b.x >= r.x && b.x + b.width <= r.x + r.width; })"""
        )
        assert nodes and all(nodes)
    finally:
        view.close()


def test_nested_parameters_are_columns_of_their_own(browser, layout_run):
    view = Page(browser, Path(layout_run["report"]).as_uri())
    page = view.page
    try:
        table = page.locator("table.params")
        heads = table.locator("tr").first.locator("th").all_inner_texts()
        assert "model.kind" in heads and "model.C" in heads, heads
        assert "rf_model.max_depth" in heads and "model" not in heads, heads
        rows = {
            r[0]: dict(zip(heads, r, strict=True))
            for r in table.locator("tr").evaluate_all(
                "rs => rs.slice(1).map(r => [...r.cells].map(c => c.innerText))"
            )
        }
        assert rows["stronger"]["model.C"] == "10.0" and rows["stronger"]["model.kind"] == "svm"
        assert rows["rf_model.n_estimators=100_rf_model.max_depth=8"]["rf_model.max_depth"] == "8"
    finally:
        view.close()


def _pills_of_first_run(page) -> list[dict]:
    return page.locator("table.grid tr:nth-child(2) .pill").evaluate_all(
        """els => els.map(e => ({text: e.textContent, top: e.offsetTop,
             color: getComputedStyle(e).backgroundColor}))"""
    )


def test_the_index_shows_counts_on_one_row_without_a_red_zero(browser, layout_run, project):
    view = Page(browser, (project.root / "reports" / "index.html").as_uri())
    try:
        pills = _pills_of_first_run(view.page)
        texts = [p["text"] for p in pills]
        assert texts and all(not t.startswith("0 ") for t in texts), texts
        assert len({p["top"] for p in pills}) == 1, pills
    finally:
        view.close()


def test_the_index_keeps_four_counts_on_one_row_beside_long_columns(browser, tmp_path):
    from curifactory_cli.registry.records import GitInfo, RunRecord
    from curifactory_cli.report import update_index

    run = RunRecord(
        reference="exp_3_2026-01-01-T000000",
        experiment="exp",
        number=3,
        status="error",
        started="2026-01-01T00:00:00+00:00",
        duration_s=12.5,
        counts={"executed": 12, "cached": 140, "failed": 1, "skipped": 33},
        git=GitInfo(commit="0123456789abcdef", dirty=True),
        notes="why this run was made, in a sentence long enough to fill its column " * 2,
        command=["curi", "run", "exp", "params/a.yaml", "params/b.yaml", "--set", "x=1"] * 2,
        error="ValueError: a message long enough to fill the status column " * 2,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    view = Page(browser, update_index(tmp_path, [run]).as_uri())
    try:
        view.page.screenshot(path=str(ARTIFACTS / "index-squeezed.png"), full_page=True)
        pills = _pills_of_first_run(view.page)
        assert [p["text"] for p in pills] == ["12 executed", "140 cached", "1 failed", "33 skipped"]
        assert len({p["top"] for p in pills}) == 1, pills
        # And the row still fits the page's content width.
        table, main = (_boxes(view.page, s)[0] for s in ("table.grid", "main"))
        assert table["right"] <= main["right"] - 28, (table, main)  # main's padding
    finally:
        view.close()


def test_the_stage_calls_say_which_set_a_shared_call_used(browser, project, cli):
    # Three sets share load and clean, computed for lr0.1; a later run of lr0.4 alone shares
    # them from a set it did not run (named by its hash).
    from test_sharing import SWEEP, sweep_params

    project.write("experiments/sweep.py", SWEEP)
    project.write("params/p.yaml", sweep_params([0.1, 0.2, 0.3]))
    project.write("params/q.yaml", sweep_params([0.4]))
    pages = []
    for params in ("params/p.yaml", "params/q.yaml"):
        result = cli("run", "sweep", params, "--json")
        assert result.exit_code == 0, result.output
        pages.append(json.loads(result.stdout)["report"])
    view = Page(browser, Path(pages[0]).as_uri())
    page = view.page
    try:
        rows = page.locator("#calls-body tr")
        assert rows.count() == 12
        texts = rows.all_inner_texts()
        marked = [t.split("\t")[1:3] for t in texts if "shared from lr0.1" in t]
        assert sorted(marked) == [
            ["clean", "lr0.2"],
            ["clean", "lr0.3"],
            ["load", "lr0.2"],
            ["load", "lr0.3"],
        ]
        assert page.locator("#calls-body .shared").first.is_visible()
        page.fill("#filter", "shared from")
        assert page.locator("#calls-body tr:visible").count() == 4
        index = next(i for i, t in enumerate(texts) if "load" in t and "lr0.2" in t)
        page.locator(f"svg.graph g.node[data-i='{index}']").click()
        assert "shared from: lr0.1" in page.locator("#details").inner_text()
        assert view.problems == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "shared-report.png"), full_page=True)
    finally:
        view.close()
    later = Page(browser, Path(pages[1]).as_uri())
    try:
        texts = later.page.locator("#calls-body tr").all_inner_texts()
        shared = [t for t in texts if "shared from a set of hash" in t]
        assert len(shared) == 2 and all(("load" in t or "clean" in t) for t in shared)
        assert later.problems == []
    finally:
        later.close()
