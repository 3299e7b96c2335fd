"""The shared S3 cache: what a remote cache costs against a local one. By hand:

    python benchmarks/bench_remote.py [--records 200] [--stages 5] [--repeat 3]
                                      [--ls-records 200] [--tmpdir /dev/shm]
                                      [--latency-ms 30] [--faults 0.05]

Needs s3fs and moto[server] (the dev extras): the S3 API is moto's server, started on
127.0.0.1 in a separate process (`moto_server`); every `curi` subprocess finds it through
AWS_ENDPOINT_URL, with dummy credentials. Nothing leaves the machine, so the figures are
curi's own overhead (requests, checksums, uploads) without network latency. With
`--latency-ms`, every request goes through `latency_proxy.py` and takes that much longer (a
bucket far away); with `--faults`, that share of requests fails (503, 500, reset, cut short).

What it measures (each run a fresh `python -m curifactory_cli ...` subprocess with `-q`, on
the chain of bench_run.py: `--records` x `--stages` tiny JSON-cached stages; every variant
repeated `--repeat` times round-robin; every run checked through its `--json` summary):

* local cold:              `curi run synthetic params/grid.yaml` into an empty local cache;
* local cached:            the same again, everything served from the local cache;
* S3 cold:                 `--cache s3://BUCKET/cache` in a fresh project folder, fresh bucket;
* S3 second clone, cached: a second folder (same files) against the bucket the cold run
                           filled: nothing executes;
* two-tier cold:           `--remote s3://BUCKET/cache` (local data/cache first) in a fresh
                           folder, fresh bucket: computes everything and uploads it;
* two-tier second clone:   a new folder with `--remote` on that bucket: downloads everything;
* two-tier warm:           that folder again: everything is local, which should cost about as
                           much as `local cached`;
* cache ls:                `curi cache ls --cache s3://BUCKET/cache --json` on a bucket of at
                           least 1000 entries (the S3 cold run's when records x stages >= 1000,
                           else one filled once, untimed, with `--ls-records` x `--stages`).

The temporary local tier of `--cache s3://` goes under the benchmark's temp folder (TMPDIR is
set for the subprocesses), so `--tmpdir /dev/shm` takes the disk out of every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_run
from bench_run import curi, filesystem, grid_yaml, run_checked, synthetic_experiment
from latency_proxy import LatencyProxy

LS_MIN_ENTRIES = 1000
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

LOCAL_COLD = "local cold"
LOCAL_CACHED = "local cached"
S3_COLD = "S3 cold (--cache s3://)"
S3_CLONE = "S3 second clone, cached (--cache s3://)"
TT_COLD = "two-tier cold (--remote s3://)"
TT_CLONE = "two-tier second clone (--remote)"
TT_WARM = "two-tier warm (--remote)"
LS = "cache ls on the remote"
VARIANTS = [LOCAL_COLD, LOCAL_CACHED, S3_COLD, S3_CLONE, TT_COLD, TT_CLONE, TT_WARM, LS]
# Rows that execute nothing: shown with their ratio to `local cached`.
CACHED_ROWS = {LOCAL_CACHED, S3_CLONE, TT_CLONE, TT_WARM}


# ------------------------------------------------------------------------------ S3 (moto)
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in its own process, its request log silenced; returns its URL."""
    port = free_port()
    script = Path(sys.executable).with_name("moto_server")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"moto_server exited with code {proc.returncode} (port {port})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except urllib.error.HTTPError:
            return proc, url  # it answers: good enough
        except OSError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise SystemExit(f"moto_server did not answer on {url} within 60 s") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


class Buckets:
    """Fresh buckets on the moto server, through s3fs in this process."""

    def __init__(self) -> None:
        import s3fs

        self.fs = s3fs.S3FileSystem()
        self.made = 0

    def fresh(self, kind: str) -> str:
        self.made += 1
        name = f"curi-{kind}-{self.made}"
        self.fs.mkdir(name)
        return f"s3://{name}/cache"


# ------------------------------------------------------------------------------ projects
class Projects:
    """Project folders holding the same experiment and parameter files (clones)."""

    def __init__(self, base: Path, records: int, stages: int) -> None:
        self.base = base
        self.experiment = synthetic_experiment(stages)
        self.grid = grid_yaml(records)
        self.made = 0

    def fresh(self, kind: str, records: int | None = None) -> Path:
        self.made += 1
        project = self.base / f"{kind}-{self.made}"
        (project / "experiments").mkdir(parents=True)
        (project / "params").mkdir()
        (project / "experiments" / "synthetic.py").write_text(self.experiment)
        grid = self.grid if records is None else grid_yaml(records)
        (project / "params" / "grid.yaml").write_text(grid)
        return project


def run_counts(project: Path, what: str, *extra: str) -> tuple[float, dict[str, int]]:
    """One timed `curi run synthetic params/grid.yaml -q --json ...`: (seconds, counts)."""
    cmd = curi("run", "synthetic", "params/grid.yaml", "-q", "--json", *extra)
    elapsed, proc = run_checked(cmd, project, what)
    try:
        counts = json.loads(proc.stdout)["counts"]
    except (ValueError, KeyError) as exc:
        raise SystemExit(f"{what}: no JSON summary ({exc}):\n{proc.stdout[-2000:]}") from None
    return elapsed, counts


def expect(what: str, counts: dict[str, int], executed: int, cached: int) -> None:
    want = {"executed": executed, "cached": cached, "failed": 0}
    if any(counts.get(k, 0) != v for k, v in want.items()):
        raise SystemExit(f"{what}: unexpected outcome counts {counts}, expected {want}")


def list_remote(project: Path, url: str, entries: int) -> float:
    cmd = curi("cache", "ls", "--cache", url, "--json")
    elapsed, proc = run_checked(cmd, project, LS)
    listed = json.loads(proc.stdout)
    found = len(listed.get("entries", []))
    if found != entries or listed.get("count", found) != entries:
        raise SystemExit(f"{LS}: {found} entries listed in {url}, expected {entries}")
    return elapsed


def fmt_s(value: float) -> str:
    return f"{value:.2f} s"


# ------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200, help="parameter sets (default 200)")
    parser.add_argument("--stages", type=int, default=5, help="chained stages (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--ls-records",
        type=int,
        default=200,
        help="records of the bucket `cache ls` lists, when records x stages < 1000 (default 200)",
    )
    parser.add_argument(
        "--tmpdir", default=None, help="where to create the temp folders (e.g. /dev/shm)"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to each request")
    parser.add_argument("--faults", type=float, default=0.0, help="share of requests failed")
    opts = parser.parse_args()
    if min(opts.records, opts.stages, opts.repeat, opts.ls_records) < 1:
        parser.error("counts must be positive")
    nodes = opts.records * opts.stages

    base = Path(tempfile.mkdtemp(prefix="curi-bench-remote-", dir=opts.tmpdir))
    scratch = base / "tmp"  # TMPDIR of the subprocesses: `--cache s3://`'s local tier
    scratch.mkdir()
    moto: subprocess.Popen[bytes] | None = None
    proxy: LatencyProxy | None = None
    saved_env = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL", "TMPDIR"]}
    try:
        moto, endpoint = start_moto(base)
        if opts.latency_ms or opts.faults:
            proxy = LatencyProxy(endpoint, opts.latency_ms / 1000, opts.faults, seed=1)
            endpoint = proxy.start()
        os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint, TMPDIR=str(scratch))
        # bench_run's children get the environment it copied at import: the same settings.
        bench_run.ENV.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint, TMPDIR=str(scratch))
        buckets = Buckets()
        projects = Projects(base, opts.records, opts.stages)

        # Compile the package's bytecode (and the S3 libraries') once so no timed run pays.
        run_checked(
            [sys.executable, "-c", "import curifactory_cli.cli.app, curifactory_cli.run.runner, "
             "curifactory_cli.store.tiered, s3fs"],
            base,
            "warm-up import",
        )  # fmt: skip

        # The bucket `cache ls` lists when the S3 cold run's is too small: filled once.
        ls_entries = nodes
        ls_url = None
        if nodes < LS_MIN_ENTRIES:
            ls_entries = opts.ls_records * opts.stages
            ls_url = buckets.fresh("ls")
            filler = projects.fresh("ls", opts.ls_records)
            _, counts = run_counts(filler, "filling the cache ls bucket", "--cache", ls_url)
            expect("filling the cache ls bucket", counts, ls_entries, 0)

        local = projects.fresh("local")
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}

        def timed(name: str, project: Path, executed: int, *extra: str) -> None:
            elapsed, counts = run_counts(project, name, *extra)
            expect(name, counts, executed, nodes - executed)
            times[name].append(elapsed)

        # Round-robin, so that a machine whose speed drifts affects every variant alike.
        for _ in range(opts.repeat):
            for folder in ("data", "logs", "reports"):
                shutil.rmtree(local / folder, ignore_errors=True)
            timed(LOCAL_COLD, local, nodes)
            timed(LOCAL_CACHED, local, 0)

            s3_url = buckets.fresh("s3")
            timed(S3_COLD, projects.fresh("s3-first"), nodes, "--cache", s3_url)
            timed(S3_CLONE, projects.fresh("s3-second"), 0, "--cache", s3_url)

            tt_url = buckets.fresh("tt")
            timed(TT_COLD, projects.fresh("tt-first"), nodes, "--remote", tt_url)
            second = projects.fresh("tt-second")
            timed(TT_CLONE, second, 0, "--remote", tt_url)
            timed(TT_WARM, second, 0, "--remote", tt_url)

            times[LS].append(list_remote(local, ls_url or s3_url, ls_entries))
    finally:
        if proxy is not None:
            proxy.stop()
        if moto is not None:
            stop(moto)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(base, ignore_errors=True)

    import moto as moto_pkg
    import s3fs

    cores = len(os.sched_getaffinity(0))
    print(f"\nmachine: {platform.machine()}, {cores} usable cores, ", end="")
    print(f"Python {platform.python_version()}; project on {filesystem(base.parent)}")
    print(f"S3: moto {moto_pkg.__version__} server on 127.0.0.1, s3fs {s3fs.__version__}")
    if proxy is not None:
        print(f"through the latency proxy: +{opts.latency_ms:g} ms a request, ", end="")
        print(f"{opts.faults:.0%} failed; requests: {dict(proxy.counts)}")
    print(f"chain: {opts.records} records x {opts.stages} stages = {nodes} nodes (JsonCacher)")
    ls_from = "the S3 cold run's bucket" if ls_url is None else "a bucket filled once"
    print(f"cache ls: {ls_entries} entries ({ls_from}); medians of {opts.repeat}\n")

    reference = statistics.median(times[LOCAL_CACHED])
    rows = [("variant", "median", "min", "vs local cached")]
    for name in VARIANTS:
        median = statistics.median(times[name])
        ratio = f"{median / reference:.2f}x" if name in CACHED_ROWS else ""
        rows.append((name, fmt_s(median), fmt_s(min(times[name])), ratio))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("-" * (sum(widths) + 2 * 3))


if __name__ == "__main__":
    main()
