"""SIGKILL `curi run` at random moments while it computes, saves, checksums and publishes
entries, for every built-in cacher and a slow multi-file custom cacher. After each kill:

* every entry folder that is visible in the cache is whole (meta.json lists exactly the files
  present, with matching sizes and checksums): a kill never publishes a partial entry;
* a normal `curi run` exits 0 without any error, and every stage's cached result (and the
  consumer's checksum of the data it received) is byte-identical to a clean run's.

Each trial is its own tiny project; trials run 4 at a time. The kill moment is drawn from a
seeded RNG, as a fraction of the time a clean run needs from a moment to its exit; the moment
is, in turn, the producer's start, its first file appearing in its draft folder, and its publish. So
kills land in the compute, the save (the custom cacher writes in small chunks with sleeps),
the checksumming, the publish, the consumer and the registry update alike.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reliability_helpers import (
    KINDS,
    RUN_TIMEOUT,
    curi_args,
    entry_dirs,
    entry_problems,
    env,
    make_project,
    node_results,
    run_json,
)

SEED = 1234
TRIALS_PER_KIND = 12  # 60 SIGKILL trials, topped up until MIN_KILLS runs died mid-run
MIN_KILLS = 50
# Kill moments spread over SPREAD times an unloaded run's duration: trials run 4 at a time on
# 2 cores, so they are slower than the calibration run and most kills still land mid-run.
SPREAD = 1.6
MAX_TRIALS = 100
WORKERS = 4
N = 40_000  # rows/values per output: 1-3 MB files, a save of ~0.05-0.3 s
ALLOWED_WARNING = re.compile(r"ignoring cache entry|recomputing")


@dataclass
class Trial:
    index: int
    kind: str
    aim: str  # the moment the kill's delay counts from: a key of AIMS
    fraction: float
    killed: bool = False
    published_before_kill: list[str] = field(default_factory=list)
    drafts_left: int = 0
    partial_files: int = 0  # files found in leftover draft folders: killed mid-save
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _started(root: Path) -> bool:
    return (root / "started").exists()


def _saving(root: Path) -> bool:
    # Or already past it: a slow poll must not miss a short save.
    try:
        saving = any((root / "data" / "cache" / ".staging").glob("*/*"))
    except FileNotFoundError:  # a draft folder was published while the poll listed it
        saving = True
    return saving or _published(root)


def _published(root: Path) -> bool:
    return any((root / "data" / "cache" / "faulty").glob("*/make_*"))


# The moments a kill's delay counts from, in the order a run reaches them.
AIMS = {"start": _started, "save": _saving, "publish": _published}


def _wait_until(ready, root: Path, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(root):
            return True
        if proc.poll() is not None:
            return ready(root)
        time.sleep(0.002)
    return False


def _calibrate(base: Path, kind: str) -> tuple[dict[str, float], dict]:
    """A clean run of `kind`: the time span each aim's kills are spread over, and its results."""
    root = make_project(base / f"clean-{kind}", N, (kind,))
    with open(root / "clean.json", "w") as out:
        proc = subprocess.Popen(
            curi_args("run", "faulty", "params/p.yaml", "--json"),
            cwd=root,
            env=env(),
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        marks = {}
        for aim, ready in AIMS.items():
            assert _wait_until(ready, root, proc, RUN_TIMEOUT), f"{kind}: no {aim}"
            marks[aim] = time.monotonic()
        assert proc.wait(timeout=RUN_TIMEOUT) == 0, f"clean run of {kind} failed"
        ended = time.monotonic()
    doc = json.loads((root / "clean.json").read_text())
    assert doc["ok"] and doc["warnings"] == []
    # Kills aimed at the save fall before the publish; the others anywhere up to the exit.
    windows = {aim: ended - mark for aim, mark in marks.items()}
    windows["save"] = max(marks["publish"] - marks["save"], 0.005)
    return windows, node_results(doc)


def _trial(base: Path, trial: Trial, windows: dict[str, float], clean: dict) -> Trial:
    root = make_project(base / f"t{trial.index:02d}-{trial.kind}", N, (trial.kind,))
    cache = root / "data" / "cache"
    with open(root / "killed.stderr", "w") as errors:
        proc = subprocess.Popen(
            curi_args("run", "faulty", "params/p.yaml", "--quiet"),
            cwd=root,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            if not _wait_until(AIMS[trial.aim], root, proc, RUN_TIMEOUT):
                trial.problems.append(f"never reached {trial.aim} (exit {proc.poll()})")
                return trial
            time.sleep(trial.fraction * windows[trial.aim] * SPREAD)
            proc.send_signal(signal.SIGKILL)  # a no-op if it already exited (not yet reaped)
            trial.killed = proc.wait(timeout=RUN_TIMEOUT) == -signal.SIGKILL
            if not trial.killed and proc.returncode != 0:
                trial.problems.append(f"the run ended by itself with exit {proc.returncode}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=RUN_TIMEOUT)

    # Whatever was visible after the kill must be whole and valid.
    for entry in entry_dirs(cache):
        trial.published_before_kill.append(entry.name.split("-")[0])
        trial.problems.extend(f"after the kill: {p}" for p in entry_problems(entry))
    draft = cache / ".staging"
    left = list(draft.iterdir()) if draft.is_dir() else []
    trial.drafts_left = len(left)
    trial.partial_files = sum(1 for d in left for f in d.rglob("*") if f.is_file())

    proc2, doc = run_json(root, "faulty", "params/p.yaml")
    if proc2.returncode != 0 or doc is None or not doc.get("ok"):
        trial.problems.append(f"the next run failed ({proc2.returncode}): {proc2.stderr[-2000:]}")
        return trial
    if "Traceback" in proc2.stderr or "error:" in proc2.stderr:
        trial.problems.append(f"the next run printed an error: {proc2.stderr[-2000:]}")
    trial.warnings = doc["warnings"]
    trial.problems.extend(f"warning: {w}" for w in trial.warnings if not ALLOWED_WARNING.search(w))
    results = node_results(doc)
    if results != clean:
        trial.problems.append(f"results differ from a clean run: {results} != {clean}")
    for node in doc["nodes"]:
        if node["stage"] in trial.published_before_kill and node["outcome"] != "cached":
            trial.problems.append(f"{node['stage']} was published before the kill but not reused")
    return trial


def test_sigkill_at_random_moments_never_yields_bad_data(tmp_path):
    # Calibrate one kind at a time (an unloaded run is the fastest, so nearly every kill
    # below lands before the end), then run the trials 4 at a time.
    calibrated = {kind: _calibrate(tmp_path, kind) for kind in KINDS}
    rng = random.Random(SEED)
    kinds = itertools.cycle(KINDS)
    # Successive rounds over the kinds aim at each moment in turn.
    aims = itertools.cycle([aim for aim in AIMS for _ in KINDS])
    done: list[Trial] = []
    with ThreadPoolExecutor(WORKERS) as pool:
        # Runs that finish before their kill still count as trials, but do not count towards
        # the kills required: top up (same seeded sequence) until there are enough.
        while len(done) < MAX_TRIALS:
            needed = MIN_KILLS - sum(t.killed for t in done)
            batch_size = len(KINDS) * TRIALS_PER_KIND if not done else needed + 2
            if needed <= 0 or batch_size <= 0:
                break
            batch = [
                Trial(len(done) + i, next(kinds), next(aims), rng.random())
                for i in range(min(batch_size, MAX_TRIALS - len(done)))
            ]
            done += pool.map(lambda t: _trial(tmp_path, t, *calibrated[t.kind]), batch)

    failures = [
        f"trial {t.index} ({t.kind}, {t.aim} + {t.fraction:.2f}): {p}"
        for t in done
        for p in t.problems
    ]
    assert not failures, "\n".join(failures)
    killed = [t for t in done if t.killed]
    print(
        f"\n{len(done)} trials, {len(killed)} killed mid-run "
        f"({sum(1 for t in killed if t.published_before_kill)} after a publish, "
        f"{sum(1 for t in killed if t.drafts_left)} leaving draft folders, "
        f"{sum(1 for t in killed if t.partial_files)} with files in them), "
        f"{sum(len(t.warnings) for t in done)} warnings, 0 bad loads; windows: "
        + ", ".join(f"{k}={w['start']:.2f}s" for k, (w, _) in calibrated.items())
    )
    assert len(killed) >= MIN_KILLS, f"only {len(killed)} of {len(done)} runs were killed"
    assert sum(1 for t in killed if t.partial_files) >= 5, "too few kills during a save"
    for kind in KINDS:
        assert any(t.kind == kind and t.killed and t.drafts_left for t in done), (
            f"no {kind} trial was killed while an entry was being staged"
        )
        assert any(t.kind == kind and t.killed and t.published_before_kill for t in done), (
            f"no {kind} trial was killed after its first publish"
        )
