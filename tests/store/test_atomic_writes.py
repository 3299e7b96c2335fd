"""The one atomic writer (curifactory_cli.atomic): a target is replaced whole or not at
all, and a rewrite can keep the old file's mode and times."""

from __future__ import annotations

import os

import pytest

from curifactory_cli.atomic import atomic_path, write_bytes_atomic


def test_a_failed_writer_leaves_the_target_as_it_was_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_the_temporary_name_is_hidden_beside_the_target_and_keeps_its_extension(tmp_path):
    with atomic_path(tmp_path / "sub" / "table.xlsx") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path / "sub")  # the folder is made
        name = os.path.basename(tmp)
        assert name.startswith(".table.xlsx.") and name.endswith(".tmp.xlsx")
        open(tmp, "wb").close()
    assert (tmp_path / "sub" / "table.xlsx").exists()


def test_a_rewrite_like_the_old_file_keeps_its_mode_and_times(tmp_path):
    target = tmp_path / "meta.json"
    target.write_text("{}")
    os.chmod(target, 0o640)
    os.utime(target, ns=(1_000_000_000, 2_000_000_000))
    write_bytes_atomic(target, b'{"a": 1}', durable=True, like=target.stat())
    st = target.stat()
    assert target.read_bytes() == b'{"a": 1}'
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o640, 2_000_000_000)


def test_a_plain_write_gets_the_usual_permissions_not_private_ones(tmp_path):
    umask = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "log.jsonl", b"x\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "log.jsonl").stat().st_mode & 0o777 == 0o644
