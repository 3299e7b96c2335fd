"""A call whose entry's lock another run holds waits for it, then looks the entry up again:
what that run published is taken as a hit, unless the call is forced (`--overwrite`), which
replaces it."""

from __future__ import annotations

import shutil
import threading

from curifactory_cli.store.local import LocalStore

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher

@cf.stage(inputs=None, outputs=["x"], cachers=[JsonCacher])
def make(record):
    return {"n": record.params.n}

def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
"""


def computed_once(project):
    project.write("experiments/e.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  n: 1\n")
    first = project.run("e", "params/p.yaml")
    assert first.executed() == [("make", "a")]
    return LocalStore(str(project.cache)).entry_lock(first.graph.nodes[0].key)


def test_a_forced_call_that_waited_for_the_lock_runs_instead_of_taking_the_entry(project):
    held = computed_once(project)
    assert held.acquire_nowait()  # another run computing the same entry
    threading.Timer(0.5, held.release).start()
    again = project.run("e", "params/p.yaml", overwrite=True)
    assert again.ok and again.executed() == [("make", "a")]


def test_a_call_that_waited_for_the_lock_takes_what_the_other_run_published(project):
    held = computed_once(project)
    (entry,) = project.entries()
    aside = project.root / "aside"
    shutil.move(str(entry), str(aside))  # not there yet: the call must run

    def publish_then_release():  # the other run finishing
        shutil.move(str(aside), str(entry))
        held.release()

    assert held.acquire_nowait()
    threading.Timer(1.5, publish_then_release).start()
    again = project.run("e", "params/p.yaml")
    assert again.ok and again.executed() == []
    (node,) = again.graph.nodes
    assert node.reason == "cached (computed by a concurrent run)"
