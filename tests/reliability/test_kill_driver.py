"""SIGKILL of a `curi run -j 2` driver at random moments: its workers exit by themselves, no
published entry is ever partial, and the next run gives a clean run's results."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest
from reliability_helpers import (
    RUN_TIMEOUT,
    curi_args,
    entry_dirs,
    entry_problems,
    env,
    make_project,
    node_results,
    run_json,
)

N = 400_000  # large enough that the slow multi-file save takes a while
TRIALS = 4
SEED = 7


def _worker_pids(root) -> set[int]:
    log = root / "exec.log"
    if not log.exists():
        return set()
    return {int(line.split()[-1]) for line in log.read_text().splitlines() if line.strip()}


def _gone(pids: set[int], timeout: float) -> set[int]:
    """The pids still alive after `timeout` seconds (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().split()[2] == "Z":
                        alive.discard(pid)
            except (ProcessLookupError, FileNotFoundError):
                alive.discard(pid)
        time.sleep(0.1)
    return alive


@pytest.mark.slow
def test_killed_driver_leaves_no_workers_and_no_bad_entries(tmp_path):
    clean_root = make_project(tmp_path / "clean", N)
    proc, doc = run_json(clean_root, "faulty", "params/p.yaml", "-j", "2")
    assert proc.returncode == 0 and doc["ok"], proc.stderr
    clean = node_results(doc)

    rng = random.Random(SEED)
    killed = 0
    for trial in range(TRIALS):
        root = make_project(tmp_path / f"t{trial}", N)
        driver = subprocess.Popen(
            curi_args("run", "faulty", "params/p.yaml", "-j", "2", "--quiet"),
            cwd=root,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (root / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.random() * 1.5)
        driver.send_signal(signal.SIGKILL)
        killed += driver.wait(timeout=RUN_TIMEOUT) == -signal.SIGKILL
        workers = _worker_pids(root)
        assert workers, "no stage ran in a worker"
        assert not _gone(workers, 10), f"trial {trial}: workers outlived their killed driver"
        for entry in entry_dirs(root / "data" / "cache"):
            assert entry_problems(entry) == [], trial

        proc, doc = run_json(root, "faulty", "params/p.yaml", "-j", "2")
        assert proc.returncode == 0 and doc["ok"], proc.stderr
        assert node_results(doc) == clean
        assert json.dumps(doc["warnings"]) == "[]" or all(
            "staging" in w for w in doc["warnings"]
        ), doc["warnings"]
    assert killed >= TRIALS - 1
