"""A hostile cache: every field of an entry's metadata, forged with every type of value, must
leave every command working. A damaged entry is a miss (recomputed, with a warning) or a
reported problem, never a traceback, a hang or a file touched outside the cache.

The forger walks the metadata generically (every key at every depth), so a new field or a
new store layout is covered without changing this test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher
from curifactory_cli.reporting import JsonReporter

@cf.stage(inputs=None, outputs=["x", cf.Lazy("y")], cachers=[JsonCacher, JsonCacher])
def make(record):
    record.report(JsonReporter({"n": record.params.n}))
    return {"n": record.params.n}, [record.params.n] * 3

@cf.stage(inputs=["x", "y"], outputs=["z"], cachers=[JsonCacher])
def use(record, x, y):
    return {"sum": x["n"] + sum(y)}

def run(param_sets, manager):
    for p in param_sets:
        use(make(cf.Record(manager, p)))
"""

# What a field may be replaced with: each JSON type, and values that are paths, huge, or odd.
FORGED: list[Any] = [
    None,
    True,
    "x\x00y",
    "../../outside",
    [1, "a", None],
    {"path": "../x", "size": "abc", "sha256": -1},
]


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every location in a JSON document: dict keys and list positions, at every depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from paths(item, (*prefix, i))


def forged(meta: dict, path: tuple, value: Any) -> dict:
    doc = json.loads(json.dumps(meta))
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


@pytest.mark.slow
def test_every_forged_field_of_every_type_leaves_every_command_working(project, cli):
    project.write("experiments/e.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 2\n")
    first = cli("run", "e", "p", "--json")
    assert first.exit_code == 0, first.output
    entry = next(e for e in project.entries() if e.name.startswith("make-"))
    meta_path = entry / "meta.json"
    honest = meta_path.read_bytes()
    meta = json.loads(honest)
    outside = sorted(p.name for p in project.root.parent.iterdir())
    failures = []
    for path in paths(meta):
        for value in FORGED:
            meta_path.write_text(json.dumps(forged(meta, path, value)))
            # run reads metadata through lookups, ls through listings (as verify, gc, du do)
            for command in (("run", "e", "p", "--json"), ("cache", "ls")):
                result = cli(*command)
                crashed = result.exception is not None and not isinstance(
                    result.exception, SystemExit
                )
                if crashed or "Traceback" in result.output or result.exit_code not in (0, 1):
                    failures.append((path, value, command, result.exit_code, result.output[-300:]))
                    break
                if command[0] == "run" and result.exit_code != 0:
                    failures.append((path, value, command, result.exit_code, result.output[-300:]))
                    break
            meta_path.write_bytes(honest)
    assert not failures, "\n".join(map(str, failures[:10])) + f"\n({len(failures)} in all)"
    assert sorted(p.name for p in project.root.parent.iterdir()) == outside
    again = cli("run", "e", "p", "--json")
    assert json.loads(again.stdout)["counts"]["failed"] == 0
