"""A run sets aside (freezes) what survives the garbage collector's full collections while it
builds and winds up its graph, and hands everything back when it ends, however it ends: a
program that calls run_experiment() again and again must not keep what earlier runs made."""

from __future__ import annotations

import gc
import sys

import pytest

EXPERIMENT = """
import gc
import weakref

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

SEEN = []  # weak references to objects the run made and dropped


class Cyclic:
    def __init__(self, size):
        self.me = self  # only the collector can free it
        self.payload = [0] * size


@cf.stage(inputs=None, outputs=["n"], cachers=[JsonCacher])
def make(record):
    for _ in range(3):
        dropped = Cyclic(1000)
        SEEN.append(weakref.ref(dropped))
        gc.collect()  # a full collection while the stage runs
    if record.params.fail:
        raise ValueError("asked to fail")
    return record.params.n


def run(param_sets, manager):
    records = []
    for params in param_sets:
        # Garbage made while the graph is built, with full collections in between.
        for _ in range(50):
            SEEN.append(weakref.ref(Cyclic(100)))
        gc.collect()
        records.append(make(cf.Record(manager, params)))
    return records
"""


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "failed"])
def test_a_run_hands_every_object_back_to_the_collector(project, fail):
    project.write("experiments/cyclic.py", EXPERIMENT)
    project.write(
        "params/p.yaml", f"- name: a\n  n: 1\n  fail: {fail}\n- name: b\n  n: 2\n  fail: false\n"
    )
    callbacks = list(gc.callbacks)
    frozen = gc.get_freeze_count()

    result = project.run("cyclic", "params/p.yaml")
    assert result.ok is not fail
    del result  # a failure's traceback holds the stage's last objects

    assert gc.callbacks == callbacks  # the run's hook is gone
    assert gc.get_freeze_count() <= frozen  # nothing is left set aside
    seen = sys.modules["experiments.cyclic"].SEEN
    assert len(seen) >= 100
    gc.collect()
    assert [ref for ref in seen if ref() is not None] == []  # all of it could be freed
