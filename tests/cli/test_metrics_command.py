"""`curi metrics [EXPERIMENT]`: one row per parameter set with the parameters that differ and
the metrics its stages recorded, read from the run registry; runs chosen (latest, --run,
--all-runs), rows filtered and sorted, metrics selected, groups averaged (mean ± std (n)),
output as plain text (fitting the terminal), Markdown, CSV, JSON or one line per metric."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import statistics

import pytest

from curifactory_cli.registry.database import SCHEMA_VERSION, RunRegistry, registry_path
from curifactory_cli.run.metrics_table import MetricsQuery, metrics_table

# acc is made from the parameters alone, so each test knows every value it expects.
EXPERIMENT = '''
"""Metrics command subject."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(outputs=["model"], cachers=[JsonCacher])
def train(record):
    p = record.params
    acc = round(1 - p.lr * 2 + p.seed / 100, 6)
    record.metrics({"acc": acc, "loss": round(p.lr * 10 + p.seed, 6)})
    return {"acc": acc}


@cf.stage(inputs=["model"], outputs=["checked"], cachers=[JsonCacher])
def check(record, model):
    record.metric("passed", model["acc"] > 0.7)
    return True


def run(param_sets, manager):
    for p in param_sets:
        check(train(cf.Record(manager, p)))
'''

SWEEP = """
defaults:
  width: 16
grid:
  name: s
  vary:
    lr: [0.1, 0.2]
    seed: [1, 2, 3]
"""


def acc(lr: float, seed: int) -> float:
    return round(1 - lr * 2 + seed / 100, 6)


@pytest.fixture
def swept(project, cli):
    project.write("experiments/train.py", EXPERIMENT)
    project.write("params/sweep.yaml", SWEEP)
    out = cli("run", "train", "sweep", "--no-report")
    assert out.exit_code == 0, out.output
    return project


def table_lines(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def test_the_latest_run_one_row_per_set_with_the_parameters_that_differ(swept, cli):
    out = cli("metrics", "train")
    assert out.exit_code == 0, out.output
    lines = table_lines(out.output)
    # width is the same in every set: not a column.
    assert lines[0] == ["set", "lr", "seed", "acc", "loss", "passed"]
    assert len(lines) == 7
    assert lines[1] == ["s_lr=0.1_seed=1", "0.1", "1", "0.81", "2", "true"]
    assert lines[4] == ["s_lr=0.2_seed=1", "0.2", "1", "0.61", "3", "false"]
    every = table_lines(cli("metrics", "train", "--all-params").output)
    assert every[0][0] == "set" and every[0][4:] == ["acc", "loss", "passed"]
    assert sorted(every[0][1:4]) == ["lr", "seed", "width"]


def test_sort_filter_and_metric_selection(swept, cli):
    out = cli("metrics", "train", "--sort=-acc", "--metrics", "acc", "--filter", "seed>=2")
    assert out.exit_code == 0, out.output
    lines = table_lines(out.output)
    assert lines[0] == ["set", "lr", "seed", "acc"]
    assert [row[0] for row in lines[1:]] == [
        "s_lr=0.1_seed=3",
        "s_lr=0.1_seed=2",
        "s_lr=0.2_seed=3",
        "s_lr=0.2_seed=2",
    ]
    ascending = table_lines(cli("metrics", "--sort", "loss", "--filter", "passed==true").output)
    assert [row[0] for row in ascending[1:]] == [f"s_lr=0.1_seed={s}" for s in (1, 2, 3)]
    text = table_lines(cli("metrics", "--filter", "set=='s_lr=0.2_seed=3'").output)
    assert [row[0] for row in text[1:]] == ["s_lr=0.2_seed=3"]


def test_group_by_gives_the_exact_mean_std_and_count(swept, cli):
    out = cli("metrics", "train", "--group-by", "lr", "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["grouped"] is True and doc["params"] == ["lr"]
    for row in doc["rows"]:
        lr = row["group"]["lr"]
        values = [acc(lr, s) for s in (1, 2, 3)]
        stat = row["metrics"]["acc"]
        assert stat["n"] == 3
        assert stat["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert stat["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
    # --over seed: the same groups (every other differing parameter is kept).
    over = json.loads(cli("metrics", "train", "--over", "seed", "--format", "json").output)
    assert over["rows"] == doc["rows"]
    plain = cli("metrics", "train", "--over", "seed").output
    assert "0.82 ± 0.01 (3)" in plain and "0.62 ± 0.01 (3)" in plain
    grouped_csv = list(
        csv.reader(io.StringIO(cli("metrics", "--over", "seed", "-f", "csv").output))
    )
    assert grouped_csv[0][:4] == ["lr", "acc_mean", "acc_std", "acc_n"]
    assert float(grouped_csv[1][1]) == pytest.approx(0.82) and grouped_csv[1][3] == "3"


def test_groups_span_runs_and_a_single_value_has_no_std(swept, cli):
    out = cli("run", "train", "sweep", "--set", "width=32", "--no-report")
    assert out.exit_code == 0, out.output
    doc = json.loads(cli("metrics", "--all-runs", "--group-by", "width,lr", "-f", "json").output)
    assert len(doc["runs"]) == 2
    assert [(r["group"]["width"], r["group"]["lr"]) for r in doc["rows"]] == [
        (16, 0.1),
        (16, 0.2),
        (32, 0.1),
        (32, 0.2),
    ]
    one = json.loads(cli("metrics", "--filter", "seed==1", "--group-by", "lr", "-f", "json").output)
    assert one["rows"][0]["metrics"]["acc"] == {"mean": 0.81, "std": None, "n": 1}


def test_runs_chosen_by_reference_or_all(swept, cli):
    cli("run", "train", "sweep", "--set", "width=32", "--no-report")
    latest = json.loads(cli("metrics", "train", "-f", "json").output)
    assert len(latest["runs"]) == 1 and latest["runs"][0].startswith("train_2_")
    both = cli("metrics", "train", "--all-runs")
    lines = table_lines(both.output)
    assert lines[0][:2] == ["run", "set"] and lines[0][5:] == ["acc", "loss", "passed"]
    assert sorted(lines[0][2:5]) == ["lr", "seed", "width"]
    assert [row[0] for row in lines[1:]] == ["train_1"] * 6 + ["train_2"] * 6
    first = json.loads(cli("metrics", "--run", "train_1", "-f", "json").output)
    assert first["runs"][0].startswith("train_1_") and len(first["rows"]) == 6
    picked = json.loads(cli("metrics", "--run", "train_2", "--run", "train_1", "-f", "json").output)
    assert [r["run"] for r in picked["rows"]] == ["train_2"] * 6 + ["train_1"] * 6


def test_formats(swept, cli):
    md = cli("metrics", "-f", "md", "--metrics", "acc").output.splitlines()
    assert md[0] == "| set | lr | seed | acc |"
    assert md[1] == "|---|---|---|--:|"
    assert md[2] == "| s_lr=0.1_seed=1 | 0.1 | 1 | 0.81 |"
    rows = list(csv.DictReader(io.StringIO(cli("metrics", "-f", "csv").output)))
    assert len(rows) == 6 and rows[0]["passed"] == "true" and float(rows[0]["acc"]) == 0.81
    doc = json.loads(cli("metrics", "-f", "json").output)
    assert doc["rows"][0] == {
        "run": "train_1",
        "set": "s_lr=0.1_seed=1",
        "params": {"width": 16, "lr": 0.1, "seed": 1},
        "metrics": {"acc": 0.81, "loss": 2.0, "passed": True},
    }
    long = cli("metrics", "--long").output.splitlines()
    assert long[0].split() == ["run", "set", "metric", "value"]
    assert long[1].split() == ["train_1", "s_lr=0.1_seed=1", "acc", "0.81"]
    assert len(long) == 1 + 6 * 3
    long_json = json.loads(cli("metrics", "--long", "-f", "json").output)
    assert long_json["rows"][2] == {
        "run": "train_1",
        "set": "s_lr=0.1_seed=1",
        "metric": "passed",
        "value": "true",
    }


def test_a_table_wider_than_the_terminal_turns_vertical(swept, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    out = cli("metrics", "train")
    assert out.exit_code == 0, out.output
    blocks = out.output.strip().split("\n\n")
    assert len(blocks) == 6
    assert blocks[0].splitlines() == [
        "s_lr=0.1_seed=1",
        "  lr      0.1",
        "  seed    1",
        "  acc     0.81",
        "  loss    2",
        "  passed  true",
    ]
    assert all(len(line) <= 30 for line in out.output.splitlines())
    monkeypatch.setenv("COLUMNS", "200")
    assert len(table_lines(cli("metrics", "train").output)) == 7


@pytest.mark.parametrize(
    ("args", "said", "hint"),
    [
        (["trian"], "no runs of experiment 'trian'", "did you mean 'train'?"),
        (["--run", "nope_9"], "no run 'nope_9'", "curi runs ls"),
        (["--metrics", "accc"], "no metric 'accc'", "did you mean 'acc'?"),
        (["--filter", "lrr<0.1"], "'lrr' is neither a metric nor a parameter", "'lr'"),
        (["--filter", "lr<"], "--filter 'lr<' is not a comparison", "NAME OP VALUE"),
        (["--sort", "-acx"], "'acx' is neither a metric nor a parameter", "'acc'"),
        (["--group-by", "sed"], "--group-by: no parameter 'sed'", "'seed'"),
        (["--over", "seed", "--group-by", "lr"], "--group-by and --over", "one of them"),
        (["--format", "xml"], "xml", ""),
    ],
)
def test_unknown_names_are_usage_errors_with_a_hint(swept, cli, args, said, hint):
    out = cli("metrics", *args)
    assert out.exit_code == 2, out.output
    assert said in out.output and hint in out.output
    assert "Traceback" not in out.output


def test_a_run_without_metrics_says_so(project, cli):
    project.write(
        "experiments/plain.py",
        """
        import curifactory_cli as cf

        @cf.stage(outputs=["x"])
        def make(record):
            return 1

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write("params/one.yaml", "- name: a\n  v: 1\n")
    assert cli("run", "plain", "one", "--no-report").exit_code == 0
    out = cli("metrics", "plain")
    assert out.exit_code == 0
    assert "no metrics recorded in plain_1" in out.output and "record.metric" in out.output


def test_a_registry_older_than_metrics_still_opens(swept, cli):
    """A registry file of the version before metrics (no metrics column) is read as it is:
    runs show, metrics finds none; the next run upgrades it and records them."""
    path = registry_path(swept.root)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE run_stages DROP COLUMN metrics")
    conn.execute("ALTER TABLE run_stages DROP COLUMN outputs")  # and those of later versions
    conn.execute("ALTER TABLE runs DROP COLUMN code")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    shown = cli("runs", "show", "train_1", "--json")
    assert shown.exit_code == 0, shown.output
    assert all("metrics" not in s for s in json.loads(shown.output)["stages"])
    out = cli("metrics", "train")
    assert out.exit_code == 0 and "no metrics recorded in train_1" in out.output
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
    again = cli("run", "train", "sweep", "--no-report")  # cached: metrics from the entries
    assert again.exit_code == 0, again.output
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert len(table_lines(cli("metrics", "train").output)) == 7


def test_the_table_api_reads_only_the_registry(swept):
    """Questions across runs never open cache entries: with the cache gone, same answer."""
    import shutil

    registry = RunRegistry(registry_path(swept.root), read_only=True)
    before = metrics_table(registry, MetricsQuery(experiment="train"))
    shutil.rmtree(swept.cache)
    after = metrics_table(registry, MetricsQuery(experiment="train"))
    assert after.to_json() == before.to_json() and len(after.rows) == 6
    assert after.params == ["lr", "seed"] and after.metrics == ["acc", "loss", "passed"]


def test_nan_and_infinite_metrics_in_every_format(project, cli):
    project.write(
        "experiments/odd.py",
        """
        import curifactory_cli as cf

        @cf.stage(outputs=["x"])
        def make(record):
            record.metrics({"loss": float(record.params.loss)})
            return 1

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write("params/odd.yaml", "- {name: a, loss: .nan}\n- {name: b, loss: .inf}\n")
    assert cli("run", "odd", "odd", "--no-report").exit_code == 0
    doc = json.loads(cli("metrics", "-f", "json").output)
    assert [r["metrics"]["loss"] for r in doc["rows"]] == [None, "inf"]
    rows = list(csv.DictReader(io.StringIO(cli("metrics", "-f", "csv").output)))
    assert [r["loss"] for r in rows] == ["nan", "inf"]
    assert math.isnan(float(rows[0]["loss"]))
    # A NaN in a group makes its mean NaN (null in JSON), counted.
    grouped = json.loads(cli("metrics", "--over", "loss", "-f", "json").output)
    assert grouped["rows"] == [
        {"group": {}, "metrics": {"loss": {"mean": None, "std": None, "n": 2}}}
    ]
    # NaN sorts last either way.
    assert table_lines(cli("metrics", "--sort", "loss").output)[-1][0] == "a"
    assert table_lines(cli("metrics", "--sort=-loss").output)[-1][0] == "a"


def test_nested_parameters_are_dotted_columns(project, cli):
    project.write(
        "experiments/deep.py",
        """
        import curifactory_cli as cf

        @cf.stage(outputs=["x"])
        def make(record):
            record.metric("depth_seen", record.params.model.depth)
            return 1

        def run(param_sets, manager):
            for p in param_sets:
                make(cf.Record(manager, p))
        """,
    )
    project.write(
        "params/deep.yaml",
        "- {name: a, note: '{x}', model: {depth: 3, kind: rf}}\n"
        "- {name: b, note: '{x}', model: {depth: 8, kind: rf}}\n",
    )
    assert cli("run", "deep", "deep", "--no-report").exit_code == 0
    lines = table_lines(cli("metrics").output)
    assert lines == [["set", "model.depth", "depth_seen"], ["a", "3", "3"], ["b", "8", "8"]]
    # One row left: nothing differs, so no parameter column.
    lines = table_lines(cli("metrics", "--filter", "model.depth>4").output)
    assert lines == [["set", "depth_seen"], ["b", "8"]]
    doc = json.loads(cli("metrics", "--all-params", "-f", "json").output)
    assert doc["rows"][0]["params"] == {"note": "{x}", "model.depth": 3, "model.kind": "rf"}
