"""The `curi` command line: help, ls, run options, cache ls/clear and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from experiments_src import COUNT

PARAMS = """
# Four sizes for the count experiment
- name: a
  n: 1
- name: b
  n: 2
- name: c
  n: 3
- name: d
  n: 4
"""

PY_PARAMS = '''
"""Typed sets written in Python."""
from dataclasses import dataclass

import curifactory_cli as cf


@dataclass
class CountParams(cf.ExperimentParameters):
    n: int = 1


def get_params():
    return [CountParams(name="py1", n=2), CountParams(name="py2", n=3)]
'''

GET_PARAMS_EXP = '''
"""An experiment that brings its own parameter sets."""
from dataclasses import dataclass

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@dataclass
class GP(cf.ExperimentParameters):
    n: int = 1


def get_params():
    return [GP(name="g1", n=4), GP(name="g2", n=5)]


@cf.stage(inputs=None, outputs=["total"], cachers=[JsonCacher])
def total(record):
    return sum(range(record.params.n))


def run(param_sets, manager):
    for p in param_sets:
        total(cf.Record(manager, p))
'''

FAIL_BROKEN = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["a"], cachers=[JsonCacher])
def first(record):
    return record.params.n


@cf.stage(inputs=["a"], outputs=["b"], cachers=[JsonCacher])
def second(record, a):
    raise ValueError("boom from second")


@cf.stage(inputs=["b"], outputs=["c"], cachers=[JsonCacher])
def third(record, b):
    return b + 1


def run(param_sets, manager):
    for p in param_sets:
        third(second(first(cf.Record(manager, p))))
"""

FAIL_FIXED = FAIL_BROKEN.replace('raise ValueError("boom from second")', "return a * 10")


def squash(text: str) -> str:
    """Whitespace-insensitive view of output (rich may wrap long lines)."""
    return re.sub(r"\s+", "", text)


def stderr_of(result) -> str:
    try:
        return result.stderr
    except (ValueError, AttributeError):
        return result.output


def setup_count(project) -> None:
    project.write("experiments/count.py", COUNT)
    project.write("params/p.yaml", PARAMS)


def run_json(cli, *args: str) -> dict:
    result = cli("run", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def outcomes(data: dict) -> dict[tuple[str, str], str]:
    return {(n["stage"], n["record"]): n["outcome"] for n in data["nodes"]}


def entry_stages(project) -> list[str]:
    return sorted(json.loads((e / "meta.json").read_text())["stage"] for e in project.entries())


def cache_json(cli, *args: str) -> dict:
    result = cli("cache", "ls", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------- help
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ["run", "ls", "cache"]),
        (
            ("run",),
            [
                "--names",
                "--indices",
                "--set",
                "--overwrite",
                "--overwrite-stage",
                "--dry",
                "--cache",
                "--lazy",
                "--ignore-lazy",
                "--no-progress",
                "--quiet",
                "--json",
            ],
        ),
        (("ls",), ["--json"]),
        (("cache",), ["ls", "clear"]),
        (("cache", "ls"), ["--experiment", "--stage", "--params", "--cache", "--json"]),
        (
            ("cache", "clear"),
            ["--experiment", "--stage", "--params", "--cache", "--yes", "--dry-run", "--json"],
        ),
    ],
)
def test_help_lists_options(cli, args, expected):
    result = cli(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    for option in expected:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output), (
            option,
            result.output,
        )


def test_python_m_help_in_subprocess(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "curifactory_cli", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    for command in ("run", "ls", "cache"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["run", "--help"], 0, "curifactory_cli run [OPTIONS]"),
        (["cache", "ls", "--help"], 0, "curifactory_cli cache ls [OPTIONS]"),
        (["cache", "--help"], 0, "gc"),  # the group's own commands are all there
        (["run", "--no-such-option"], 2, "No such option: --no-such-option"),
        (["runn"], 2, "Did you mean 'run', 'runs'?"),  # all commands built: a suggestion
        (["--version"], 0, "curi "),
    ],
)
def test_the_command_line_builds_what_it_needs_and_answers_the_same(tmp_path, args, code, expected):
    """`curi CMD` builds only CMD's options (the console script's start-up); help, errors and
    suggestions read as they do with every command built."""
    proc = subprocess.run(
        [sys.executable, "-m", "curifactory_cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert expected in proc.stdout + proc.stderr


def test_importing_the_cli_loads_no_heavy_or_user_modules(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "touchy.py").write_text(
        "open('IMPORTED', 'w').close()\ndef run(param_sets, manager):\n    pass\n"
    )
    code = (
        "import sys\n"
        "import curifactory_cli\n"
        "import curifactory_cli.cli.app\n"
        "heavy = ('pandas', 'numpy', 'dask', 'dask_jobqueue', 'experiments',\n"
        "         'experiments.touchy')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print('LOADED=' + ','.join(bad))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED=\n" in proc.stdout, proc.stdout
    assert not (tmp_path / "IMPORTED").exists()


# Runs the real entry point and says on stderr, as the process leaves, whether rich was imported.
RICH_PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('RICH=%s' % ('rich' in sys.modules), file=sys.stderr))\n"
    "sys.argv = ['curi', *sys.argv[1:]]\n"
    "from curifactory_cli.cli.app import main\n"
    "main()\n"
)


def _probe(cwd: Path, *args: str, **popen: object) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_TERMINAL", "FORCE_COLOR")}
    return subprocess.Popen(
        [sys.executable, "-c", RICH_PROBE, *args], cwd=cwd, env=env, text=True, **popen
    )


def test_plain_output_is_written_without_importing_rich(project):
    """Help, runs, plans and listings written to a pipe or a log are plain text: rich (20 ms
    of imports) is loaded only for what is styled on a terminal."""
    setup_count(project)
    runs = (
        ["--help"],
        ["run", "count", "params/p.yaml"],
        ["run", "count", "params/p.yaml", "-q"],
        ["run", "count", "params/p.yaml", "--json"],
        ["plan", "count", "params/p.yaml"],
        ["cache", "ls"],
        ["cache", "ls", "--json"],
        ["cache", "du"],
    )
    outputs = {}
    for args in runs:
        proc = _probe(project.root, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (args, out, err)
        assert "RICH=False" in err, (args, err)
        outputs[tuple(args)] = out
    # In a pipe, the same plain text as ever: a line per call, a row per stage, the outcome.
    first = re.sub(r"\d\.\d\ds", "N.NNs", outputs[tuple(runs[1])]).splitlines()
    assert first[-5:-1] == [
        "stage  executed  cached  skipped  failed   time",
        "load          4       0        0          N.NNs",
        "total         4       0        0          N.NNs",
        "ok: 8 executed, 0 cached, 0 skipped in N.NNs " + first[-2].split(" in N.NNs ")[1],
    ], first
    assert first[-1].startswith("report: reports/count_1_")
    assert outputs[tuple(runs[2])] == ""  # -q: nothing when all went well
    assert json.loads(outputs[tuple(runs[3])])["counts"]["cached"] == 8
    plan = outputs[tuple(runs[4])].splitlines()
    assert plan[:3] == [
        "8 of 8 stages cached, 0 to run",
        "parameter set  stage  plan    why",
        "a              load   cached",
    ], plan
    du = outputs[tuple(runs[7])].splitlines()
    assert du[:3] == [
        "by experiment",
        "experiment  entries  size",
        "count             8  " + du[2][21:],
    ]
    assert du[3] == "8 entries, " + du[2][21:].strip()


def test_a_terminal_gets_rich_output(project):
    """On a terminal (a pseudo-terminal here), the summary is rich's: styled, and the
    outcome line coloured."""
    import pty

    setup_count(project)
    leader, follower = pty.openpty()
    proc = _probe(
        project.root, "run", "count", "params/p.yaml", stdout=follower, stderr=subprocess.PIPE
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, shown + err
    assert "RICH=True" in err, err
    assert "\x1b[" in shown  # styled
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "ok: 8 executed, 0 cached, 0 skipped" in plain, plain


# ---------------------------------------------------------------------------------- ls
def _ls_project(project) -> None:
    setup_count(project)
    project.write("experiments/sub/deep.py", COUNT.replace("Count numbers", "Deep count"))
    project.write("experiments/helpers.py", "def helper():\n    return 1\n")  # no run(): not listed
    project.write("params/pp.py", PY_PARAMS)
    project.write(
        "experiments/bomb.py",
        '''
        """Explodes when imported."""
        import pathlib
        pathlib.Path("IMPORTED_MARKER").write_text("imported")
        raise RuntimeError("curi ls must not import experiments")


        def run(param_sets, manager):
            pass
        ''',
    )


def test_ls_lists_experiments_and_params_without_importing(project, cli):
    _ls_project(project)
    result = cli("ls")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "count - Count numbers, then total them." in out
    assert "sub/deep - Deep count" in out
    assert "bomb - Explodes when imported." in out
    assert "helpers" not in out
    assert "p.yaml - Four sizes for the count experiment" in out
    assert "pp.py - Typed sets written in Python." in out
    assert out.index("EXPERIMENTS") < out.index("count") < out.index("PARAMS") < out.index("p.yaml")
    assert not (project.root / "IMPORTED_MARKER").exists()
    assert "experiments.bomb" not in sys.modules


def test_ls_never_wraps_a_long_description_outside_a_terminal(project, cli):
    about = "Fit a line to noisy points, " + "then compare every parameter set " * 4
    project.write("experiments/long.py", f'"""{about.strip()}"""\n\ndef run(p, m):\n    pass\n')
    result = cli("ls")
    assert result.exit_code == 0, result.output
    assert f"  long - {about.strip()}\n" in result.output  # one line of 150 characters


def test_messages_with_long_paths_stay_on_one_line_outside_a_terminal(project, cli):
    cache = project.root / ("a-rather-long-folder-name-for-the-cache-" * 3) / "cache"
    result = cli("cache", "ls", "--cache", str(cache))
    assert result.exit_code == 0, result.output
    assert result.output == f"no cached entries in {cache}\n"


def test_ls_json_shape(project, cli):
    _ls_project(project)
    result = cli("ls", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"experiments", "params"}
    experiments = {e["name"]: e for e in data["experiments"]}
    assert set(experiments) == {"bomb", "count", "sub/deep"}
    assert experiments["count"] == {
        "name": "count",
        "path": "experiments/count.py",
        "description": "Count numbers, then total them.",
        "has_get_params": False,
    }
    assert experiments["sub/deep"]["path"] == "experiments/sub/deep.py"
    params = {p["name"]: p for p in data["params"]}
    assert params["p.yaml"] == {
        "name": "p.yaml",
        "path": "params/p.yaml",
        "description": "Four sizes for the count experiment",
    }
    assert params["pp.py"]["description"] == "Typed sets written in Python."
    assert not (project.root / "IMPORTED_MARKER").exists()


def test_ls_empty_project(project, cli):
    result = cli("ls")
    assert result.exit_code == 0, result.output
    assert "none in experiments/" in result.output
    assert "none in params/" in result.output


# ---------------------------------------------------------------------------------- run
def test_run_summary_counts_then_cached(project, cli):
    setup_count(project)
    first = cli("run", "count", "params/p.yaml")
    assert first.exit_code == 0, first.output
    assert "ok: 8 executed, 0 cached, 0 skipped" in first.output
    second = cli("run", "count", "params/p.yaml")
    assert second.exit_code == 0, second.output
    assert "ok: 0 executed, 8 cached, 0 skipped" in second.output


def test_run_json_output(project, cli):
    setup_count(project)
    result = cli("run", "count", "params/p.yaml", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is nothing but the JSON document
    assert {"experiment", "ok", "counts", "stages", "nodes", "param_sets"} <= set(data)
    assert data["experiment"] == "count"
    assert data["ok"] is True
    assert data["counts"] == {"executed": 8, "cached": 0, "skipped": 0, "failed": 0}
    assert [s["stage"] for s in data["stages"]] == ["load", "total"]
    assert all(s["executed"] == 4 for s in data["stages"])
    assert [p["name"] for p in data["param_sets"]] == ["a", "b", "c", "d"]
    assert len(data["nodes"]) == 8
    assert set(outcomes(data).values()) == {"executed"}
    again = run_json(cli, "count", "params/p.yaml")
    assert again["counts"] == {"executed": 0, "cached": 8, "skipped": 0, "failed": 0}


def _total_of(data: dict, record: str) -> int:
    node = next(n for n in data["nodes"] if n["stage"] == "total" and n["record"] == record)
    return json.loads((Path(node["entry"]) / "total.json").read_text())


def test_run_names(project, cli):
    setup_count(project)
    data = run_json(cli, "count", "params/p.yaml", "--names", "b", "-n", "d")
    assert [p["name"] for p in data["param_sets"]] == ["b", "d"]
    assert data["counts"]["executed"] == 4


def test_run_indices_upper_bound_is_exclusive(project, cli):
    setup_count(project)
    data = run_json(cli, "count", "params/p.yaml", "--indices", "0-2")
    assert [p["name"] for p in data["param_sets"]] == ["a", "b"]
    data = run_json(cli, "count", "params/p.yaml", "--indices", "1,3")
    assert [p["name"] for p in data["param_sets"]] == ["b", "d"]


def test_run_set_changes_values_and_executes_again(project, cli):
    setup_count(project)
    before = run_json(cli, "count", "params/p.yaml", "--names", "a")
    assert _total_of(before, "a") == 0
    after = run_json(cli, "count", "params/p.yaml", "--names", "a", "--set", "n=5")
    assert after["counts"]["executed"] == 2
    assert _total_of(after, "a") == 10
    assert after["param_sets"][0]["hash"] != before["param_sets"][0]["hash"]


def test_run_overwrite(project, cli):
    setup_count(project)
    run_json(cli, "count", "params/p.yaml")
    data = run_json(cli, "count", "params/p.yaml", "--overwrite")
    assert data["counts"] == {"executed": 8, "cached": 0, "skipped": 0, "failed": 0}


def test_run_overwrite_stage(project, cli):
    setup_count(project)
    run_json(cli, "count", "params/p.yaml")
    data = run_json(cli, "count", "params/p.yaml", "--overwrite-stage", "total")
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["total"]["executed"] == 4
    assert stages["load"]["executed"] == 0
    assert stages["load"]["cached"] == 4


def test_run_overwrite_unknown_stage_suggests(project, cli):
    setup_count(project)
    before = project.snapshot()
    result = cli("run", "count", "params/p.yaml", "--overwrite-stage", "totl")
    assert result.exit_code == 2, result.output
    assert "did you mean 'total'" in result.output
    assert "Traceback" not in result.output
    assert project.snapshot() == before


def test_run_dry_writes_nothing(project, cli):
    setup_count(project)
    before = project.snapshot()
    result = cli("run", "count", "params/p.yaml", "--dry")
    assert result.exit_code == 0, result.output
    assert "8 executed" in result.output
    assert project.snapshot() == before
    assert not project.cache.exists()
    # A dry run over a filled cache reads it and still writes nothing.
    run_json(cli, "count", "params/p.yaml", "--names", "a")
    before = project.snapshot()
    data = run_json(cli, "count", "params/p.yaml", "--dry")
    assert outcomes(data)[("load", "a")] == "cached"
    assert outcomes(data)[("load", "b")] == "executed"
    assert project.snapshot() == before


def test_run_custom_cache_dir(project, cli):
    setup_count(project)
    result = cli("run", "count", "params/p.yaml", "--cache", "elsewhere")
    assert result.exit_code == 0, result.output
    assert not project.cache.exists()
    metas = list((project.root / "elsewhere").rglob("meta.json"))
    assert len(metas) == 8
    listed = cache_json(cli, "--cache", "elsewhere")
    assert len(listed["entries"]) == 8
    data = run_json(cli, "count", "params/p.yaml", "--cache", "elsewhere")
    assert data["counts"]["cached"] == 8


def test_run_lazy(project, cli):
    setup_count(project)
    data = run_json(cli, "count", "params/p.yaml", "--lazy")
    assert data["ok"] and data["counts"]["executed"] == 8
    assert _total_of(data, "d") == 6
    listed = cache_json(cli)
    assert listed["entries"]
    assert all(out["lazy"] for e in listed["entries"] for out in e["outputs"].values())


def test_run_quiet_prints_no_stage_lines(project, cli):
    setup_count(project)
    result = cli("run", "count", "params/p.yaml", "--quiet")
    assert result.exit_code == 0, result.output
    assert "load [a]" not in result.output
    assert "executed" not in result.output
    assert len(project.entries()) == 8


def test_run_no_progress_prints_plain_lines(project, cli):
    setup_count(project)
    result = cli("run", "count", "params/p.yaml", "--no-progress")
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert any(re.fullmatch(r"executed\s+load \[a\] \d+\.\d+s", line) for line in lines), (
        result.output
    )
    assert any(re.fullmatch(r"executed\s+total \[d\] \d+\.\d+s", line) for line in lines), (
        result.output
    )
    again = cli("run", "count", "params/p.yaml", "--no-progress")
    assert any(
        re.fullmatch(r"cached\s+total \[b\]", line.strip()) for line in again.output.splitlines()
    )


def test_counts_of_one_are_singular(project, cli):
    project.write("experiments/one.py", COUNT.replace("total(load(", "(load("))
    project.write("params/one.yaml", "- name: a\n  n: 2\n")
    result = cli("run", "one", "params/one.yaml", "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("running 1 stage call over 1 record\n"), result.output
    plan = cli("plan", "one", "params/one.yaml")
    assert plan.output.startswith("1 of 1 stage cached, 0 to run\n"), plan.output
    setup_count(project)
    result = cli("run", "count", "params/p.yaml", "--no-progress")
    assert result.output.startswith("running 8 stage calls over 4 records\n"), result.output


def test_run_bare_params_name(project, cli):
    setup_count(project)
    data = run_json(cli, "count", "p")
    assert [p["name"] for p in data["param_sets"]] == ["a", "b", "c", "d"]


def test_run_experiment_in_subfolder(project, cli):
    project.write("experiments/sub/deep.py", COUNT)
    project.write("params/p.yaml", PARAMS)
    result = cli("run", "sub/deep", "p")
    assert result.exit_code == 0, result.output
    assert "8 executed" in result.output
    assert len(project.entries()) == 8


def test_run_experiment_with_get_params(project, cli):
    project.write("experiments/gp.py", GET_PARAMS_EXP)
    data = run_json(cli, "gp")
    assert [p["name"] for p in data["param_sets"]] == ["g1", "g2"]
    assert _total_of(data, "g1") == 6
    assert _total_of(data, "g2") == 10


def test_run_python_params_file(project, cli):
    setup_count(project)
    project.write("params/pp.py", PY_PARAMS)
    data = run_json(cli, "count", "params/pp.py")
    assert [p["name"] for p in data["param_sets"]] == ["py1", "py2"]
    assert _total_of(data, "py1") == 1
    assert _total_of(data, "py2") == 3
    again = run_json(cli, "count", "pp")
    assert again["counts"]["cached"] == 4


# ---------------------------------------------------------------------------------- cache ls
def test_cache_ls_empty(project, cli):
    result = cli("cache", "ls")
    assert result.exit_code == 0, result.output
    assert "no cached entries" in result.output


def test_cache_ls_table(project, cli):
    setup_count(project)
    run_json(cli, "count", "params/p.yaml", "--names", "a", "--names", "b")
    result = cli("cache", "ls")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "experiment" in line)
    for column in ("id", "experiment", "params", "stage", "outputs", "cacher", "size"):
        assert column in header.split(), header
    rows = [
        line.split()
        for line in lines
        if line.split()[:1] and re.fullmatch(r"[0-9a-f]{10}", line.split()[0])
    ]
    assert len(rows) == 4, result.output
    assert {(r[1], r[2], r[3], r[4], r[5]) for r in rows} == {
        ("count", name, stage, output, "JsonCacher")
        for name in ("a", "b")
        for stage, output in (("load", "numbers"), ("total", "total"))
    }
    assert all(re.fullmatch(r"\d+", r[6]) and r[7] == "B" for r in rows), rows
    assert "4 entries" in result.output


def test_cache_ls_filters(project, cli):
    setup_count(project)
    run_json(cli, "count", "params/p.yaml", "--names", "a", "--names", "b")
    by_stage = cache_json(cli, "--stage", "total")["entries"]
    assert {(e["stage"], e["params"]) for e in by_stage} == {("total", "a"), ("total", "b")}
    by_params = cache_json(cli, "--params", "b")["entries"]
    assert {(e["stage"], e["params"]) for e in by_params} == {("load", "b"), ("total", "b")}
    assert len(cache_json(cli, "--experiment", "count")["entries"]) == 4
    assert cache_json(cli, "--experiment", "other")["entries"] == []
    table = cli("cache", "ls", "--stage", "load", "--params", "a")
    assert table.exit_code == 0
    assert "1 entries" in table.output or "1 entry" in table.output
    assert "total" not in table.output.replace("total_size", "")
    none = cli("cache", "ls", "--experiment", "nope")
    assert none.exit_code == 0
    assert "no cached entries" in none.output and "matching" in none.output


def test_cache_ls_json_shape(project, cli):
    setup_count(project)
    run_json(cli, "count", "params/p.yaml", "--names", "c")
    data = cache_json(cli)
    assert {"entries", "total_size"} <= set(data)
    assert len(data["entries"]) == 2
    for entry in data["entries"]:
        assert {"id", "experiment", "params", "stage", "outputs", "size"} <= set(entry)
        assert entry["experiment"] == "count" and entry["params"] == "c"
        assert isinstance(entry["size"], int) and entry["size"] > 0
    outputs = {e["stage"]: e["outputs"] for e in data["entries"]}
    assert set(outputs["load"]) == {"numbers"}
    assert outputs["total"]["total"]["cacher"].endswith("JsonCacher")
    assert data["total_size"] == sum(e["size"] for e in data["entries"])
    empty = cache_json(cli, "--stage", "nope")
    assert empty["entries"] == [] and empty["total_size"] == 0


# ---------------------------------------------------------------------------------- cache clear
def _filled(project, cli) -> None:
    setup_count(project)
    run_json(cli, "count", "params/p.yaml", "--names", "a", "--names", "b")
    project.write("data/keep.txt", "not part of the cache\n")
    assert len(project.entries()) == 4


def test_cache_clear_dry_run_removes_nothing(project, cli):
    _filled(project, cli)
    before = project.snapshot()
    result = cli("cache", "clear", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would remove 4 entries" in result.output
    assert project.snapshot() == before


def test_cache_clear_yes_stage_removes_only_that_stage(project, cli):
    _filled(project, cli)
    result = cli("cache", "clear", "--yes", "--stage", "total")
    assert result.exit_code == 0, result.output
    assert "removed 2 entries" in result.output
    assert entry_stages(project) == ["load", "load"]
    assert (project.root / "data" / "keep.txt").read_text() == "not part of the cache\n"
    # The remaining stage is still served from the cache; the cleared one runs again.
    data = run_json(cli, "count", "params/p.yaml", "--names", "a", "--names", "b")
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["load"]["cached"] == 2 and stages["total"]["executed"] == 2


def test_cache_clear_all_touches_nothing_outside(project, cli):
    _filled(project, cli)
    project.write("data/cache_notes.txt", "beside the cache dir\n")
    outside = {k: v for k, v in project.snapshot().items() if not k.startswith("data/cache/")}
    result = cli("cache", "clear", "--yes")
    assert result.exit_code == 0, result.output
    assert project.entries() == []
    after = {k: v for k, v in project.snapshot().items() if not k.startswith("data/cache/")}
    assert after == outside
    assert "no cached entries" in cli("cache", "ls").output


def test_cache_clear_custom_cache_dir(project, cli):
    setup_count(project)
    run_json(cli, "count", "params/p.yaml", "--names", "a", "--cache", "data/other")
    run_json(cli, "count", "params/p.yaml", "--names", "a")
    result = cli("cache", "clear", "--yes", "--cache", "data/other")
    assert result.exit_code == 0, result.output
    assert not list((project.root / "data" / "other").rglob("meta.json"))
    assert len(project.entries()) == 2  # the default cache is untouched


@pytest.mark.parametrize("stdin", [None, "y\n"])
def test_cache_clear_without_yes_refuses_when_not_interactive(project, cli, stdin):
    # CliRunner's stdin is never a terminal: piped input (even "y") must not delete anything.
    _filled(project, cli)
    before = project.snapshot()
    result = cli("cache", "clear", input=stdin)
    assert result.exit_code == 2, result.output
    assert "--yes" in result.output
    assert "Traceback" not in result.output
    assert project.snapshot() == before


def test_cache_clear_nothing_to_remove(project, cli):
    result = cli("cache", "clear", "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing to remove" in result.output


# ---------------------------------------------------------------------------------- failures
def test_stage_failure_exit_code_traceback_and_resume(project, cli):
    path = project.write("experiments/fail.py", FAIL_BROKEN)
    project.write("params/one.yaml", "- name: only\n  n: 2\n")
    raise_line = (
        FAIL_BROKEN.lstrip("\n").splitlines().index('    raise ValueError("boom from second")') + 1
    )

    result = cli("run", "fail", "one")
    assert result.exit_code == 1, result.output
    out = result.output
    flat = squash(out)
    # The user's traceback: their file and line, and the raising source line.
    assert squash(f'File "{path}", line {raise_line}, in second') in flat, out
    assert 'raise ValueError("boom from second")' in out
    assert "ValueError: boom from second" in out
    # None of our own frames.
    assert "curifactory_cli/engine" not in flat
    assert "curifactory_cli/run/runner.py" not in flat
    assert "curifactory_cli" + os.sep not in out
    # The failing stage and parameter set are named.
    error_lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, out
    assert "'second'" in error_lines[0] and "'only'" in flat

    # The stage finished before the failure stays cached.
    assert entry_stages(project) == ["first"]

    project.write("experiments/fail.py", FAIL_FIXED)
    data = run_json(cli, "fail", "one")
    assert outcomes(data) == {
        ("first", "only"): "cached",
        ("second", "only"): "executed",
        ("third", "only"): "executed",
    }
    assert _json_entry(data, "third") == 21


def _json_entry(data: dict, stage: str):
    node = next(n for n in data["nodes"] if n["stage"] == stage)
    return json.loads((Path(node["entry"]) / "c.json").read_text())


def test_stage_failure_json_names_stage(project, cli):
    project.write("experiments/fail.py", FAIL_BROKEN)
    project.write("params/one.yaml", "- name: only\n  n: 2\n")
    result = cli("run", "fail", "one", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["counts"]["failed"] == 1
    assert data["error"]["stage"] == "second" and data["error"]["record"] == "only"
    assert outcomes(data)[("third", "only")] == "skipped"


def test_stage_failure_output_is_not_hard_wrapped(project, cli):
    """Piped/CI output must keep each traceback and error line whole (grep-able)."""
    path = project.write("experiments/fail.py", FAIL_BROKEN)
    project.write("params/one.yaml", "- name: only\n  n: 2\n")
    raise_line = (
        FAIL_BROKEN.lstrip("\n").splitlines().index('    raise ValueError("boom from second")') + 1
    )
    result = cli("run", "fail", "one")
    assert result.exit_code == 1, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert f'File "{path}", line {raise_line}, in second' in lines, result.output
    assert (
        "error: stage 'second' failed for parameter set 'only': ValueError: boom from second"
        in lines
    ), result.output
