"""Shared pieces of the fault-injection tests: a small experiment covering every built-in
cacher plus a multi-file custom cacher, subprocess helpers, and cache inspection."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

# Every subprocess gets a timeout; generous, because CI machines can be slow.
RUN_TIMEOUT = 120

KINDS = ("json", "csv", "pjson", "pickle", "multi")

# One producer stage per cacher kind (`make_<kind>`, a few MB when `n` is large) and one
# consumer per kind (`digest_<kind>`) that reduces the value it receives to a checksum, so a
# consumer that ever saw bad data produces a different result than a clean run.
# Every stage execution appends one line to exec.log (O_APPEND) and the producers touch
# `started` when they begin, so a killer can aim at the save.
EXPERIMENT = '''
"""Fault-injection subject: one producer and one consumer per cacher."""
import hashlib
import json
import os
import time

import curifactory_cli as cf
from curifactory_cli.caching import (
    Cacheable,
    JsonCacher,
    PandasCsvCacher,
    PandasJsonCacher,
    PickleCacher,
)


def _log(stage, record):
    with open("exec.log", "a", encoding="utf-8") as out:
        out.write(f"{stage} {record.params.name} {os.getpid()}\\n")


def _begin(stage, record):
    _log(stage, record)
    with open("started", "a", encoding="utf-8") as out:
        out.write(stage + "\\n")
    hold = os.environ.get("CURI_TEST_HOLD")
    if hold:  # keep the entry lock: the lock tests kill the holder here
        time.sleep(float(hold))


def _chunked(path, blob):
    step = 1 << 16
    with open(path, "wb") as out:
        for i in range(0, len(blob), step):
            out.write(blob[i : i + step])
            out.flush()
            time.sleep(0.002)


class TwoFileCacher(Cacheable):
    """A custom cacher writing two files, slowly, in chunks: `path` and `path + "_model"`."""

    def __init__(self, *args, **kwargs):
        super().__init__("", *args, **kwargs)

    def save(self, obj):
        _chunked(self.path, obj["data"])
        _chunked(self.path + "_model", obj["model"])

    def load(self):
        with open(self.path, "rb") as infile:
            data = infile.read()
        with open(self.path + "_model", "rb") as infile:
            model = infile.read()
        return {"data": data, "model": model}


def _columns(n):
    return {"a": list(range(n)), "b": [i / 4 for i in range(n)], "c": [f"r{i}" for i in range(n)]}


def _frame(n):
    import pandas as pd

    return pd.DataFrame(_columns(n))


def _blob(n, salt):
    seed = hashlib.sha256(salt.encode()).digest()
    return (seed * (n * 40 // len(seed) + 1))[: n * 40]


def _sha(text):
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@cf.stage(outputs=["out_json"], cachers=[JsonCacher])
def make_json(record):
    _begin("make_json", record)
    n = record.params.n
    return [[i, i / 4, f"r{i}"] for i in range(n)]


@cf.stage(outputs=["out_csv"], cachers=[PandasCsvCacher])
def make_csv(record):
    _begin("make_csv", record)
    return _frame(record.params.n)


@cf.stage(outputs=["out_pjson"], cachers=[PandasJsonCacher])
def make_pjson(record):
    _begin("make_pjson", record)
    return _frame(record.params.n)


@cf.stage(outputs=["out_pickle"], cachers=[PickleCacher])
def make_pickle(record):
    _begin("make_pickle", record)
    return _columns(record.params.n)


@cf.stage(outputs=["out_multi"], cachers=[TwoFileCacher])
def make_multi(record):
    _begin("make_multi", record)
    n = record.params.n
    return {"data": _blob(n, "data"), "model": _blob(n // 4, "model")}


def _digest_frame(df):
    cols = {k: [v.item() if hasattr(v, "item") else v for v in df[k]] for k in df.columns}
    return _sha(json.dumps(cols, sort_keys=True))


@cf.stage(inputs=["out_json"], outputs=["digest_json"], cachers=[JsonCacher])
def digest_json(record, out_json):
    _log("digest_json", record)
    return {"n": len(out_json), "sha": _sha(json.dumps(out_json))}


@cf.stage(inputs=["out_csv"], outputs=["digest_csv"], cachers=[JsonCacher])
def digest_csv(record, out_csv):
    _log("digest_csv", record)
    return {"n": len(out_csv), "sha": _digest_frame(out_csv)}


@cf.stage(inputs=["out_pjson"], outputs=["digest_pjson"], cachers=[JsonCacher])
def digest_pjson(record, out_pjson):
    _log("digest_pjson", record)
    return {"n": len(out_pjson), "sha": _digest_frame(out_pjson)}


@cf.stage(inputs=["out_pickle"], outputs=["digest_pickle"], cachers=[JsonCacher])
def digest_pickle(record, out_pickle):
    _log("digest_pickle", record)
    return {"n": len(out_pickle["a"]), "sha": _sha(json.dumps(out_pickle, sort_keys=True))}


@cf.stage(inputs=["out_multi"], outputs=["digest_multi"], cachers=[JsonCacher])
def digest_multi(record, out_multi):
    _log("digest_multi", record)
    return {
        "n": len(out_multi["data"]),
        "sha": _sha(out_multi["data"] + b"|" + out_multi["model"]),
    }


MAKERS = {
    "json": (make_json, digest_json),
    "csv": (make_csv, digest_csv),
    "pjson": (make_pjson, digest_pjson),
    "pickle": (make_pickle, digest_pickle),
    "multi": (make_multi, digest_multi),
}


def run(param_sets, manager):
    for p in param_sets:
        make, digest = MAKERS[p.kind]
        digest(make(cf.Record(manager, p)))
'''


def params_yaml(n: int, kinds: tuple[str, ...] = KINDS) -> str:
    """One parameter set per cacher kind, named after it (select with `--names KIND`)."""
    return "".join(f"- name: {k}\n  kind: {k}\n  n: {n}\n" for k in kinds)


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def make_project(root: Path, n: int, kinds: tuple[str, ...] = KINDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root, "experiments/faulty.py", EXPERIMENT)
    write(root, "params/p.yaml", params_yaml(n, kinds))
    return root


def env(**extra: str) -> dict[str, str]:
    """The environment for a `curi` subprocess: no inherited fault or signing settings."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CURI_")}
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    out["COLUMNS"] = "200"
    out.update(extra)
    return out


def curi_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "curifactory_cli", *args]


def curi(root: Path, *args: str, timeout: float = RUN_TIMEOUT, **extra_env: str):
    """Run `curi ARGS` in `root` to completion (CompletedProcess with text output)."""
    return subprocess.run(
        curi_args(*args),
        cwd=root,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(root: Path, *args: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, Any]:
    """`curi run ARGS --json`; returns the process and its parsed JSON document (or None)."""
    proc = curi(root, "run", *args, "--json", **extra_env)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    return proc, doc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entry_dirs(cache: Path) -> list[Path]:
    """Every published-looking entry folder: `<cache>/<experiment>/<params>/<stage>-<key>`."""
    out = []
    for exp in sorted(cache.iterdir()) if cache.is_dir() else []:
        if exp.name.startswith(".") or not exp.is_dir():
            continue
        for params in sorted(p for p in exp.iterdir() if p.is_dir()):
            out.extend(sorted(e for e in params.iterdir() if e.is_dir()))
    return out


def entry_problems(entry: Path) -> list[str]:
    """Why a published entry folder is not whole and valid (an empty list when it is)."""
    meta_path = entry / "meta.json"
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"{meta_path}: {exc}"]
    problems = []
    listed = set()
    for output in meta["outputs"].values():
        for info in output["files"]:
            path = entry / info["path"]
            listed.add(info["path"])
            if not path.is_file():
                problems.append(f"{path} missing")
            elif path.stat().st_size != info["size"] or sha256(path) != info["sha256"]:
                problems.append(f"{path} does not match meta.json")
    for info in meta.get("extra_files") or []:
        listed.add(info["path"])
    on_disk = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()} - {
        "meta.json"
    }
    if on_disk != listed:
        problems.append(f"{entry}: files {sorted(on_disk)} but meta.json lists {sorted(listed)}")
    return problems


def output_fingerprint(entry: str | Path) -> dict[str, list[tuple[str, str]]]:
    """output name -> [(file, sha256 of the bytes on disk)], for comparing entries."""
    entry = Path(entry)
    meta = json.loads((entry / "meta.json").read_bytes())
    return {
        name: sorted((f["path"], sha256(entry / f["path"])) for f in output["files"])
        for name, output in meta["outputs"].items()
    }


def node_results(doc: dict) -> dict[tuple[str, str], dict[str, list[tuple[str, str]]]]:
    """(stage, record) -> output fingerprint of the entry each node of a --json run used."""
    return {(n["stage"], n["record"]): output_fingerprint(n["entry"]) for n in doc["nodes"]}
