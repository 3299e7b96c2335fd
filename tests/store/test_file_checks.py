"""The one verifier of cached files: what `check_file` says of each file an entry lists (what
`curi cache verify` and `inspect` report), and the error `verify_files` raises before
anything is loaded, naming the file and what is wrong with it."""

from __future__ import annotations

import hashlib
import os

import pytest

from curifactory_cli.store import CorruptEntryError, FileCheck, check_file, verify_files
from curifactory_cli.store.file_checks import bytes_match

DATA = b'{"w": [1, 2, 3]}'


def _info(path: str = "model.json", data: bytes = DATA) -> dict:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture
def entry(tmp_path):
    (tmp_path / "model.json").write_bytes(DATA)
    return tmp_path


def test_a_file_as_recorded_is_ok(entry):
    check = check_file(entry, "model", _info())
    assert check == FileCheck("model", "model.json", len(DATA), "ok", "")
    assert check.ok
    assert check.to_json() == {
        "output": "model",
        "path": "model.json",
        "size": len(DATA),
        "status": "ok",
        "detail": "",
    }
    verify_files(entry, [_info()])  # nothing raised


def test_a_file_in_a_subfolder_is_checked_there(entry):
    (entry / "parts").mkdir()
    (entry / "parts" / "part-0.csv").write_bytes(b"a,b\n")
    info = _info("parts/part-0.csv", b"a,b\n")
    assert check_file(entry, "table", info) == FileCheck("table", "parts/part-0.csv", 4, "ok")


@pytest.mark.parametrize(
    ("damage", "status", "detail"),
    [
        (lambda p: p.unlink(), "missing", "file is missing"),
        (lambda p: p.write_bytes(DATA[:5]), "mismatch", f"size 5 B, recorded {len(DATA)} B"),
        (lambda p: p.write_bytes(DATA + b"\n"), "mismatch", f"size 17 B, recorded {len(DATA)} B"),
        (
            lambda p: p.write_bytes(DATA.replace(b"3", b"4")),
            "mismatch",
            "sha256 differs from the recorded one",
        ),
        (lambda p: (p.unlink(), p.mkdir()), "mismatch", "not a regular file"),
    ],
    ids=["missing", "truncated", "longer", "same size", "a folder"],
)
def test_each_kind_of_damage_is_named(entry, damage, status, detail):
    damage(entry / "model.json")
    check = check_file(entry, "model", _info())
    assert check == FileCheck("model", "model.json", len(DATA), status, detail)
    assert not check.ok
    with pytest.raises(CorruptEntryError) as raised:
        verify_files(entry, [_info()])
    assert raised.value.message == (
        f"cached file {os.path.join(entry, 'model.json')} does not match its recorded "
        f"checksum ({detail})"
    )


def test_a_link_in_place_of_a_cached_file_is_not_followed(entry, tmp_path_factory):
    """A link to a file with the very bytes recorded is still not the entry's file: it could
    point anywhere, and change after the check."""
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "model.json"
    elsewhere.write_bytes(DATA)
    (entry / "model.json").unlink()
    os.symlink(elsewhere, entry / "model.json")
    check = check_file(entry, "model", _info())
    assert (check.status, check.detail) == ("mismatch", "not a regular file")


def test_a_file_that_cannot_be_reached_is_unreadable(entry):
    (entry / "parts").write_bytes(b"a file where a folder should be")
    check = check_file(entry, "table", _info("parts/part-0.csv"))
    assert check == FileCheck(
        "table", "parts/part-0.csv", len(DATA), "mismatch", "unreadable: Not a directory"
    )


@pytest.mark.parametrize("rel", ["../model.json", "/etc/passwd", "a/../../b", ""])
def test_a_recorded_path_that_leaves_the_entry_is_never_opened(entry, rel):
    """Metadata is data: even handed a path that `check_meta` would have refused, the
    verifier does not look outside the entry."""
    check = check_file(entry / "inner", "model", _info(rel))
    assert check == FileCheck("model", rel, len(DATA), "mismatch", "path leaves the entry")
    with pytest.raises(CorruptEntryError):
        verify_files(entry / "inner", [_info(rel)])


def test_every_listed_file_is_verified_not_only_the_first(entry):
    (entry / "b.json").write_bytes(b"[]")
    good, other = _info(), _info("b.json", b"[]")
    verify_files(entry, [good, other])
    (entry / "b.json").write_bytes(b"{}")
    with pytest.raises(CorruptEntryError, match=r"b\.json does not match"):
        verify_files(entry, [good, other])


def test_bytes_already_read_match_only_with_both_size_and_checksum():
    """What the report and `cache dump` check on the very bytes they then use."""
    assert bytes_match(DATA, _info())
    assert not bytes_match(DATA.replace(b"3", b"4"), _info())  # same size, other bytes
    assert not bytes_match(DATA[:-1], _info())
    assert not bytes_match(DATA, {**_info(), "size": len(DATA) + 1})
