"""Atomic writes, deterministic JSON, the cache directory."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from pipeline import fsutil
from pipeline.fsutil import (
    KcgError,
    atomic_write_bytes,
    atomic_write_text,
    cache_dir,
    dumps_json,
    read_json,
    write_json,
)


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "x.json"
    for i in range(3):
        write_json(target, {"i": i})
        atomic_write_text(tmp_path / "sub" / "y.txt", f"text {i}")
        write_json(tmp_path / "sub" / "z.json.gz", {"i": i}, compress=True)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.json", "y.txt", "z.json.gz"]
    assert read_json(target) == {"i": 2}
    assert read_json(tmp_path / "sub" / "z.json.gz") == {"i": 2}


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    write_json(target, {"old": True})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fsutil.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_json(target, {"new": True})
    assert read_json(target) == {"old": True}
    assert leftovers(tmp_path) == []


def test_interrupted_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fsutil.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    write_json(tmp_path / "a.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask


def test_json_is_deterministic_and_gzip_byte_identical(tmp_path):
    assert dumps_json({"b": 1, "a": [1, 2]}) == dumps_json({"a": [1, 2], "b": 1})
    write_json(tmp_path / "1.json.gz", {"b": 1, "a": 2}, compress=True)
    write_json(tmp_path / "2.json.gz", {"a": 2, "b": 1}, compress=True)
    assert (tmp_path / "1.json.gz").read_bytes() == (tmp_path / "2.json.gz").read_bytes()
    assert gzip.decompress((tmp_path / "1.json.gz").read_bytes()) == b'{"a":2,"b":1}'


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(KcgError, match=r"nope\.json: no such file"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(KcgError, match=r"bad\.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(KcgError, match=r"bad\.json\.gz: not valid JSON"):
        read_json(tmp_path / "bad.json.gz")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KCG_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("KCG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "kcg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "kcg"
