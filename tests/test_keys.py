"""Cache keys do not depend on where the project lives or which machine computes them, so a
cache can be moved, shared, and filled by workers elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from test_workers import setup

from curifactory_cli.engine.keys import KeyMaker
from curifactory_cli.fingerprint import CodeFingerprinter


def test_a_moved_project_finds_its_whole_cache(project, tmp_path):
    setup(project)
    first = project.run("work", "params/p.yaml")
    assert first.ok and first.counts()["executed"] == 25
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(project.root, moved)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONHASHSEED": "123"}
    proc = subprocess.run(
        [sys.executable, "-m", "curifactory_cli", "run", "work", "p", "--json"],
        cwd=moved,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["counts"]["executed"] == 0, doc["nodes"]
    keys = {(n.stage.name, n.record_name): n.key for n in first.graph.nodes}
    assert {(n["stage"], n["record"]): n["key"] for n in doc["nodes"]} == keys


def test_fingerprints_do_not_contain_the_project_path(project):
    setup(project)
    result = project.run("work", "params/p.yaml")
    keys = KeyMaker("work", CodeFingerprinter(project.root))
    for node in result.graph.nodes:
        text = json.dumps(keys.base(node))
        assert str(project.root) not in text
        host = os.uname().nodename
        assert len(host) < 6 or host not in text
