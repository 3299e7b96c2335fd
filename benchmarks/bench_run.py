"""Speed and memory of `curi` as a user runs it, beside joblib.Memory and Curifactory. By hand:

    python benchmarks/bench_run.py [--records 1000] [--stages 5] [--repeat 3]
                                   [--fs /dev/shm /tmp] [--scale 3000 10000]
                                   [--curifactory /path/to/venv/bin/experiment]
                                   [--skip-joblib] [--skip-lazy] [--skip-commands]

The workload (as in the performance issue): R records x S chained stages, each a JsonCacher'd
small dict (stage_i reads stage_{i-1}'s output), plus one aggregate over the last stage of every
record: R*S + 1 cache entries. Every measured command is a fresh process, and every repeat uses
a fresh project folder (ext4 slows down in a folder where caches were made and deleted many
times). Figures: median and min of the repeats, wall time with user and system CPU, and the
child's peak RSS.

Sections:

* chain:     `curi run synthetic params/grid.yaml --quiet` cold (empty cache) and cached (nothing
             runs: checked), on each file system given with --fs (default: /dev/shm, a tmpfs,
             and the system temp folder), with what is on by default (run registry, HTML report);
             joblib.Memory on the same chain and payloads in the same folders, interleaved
             (needs `pip install joblib`); a floor: a plain loop writing the same entries with the
             same layout (draft folder, artifact, meta.json with sha256, lock file + flock,
             rename) and reading them back.
* syscalls:  per stage call, cold and cached, counted with `strace -f -c` (when installed).
* commands:  on the cached R-record project: `curi cache ls` (R*S+1 entries), `cache ls --json`,
             `cache du`, `curi plan`, `curi run --json` against `--quiet`, `curi --help`.
* scale:     cold and cached runs and `cache ls --json` for each R in --scale, with peak RSS,
             as ratios to R (linear: R=3000 at most 3.5x R=1000).
* curifactory: with --curifactory, the same experiment (imports changed, Python parameters) under
             Curifactory's `experiment synthetic_cf -p grid_cf --no-report --no-log`, beside curi,
             at --curifactory-records (default 300), fresh folders, cold and cached.
* lazy:      peak RSS of N records each producing a 200 MiB `Lazy` output (PickleCacher), as
             peak / (interpreter with pandas and numpy + one object).

Goals (2-core machine; the README has the figures): R=1000 cold at or below joblib.Memory in the
same run and under 1.5 s on ext4; cached at most 0.8x joblib's warm run and under 0.5 s; 10x
Curifactory cold and 40x cached at R=300; R=3000 at most 3.5x R=1000; memory under 150 MB; cache
ls and plan at R=1000 under 0.5 s; run --json within 0.1 s of --quiet; --help under 0.1 s.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

RSS_MARK = "__CURI_BENCH_PEAK_KB__="

# Prepended to every Python child this script measures: at exit it reports the process's own
# peak RSS (KiB), VmHWM in /proc/self/status. The peak the kernel hands a parent (ru_maxrss
# from wait4 or getrusage) starts from the parent's own at fork: once this script had read a
# large output, every later child seemed at least that large (cache ls measured 79 MB after
# cache ls --json, for 29 MB of its own).
PEAK_REPORT = textwrap.dedent(
    f"""
    import atexit as _atexit, sys as _sys
    def _report_peak():
        try:
            with open("/proc/self/status") as status:
                kib = next(int(ln.split()[1]) for ln in status if ln.startswith("VmHWM:"))
        except (OSError, StopIteration):  # not Linux: the kernel's figure
            import resource
            kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("{RSS_MARK}%d" % kib, file=_sys.stderr, flush=True)
    _atexit.register(_report_peak)
    """
)

# `curi` as its console script runs it (main(): exit handlers run before the process leaves).
CURI_MAIN = PEAK_REPORT + textwrap.dedent(
    """
    sys = _sys
    sys.argv = ["curi", *sys.argv[1:]]
    from curifactory_cli.cli.app import main
    main()
    """
)

BASELINE_SNIPPET = PEAK_REPORT + "import curifactory_cli.cli.app, pandas, numpy\n"


# ------------------------------------------------------------------------------ project files
def synthetic_experiment(
    stages: int, package: str = "curifactory_cli", aggregate: bool = False
) -> str:
    """The chain experiment; `package` "curifactory" gives Curifactory's version (imports
    changed only); `aggregate` adds one stage over every record's last output."""
    last = f"out_{stages - 1}"
    lines = [
        '"""Synthetic benchmark: a chain of small JSON-cached stages per record."""',
        f"import {package} as cf",
        f"from {package}.caching import JsonCacher",
        "",
        "",
        '@cf.stage(inputs=None, outputs=["out_0"], cachers=[JsonCacher])',
        "def stage_0(record):",
        '    return {"i": 0, "value": record.params.seed}',
        "",
    ]
    for i in range(1, stages):
        lines += [
            "",
            f'@cf.stage(inputs=["out_{i - 1}"], outputs=["out_{i}"], cachers=[JsonCacher])',
            f"def stage_{i}(record, out_{i - 1}):",
            f'    return {{"i": {i}, "value": out_{i - 1}["value"] * 2 + {i}}}',
            "",
        ]
    if aggregate:
        lines += [
            "",
            f'@cf.aggregate(inputs=["{last}"], outputs=["total"], cachers=[JsonCacher])',
            f"def total(record, records, {last}):",
            f'    return {{"sum": sum(v["value"] for v in {last}.values())}}',
            "",
        ]
    lines += [
        "",
        "STAGES = [" + ", ".join(f"stage_{i}" for i in range(stages)) + "]",
        "",
        "",
        "def run(param_sets, manager):",
        "    records = []",
        "    for params in param_sets:",
        "        record = cf.Record(manager, params)",
        "        for stage in STAGES:",
        "            record = stage(record)",
        "        records.append(record)",
    ]
    if aggregate:
        lines.append("    total(cf.Record(manager, None), records)")
    return "\n".join(lines) + "\n"


def grid_yaml(records: int) -> str:
    return "".join(f"- name: r{i}\n  seed: {i}\n" for i in range(records))


CF_PARAMS = """\
from dataclasses import dataclass

import curifactory as cf


@dataclass
class Params(cf.ExperimentParameters):
    seed: int = 0


def get_params():
    return [Params(name=f"r{{i}}", seed=i) for i in range({records})]
"""

JOBLIB_CHAIN = '''\
"""The chain with joblib.Memory: same payloads, JSON-sized dicts, one aggregate."""
import sys

from joblib import Memory

records, stages = int(sys.argv[1]), int(sys.argv[2])
memory = Memory(sys.argv[3], verbose=0)
for i in range(stages):
    exec(
        f"""
@memory.cache
def stage_{i}(prev, seed):
    if prev is None:
        return {{"i": 0, "value": seed}}
    return {{"i": {i}, "value": prev["value"] * 2 + {i}}}
""",
        globals(),
    )
chain = [globals()[f"stage_{i}"] for i in range(stages)]


@memory.cache
def total(values):
    return {"sum": sum(values)}


finals = []
for r in range(records):
    out = None
    for stage in chain:
        out = stage(out, r)
    finals.append(out["value"])
total(finals)
'''

# The layout without the tool: what writing and reading R*S entries costs on this disk.
FLOOR = '''\
"""A plain loop writing entries with curi's layout, then reading them back."""
import fcntl, hashlib, json, os, sys

root, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
draft, locks = os.path.join(root, ".staging"), os.path.join(root, ".locks")
folders = [os.path.join(root, "exp", f"{i // 5:016x}") for i in range(n)]
if mode == "write":
    for d in (draft, locks, *set(folders)):
        os.makedirs(d, exist_ok=True)
    for i in range(n):
        key = hashlib.sha256(str(i).encode()).hexdigest()
        fd = os.open(os.path.join(locks, key[:32] + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        stage = os.path.join(draft, str(i))
        os.mkdir(stage)
        data = json.dumps({"i": i % 5, "value": i}).encode()
        with open(os.path.join(stage, "out.json"), "wb") as f:
            f.write(data)
        meta = {"key": key, "files": [{"path": "out.json", "size": len(data),
                                       "sha256": hashlib.sha256(data).hexdigest()}]}
        with open(os.path.join(stage, "meta.json"), "w") as f:
            json.dump(meta, f)
        os.rename(stage, os.path.join(folders[i], f"stage-{key[:16]}"))
        os.close(fd)
else:
    for i in range(n):
        key = hashlib.sha256(str(i).encode()).hexdigest()
        entry = os.path.join(folders[i], f"stage-{key[:16]}")
        with open(os.path.join(entry, "meta.json"), "rb") as f:
            meta = json.loads(f.read())
        for info in meta["files"]:
            assert os.lstat(os.path.join(entry, info["path"])).st_size == info["size"]
        with open(os.path.join(entry, "out.json"), "rb") as f:
            json.loads(f.read())
'''

LAZYBIG_EXPERIMENT = '''\
"""Memory benchmark: big Lazy outputs that nothing downstream needs to reload."""
import numpy as np

import curifactory_cli as cf
from curifactory_cli.caching import JsonCacher, PickleCacher


@cf.stage(inputs=None, outputs=["summary", cf.Lazy("big")], cachers=[JsonCacher, PickleCacher])
def make_big(record):
    n = record.params.size_mb * 2**20 // 8
    big = np.full(n, float(record.params.index), dtype=np.float64)
    return {"index": record.params.index, "nbytes": int(big.nbytes)}, big


@cf.stage(inputs=["summary"], outputs=["checked"], cachers=[JsonCacher])
def consume(record, summary):
    return {"index": summary["index"], "mb": summary["nbytes"] / 2**20}


def run(param_sets, manager):
    for params in param_sets:
        consume(make_big(cf.Record(manager, params)))
'''


def big_yaml(records: int, mb: int) -> str:
    return "".join(f"- name: big_{i}\n  index: {i}\n  size_mb: {mb}\n" for i in range(records))


def make_project(base: str, records: int, stages: int) -> Path:
    project = Path(tempfile.mkdtemp(prefix="curi-bench-", dir=base))
    (project / "experiments").mkdir()
    (project / "params").mkdir()
    (project / "experiments" / "synthetic.py").write_text(
        synthetic_experiment(stages, aggregate=True)
    )
    (project / "params" / "grid.yaml").write_text(grid_yaml(records))
    return project


# ------------------------------------------------------------------------------ running
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Sample:
    wall: float
    user: float
    sys: float
    rss_mb: float
    stdout: str


def measure(cmd: list[str], cwd: Path, what: str) -> Sample:
    """Run `cmd` as a fresh process: wall time, its CPU times and its peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.stderr.write(f"\n{what} failed with exit code {proc.returncode}: {' '.join(cmd)}\n")
        sys.stderr.write(stdout[-4000:] + stderr[-4000:])
        raise SystemExit(1)
    peak = reported_peak_kib(stderr)
    rss_kib = usage.ru_maxrss if peak is None else peak  # Curifactory's: the kernel's figure
    return Sample(wall, usage.ru_utime, usage.ru_stime, rss_kib / 1024, stdout)


def run_checked(
    args: list[str], cwd: Path, what: str
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """(seconds, the finished process) for a command that must succeed (other benchmarks)."""
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(f"\n{what} failed with exit code {proc.returncode}: {' '.join(args)}\n")
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(1)
    return elapsed, proc


def curi(*args: str) -> list[str]:
    return [sys.executable, "-c", CURI_MAIN, *args]


RUN = ("run", "synthetic", "params/grid.yaml")


def check_all_cached(project: Path, entries: int) -> None:
    """An untimed `--json` re-run: the cache must serve every node."""
    counts = json.loads(measure(curi(*RUN, "--json"), project, "check").stdout)["counts"]
    if counts.get("cached") != entries or counts.get("executed", 0):
        raise SystemExit(f"unexpected outcome counts {counts}, expected {entries} cached")


def reported_peak_kib(stderr: str) -> int | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith(RSS_MARK):
            return int(line[len(RSS_MARK) :])
    return None


def peak_rss_kib(proc: subprocess.CompletedProcess[str]) -> int:
    peak = reported_peak_kib(proc.stderr)
    if peak is None:
        raise RuntimeError("the child did not report its peak RSS:\n" + proc.stderr[-2000:])
    return peak


def filesystem(path: Path) -> str:
    """The filesystem type holding `path`, from /proc/mounts (Linux), or "unknown"."""
    best, kind, target = "", "unknown", str(Path(path).resolve())
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                mount = parts[1] if len(parts) > 2 else ""
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if mount and inside and len(mount) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


# ------------------------------------------------------------------------------ sections
def bench_chain(base: str, records: int, stages: int, repeat: int, joblib: bool) -> dict:
    """Cold and cached curi, joblib cold and warm, and the floor, interleaved, fresh folders."""
    entries = records * stages + 1
    out: dict[str, list[Sample]] = {}
    script = Path(tempfile.mkdtemp(prefix="curi-bench-scripts-", dir=base))
    (script / "chain_joblib.py").write_text(PEAK_REPORT + JOBLIB_CHAIN)
    (script / "floor.py").write_text(PEAK_REPORT + FLOOR)
    try:
        for i in range(repeat):
            project = make_project(base, records, stages)
            try:
                out.setdefault("cold", []).append(measure(curi(*RUN, "-q"), project, "cold"))
                out.setdefault("cached", []).append(measure(curi(*RUN, "-q"), project, "cached"))
                if i == 0:
                    check_all_cached(project, entries)
            finally:
                shutil.rmtree(project, ignore_errors=True)
            if joblib:
                folder = tempfile.mkdtemp(prefix="joblib-", dir=base)
                cmd = [sys.executable, str(script / "chain_joblib.py"), str(records), str(stages)]
                out.setdefault("joblib cold", []).append(measure([*cmd, folder], script, "jl"))
                out.setdefault("joblib warm", []).append(measure([*cmd, folder], script, "jl"))
                shutil.rmtree(folder, ignore_errors=True)
            folder = tempfile.mkdtemp(prefix="floor-", dir=base)
            cmd = [sys.executable, str(script / "floor.py"), folder, str(entries)]
            out.setdefault("floor write", []).append(measure([*cmd, "write"], script, "floor"))
            out.setdefault("floor read", []).append(measure([*cmd, "read"], script, "floor"))
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(script, ignore_errors=True)
    return out


def strace_calls(cmd: list[str], cwd: Path) -> int | None:
    """Total system calls of `cmd` and its children, or None without strace."""
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".strace") as report:
        measure(["strace", "-f", "-c", "-o", report.name, *cmd], cwd, "strace")
        for line in Path(report.name).read_text().splitlines():
            parts = line.split()
            if parts and parts[-1] == "total":
                return int(parts[3])
    return None


def bench_syscalls(base: str, records: int, stages: int) -> dict[str, float] | None:
    entries = records * stages + 1
    project = make_project(base, records, stages)
    try:
        cold = strace_calls(curi(*RUN, "-q"), project)
        cached = strace_calls(curi(*RUN, "-q"), project)
        idle = strace_calls([sys.executable, "-c", "import curifactory_cli.cli.app"], project)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    if cold is None or cached is None or idle is None:
        return None
    return {"cold": (cold - idle) / entries, "cached": (cached - idle) / entries}


def bench_commands(base: str, records: int, stages: int, repeat: int) -> dict[str, list[float]]:
    project = make_project(base, records, stages)
    commands = {
        "cache ls": curi("cache", "ls"),
        "cache ls --json": curi("cache", "ls", "--json"),
        "cache du": curi("cache", "du"),
        "plan": curi("plan", "synthetic", "params/grid.yaml"),
        "run --quiet (cached)": curi(*RUN, "--quiet"),
        "run --json (cached)": curi(*RUN, "--json"),
        "--help": curi("--help"),
    }
    out: dict[str, list[float]] = {}
    try:
        measure(curi(*RUN, "-q"), project, "cold")
        for _ in range(repeat):
            for name, cmd in commands.items():
                out.setdefault(name, []).append(measure(cmd, project, name).wall)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    return out


def bench_scale(base: str, sizes: list[int], stages: int) -> dict[int, dict[str, Sample]]:
    out: dict[int, dict[str, Sample]] = {}
    for records in sizes:
        project = make_project(base, records, stages)
        try:
            row = {"cold": measure(curi(*RUN, "-q"), project, f"cold R={records}")}
            row["cached"] = measure(curi(*RUN, "-q"), project, f"cached R={records}")
            row["ls --json"] = measure(curi("cache", "ls", "--json"), project, "ls")
            row["ls"] = measure(curi("cache", "ls"), project, "ls")
            row["du"] = measure(curi("cache", "du"), project, "du")
            out[records] = row
        finally:
            shutil.rmtree(project, ignore_errors=True)
    return out


def bench_curifactory(
    base: str, experiment_script: str, records: int, stages: int, repeat: int
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for _ in range(repeat):
        project = make_project(base, records, stages)
        (project / "experiments" / "synthetic_cf.py").write_text(
            synthetic_experiment(stages, package="curifactory", aggregate=True)
        )
        (project / "params" / "grid_cf.py").write_text(CF_PARAMS.format(records=records))
        cf_cmd = [experiment_script, "synthetic_cf", "-p", "grid_cf", "--no-report", "--no-log"]
        try:
            for label, cmd in (("curi", curi(*RUN, "-q")), ("curifactory", cf_cmd)):
                out.setdefault(f"{label} cold", []).append(measure(cmd, project, label).wall)
                out.setdefault(f"{label} cached", []).append(measure(cmd, project, label).wall)
        finally:
            shutil.rmtree(project, ignore_errors=True)
    return out


def bench_lazy(base: str, records: int = 5, mb: int = 200) -> dict[str, float]:
    project = Path(tempfile.mkdtemp(prefix="curi-bench-lazy-", dir=base))
    try:
        (project / "experiments").mkdir()
        (project / "params").mkdir()
        (project / "experiments" / "lazybig.py").write_text(LAZYBIG_EXPERIMENT)
        (project / "params" / "big.yaml").write_text(big_yaml(records, mb))
        _, baseline = run_checked([sys.executable, "-c", BASELINE_SNIPPET], project, "baseline")
        wrapper = curi("run", "lazybig", "params/big.yaml", "-q")
        _, cold = run_checked(wrapper, project, "lazybig cold run")
        _, cached = run_checked(wrapper, project, "lazybig cached run")
    finally:
        shutil.rmtree(project, ignore_errors=True)
    obj = mb * 2**20 // 8 * 8
    base_bytes = peak_rss_kib(baseline) * 1024
    peak = peak_rss_kib(cold) * 1024
    return {
        "baseline": base_bytes / 2**20,
        "object": obj / 2**20,
        "peak_cold": peak / 2**20,
        "peak_cached": peak_rss_kib(cached) * 1024 / 2**20,
        "ratio": peak / (base_bytes + obj),
    }


# ------------------------------------------------------------------------------ report
def med(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f})"


def sample_line(samples: list[Sample]) -> str:
    walls = [s.wall for s in samples]
    user = statistics.median(s.user for s in samples)
    system = statistics.median(s.sys for s in samples)
    rss = max(s.rss_mb for s in samples)
    return f"{med(walls)}  user {user:.2f} s  sys {system:.2f} s  peak {rss:.0f} MB"


def print_chain(fs: str, kind: str, chain: dict[str, list[Sample]]) -> None:
    print(f"\n## chain on {fs} ({kind})")
    for name, samples in chain.items():
        print(f"  {name:<12} {sample_line(samples)}")
    wall = {name: statistics.median(s.wall for s in samples) for name, samples in chain.items()}
    if "joblib cold" in wall:
        print(f"  cold / joblib cold:   {wall['cold'] / wall['joblib cold']:.2f}x  (goal <= 1)")
        ratio = wall["cached"] / wall["joblib warm"]
        print(f"  cached / joblib warm: {ratio:.2f}x  (goal <= 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--stages", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--fs",
        nargs="+",
        default=["/dev/shm", str(Path.home() / ".cache" / "curi-bench")],
        help="folders to run the chain in, a fresh project each time (default: /dev/shm, a "
        "tmpfs, and ~/.cache/curi-bench on the home disk; a long-lived /tmp can be far slower "
        "than the disk: on one VM, creating 5,000 entries took 14 s there and 0.6 s elsewhere)",
    )
    parser.add_argument("--scale", type=int, nargs="*", default=[3000], help="more sizes of R")
    parser.add_argument("--curifactory", default=None, help="Curifactory's `experiment` script")
    parser.add_argument("--curifactory-records", type=int, default=300)
    parser.add_argument("--skip-joblib", action="store_true")
    parser.add_argument("--skip-lazy", action="store_true")
    parser.add_argument("--skip-commands", action="store_true")
    opts = parser.parse_args()
    # Nothing is imported here: a child started by fork counts this process's memory in its
    # own peak RSS until it execs.
    spec = importlib.util.find_spec("curifactory_cli")
    assert spec is not None and spec.submodule_search_locations
    # Bytecode once, as an installed package has it (an editable install does not).
    compileall.compile_dir(spec.submodule_search_locations[0], quiet=1)
    joblib = not opts.skip_joblib
    if joblib and importlib.util.find_spec("joblib") is None:
        print("joblib is not installed: `pip install joblib` to compare (skipped)")
        joblib = False
    for base in opts.fs:
        if base.endswith("curi-bench"):
            os.makedirs(base, exist_ok=True)
    bases = [b for b in opts.fs if os.path.isdir(b)]
    tmpfs = next((b for b in bases if filesystem(Path(b)) == "tmpfs"), bases[0])
    entries = opts.records * opts.stages + 1

    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )
    print(f"chain: {opts.records} records x {opts.stages} stages + 1 aggregate = {entries} entries")
    for base in bases:
        chain = bench_chain(base, opts.records, opts.stages, opts.repeat, joblib)
        print_chain(base, filesystem(Path(base)), chain)

    calls = bench_syscalls(tmpfs, opts.records, opts.stages)
    if calls is not None:
        print(f"\n## system calls per stage call: cold {calls['cold']:.1f}, cached "
              f"{calls['cached']:.1f}")  # fmt: skip

    if not opts.skip_commands:
        print(f"\n## commands at R={opts.records} ({entries} entries, {tmpfs})")
        commands = bench_commands(tmpfs, opts.records, opts.stages, opts.repeat)
        for name, walls in commands.items():
            print(f"  {name:<22} {med(walls)}")
        gap = statistics.median(commands["run --json (cached)"]) - statistics.median(
            commands["run --quiet (cached)"]
        )
        print(f"  run --json - run --quiet: {gap:+.3f} s  (goal <= 0.1)")

    if opts.scale:
        print(f"\n## scale ({tmpfs}); ratios to R={opts.records}")
        sizes = sorted({opts.records, *opts.scale})
        rows = bench_scale(tmpfs, sizes, opts.stages)
        first = rows[opts.records]
        for records, row in rows.items():
            print(f"  R={records} ({records * opts.stages + 1} entries)")
            for name, sample in row.items():
                ratio = sample.wall / first[name].wall
                print(
                    f"    {name:<10} {sample.wall:7.3f} s  {ratio:5.2f}x  "
                    f"peak {sample.rss_mb:.0f} MB"
                )

    if opts.curifactory:
        n = opts.curifactory_records
        print(f"\n## Curifactory at R={n} ({tmpfs})")
        cf = bench_curifactory(tmpfs, opts.curifactory, n, opts.stages, max(1, opts.repeat))
        for name, walls in cf.items():
            print(f"  {name:<20} {med(walls)}")
        for phase in ("cold", "cached"):
            ratio = statistics.median(cf[f"curifactory {phase}"]) / statistics.median(
                cf[f"curi {phase}"]
            )
            print(f"  {phase}: curi is {ratio:.1f}x faster")

    if not opts.skip_lazy:
        lazy = bench_lazy(tmpfs)
        print(
            f"\n## lazy: 5 x 200 MiB Lazy outputs: peak {lazy['peak_cold']:.0f} MiB / "
            f"(baseline {lazy['baseline']:.0f} + object {lazy['object']:.0f}) = "
            f"{lazy['ratio']:.2f} (goal < 1.3); cached re-run peaks at {lazy['peak_cached']:.0f}"
            " MiB"
        )


if __name__ == "__main__":
    main()
