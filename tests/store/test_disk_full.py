"""A write that fails for lack of space fails the run cleanly and keeps the old entry."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

EXPERIMENT = """
import curifactory_cli as cf
from curifactory_cli.caching import PickleCacher

@cf.stage(outputs=["blob"], cachers=[PickleCacher])
def make(record):
    return b"x" * record.params.size

def run(param_sets, manager):
    for p in param_sets:
        make(cf.Record(manager, p))
"""


def limit_file_size() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def curi(project, *args, limited=False):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "curifactory_cli", *args],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_file_size if limited else None,
    )


def test_full_disk_fails_with_exit_1_and_keeps_the_old_entry(project):
    project.write("experiments/big.py", EXPERIMENT)
    project.write("params/p.yaml", "- name: a\n  size: 1000\n")
    assert curi(project, "run", "big", "p", "-q").returncode == 0
    (old,) = project.entries()
    old_files = {p.name: p.read_bytes() for p in old.iterdir()}

    project.write("params/p.yaml", "- name: a\n  size: 5000000\n")  # 5 MB > the 1 MB limit
    result = curi(project, "run", "big", "p", "-q", limited=True)
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr and "make" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.entries() == [old]  # nothing new was published
    assert {p.name: p.read_bytes() for p in old.iterdir()} == old_files
    assert not any((project.cache / ".staging").iterdir())  # the partial write was removed
    status = json.loads(curi(project, "runs", "ls", "--json").stdout)["runs"][0]["status"]
    assert status == "error"
