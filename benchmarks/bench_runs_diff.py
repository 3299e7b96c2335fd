"""What `curi runs diff` costs for two large runs. By hand:

    python benchmarks/bench_runs_diff.py [--sets 2500] [--repeat 5] [--tmpdir /dev/shm]

Two runs of one experiment are recorded through the registry API (as `curi run` records
them), each with `--sets` parameter sets x 4 stages (load, prep, train, score: 10,000 stage
calls at the default), every call of a stage with cachers keeping its output versions, each
stage its code fingerprints (3 parts), `score` recording two metrics. Between the runs, one
field changes in a tenth of the sets and a helper of `train` changes: `load` and `prep` of
the other sets are reused, `train` and `score` run again everywhere, outputs and metrics
differ where the field changed.

Then, each a fresh `python -m curifactory_cli runs diff ...` subprocess (what a user waits
for), medians of `--repeat`: the text output, `--json` and `--md`; and the diff built and
rendered as JSON in this process (no interpreter start). Target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("load", "prep", "train", "score")


def fill(project: Path, sets: int) -> float:
    """Seconds to record the two runs."""
    from curifactory_cli.hashing import digest
    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.registry.records import GitInfo, HostInfo, ParamSetRecord, StageRecord

    registry = RunRegistry(registry_path(project))
    started = time.perf_counter()
    for run_number in (1, 2):
        changed = run_number == 2
        param_sets = []
        for i in range(sets):
            values = {"lr": [0.1, 0.01][i % 2], "seed": i % 5, "width": 16 * (1 + i % 7)}
            if changed and i % 10 == 0:
                values["lr"] = 0.5  # one field, in a tenth of the sets
            param_sets.append(
                ParamSetRecord(
                    name=f"s{i}",
                    hash=digest(json.dumps([i, values])),
                    source="params/grid.yaml",
                    values=values,
                )
            )
        code = {
            s: {s: digest(s), "_helper": digest(s + "helper"), "LIMIT": digest("3")} for s in STAGES
        }
        if changed:
            code["train"]["_helper"] = digest("a new helper")
        run = registry.start_run(
            experiment="bench",
            command=["curi", "run", "bench", "grid"],
            param_files=[],
            param_sets=param_sets,
            git=GitInfo(commit="c" * 40, dirty=False),
            host=HostInfo(host="box"),
            versions={},
            notes=None,
            cache_dir="data/cache",
            dry=False,
        )
        calls = []
        for i, p in enumerate(param_sets):
            edited = changed and i % 10 == 0
            for position, stage in enumerate(STAGES):
                again = run_number == 1 or edited or stage in ("train", "score")
                version_of = f"{stage}{i}{'x' if edited and position else ''}"
                version_of += "y" if changed and stage in ("train", "score") and edited else ""
                calls.append(
                    StageRecord(
                        stage=stage,
                        record=p.name,
                        outcome="executed" if again else "cached",
                        reason=(
                            "not computed yet"
                            if run_number == 1
                            else "parameters changed (lr: 0.1 -> 0.5)"
                            if edited
                            else "stage code changed (_helper)"
                            if stage == "train"
                            else "input data changed (model)"
                            if stage == "score"
                            else "cached"
                        ),
                        seconds=0.1,
                        key=digest(f"{stage}{i}{run_number if again else 1}"),
                        entry=f"bench/{p.hash[:16]}/{stage}-{i:016x}",
                        inputs=[len(calls) - 1] if position else [],
                        metrics=(
                            {"acc": (i % 100 + (5 if edited else 0)) / 200, "loss": float(i % 13)}
                            if stage == "score"
                            else None
                        ),
                        outputs={"out": digest(version_of)},
                    )
                )
        registry.finish_run(
            run.reference,
            status="complete",
            duration_s=1.0,
            counts={"executed": sum(c.outcome == "executed" for c in calls)},
            error=None,
            failed_stage=None,
            failed_record=None,
            stages=calls,
            code=code,
        )
    return time.perf_counter() - started


CASES = {"text": [], "json": ["--json"], "md": ["--md"]}


def timed_cli(project: Path, args: list[str], repeat: int) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    times, lines = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "curifactory_cli", "runs", "diff", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(time.perf_counter() - started)
        lines = len(out.stdout.splitlines())
    return statistics.median(times), lines


def timed_api(project: Path, repeat: int) -> tuple[float, dict]:
    from curifactory_cli.registry.database import RunRegistry, registry_path
    from curifactory_cli.run.runs_diff import chosen_runs, diff_runs

    times = []
    doc: dict = {}
    for _ in range(repeat):
        started = time.perf_counter()
        registry = RunRegistry(registry_path(project), read_only=True)
        diff = diff_runs(registry, *chosen_runs(registry, None, None))
        doc = diff.to_json()
        json.dumps(doc)
        times.append(time.perf_counter() - started)
    return statistics.median(times), doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=2500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="curi-bench-diff-", dir=args.tmpdir))
    try:
        project = base / "project"
        (project / "experiments").mkdir(parents=True)
        seconds = fill(project, args.sets)
        size = (project / "data" / "runs.sqlite").stat().st_size
        calls = args.sets * len(STAGES)
        print(
            f"registry: 2 runs x {calls} stage calls ({args.sets} sets x {len(STAGES)} stages), "
            f"recorded in {seconds:.1f} s, {size / 1e6:.1f} MB"
        )
        api, doc = timed_api(project, args.repeat)
        print(
            f"in-process diff + JSON: {api:.3f} s ({len(doc['calls']['rows'])} calls differ, "
            f"{doc['outputs']['differ']} outputs differ, {len(doc['metrics']['rows'])} metrics "
            f"changed, {len(doc['params']['changed'])} sets changed)"
        )
        for name, case in CASES.items():
            wall, lines = timed_cli(project, case, args.repeat)
            shown = " ".join(["curi runs diff", *case])
            print(f"{name:>5}: {shown}: {wall:.3f} s ({lines} lines)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
