"""End-to-end behaviour of the cache: what runs, what is reused, what is on disk."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from experiments_src import (
    AGG_PARAMS,
    AGGREGATES,
    CHAIN,
    CHAIN_ONE_PARAMS,
    CHAIN_PARAMS,
    CUSTOM_CACHER,
    LAZY,
    LAZY_HANDLE,
    MEMORY,
    TYPED,
    edit,
)

import curifactory_cli.store.file_checks
from curifactory_cli.caching import Cacheable, JsonCacher, Lazy, PickleCacher
from curifactory_cli.graph import Outcome
from curifactory_cli.hashing import canonical_json, digest
from curifactory_cli.registry.database import RunRegistry

pytestmark = pytest.mark.usefixtures("job_runner")


@pytest.fixture(autouse=True)
def _no_bytecode(monkeypatch):
    # Experiments are rewritten several times per test; never let a stale .pyc be imported.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


# ---------------------------------------------------------------------------------- helpers
def setup_chain(project, params: str = CHAIN_PARAMS, source: str = CHAIN):
    project.write("experiments/chain.py", source)
    project.write("params/p.yaml", params)
    first = project.run("chain", "params/p.yaml")
    assert first.ok, first.error
    return first


def node(result, stage: str, record: str):
    found = [n for n in result.graph.nodes if n.stage.name == stage and n.record_name == record]
    assert len(found) == 1, f"expected one node {stage}/{record}, got {found}"
    return found[0]


def record(result, name: str):
    return next(r for r in result.records if r.name == name)


def entry_of(result, stage: str, rec: str) -> Path:
    directory = Path(node(result, stage, rec).entry_dir)
    assert (directory / "meta.json").is_file()
    return directory


def cache_files(project) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in project.snapshot().items() if k.startswith("data/cache/")}


class LoadCounter:
    """Counts cacher loads and every open() of a file under the cache other than meta.json."""

    def __init__(self, monkeypatch, cache: Path) -> None:
        self.loads: list[str] = []
        self.opened: list[str] = []
        self.checksummed: list[str] = []
        counter = self

        def patch_load(cls):
            original = cls.load

            def load(self):
                counter.loads.append(f"{cls.__name__}:{self.path}")
                return original(self)

            monkeypatch.setattr(cls, "load", load)

        for cls in (JsonCacher, PickleCacher):
            patch_load(cls)

        real_open = builtins.open
        cache_root = str(cache.resolve())

        def spy_open(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)):
                path = os.path.abspath(os.fspath(file))
                if (
                    path.startswith(cache_root)
                    and os.path.basename(path) != "meta.json"
                    and "/.reads/" not in path  # the reads index: not an artifact
                ):
                    counter.opened.append(path)
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", spy_open)

        real_sha = curifactory_cli.store.file_checks.file_sha256

        def spy_sha(path):
            counter.checksummed.append(str(path))
            return real_sha(path)

        monkeypatch.setattr(curifactory_cli.store.file_checks, "file_sha256", spy_sha)


# ---------------------------------------------------------------------------------- 1
def test_second_run_unchanged_executes_nothing_and_opens_no_artifact(project, monkeypatch):
    first = setup_chain(project)
    first_values = {r.name: (r.state["total"], r.state["count"]) for r in first.records}
    before = cache_files(project)

    counter = LoadCounter(monkeypatch, project.cache)
    second = project.run("chain", "params/p.yaml")

    assert second.ok
    assert second.executed() == []
    assert all(n.outcome is Outcome.CACHED for n in second.graph.nodes)
    assert counter.loads == [], "a cached run must not load any artifact"
    assert counter.opened == [], "a cached run must not open any artifact file"
    assert counter.checksummed == []
    assert cache_files(project) == before, "a cached run must not touch the cache"

    second_values = {r.name: (r.state["total"], r.state["count"]) for r in second.records}
    assert second_values == first_values == {"a": (12, 3), "b": (24, 3)}


# ---------------------------------------------------------------------------------- 2
def test_stage_logic_edit_reruns_stage_and_dependants_only(project):
    setup_chain(project)
    changed = edit(CHAIN, "x * 2 * record.params.k", "x * 3 * record.params.k")
    project.write("experiments/chain.py", changed)

    result = project.run("chain", "params/p.yaml")

    assert result.ok
    assert sorted(result.executed()) == [
        ("double", "a"),
        ("double", "b"),
        ("total", "a"),
        ("total", "b"),
    ]
    for rec in ("a", "b"):
        assert node(result, "load", rec).outcome is Outcome.CACHED
        assert node(result, "count", rec).outcome is Outcome.CACHED
    assert record(result, "a").state["total"] == 18
    assert record(result, "b").state["total"] == 36


# ---------------------------------------------------------------------------------- 3
def test_comment_docstring_formatting_edit_reruns_nothing(project):
    setup_chain(project)
    cosmetic = edit(
        CHAIN,
        "def double(record, numbers):\n    return [x * 2 * record.params.k for x in numbers]",
        'def double(record, numbers):\n    """Double every number."""\n'
        "    # scale by k\n"
        "    return [\n        x*2*record.params.k   # the factor\n"
        "        for x in numbers\n    ]",
    )
    cosmetic = edit(
        cosmetic,
        "def total(record, doubled):",
        "def total(record,\n          doubled):  # summed\n    '''Sum.'''",
    )
    project.write("experiments/chain.py", "# a new header comment\n\n" + cosmetic)

    result = project.run("chain", "params/p.yaml")

    assert result.ok
    assert result.executed() == []


# ---------------------------------------------------------------------------------- 4
def test_rerun_with_identical_output_keeps_dependants_cached(project):
    setup_chain(project)
    project.write(
        "experiments/chain.py", edit(CHAIN, "return [1, 2, 3]", "return list(range(1, 4))")
    )

    result = project.run("chain", "params/p.yaml")

    assert result.ok
    # `load` reads no parameter: both sets share the one entry it computes again.
    assert sorted(result.executed()) == [("load", "a")]
    for rec in ("a", "b"):
        for stage in ("double", "total", "count"):
            assert node(result, stage, rec).outcome is Outcome.CACHED
    assert record(result, "a").state["total"] == 12


# ---------------------------------------------------------------------------------- 5
def test_overwrite_stage_deterministic_output_keeps_dependants_cached(project):
    setup_chain(project)

    result = project.run("chain", "params/p.yaml", overwrite_stages=("load",))

    assert result.ok
    assert sorted(result.executed()) == [("load", "a"), ("load", "b")]
    assert node(result, "double", "a").outcome is Outcome.CACHED
    assert node(result, "total", "b").outcome is Outcome.CACHED


def test_overwrite_stage_nondeterministic_output_reruns_dependants(project):
    source = edit(
        CHAIN,
        "    return [1, 2, 3]",
        "    import time\n    return [time.time_ns() % 1000 + 1, 2, 3]",
    )
    first = setup_chain(project, CHAIN_ONE_PARAMS, source)
    old_numbers = record(first, "a").state["numbers"]

    result = project.run("chain", "params/p.yaml", overwrite_stages=("load",))

    assert result.ok
    assert record(result, "a").state["numbers"] != old_numbers
    assert sorted(result.executed()) == [
        ("count", "a"),
        ("double", "a"),
        ("load", "a"),
        ("total", "a"),
    ]
    numbers = record(result, "a").state["numbers"]
    assert record(result, "a").state["total"] == 2 * sum(numbers)


# ---------------------------------------------------------------------------------- 6
def test_overwrite_flag_reruns_every_stage(project):
    first = setup_chain(project)

    result = project.run("chain", "params/p.yaml", overwrite=True)

    assert result.ok
    # The first run computed `load` and `count` once for both sets (they read no parameter);
    # forced, every call runs.
    assert len(first.executed()) == 6
    assert len(result.executed()) == 8


# ---------------------------------------------------------------------------------- 7
def test_param_value_change_reruns_only_that_set_and_aggregate(project):
    project.write("experiments/typed.py", TYPED)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    assert project.run("typed", "params/p.yaml").ok

    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 5\n")
    result = project.run("typed", "params/p.yaml")

    assert result.ok
    assert result.executed() == [("compute", "b"), ("combine", "aggregate")]
    assert node(result, "compute", "a").outcome is Outcome.CACHED
    assert record(result, "aggregate").state["total"] == 2 + 10
    # Its records are the same, in the same order: what changed is b's value it reads.
    assert node(result, "combine", "aggregate").reason == "input data changed (value)"


def test_param_set_rename_keeps_cache(project):
    project.write("experiments/typed.py", TYPED)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    assert project.run("typed", "params/p.yaml").ok

    project.write("params/p.yaml", "- name: first\n  n: 1\n- name: second\n  n: 2\n")
    result = project.run("typed", "params/p.yaml")

    assert result.ok
    assert result.executed() == []
    assert record(result, "second").state["value"] == 4


def test_param_sets_in_another_order_run_only_the_aggregate_again(project):
    """An aggregate's record hash (its folder) covers the set of records, not their order in
    the file; its key holds the order it is given them (what it builds in that order, a
    list or a table's rows, would be served in the other order), so it runs again, alone."""
    project.write("experiments/typed.py", TYPED)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    first = project.run("typed", "params/p.yaml")
    assert first.ok

    project.write("params/p.yaml", "- name: b\n  n: 2\n- name: a\n  n: 1\n")
    result = project.run("typed", "params/p.yaml")

    assert result.ok
    assert result.executed() == [("combine", "aggregate")]
    (combine,) = [n for n in result.graph.nodes if n.stage.name == "combine"]
    assert combine.reason == "its records come in another order"
    assert record(result, "aggregate").get_hash() == record(first, "aggregate").get_hash()


ORDERED = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.aggregate(outputs=["order"], cachers=[JsonCacher])
def order(record, records):
    return [r.params.n for r in records]

def run(param_sets, manager):
    records = [cf.Record(manager, p) for p in param_sets]
    order(cf.Record(manager, None), records)
"""


def test_an_aggregate_without_inputs_is_keyed_on_the_order_of_its_records(project):
    project.write("experiments/ordered.py", ORDERED)
    project.write("params/p.yaml", "- name: a\n  n: 1\n- name: b\n  n: 2\n")
    assert project.run("ordered", "params/p.yaml").executed() == [("order", "aggregate")]
    project.write("params/p.yaml", "- name: b\n  n: 2\n- name: a\n  n: 1\n")
    again = project.run("ordered", "params/p.yaml")
    assert again.executed() == [("order", "aggregate")]
    assert record(again, "aggregate").state["order"] == [2, 1]


def test_param_excluded_by_hash_representations_change_keeps_cache(project):
    project.write("experiments/typed.py", TYPED)
    project.write("params/p.yaml", "- name: a\n  n: 1\n  n_workers: 1\n")
    first = project.run("typed", "params/p.yaml")
    assert first.ok

    project.write("params/p.yaml", "- name: a\n  n: 1\n  n_workers: 8\n")
    result = project.run("typed", "params/p.yaml")

    assert result.ok
    assert record(result, "a").params.n_workers == 8
    assert result.param_sets[0].hash == first.param_sets[0].hash
    assert result.executed() == []


def test_param_added_with_none_value_keeps_cache(project):
    project.write("experiments/typed.py", TYPED)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    first = project.run("typed", "params/p.yaml")
    assert first.ok

    project.write(
        "experiments/typed.py",
        edit(
            TYPED,
            "    n_workers: int = 1\n",
            "    n_workers: int = 1\n    extra: Optional[int] = None\n",
        ).replace(
            "from dataclasses import", "from typing import Optional\nfrom dataclasses import"
        ),
    )
    project.write("params/p.yaml", "- name: a\n  n: 1\n  extra: null\n")
    result = project.run("typed", "params/p.yaml")

    assert result.ok
    assert result.param_sets[0].hash == first.param_sets[0].hash
    assert result.executed() == []


# ---------------------------------------------------------------------------------- 8
LAZY_PARAMS = "- name: a\n  n: 1\n- name: b\n  n: 2\n"


def test_lazy_each_record_owns_its_value_and_aggregate_sees_each(project):
    project.write("experiments/lazy.py", LAZY)
    project.write("params/p.yaml", LAZY_PARAMS)

    result = project.run("lazy", "params/p.yaml")

    assert result.ok
    assert record(result, "aggregate").state["seen"] == {"a": [1, 1, 1], "b": [2, 2, 2]}
    assert record(result, "a").state["big"] == [1, 1, 1]
    assert record(result, "b").state["big"] == [2, 2, 2]
    lazy_a = record(result, "a").state.raw("big").value
    lazy_b = record(result, "b").state.raw("big").value
    assert isinstance(lazy_a, Lazy) and isinstance(lazy_b, Lazy)
    assert lazy_a is not lazy_b
    assert lazy_a.cacher.get_path() != lazy_b.cacher.get_path()
    assert os.path.isfile(lazy_a.cacher.get_path())


def test_lazy_cache_hit_loads_nothing_then_state_reads_own_value(project, monkeypatch):
    project.write("experiments/lazy.py", LAZY)
    project.write("params/p.yaml", LAZY_PARAMS)
    assert project.run("lazy", "params/p.yaml").ok

    counter = LoadCounter(monkeypatch, project.cache)
    result = project.run("lazy", "params/p.yaml")

    assert result.ok
    assert result.executed() == []
    assert counter.loads == []
    assert counter.opened == []
    assert record(result, "a").state["big"] == [1, 1, 1]
    assert record(result, "b").state["big"] == [2, 2, 2]
    assert len(counter.loads) == 2


def test_lazy_output_without_cachers_gets_pickle_file(project):
    project.write("experiments/lazy.py", LAZY)
    project.write("params/p.yaml", LAZY_PARAMS)

    result = project.run("lazy", "params/p.yaml")

    assert result.ok
    directory = entry_of(result, "make_blob", "b")
    assert (directory / "blob.pkl").is_file()
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["outputs"]["blob"]["cacher"].endswith("PickleCacher")
    assert meta["outputs"]["blob"]["lazy"] is True
    assert record(result, "b").state["blob"] == {"n": 2}


def test_lazy_resolve_false_hands_handle_with_existing_path(project):
    project.write("experiments/handle.py", LAZY_HANDLE)
    project.write("params/p.yaml", "- name: a\n  n: 7\n")

    first = project.run("handle", "params/p.yaml")
    assert first.ok
    info = record(first, "a").state["info"]
    assert info["type"] == "Lazy"
    assert info["exists"] is True
    assert info["content"] == {"n": 7}
    assert Path(info["path"]).is_file()
    assert Path(info["path"]).parent == entry_of(first, "produce", "a")

    # Producer cached, consumer re-executed: it still gets a handle on the cached file.
    project.write(
        "experiments/handle.py",
        edit(LAZY_HANDLE, '"exists": os.path.isfile(path),', '"exists": os.path.exists(path),'),
    )
    second = project.run("handle", "params/p.yaml")
    assert second.ok
    assert second.executed() == [("use_path", "a")]
    info = record(second, "a").state["info"]
    assert (info["type"], info["exists"], info["content"]) == ("Lazy", True, {"n": 7})
    assert Path(info["path"]).parent == entry_of(second, "produce", "a")


# ---------------------------------------------------------------------------------- 9
def test_memory_stage_runs_only_when_a_consumer_executes(project):
    project.write("experiments/mem.py", MEMORY)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")

    first = project.run("mem", "params/p.yaml")
    assert first.ok
    assert first.executed() == [("prep", "a"), ("use", "a"), ("show", "a")]

    second = project.run("mem", "params/p.yaml")
    assert second.ok
    # prep: all consumers cached -> not run; show: uncached leaf -> always runs.
    assert second.executed() == [("show", "a")]
    assert node(second, "prep", "a").outcome is Outcome.SKIPPED
    assert record(second, "a").state["shown"] == "result=11"

    project.write("experiments/mem.py", edit(MEMORY, "return base + 1", "return base + 2"))
    third = project.run("mem", "params/p.yaml")
    assert third.ok
    assert third.executed() == [("prep", "a"), ("use", "a"), ("show", "a")]
    assert record(third, "a").state["shown"] == "result=12"


# ---------------------------------------------------------------------------------- 10
def test_deleted_intermediate_entry_is_skipped_until_needed(project):
    import shutil

    first = setup_chain(project, CHAIN_ONE_PARAMS)
    shutil.rmtree(entry_of(first, "double", "a"))

    second = project.run("chain", "params/p.yaml")
    assert second.ok
    assert second.executed() == []
    assert node(second, "double", "a").outcome is Outcome.SKIPPED
    assert node(second, "total", "a").outcome is Outcome.CACHED
    assert record(second, "a").state["total"] == 12

    project.write(
        "experiments/chain.py", edit(CHAIN, "return sum(doubled)", "return sum(doubled) + 100")
    )
    third = project.run("chain", "params/p.yaml")
    assert third.ok
    assert third.executed() == [("double", "a"), ("total", "a")]
    assert node(third, "load", "a").outcome is Outcome.CACHED
    assert record(third, "a").state["total"] == 112
    assert (entry_of(third, "double", "a") / "doubled.json").is_file()


# ---------------------------------------------------------------------------------- 11
def test_truncated_artifact_is_a_miss_and_recomputed(project):
    first = setup_chain(project, CHAIN_ONE_PARAMS)
    artifact = entry_of(first, "total", "a") / "total.json"
    artifact.write_bytes(artifact.read_bytes()[:-1])

    result = project.run("chain", "params/p.yaml")

    assert result.ok
    assert result.executed() == [("total", "a")]
    assert record(result, "a").state["total"] == 12
    assert any("wrong size" in w for w in result.warnings), result.warnings


def test_flipped_byte_same_size_detected_on_load_and_recomputed(project):
    first = setup_chain(project, CHAIN_ONE_PARAMS)
    artifact = entry_of(first, "double", "a") / "doubled.json"
    data = artifact.read_bytes()
    assert b"2" in data
    corrupted = data.replace(b"2", b"8", 1)  # still valid JSON, same size, different value
    assert len(corrupted) == len(data)
    artifact.write_bytes(corrupted)

    # total now has to execute, so it loads the (corrupt) doubled output.
    project.write(
        "experiments/chain.py", edit(CHAIN, "return sum(doubled)", "return sum(x for x in doubled)")
    )
    result = project.run("chain", "params/p.yaml")

    assert result.ok, result.error
    assert record(result, "a").state["total"] == 12  # not 18 from the corrupt bytes
    assert ("double", "a") in result.executed()
    assert ("total", "a") in result.executed()
    assert any("checksum" in w for w in result.warnings), result.warnings
    assert json.loads(artifact.read_text()) == [2, 4, 6]


def test_deleted_meta_json_is_a_miss_and_recomputed(project):
    first = setup_chain(project, CHAIN_ONE_PARAMS)
    (entry_of(first, "total", "a") / "meta.json").unlink()

    result = project.run("chain", "params/p.yaml")

    assert result.ok
    assert result.executed() == [("total", "a")]
    assert record(result, "a").state["total"] == 12
    assert (Path(node(result, "total", "a").entry_dir) / "meta.json").is_file()


@pytest.mark.parametrize(
    "garbage",
    [b"{not json at all", b"\x00\xff\xfe garbage", b"[]", b"null", b"{}", "incomplete"],
    ids=["broken-json", "binary", "list", "null", "empty-object", "outputs-missing"],
)
def test_garbage_meta_json_is_a_miss_with_warning(project, garbage):
    first = setup_chain(project, CHAIN_ONE_PARAMS)
    meta_path = entry_of(first, "total", "a") / "meta.json"
    if garbage == "incomplete":
        meta = json.loads(meta_path.read_text())
        meta["outputs"] = {}
        garbage = json.dumps(meta).encode()
    meta_path.write_bytes(garbage)

    result = project.run("chain", "params/p.yaml")

    assert result.ok, result.error
    assert result.executed() == [("total", "a")]
    assert record(result, "a").state["total"] == 12
    assert result.warnings, "a damaged entry should be reported"


# ---------------------------------------------------------------------------------- 12
def test_custom_cacher_with_sibling_file_round_trips(project):
    project.write("experiments/custom.py", CUSTOM_CACHER)
    project.write("params/p.yaml", "- name: a\n  x: 1\n")
    first = project.run("custom", "params/p.yaml")
    assert first.ok, first.error

    directory = entry_of(first, "train", "a")
    assert (directory / "model").is_file()
    assert (directory / "model_model").is_file()
    meta = json.loads((directory / "meta.json").read_text())
    assert {f["path"] for f in meta["outputs"]["model"]["files"]} == {"model", "model_model"}
    assert meta["outputs"]["model"]["cacher"].endswith("PickleModelCacher")

    # Consumer re-executes and loads the model back through the custom cacher.
    project.write(
        "experiments/custom.py",
        edit(
            CUSTOM_CACHER,
            'return sum(model["weights"])',
            'return sum(model["weights"]) + len(model["label"])',
        ),
    )
    second = project.run("custom", "params/p.yaml")
    assert second.ok, second.error
    assert second.executed() == [("evaluate", "a")]
    assert record(second, "a").state["score"] == 3.0
    assert record(second, "a").state["model"] == {"weights": [0.5, 1.5], "label": "a"}


def test_custom_cacher_missing_sibling_file_is_a_miss(project):
    project.write("experiments/custom.py", CUSTOM_CACHER)
    project.write("params/p.yaml", "- name: a\n  x: 1\n")
    first = project.run("custom", "params/p.yaml")
    assert first.ok, first.error
    sibling = entry_of(first, "train", "a") / "model_model"
    sibling.unlink()

    project.write(
        "experiments/custom.py",
        edit(CUSTOM_CACHER, 'return sum(model["weights"])', 'return sum(model["weights"]) * 2'),
    )
    result = project.run("custom", "params/p.yaml")

    assert result.ok, result.error
    assert result.executed() == [("train", "a"), ("evaluate", "a")]
    assert record(result, "a").state["score"] == 4.0
    assert sibling.is_file()
    assert any("model_model" in w for w in result.warnings), result.warnings


# ---------------------------------------------------------------------------------- 13
def test_aggregate_receives_only_records_with_the_input(project):
    project.write("experiments/agg.py", AGGREGATES)
    project.write("params/p.yaml", AGG_PARAMS)

    result = project.run("agg", "params/p.yaml")

    assert result.ok, result.error
    aggregates = [r for r in result.records if r.is_aggregate]
    collected = aggregates[0].state["collected"]
    assert collected["keys"] == ["a", "b"]
    assert collected["key_types"] == ["Record"]
    assert collected["values"] == {"a": 10, "b": 20}
    assert collected["records"] == ["a", "b", "c"]
    assert aggregates[1].state["first_only"] == {"a": 10}


def test_aggregate_reruns_only_when_an_input_changes(project):
    project.write("experiments/agg.py", AGGREGATES)
    project.write("params/p.yaml", AGG_PARAMS)
    assert project.run("agg", "params/p.yaml").ok

    # Same score values from new code: scores re-run, aggregates stay cached.
    project.write("experiments/agg.py", edit(AGGREGATES, "return n * 10", "return 10 * n"))
    same = project.run("agg", "params/p.yaml")
    assert same.ok
    assert sorted(same.executed()) == [("score", "a"), ("score", "b")]

    # An unrelated stage changes: aggregates stay cached.
    project.write("experiments/agg.py", edit(AGGREGATES, "return -n", "return -n - 1"))
    unrelated = project.run("agg", "params/p.yaml")
    assert unrelated.ok
    assert sorted(s for s, _ in unrelated.executed()) == ["side", "side", "side"]

    # Only b's score changes: collect re-runs, collect_first (records=[a]) does not.
    project.write(
        "experiments/agg.py",
        edit(AGGREGATES, "return n * 10", "return n * 10 + (record.params.n == 2)"),
    )
    changed = project.run("agg", "params/p.yaml")
    assert changed.ok
    names = [n.stage.name for n in changed.graph.nodes if n.outcome is Outcome.EXECUTED]
    assert "collect" in names
    assert "collect_first" not in names
    aggregates = [r for r in changed.records if r.is_aggregate]
    assert aggregates[0].state["collected"]["values"] == {"a": 10, "b": 21}


# ---------------------------------------------------------------------------------- 14
def test_cache_layout_and_meta_json_contents(project):
    result = setup_chain(project, CHAIN_ONE_PARAMS)
    params_hash = result.param_sets[0].hash
    load_node = node(result, "load", "a")
    directory = entry_of(result, "load", "a")

    rel = directory.relative_to(project.cache).parts
    assert rel == ("chain", params_hash[:16], f"load-{load_node.key[:16]}")
    assert sorted(p.name for p in directory.iterdir()) == ["meta.json", "numbers.json"]

    meta = json.loads((directory / "meta.json").read_text())
    assert meta["key"] == load_node.key
    assert digest(canonical_json(meta["key_parts"])) == meta["key"]
    assert {"params", "code", "stage", "inputs"} <= set(meta["key_parts"])
    assert meta["key_parts"]["stage"] == "load"
    assert meta["key_parts"]["params"] == params_hash
    assert meta["record"] == "a"
    assert meta["params"]["k"] == 1
    assert meta["params"]["name"] == "a"
    out = meta["outputs"]["numbers"]
    assert out["cacher"] == "curifactory_cli.caching.JsonCacher"
    [info] = out["files"]
    artifact = directory / info["path"]
    assert info["path"] == "numbers.json"
    assert info["size"] == artifact.stat().st_size
    assert info["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert {"compute_s", "save_s", "finished"} <= set(meta["timings"])
    # The entry names its run, whose commit is kept once, in the registry; the installed
    # packages its process had imported are the entry's own.
    assert meta["run"] == {"id": result.run_id, "host": socket.gethostname()}
    assert "git" not in meta and isinstance(meta["versions"], dict)
    run = RunRegistry(project.root / "data" / "runs.sqlite").get_run(result.run_id)
    assert run.versions["curifactory_cli"] and run.versions["python"]
    assert run.git.commit is None or len(run.git.commit) == 40
    inside_git = (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project.root, capture_output=True
        ).returncode
        == 0
    )
    if not inside_git:
        assert run.git.commit is None

    # The consumer's key part for its input is the producer's data version.
    double_meta = json.loads((entry_of(result, "double", "a") / "meta.json").read_text())
    assert double_meta["key_parts"]["inputs"] == {"numbers": out["version"]}
    assert double_meta["inputs"]["numbers"]["stage"] == "load"


# ---------------------------------------------------------------------------------- 15
def test_params_hash_same_across_processes_and_hash_seeds():
    code = (
        "from curifactory_cli.hashing import hash_params;"
        "print(hash_params({'s': {'a', 'b', 'c'}, 'd': {'x': 1, 'y': 2}}));"
        "print(hash_params({'d': {'y': 2, 'x': 1}, 's': {'c', 'b', 'a'}}))"
    )
    outputs = []
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(proc.stdout.split())
    assert all(len(o) == 2 and o[0] == o[1] for o in outputs), outputs
    assert len({o[0] for o in outputs}) == 1, outputs


def test_params_hash_changes_with_values():
    from curifactory_cli.hashing import hash_params

    assert hash_params({"s": {"a", "b"}}) != hash_params({"s": {"a", "c"}})


# ---------------------------------------------------------------------------------- 16
def test_dry_run_executes_misses_reads_cache_writes_nothing(project):
    setup_chain(project, CHAIN_ONE_PARAMS)
    project.write(
        "experiments/chain.py", edit(CHAIN, "return sum(doubled)", "return sum(doubled) * 10")
    )
    before = project.snapshot()

    dry = project.run("chain", "params/p.yaml", dry=True)

    assert dry.ok, dry.error
    assert dry.executed() == [("total", "a")]
    assert node(dry, "load", "a").outcome is Outcome.CACHED
    assert node(dry, "double", "a").outcome is Outcome.CACHED
    assert record(dry, "a").state["total"] == 120
    assert project.snapshot() == before

    real = project.run("chain", "params/p.yaml")
    assert real.executed() == [("total", "a")], "the dry run must not have cached anything"


def test_dry_run_on_empty_cache_creates_nothing(project):
    project.write("experiments/chain.py", CHAIN)
    project.write("params/p.yaml", CHAIN_ONE_PARAMS)
    before = project.snapshot()

    dry = project.run("chain", "params/p.yaml", dry=True)

    assert dry.ok, dry.error
    assert len(dry.executed()) == 4
    assert record(dry, "a").state["total"] == 12
    assert project.snapshot() == before
    assert not project.cache.exists() or not any(project.cache.rglob("*"))


# ---------------------------------------------------------------------------------- CLI
def test_cli_second_run_json_reports_all_cached(project, cli):
    project.write("experiments/chain.py", CHAIN)
    project.write("params/p.yaml", CHAIN_PARAMS)
    first = cli("run", "chain", "params/p.yaml", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["counts"]["executed"] == 6  # load, count: once

    second = cli("run", "chain", "params/p.yaml", "--json")
    assert second.exit_code == 0, second.output
    data = json.loads(second.stdout)
    assert data["counts"] == {"executed": 0, "cached": 8, "skipped": 0, "failed": 0}


def test_cli_overwrite_stage_reruns_only_that_stage_when_output_identical(project, cli):
    project.write("experiments/chain.py", CHAIN)
    project.write("params/p.yaml", CHAIN_ONE_PARAMS)
    assert cli("run", "chain", "params/p.yaml", "--quiet").exit_code == 0

    result = cli("run", "chain", "params/p.yaml", "--overwrite-stage", "double", "--json")
    assert result.exit_code == 0, result.output
    nodes = {n["stage"]: n["outcome"] for n in json.loads(result.stdout)["nodes"]}
    assert nodes == {"load": "cached", "double": "executed", "total": "cached", "count": "cached"}


def test_cli_dry_run_leaves_project_untouched(project, cli):
    project.write("experiments/chain.py", CHAIN)
    project.write("params/p.yaml", CHAIN_ONE_PARAMS)
    assert cli("run", "chain", "params/p.yaml", "--quiet").exit_code == 0
    project.write(
        "experiments/chain.py", edit(CHAIN, "return len(numbers)", "return len(numbers) + 1")
    )
    before = project.snapshot()

    result = cli("run", "chain", "params/p.yaml", "--dry", "--json")

    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert counts["executed"] == 1 and counts["cached"] == 3
    assert project.snapshot() == before


def test_cacheable_base_accepts_docs_style_init():
    # The documented custom-cacher pattern: super().__init__("") with no extension.
    class Custom(Cacheable):
        def __init__(self, *args, **kwargs):
            super().__init__("", *args, **kwargs)

    cacher = Custom()
    cacher._bind("/tmp/x", "model")
    assert cacher.get_path() == os.path.join("/tmp/x", "model")
