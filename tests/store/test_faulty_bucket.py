"""A shared cache behind a slow, unreliable link (benchmarks/latency_proxy.py in front of the
S3 server: every request later, a share of them failing with 503 SlowDown, 500, a reset
connection or an answer cut short): runs finish with the right results, a second clone is
served from the bucket, and every entry in the bucket verifies."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from test_shared_cache import EXPECTED, clone, table_of

pytest.importorskip("s3fs")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from latency_proxy import LatencyProxy


@pytest.fixture
def faulty_bucket(s3_endpoint, monkeypatch):
    """A fresh bucket reached through the proxy (5 ms a request, a fifth of them failing)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import s3fs

    name = f"curi-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir(name)
    with LatencyProxy(s3_endpoint, latency_s=0.005, faults=0.2, seed=7) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        s3fs.S3FileSystem.clear_instance_cache()
        yield f"s3://{name}/team-cache", proxy
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.slow
@pytest.mark.parametrize("way", ["cache", "remote"])
def test_runs_through_a_failing_link_finish_with_the_right_results(tmp_path, faulty_bucket, way):
    url, proxy = faulty_bucket
    first, second = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    ran = first.run("team", "p", **{"cache_dir" if way == "cache" else "remote": url})
    assert ran.ok, ran.error
    assert table_of(ran) == EXPECTED
    again = second.run("team", "p", **{"cache_dir" if way == "cache" else "remote": url})
    assert again.ok, again.error
    assert again.warnings == []  # the remote was never left out
    assert again.counts()["executed"] == 0 and table_of(again) == EXPECTED
    failed = {kind: proxy.counts[kind] for kind in ("503", "500", "reset", "short")}
    assert sum(failed.values()) >= 5, proxy.counts  # the link did fail, often
    # Every entry in the bucket is whole (read straight from the server, not the proxy).
    from typer.testing import CliRunner

    from curifactory_cli.cli.app import full_app

    proxy.faults = 0.0
    checked = CliRunner().invoke(full_app(), ["cache", "verify", "--cache", url])
    assert checked.exit_code == 0, checked.output
