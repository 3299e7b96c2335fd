"""A call whose lock another run holds waits for it, then looks the entry up again: what that
run published is taken as a hit, unless the call is forced (`--overwrite`), which replaces it.
A call that may share its entry with other sets locks its probe (the computation), held by a
run until its last call of that probe lets go."""

from __future__ import annotations

import shutil
import threading

from curifactory_cli.engine.probe_locks import ProbeLocks
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
    return first.graph.nodes[0]


def test_a_forced_call_that_waited_for_the_lock_runs_instead_of_taking_the_entry(project):
    # A forced call locks its entry (it takes no other set's).
    held = LocalStore(str(project.cache)).entry_lock(computed_once(project).key)
    assert held.acquire_nowait()  # another run computing the same entry
    threading.Timer(0.5, held.release).start()
    again = project.run("e", "params/p.yaml", overwrite=True)
    assert again.ok and again.executed() == [("make", "a")]


def test_a_call_that_waited_for_the_lock_takes_what_the_other_run_published(project):
    # The call may share its entry with other sets: it locks its probe (the computation).
    held = LocalStore(str(project.cache)).entry_lock(computed_once(project).probe)
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


def test_a_probe_lock_is_held_by_a_run_until_its_last_call_lets_go(tmp_path):
    (tmp_path / "cache").mkdir()
    store = LocalStore(str(tmp_path / "cache"))
    flushed = []
    locks = ProbeLocks(store, lambda: flushed.append(True))
    first, second = locks.lock("ab" * 32), locks.lock("ab" * 32)
    assert first.acquire_nowait() and second.acquire_nowait()  # one run's calls never wait
    other_run = store.entry_lock("ab" * 32)
    assert not other_run.acquire_nowait()
    other_run.mark_waiting()
    first.release()
    assert not other_run.acquire_nowait() and flushed == []
    second.release()  # the last: it writes what it holds back, since a run waits
    assert flushed == [True]
    assert other_run.acquire_nowait()
    assert not other_run.waited_on()  # the message was taken
    other_run.release()


def test_a_probe_lock_nobody_waited_for_writes_nothing_early(tmp_path):
    (tmp_path / "cache").mkdir()
    store = LocalStore(str(tmp_path / "cache"))
    flushed = []
    lock = ProbeLocks(store, lambda: flushed.append(True)).lock("cd" * 32)
    assert lock.acquire_nowait()
    lock.release()
    lock.release()  # a second release is nothing
    assert flushed == []
