"""`curi cache` commands that see and steer the cache: addressing entries by id, ls --sort,
inspect, dump, invalidate, verify, gc, du and clear ENTRY."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

PIPE = '''
"""numbers -> table -> model (+ a lazy output) -> one summary over every set."""
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PandasCsvCacher, PickleCacher


@cf.stage(inputs=None, outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n))


@cf.stage(inputs=["numbers"], outputs=["table"], cachers=[PandasCsvCacher])
def frame(record, numbers):
    import pandas as pd

    return pd.DataFrame({"x": numbers, "y": [v * 2 for v in numbers]})


@cf.stage(inputs=["table"], outputs=["model", cf.Lazy("big")], cachers=[PickleCacher, JsonCacher])
def model(record, table):
    weights = (float(table["y"].sum()), len(table))
    return {"weights": weights, "labels": set(table.columns)}, {"rows": table["x"].tolist()}


@cf.aggregate(inputs=["model"], outputs=["summary"], cachers=[JsonCacher])
def summary(record, records, model):
    return {r.name: model[r]["weights"][0] for r in records if r in model}


def run(param_sets, manager):
    for p in param_sets:
        model(frame(load(cf.Record(manager, p))))
    summary(cf.Record(manager, None))
'''

PARAMS = """
- name: a
  n: 12
- name: b
  n: 3
"""


# ---------------------------------------------------------------------------------- helpers
def setup(project, runs: int = 1):
    project.write("experiments/pipe.py", PIPE)
    project.write("params/p.yaml", PARAMS)
    result = None
    for _ in range(runs):
        result = project.run("pipe", "params/p.yaml")
        assert result.ok, result.error
    return result


def ok(cli, *args: str):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def as_json(cli, *args: str):
    return json.loads(ok(cli, *args, "--json").stdout)


def entries(cli, *filters: str) -> list[dict]:
    return as_json(cli, "cache", "ls", *filters)["entries"]


def entry(cli, stage: str, params: str) -> dict:
    (found,) = entries(cli, "--stage", stage, "--params", params)
    return found


def entry_dir(project, stage: str, params: str, cli) -> Path:
    return project.cache / entry(cli, stage, params)["path"]


def flip_byte(path: Path, at: int = -2) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# ---------------------------------------------------------------------------------- help
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("cache",), ["ls", "inspect", "dump", "invalidate", "verify", "gc", "du", "clear"]),
        (("cache", "ls"), ["--sort", "--experiment", "--stage", "--params", "--json"]),
        (("cache", "inspect"), ["--experiment", "--stage", "--params", "--json"]),
        (("cache", "dump"), ["--rows", "--out", "--force", "--json", "checksum"]),
        (("cache", "invalidate"), ["--stage", "--params", "--dry-run", "--json"]),
        (("cache", "verify"), ["--fix", "--json", "Exit code"]),
        (("cache", "gc"), ["--older-than", "--keep-latest", "--yes", "--json"]),
        (("cache", "du"), ["--by", "--json"]),
        (("cache", "clear"), ["ENTRY", "--yes", "--dry-run"]),
    ],
)
def test_help(cli, args, expected):
    out = flat(ok(cli, *args, "--help").output)
    for word in expected:
        assert word.lower() in out.lower(), (word, out)


def test_read_only_commands_import_no_user_code_nor_pandas(project, cli):
    setup(project)
    ident = entry(cli, "frame", "a")["id"]
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from curifactory_cli.cli.app import app\n"
        "for args in (['ls'], ['inspect', sys.argv[1]], ['verify'], ['du'], ['gc'],\n"
        "             ['invalidate', 'pipe', '--dry-run']):\n"
        "    result = CliRunner().invoke(app, ['cache', *args])\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "heavy = ('pandas', 'numpy', 'experiments', 'experiments.pipe')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print('LOADED', bad)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, ident],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "LOADED []" in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------------- addressing
def test_entry_ids_prefixes_filters_and_errors(project, cli):
    setup(project)
    target = entry(cli, "frame", "a")
    # Any unique prefix of 6+ characters, the folder name and the path all name the entry.
    for ident in (target["key"][:6], target["id"], target["key"], target["path"]):
        data = as_json(cli, "cache", "inspect", ident)
        assert data["key"] == target["key"], ident
    assert as_json(cli, "cache", "inspect", Path(target["path"]).name)["key"] == target["key"]

    short = cli("cache", "inspect", target["key"][:5])
    assert short.exit_code == 2 and "too short" in short.output
    unknown = cli("cache", "inspect", "ffffff0000")
    assert unknown.exit_code == 2 and "no cache entry" in unknown.output
    assert "curi cache ls" in unknown.output
    assert cli("cache", "inspect", "not-an-id").exit_code == 2
    # Filters narrow the search: the right id with the wrong stage is not found.
    assert cli("cache", "inspect", target["id"], "--stage", "load").exit_code == 2

    # Two entries sharing a prefix: ambiguous, every candidate named, and filters resolve it.
    src = project.cache / target["path"]
    meta = json.loads((src / "meta.json").read_text())
    twin_key = target["key"][:8] + "0" * (len(target["key"]) - 8)
    if twin_key == target["key"]:
        twin_key = target["key"][:8] + "1" * (len(target["key"]) - 8)
    meta.update(key=twin_key, record="twin", params_hash="f" * 32)
    twin = project.cache / "pipe" / ("f" * 16) / f"frame-{twin_key[:16]}"
    shutil.copytree(src, twin)
    (twin / "meta.json").write_text(json.dumps(meta))
    ambiguous = cli("cache", "inspect", target["key"][:8])
    assert ambiguous.exit_code == 2, ambiguous.output
    text = flat(ambiguous.output)
    assert "ambiguous" in text and target["key"][:10] in text and twin_key[:10] in text
    assert as_json(cli, "cache", "inspect", target["key"][:8], "-p", "twin")["key"] == twin_key
    assert as_json(cli, "cache", "inspect", target["key"][:8], "-p", "a")["key"] == target["key"]


# ---------------------------------------------------------------------------------- ls
def test_ls_sort_totals_and_json(project, cli):
    setup(project)
    data = as_json(cli, "cache", "ls")
    assert data["count"] == len(data["entries"]) == 7
    assert data["total_size"] == sum(e["size"] for e in data["entries"])
    assert {"id", "key", "path", "invalidated", "size"} <= set(data["entries"][0])
    default = [(e["experiment"], e["params"], e["stage"]) for e in data["entries"]]
    assert default == sorted(default)

    by_size = [e["size"] for e in as_json(cli, "cache", "ls", "--sort", "size")["entries"]]
    assert by_size == sorted(by_size, reverse=True)
    by_stage = [e["stage"] for e in as_json(cli, "cache", "ls", "--sort", "stage")["entries"]]
    assert by_stage == sorted(by_stage)
    old = project.cache / entry(cli, "load", "b")["path"] / "meta.json"
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    by_age = as_json(cli, "cache", "ls", "--sort", "age")["entries"]
    assert (by_age[-1]["stage"], by_age[-1]["params"]) == ("load", "b")
    ages = [e["age_s"] for e in by_age]
    assert ages == sorted(ages)
    assert cli("cache", "ls", "--sort", "colour").exit_code == 2

    table = ok(cli, "cache", "ls").output
    assert re.search(r"7 entries, \d+(\.\d)? (B|KB)", table), table
    assert "2h ago" in table
    one = ok(cli, "cache", "ls", "-s", "summary").output
    assert "1 entry," in one


def test_ls_json_describes_each_entry_as_its_metadata_and_folder_say(project, cli):
    result = setup(project)
    now = time.time()
    for age, meta in enumerate(sorted(project.cache.glob("*/*/*/meta.json"))):
        os.utime(meta, (now - 600 * (age + 1), now - 600 * (age + 1)))
    listed = {(e["stage"], e["params"]): e for e in entries(cli)}
    assert set(listed) == {
        *((stage, name) for stage in ("load", "frame", "model") for name in "ab"),
        ("summary", "aggregate"),
    }
    for item in listed.values():
        folder = project.cache / item["path"]
        meta = json.loads((folder / "meta.json").read_text())
        held = [p for p in folder.rglob("*") if p.is_file() and p.name != "meta.json"]
        written = (folder / "meta.json").stat().st_mtime
        assert item == {
            "id": meta["key"][:10],
            "key": meta["key"],
            "experiment": "pipe",
            "params": meta["record"],
            "params_hash": meta["params_hash"],
            "stage": meta["stage"],
            "outputs": {
                name: {"cacher": out["cacher"], "lazy": out["lazy"]}
                for name, out in meta["outputs"].items()
            },
            "size": sum(p.stat().st_size for p in held),
            "created": written,
            "age_s": pytest.approx(now - written, abs=60),
            "run": result.run_id,
            "invalidated": False,
            "path": f"pipe/{meta['params_hash'][:16]}/{meta['stage']}-{meta['key'][:16]}",
        }
        assert item["age_s"] >= 600 and item["age_s"] == round(item["age_s"], 1)  # to a tenth
        assert isinstance(item["age_s"], float)
    assert listed["model", "a"]["outputs"] == {
        "model": {"cacher": "curifactory_cli.caching.PickleCacher", "lazy": False},
        "big": {"cacher": "curifactory_cli.caching.JsonCacher", "lazy": True},
    }

    ok(cli, "cache", "invalidate", "pipe", "--stage", "model", "--params", "a")
    assert entry(cli, "model", "a")["invalidated"] is True
    assert entry(cli, "model", "b")["invalidated"] is False


# ---------------------------------------------------------------------------------- inspect
def test_inspect_shows_key_params_run_files_and_lineage(project, cli):
    result = setup(project)
    target = entry(cli, "model", "a")
    text = ok(cli, "cache", "inspect", target["id"]).output
    for expected in (
        target["key"],
        "params hash",
        "code",
        "PickleCacher",
        "input table",
        "n",
        "12",
        result.run_id,
        "model.pkl",
        "big.json",
        "ok",
        "computed from",
        "used by",
    ):
        assert expected in text, (expected, text)
    frame_id, load_id = entry(cli, "frame", "a")["id"], entry(cli, "load", "a")["id"]
    summary_id = entry(cli, "summary", "aggregate")["id"]
    lines = text.splitlines()
    # The tree: frame under "computed from", load one level below it; summary under "used by".
    frame_line = next(i for i, line in enumerate(lines) if frame_id in line)
    load_line = next(i for i, line in enumerate(lines) if load_id in line)
    assert load_line == frame_line + 1
    assert lines[load_line].index(load_id) > lines[frame_line].index(frame_id)
    assert summary_id in text.split("used by", 1)[1]

    data = as_json(cli, "cache", "inspect", target["id"])
    assert data["params"]["values"]["n"] == 12 and data["params"]["name"] == "a"
    assert data["run"]["id"] == result.run_id and "finished" in data["timings"]
    assert data["key_parts"]["stage"] == "model" and "git" in data and data["versions"]
    assert data["files_ok"] is True
    assert {(f["output"], f["path"], f["status"]) for f in data["files"]} == {
        ("model", "model.pkl", "ok"),
        ("big", "big.json", "ok"),
    }
    (up,) = data["upstream"]
    assert (up["stage"], up["record"], up["inputs"], up["status"]) == (
        "frame",
        "a",
        ["table"],
        "cached",
    )
    assert [(u["stage"], u["id"]) for u in up["upstream"]] == [("load", load_id)]
    (down,) = data["downstream"]
    assert (down["stage"], down["record"], down["inputs"]) == ("summary", "aggregate", ["model"])

    # The aggregate lists every set's model; downstream of load reaches the aggregate.
    agg = as_json(cli, "cache", "inspect", summary_id)
    assert sorted(u["record"] for u in agg["upstream"]) == ["a", "b"]
    load_down = as_json(cli, "cache", "inspect", load_id)["downstream"]
    assert load_down[0]["stage"] == "frame"
    assert load_down[0]["downstream"][0]["downstream"][0]["stage"] == "summary"

    # A changed file is flagged; a deleted upstream entry is shown as deleted.
    flip_byte(project.cache / target["path"] / "big.json", at=0)
    ok(cli, "cache", "clear", "--yes", "--stage", "frame", "--params", "a")
    text = ok(cli, "cache", "inspect", target["id"]).output
    assert "MISMATCH" in text and "(deleted)" in text and "DAMAGED" in text
    data = as_json(cli, "cache", "inspect", target["id"])
    assert data["files_ok"] is False
    assert data["upstream"][0]["status"] == "deleted" and data["upstream"][0]["id"] is None


# ---------------------------------------------------------------------------------- dump
def test_dump_dataframe_head_tail_shape_dtypes(project, cli):
    setup(project)
    ident = entry(cli, "frame", "a")["id"]
    text = ok(cli, "cache", "dump", ident, "--rows", "2").output
    assert "PandasCsvCacher" in text and "12 rows × 2 columns" in text
    assert "dtypes: x int64, y int64" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["0", "0", "0"] in rows and ["11", "11", "22"] in rows and ["…", "…", "…"] in rows
    assert ["5", "5", "10"] not in rows  # the middle is left out

    data = as_json(cli, "cache", "dump", ident, "table", "--rows", "2")
    assert data["kind"] == "dataframe" and data["shape"] == [12, 2]
    assert data["columns"] == ["x", "y"] and data["dtypes"] == {"x": "int64", "y": "int64"}
    assert data["head"] == {"index": [0, 1], "rows": [[0, 0], [1, 2]]}
    assert data["tail"]["rows"] == [[10, 20], [11, 22]] and data["omitted_rows"] == 8
    small = as_json(cli, "cache", "dump", entry(cli, "frame", "b")["id"])
    assert small["tail"] is None and len(small["head"]["rows"]) == 3


def test_dump_json_lazy_and_output_choice(project, cli):
    setup(project)
    text = ok(cli, "cache", "dump", entry(cli, "load", "b")["id"]).output
    assert "JsonCacher" in text and "[\n  0,\n  1,\n  2\n]" in text
    data = as_json(cli, "cache", "dump", entry(cli, "load", "b")["id"])
    assert data["kind"] == "json" and data["value"] == [0, 1, 2]

    model_id = entry(cli, "model", "b")["id"]
    choose = cli("cache", "dump", model_id)
    assert choose.exit_code == 2 and "model, big" in choose.output
    missing = cli("cache", "dump", model_id, "nope")
    assert missing.exit_code == 2 and "no output 'nope'" in missing.output
    lazy = as_json(cli, "cache", "dump", model_id, "big")
    assert lazy["lazy"] is True and lazy["value"] == {"rows": [0, 1, 2]}
    assert "lazy" in ok(cli, "cache", "dump", model_id, "big").output


def test_dump_pickle_and_refusals(project, cli):
    setup(project)
    model = entry(cli, "model", "b")
    text = ok(cli, "cache", "dump", model["id"], "model").output
    assert "PickleCacher" in text and "'labels'" in text and "(6.0, 3)" in text
    data = as_json(cli, "cache", "dump", model["id"], "model")
    assert data["kind"] == "object" and data["type"] == "dict" and "'weights'" in data["repr"]

    # A pickle replaced by one of the same size that would run code is never unpickled.
    pkl = project.cache / model["path"] / "model.pkl"
    size = pkl.stat().st_size
    evil = b"cbuiltins\nopen\n(S'PWNED'\nS'w'\ntR."  # protocol 0: open("PWNED", "w")
    assert len(evil) < size
    pkl.write_bytes(evil + b" " * (size - len(evil)))
    refused = cli("cache", "dump", model["id"], "model")
    assert refused.exit_code == 1, refused.output
    out = flat(refused.output)
    assert "refusing to load" in out and "checksum mismatch" in out
    assert "pickles are only loaded when their checksum matches the metadata" in out
    assert not (project.root / "PWNED").exists()
    assert "Traceback" not in refused.output

    # Any changed or missing file is refused, whatever the cacher.
    frame_dir = project.cache / entry(cli, "frame", "b")["path"]
    flip_byte(frame_dir / "table.csv")
    changed = cli("cache", "dump", entry(cli, "frame", "b")["id"])
    assert changed.exit_code == 1 and "checksum mismatch" in flat(changed.output)
    (project.cache / entry(cli, "load", "b")["path"] / "numbers.json").unlink()
    gone = cli("cache", "dump", entry(cli, "load", "b")["id"], "--json")
    assert gone.exit_code == 1 and "is missing" in gone.output


def test_dump_out_exports_and_refuses_overwrite(project, cli):
    setup(project)
    frame_id = entry(cli, "frame", "b")["id"]
    ok(cli, "cache", "dump", frame_id, "--out", "t.csv")
    assert (project.root / "t.csv").read_text().splitlines()[:2] == [",x,y", "0,0,0"]
    data = as_json(cli, "cache", "dump", frame_id, "--out", "t.json")
    assert data["format"] == "json" and data["out"] == "t.json"
    assert json.loads((project.root / "t.json").read_text())[2] == {"x": 2, "y": 4}

    again = cli("cache", "dump", frame_id, "--out", "t.csv")
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    (project.root / "t.csv").write_text("mine\n")
    ok(cli, "cache", "dump", frame_id, "--out", "t.csv", "--force")
    assert (project.root / "t.csv").read_text().startswith(",x,y")

    parquet = cli("cache", "dump", frame_id, "--out", "t.parquet")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert parquet.exit_code == 2 and "pyarrow" in parquet.output
    else:
        assert parquet.exit_code == 0, parquet.output
    assert cli("cache", "dump", frame_id, "--out", "t.xlsx").exit_code == 2

    ok(cli, "cache", "dump", entry(cli, "load", "a")["id"], "--out", "n.json")
    assert json.loads((project.root / "n.json").read_text()) == list(range(12))
    pickled = cli("cache", "dump", entry(cli, "model", "a")["id"], "model", "--out", "m.json")
    assert pickled.exit_code == 2 and "cannot export" in pickled.output
    assert not (project.root / "m.json").exists()
    assert not list(project.root.glob(".*.tmp"))


SCORED = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["score"], cachers=[JsonCacher])
def score(record):
    n = record.params.n
    return {"n": n, "mean": (n - 1) / 2, "cfg": {"kind": record.params.kind}}


@cf.stage(inputs=None, outputs=["weights"], cachers=[PickleCacher])
def fit(record):
    import numpy as np

    return np.arange(record.params.n, dtype="float64") / 4


def run(param_sets, manager):
    for p in param_sets:
        score(cf.Record(manager, p))
        fit(cf.Record(manager, p))
"""


@pytest.fixture
def scored(project):
    project.write("experiments/scored.py", SCORED)
    project.write(
        "params/s.yaml", "- name: a\n  n: 12\n  kind: rf\n- name: b\n  n: 3\n  kind: svm\n"
    )
    assert project.run("scored", "params/s.yaml").ok
    return project


def test_dump_of_a_stage_over_the_latest_runs_sets_is_one_table(scored, cli):
    text = ok(cli, "cache", "dump", "-e", "scored", "-s", "score").stdout.splitlines()
    assert text[0] == "score  (JsonCacher; scored / score, 2 parameter sets)"
    assert [line.split() for line in text[1:]] == [
        ["set", "n", "mean", "cfg.kind"],
        ["a", "12", "5.5", "rf"],
        ["b", "3", "1", "svm"],
    ]
    data = as_json(cli, "cache", "dump", "-e", "scored", "-s", "score")
    assert data["columns"] == ["set", "n", "mean", "cfg.kind"]
    assert [(s["params"], s["value"]["n"]) for s in data["sets"]] == [("a", 12), ("b", 3)]
    ok(cli, "cache", "dump", "-e", "scored", "-s", "score", "--out", "s.csv")
    assert (scored.root / "s.csv").read_text().splitlines() == [
        "set,n,mean,cfg.kind",
        "a,12,5.5,rf",
        "b,3,1.0,svm",
    ]
    ok(cli, "cache", "dump", "-e", "scored", "-s", "score", "--out", "s.json")
    exported = json.loads((scored.root / "s.json").read_text())
    assert exported[1] == {"set": "b", "value": {"n": 3, "mean": 1.0, "cfg": {"kind": "svm"}}}
    # -p still picks one set.
    assert (
        as_json(cli, "cache", "dump", "-e", "scored", "-s", "score", "-p", "b")["value"]["n"] == 3
    )


def test_dump_of_a_stage_over_sets_shows_each_value_that_fits_no_row(scored, cli):
    text = ok(cli, "cache", "dump", "-e", "scored", "-s", "fit").stdout
    assert "[a]  entry " in text and "[b]  entry " in text
    assert "array([0.  , 0.25, 0.5 ])" in text
    refused = cli("cache", "dump", "-e", "scored", "-s", "fit", "--out", "w.csv")
    assert refused.exit_code == 2 and "-p SET" in refused.output
    assert not (scored.root / "w.csv").exists()


def test_dump_out_writes_arrays_to_npy_and_anything_to_pkl(scored, cli):
    import pickle

    import numpy as np

    ok(cli, "cache", "dump", "-e", "scored", "-s", "fit", "-p", "b", "--out", "w.npy")
    assert np.load(scored.root / "w.npy").tolist() == [0.0, 0.25, 0.5]  # no pickle needed
    ok(cli, "cache", "dump", "-e", "scored", "-s", "fit", "-p", "a", "--out", "w.pkl")
    with open(scored.root / "w.pkl", "rb") as f:
        assert np.array_equal(pickle.load(f), np.arange(12) / 4)
    ok(cli, "cache", "dump", "-e", "scored", "-s", "score", "-p", "a", "--out", "s.pkl")
    with open(scored.root / "s.pkl", "rb") as f:
        assert pickle.load(f) == {"n": 12, "mean": 5.5, "cfg": {"kind": "rf"}}
    refused = cli("cache", "dump", "-e", "scored", "-s", "score", "-p", "a", "--out", "s.npy")
    assert refused.exit_code == 2 and ".npy" in refused.output and ".pkl" in refused.output
    assert not (scored.root / "s.npy").exists()


# ---------------------------------------------------------------------------------- invalidate
def test_invalidate_marks_downstream_and_run_recomputes_them(project, cli):
    setup(project)
    before = project.snapshot()
    dry = ok(cli, "cache", "invalidate", "pipe", "--stage", "frame", "--params", "a", "--dry-run")
    text = dry.output
    assert re.search(r"frame.*\(matched\)", text) and re.search(r"model.*\(downstream\)", text)
    assert re.search(r"summary.*\(downstream\)", text) and "would invalidate 3 entries" in text
    assert project.snapshot() == before

    data = as_json(cli, "cache", "invalidate", "pipe", "-s", "frame", "-p", "a")
    assert [e["stage"] for e in data["matched"]] == ["frame"]
    assert sorted(e["stage"] for e in data["downstream"]) == ["model", "summary"]
    assert data["invalidated"] == 3 and data["dry_run"] is False
    metas = {
        (e["stage"], e["params"]): json.loads((project.cache / e["path"] / "meta.json").read_text())
        for e in entries(cli)
    }
    stale = {k for k, meta in metas.items() if meta.get("invalidated") is True}
    assert stale == {("frame", "a"), ("model", "a"), ("summary", "aggregate")}
    assert {(e["stage"], e["params"]) for e in entries(cli) if e["invalidated"]} == stale
    assert "state" in ok(cli, "cache", "ls").output  # a column shown once anything is stale
    assert not list(project.cache.rglob(".meta-*"))
    # Running again is idempotent and says so.
    assert as_json(cli, "cache", "invalidate", "pipe", "-s", "frame", "-p", "a")["invalidated"] == 0

    result = project.run("pipe", "params/p.yaml")
    assert result.ok, result.error
    assert sorted(result.executed()) == [
        ("frame", "a"),
        ("model", "a"),
        ("summary", "aggregate"),
    ]
    assert not any(e["invalidated"] for e in entries(cli))

    unknown = cli("cache", "invalidate", "pipes")
    assert unknown.exit_code == 2 and "'pipe'" in unknown.output
    nothing = cli("cache", "invalidate", "pipe", "--stage", "nope")
    assert nothing.exit_code == 2 and "its stages" in nothing.output


# ---------------------------------------------------------------------------------- verify
def test_verify_finds_problems_and_fix_removes_them(project, cli):
    setup(project)
    clean = ok(cli, "cache", "verify")
    assert "all fine" in clean.output
    assert as_json(cli, "cache", "verify")["ok"] is True

    truncated = entry_dir(project, "load", "a", cli) / "numbers.json"
    truncated.write_bytes(truncated.read_bytes()[:5])
    flip_byte(entry_dir(project, "frame", "a", cli) / "table.csv")
    (entry_dir(project, "model", "b", cli) / "big.json").unlink()
    stray = entry_dir(project, "frame", "b", cli) / "notes.txt"
    stray.write_text("not from the cache\n")
    orphan = project.cache / "pipe" / ("0" * 16) / f"frame-{'a' * 16}"
    orphan.mkdir(parents=True)
    (orphan / "table.csv").write_text("x\n")

    result = cli("cache", "verify")
    assert result.exit_code == 1, result.output
    for word in ("corrupt", "missing", "orphan file", "orphan dir", "notes.txt", "--fix"):
        assert word in result.output, (word, result.output)
    report = cli("cache", "verify", "--json")
    assert report.exit_code == 1
    data = json.loads(report.stdout)
    assert data["ok"] is False and data["checked"]["entries"] == 7
    assert data["counts"] == {"missing": 1, "corrupt": 2, "orphan_file": 1, "orphan_dir": 1}
    kinds = {(p["kind"], Path(p["path"]).name) for p in data["problems"]}
    assert kinds == {
        ("corrupt", "numbers.json"),
        ("corrupt", "table.csv"),
        ("missing", "big.json"),
        ("orphan_file", "notes.txt"),
        ("orphan_dir", f"frame-{'a' * 16}"),
    }
    assert "size" in next(
        p["detail"] for p in data["problems"] if p["path"].endswith("numbers.json")
    )
    # Filters and a single entry narrow the check.
    assert cli("cache", "verify", "--stage", "summary").exit_code == 0
    assert cli("cache", "verify", entry(cli, "frame", "a")["id"]).exit_code == 1
    assert cli("cache", "verify", entry(cli, "load", "b")["id"]).exit_code == 0

    fixed = cli("cache", "verify", "--fix", "--json")
    assert fixed.exit_code == 1 and json.loads(fixed.stdout)["fixed"] is True
    assert not orphan.exists() and not stray.exists()
    left = {(e["stage"], e["params"]) for e in entries(cli)}
    assert left == {("load", "b"), ("frame", "b"), ("model", "a"), ("summary", "aggregate")}
    assert cli("cache", "verify").exit_code == 0
    # The next run recomputes what it needs of what was removed.
    rerun = project.run("pipe", "params/p.yaml")
    assert rerun.ok, rerun.error
    assert ("load", "a") in rerun.executed()
    assert cli("cache", "verify").exit_code == 0


# ---------------------------------------------------------------------------------- gc
def test_gc_leftovers_orphans_dry_run_and_yes(project, cli):
    setup(project)
    dead = project.cache / ".staging" / "999999-abc"
    dead.mkdir(parents=True)
    (dead / "half.json").write_text("[1, 2")
    alive = project.cache / ".staging" / f"{os.getpid()}-running"
    alive.mkdir()
    trash = project.cache / ".trash" / "999998-old"
    trash.mkdir(parents=True)
    young = project.cache / "pipe" / ("0" * 16) / f"load-{'b' * 16}"
    young.mkdir(parents=True)
    old = project.cache / "pipe" / ("0" * 16) / f"load-{'c' * 16}"
    old.mkdir(parents=True)
    (old / "numbers.json").write_text("[]")
    past = time.time() - 2 * 3600
    os.utime(old, (past, past))
    outside = project.root / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep\n")
    (project.cache / ".staging" / "999997-link").symlink_to(outside)

    before = project.snapshot()
    dry = ok(cli, "cache", "gc")
    assert "would remove 3 items" in dry.output and "999999-abc" in dry.output
    assert project.snapshot() == before
    data = as_json(cli, "cache", "gc")
    assert data["dry_run"] is True and data["count"] == 3
    assert {(i["kind"], Path(i["path"]).name) for i in data["items"]} == {
        ("leftover", "999999-abc"),
        ("leftover", "999998-old"),
        ("orphan", f"load-{'c' * 16}"),
    }
    assert data["size"] == len("[1, 2") + len("[]")

    done = ok(cli, "cache", "gc", "--yes")
    assert "removed 3 items" in done.output
    assert not dead.exists() and not trash.exists() and not old.exists()
    assert alive.exists() and young.exists()  # a running process's folder; too recent to tell
    assert (outside / "precious.txt").read_text() == "keep\n"
    assert len(entries(cli)) == 7
    assert "nothing to collect" in ok(cli, "cache", "gc").output


def test_gc_keep_latest_and_older_than(project, cli):
    setup(project)
    first = {(e["stage"], e["params"]): e for e in entries(cli)}
    past = time.time() - 3600
    for e in first.values():
        os.utime(project.cache / e["path"] / "meta.json", (past, past))
    project.write("experiments/pipe.py", PIPE.replace("v * 2 for v", "v * 3 for v"))
    result = project.run("pipe", "params/p.yaml")
    assert sorted(result.executed()) == sorted(
        [("frame", "a"), ("frame", "b"), ("model", "a"), ("model", "b"), ("summary", "aggregate")]
    )
    assert len(entries(cli)) == 12

    dry = as_json(cli, "cache", "gc", "--keep-latest", "1")
    superseded = {Path(i["path"]).name for i in dry["items"] if i["kind"] == "superseded"}
    expected = {Path(first[k]["path"]).name for k in first if k[0] != "load"}
    assert superseded == expected and len(entries(cli)) == 12
    assert "would remove 5 items" in ok(cli, "cache", "gc", "--keep-latest", "1").output
    ok(cli, "cache", "gc", "--keep-latest", "1", "--yes")
    assert len(entries(cli)) == 7
    again = project.run("pipe", "params/p.yaml")
    assert again.executed() == []

    old = entry(cli, "load", "b")
    long_ago = time.time() - 40 * 86400
    os.utime(project.cache / old["path"] / "meta.json", (long_ago, long_ago))
    data = as_json(cli, "cache", "gc", "--older-than", "30d", "--yes")
    assert [(i["kind"], i["id"]) for i in data["items"]] == [("old", old["id"])]
    assert len(entries(cli)) == 6
    assert as_json(cli, "cache", "gc", "--older-than", "2h")["count"] == 0
    bad = cli("cache", "gc", "--older-than", "soon")
    assert bad.exit_code == 2 and "30d" in bad.output
    assert cli("cache", "gc", "--keep-latest", "0").exit_code == 2


# ---------------------------------------------------------------------------------- du
def test_du_totals_equal_file_sizes(project, cli):
    setup(project)
    on_disk = sum(
        p.stat().st_size
        for p in project.cache.rglob("*")
        if p.is_file()
        and p.name not in ("meta.json", "CACHEDIR.TAG")  # bookkeeping, not data
        and not any(part.startswith(".") for part in p.relative_to(project.cache).parts)
    )
    data = as_json(cli, "cache", "du")
    assert data["total"] == {"entries": 7, "size": on_disk}
    for group in ("by_experiment", "by_stage", "by_params"):
        assert sum(g["size"] for g in data[group]) == on_disk, group
        assert sum(g["entries"] for g in data[group]) == 7, group
    assert [g["experiment"] for g in data["by_experiment"]] == ["pipe"]
    stages = {g["stage"]: g["entries"] for g in data["by_stage"]}
    assert stages == {"load": 2, "frame": 2, "model": 2, "summary": 1}
    assert {g["params"] for g in data["by_params"]} == {"a", "b", "aggregate"}

    only = as_json(cli, "cache", "du", "--by", "stage")
    assert set(only) == {"cache_dir", "total", "by_stage"}
    text = ok(cli, "cache", "du").output
    assert "by experiment" in text and "by stage" in text and "by params" in text
    assert "7 entries" in text
    assert cli("cache", "du", "--by", "colour").exit_code == 2


# ---------------------------------------------------------------------------------- clear
def test_clear_one_entry_by_id(project, cli):
    setup(project)
    target = entry(cli, "model", "a")
    dry = ok(cli, "cache", "clear", target["id"][:7], "--dry-run")
    assert "would remove 1 entry" in dry.output and len(entries(cli)) == 7
    done = ok(cli, "cache", "clear", target["id"][:7], "--yes")
    assert "removed 1 entry" in done.output
    assert {(e["stage"], e["params"]) for e in entries(cli)} == {
        ("load", "a"),
        ("frame", "a"),
        ("load", "b"),
        ("frame", "b"),
        ("model", "b"),
        ("summary", "aggregate"),
    }
    assert cli("cache", "clear", target["id"], "--yes").exit_code == 2
    assert (
        cli("cache", "clear", entry(cli, "load", "a")["id"], "-s", "frame", "--yes").exit_code == 2
    )


def test_gc_removes_old_unheld_lock_files_only(project, cli):
    from curifactory_cli.store import EntryLock

    setup(project)
    locks = sorted((project.cache / ".locks").glob("*.lock"))
    assert len(locks) >= 2  # one per computed entry
    past = time.time() - 2 * 3600
    for lock in locks:
        os.utime(lock, (past, past))
    held = EntryLock(str(locks[0]))
    assert held.acquire_nowait()  # a run computing that entry right now
    try:
        data = as_json(cli, "cache", "gc", "--yes")
    finally:
        held.release()
    removed = {Path(i["path"]).name for i in data["items"]}
    assert locks[0].name not in removed and locks[0].exists()
    assert {lock.name for lock in locks[1:]} <= removed
    assert len(entries(cli)) == 7  # entries are untouched


def test_dump_never_imports_a_cacher_module_planted_in_the_cache(project, cli):
    setup(project)
    target = entry(cli, "load", "a")
    meta_path = project.cache / target["path"] / "meta.json"
    meta = json.loads(meta_path.read_text())
    name = next(iter(meta["outputs"]))
    planted = project.cache / "planted"
    planted.mkdir()
    marker = project.root / "PWNED"
    (planted / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nclass Boom:\n    pass\n"
    )
    meta["outputs"][name]["cacher"] = "data.cache.planted.Boom"
    meta_path.write_text(json.dumps(meta))
    result = cli("cache", "dump", target["id"], name)
    assert result.exit_code != 0
    assert "refusing to import the cacher" in result.output
    assert not marker.exists()


def test_dump_refuses_a_planted_cacher_when_the_cache_is_a_link_to_a_shared_folder(
    project, cli, tmp_path_factory
):
    import shutil

    setup(project)
    shared = tmp_path_factory.mktemp("shared") / "cache"
    shutil.move(str(project.cache), str(shared))
    os.symlink(shared, project.cache)  # data/cache -> a folder the team shares
    target = entry(cli, "load", "a")
    meta_path = shared / target["path"] / "meta.json"
    meta = json.loads(meta_path.read_text())
    name = next(iter(meta["outputs"]))
    (shared / "planted").mkdir()
    marker = project.root / "PWNED"
    (shared / "planted" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nclass Boom:\n    pass\n"
    )
    meta["outputs"][name]["cacher"] = "data.cache.planted.Boom"
    meta_path.write_text(json.dumps(meta))
    result = cli("cache", "dump", target["id"], name)
    assert result.exit_code != 0
    assert "refusing to import the cacher" in result.output
    assert not marker.exists()


def test_a_params_filter_naming_a_set_is_not_also_a_hash_prefix():
    from types import SimpleNamespace

    from curifactory_cli.store.index import select

    def made(name: str, digest: str) -> SimpleNamespace:
        return SimpleNamespace(experiment="x", stage="s", params_name=name, params_hash=digest)

    a, b = made("a", "b41e0c"), made("b", "07d2aa")
    assert select([a, b], params="b") == [b]  # set b, though a's hash starts with b
    assert select([a, b], params="b4") == [a]  # a hash prefix still works
