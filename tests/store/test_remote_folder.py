"""Where a remote cache is: its URL read once (trailing slashes, the bucket and its prefix),
paths in it shown as URLs, the age of its objects whatever the filesystem calls it, and a
missing filesystem library named with what to install, before any request."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import PurePosixPath

import pytest

from curifactory_cli.errors import ConfigError
from curifactory_cli.store.remote import FsspecStore
from curifactory_cli.store.remote_folder import mtime_of

pytest.importorskip("fsspec")

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", ["LastModified", "mtime", "created", "last_modified", "updated"])
def test_an_objects_age_is_read_under_each_name_a_filesystem_gives_it(name):
    # S3 says LastModified, local and memory:// mtime or created, GCS updated, Azure
    # last_modified: as a datetime or as seconds, even written as text.
    assert mtime_of({name: WHEN}) == WHEN.timestamp()
    assert mtime_of({name: 1234.5}) == 1234.5
    assert mtime_of({name: "1234.5"}) == 1234.5


def test_an_object_without_a_readable_age_is_as_old_as_can_be():
    assert mtime_of({}) == 0.0
    assert mtime_of({"size": 3, "mtime": None}) == 0.0
    assert mtime_of({"mtime": "yesterday", "created": [1]}) == 0.0
    assert mtime_of({"mtime": "yesterday", "updated": WHEN}) == WHEN.timestamp()  # next name


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("s3://lab-bucket/team-cacheX/", "lab-bucket/team-cacheX"),
        ("s3a://lab-bucket/team//", "lab-bucket/team"),
        ("s3://lab-bucket/odd://name", "lab-bucket/odd://name"),
        ("memory://team/cache/", "/team/cache"),
    ],
    # Not named "s3": the mutation study leaves out the cases so named (they need a server).
    ids=["bucket", "bucket with slashes", "bucket path with ://", "memory"],
)
def test_a_remote_url_is_read_once_as_its_protocol_and_root(url, root):
    store = FsspecStore(url)
    assert store.url == store.location == url.rstrip("/")
    assert store.root == PurePosixPath(root)
    assert store.path_of("exp/a") == f"{root}/exp/a"
    assert store.path_of("") == root
    assert store.display(f"{root}/exp/a") == f"{url.rstrip('/')}/exp/a"
    assert store.display(f"{root}//exp") == f"{url.rstrip('/')}/exp"
    assert store.display(f"{root}/Xy") == f"{url.rstrip('/')}/Xy"
    assert store.display(root) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "extra"), [("s3://b/cache", "s3"), ("gs://b/cache", "gcs")], ids=["aws", "google"]
)
def test_a_missing_bucket_library_is_named_with_its_extra_before_any_request(
    url, extra, monkeypatch
):
    library = {"s3": "s3fs", "gcs": "gcsfs"}[extra]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == library else real(name, *a)
    )
    protocol = url.partition("://")[0]
    with pytest.raises(ConfigError) as missing:
        FsspecStore(url)
    assert missing.value.message == (
        f"cache {url}: the {protocol}:// filesystem is not installed (no module named {library!r})"
    )
    assert missing.value.hint == f"pip install 'curifactory-cli[{extra}]'"
