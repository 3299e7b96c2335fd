"""The cache: folders are marked (CACHEDIR.TAG) and only marked ones are changed,
`cache dump` without an id and `cache ls --current` follow the latest run, and a subfolder
experiment is found by either spelling."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from curifactory_cli.errors import ExitCode

COUNT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher


@cf.stage(inputs=None, outputs=["numbers"], cachers=[JsonCacher])
def load(record):
    return list(range(record.params.n))


@cf.stage(inputs=["numbers"], outputs=["total", "count"], cachers=[JsonCacher, JsonCacher])
def total(record, numbers):
    return sum(numbers), len(numbers)


def run(param_sets, manager):
    for p in param_sets:
        total(load(cf.Record(manager, p)))
"""

SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def ok(cli, *args: str):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def as_json(cli, *args: str):
    return json.loads(ok(cli, *args, "--json").stdout)


def files_under(folder) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def counted(project):
    project.write("experiments/count.py", COUNT)
    project.write("params/p.yaml", "- name: a\n  n: 3\n- name: b\n  n: 5\n")
    assert project.run("count", "params/p.yaml").ok
    return project


# ------------------------------------------------------------------------ the mark
def test_a_new_cache_is_marked_per_the_cachedir_spec(counted):
    tag = counted.cache / "CACHEDIR.TAG"
    assert tag.read_text().splitlines()[0] == SIGNATURE
    assert tag.read_bytes().startswith(SIGNATURE.encode())


@pytest.mark.parametrize(
    ("command", "action"),
    [
        (("cache", "clear", "--yes"), "clear"),
        (("cache", "gc", "--yes", "--older-than", "0s"), "collect garbage in"),
        (("cache", "invalidate", "count"), "invalidate entries in"),
        (("cache", "verify", "--fix"), "fix"),
    ],
)
def test_an_unmarked_folder_is_never_changed(counted, cli, tmp_path, command, action):
    # Another project's files, and a copy of a real cache without its mark.
    other = tmp_path / "elsewhere"
    (other / "notes").mkdir(parents=True)
    (other / "notes" / "todo.txt").write_text("keep me\n")
    shutil.copytree(counted.cache / "count", other / "count")
    before = files_under(other)
    result = cli(*command, "--cache", str(other))
    assert result.exit_code == ExitCode.USAGE, result.output
    out = flat(result.output)
    assert f"refusing to {action} {other}: it is not marked as a curi cache" in out
    assert "CACHEDIR.TAG" in out and "curi run" in out
    assert files_under(other) == before


def test_a_marked_cache_is_still_cleared(counted, cli):
    ok(cli, "cache", "clear", "--yes")
    assert counted.entries() == []
    assert (counted.cache / "CACHEDIR.TAG").is_file()


def test_a_cache_made_before_the_mark_is_adopted_by_the_next_run(counted, cli):
    (counted.cache / "CACHEDIR.TAG").unlink()  # as an older curi left it
    assert cli("cache", "clear", "--yes").exit_code == ExitCode.USAGE
    assert len(counted.entries()) == 4
    assert counted.run("count", "params/p.yaml").ok
    assert (counted.cache / "CACHEDIR.TAG").read_text().startswith(SIGNATURE)
    ok(cli, "cache", "clear", "--yes")
    assert counted.entries() == []


def test_a_folder_holding_other_files_is_used_but_never_marked(counted, cli, tmp_path):
    other = tmp_path / "mixed"
    other.mkdir()
    (other / "thesis.tex").write_text("\\begin{document}\n")
    result = counted.run("count", "params/p.yaml", cache_dir=str(other))
    assert result.ok, result.error
    assert not (other / "CACHEDIR.TAG").exists()
    assert cli("cache", "clear", "--yes", "--cache", str(other)).exit_code == ExitCode.USAGE
    assert (other / "thesis.tex").is_file()


# ------------------------------------------------------------------------ the latest run
def test_dump_without_an_id_shows_what_the_latest_run_used(counted, cli):
    counted.write("params/p.yaml", "- name: a\n  n: 4\n- name: b\n  n: 5\n")
    assert counted.run("count", "params/p.yaml").ok  # a second entry of load/a
    data = as_json(cli, "cache", "dump", "-e", "count", "-s", "load", "-p", "a")
    assert data["value"] == [0, 1, 2, 3]
    out = ok(cli, "cache", "dump", "-e", "count", "-s", "total", "-p", "a", "count").output
    assert out.splitlines()[0].startswith("count  (JsonCacher")
    assert out.splitlines()[1].strip() == "4"


def test_dump_without_an_id_explains_what_is_missing(counted, cli):
    result = cli("cache", "dump", "-e", "count", "-s", "nope")
    assert result.exit_code == ExitCode.USAGE
    out = flat(result.output)
    assert "the latest run of 'count' (count_1" in out and "its stages: load, total" in out
    result = cli("cache", "dump", "-e", "count")  # several stages: name one
    assert result.exit_code == ExitCode.USAGE and "4 matching entries" in flat(result.output)
    result = cli("cache", "dump")
    assert result.exit_code == ExitCode.USAGE and "-e EXPERIMENT" in flat(result.output)


def test_ls_current_lists_only_what_the_latest_runs_used(counted, cli):
    counted.write("params/p.yaml", "- name: a\n  n: 4\n")
    assert counted.run("count", "params/p.yaml").ok
    everything = as_json(cli, "cache", "ls")["entries"]
    current = as_json(cli, "cache", "ls", "--current")["entries"]
    assert len(everything) == 6
    assert sorted((e["stage"], e["params"]) for e in current) == [("load", "a"), ("total", "a")]
    ids = {e["id"] for e in current}
    (load_a,) = [e for e in current if e["stage"] == "load"]
    assert as_json(cli, "cache", "dump", load_a["id"])["value"] == [0, 1, 2, 3]
    assert ids == {e["id"] for e in as_json(cli, "cache", "ls", "--current", "-p", "a")["entries"]}


# ------------------------------------------------------------------------ subfolder experiments
def test_a_subfolder_experiment_is_filtered_by_either_spelling(project, cli):
    project.write("experiments/sub/exp_a.py", COUNT)
    project.write("params/p.yaml", "- name: a\n  n: 3\n")
    assert project.run("sub/exp_a", "params/p.yaml").ok
    for spelling in ("sub/exp_a", "sub.exp_a"):
        assert len(as_json(cli, "cache", "ls", "-e", spelling)["entries"]) == 2
        dumped = as_json(cli, "cache", "dump", "-e", spelling, "-s", "load")
        assert dumped["value"] == [0, 1, 2]
    result = ok(cli, "cache", "invalidate", "sub/exp_a", "--dry-run")
    assert "would invalidate 2 entries" in result.output
    ok(cli, "cache", "clear", "-e", "sub/exp_a", "--yes")
    assert project.entries() == []
