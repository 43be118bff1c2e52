"""The full default build (Linux 6.1 defconfig + BPF, every target): `make test-slow` only.

20-30 minutes cold on 2 cores; ``KCG_DEFAULT_BUILD=DIR`` checks a finished build instead.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from pipeline import build
from pipeline.fsutil import read_json

pytestmark = pytest.mark.slow


def test_default_build_is_complete(default_build):
    info = read_json(default_build / "build.json")
    assert info["targets"] == "all"
    assert info["kconfig_mismatches"] == []
    assert info["failed_objects"] == []
    entries = read_json(default_build / "compile_commands.json")
    assert len(entries) > 2500
    bdir = default_build / "build"
    for e in entries:
        args = e.get("arguments") or shlex.split(e["command"])
        assert "-D__KERNEL__" in args, e["file"]
        assert (bdir / build.object_of(e)).is_file(), e["file"]
    # The image was linked: everything the build was asked for got built.
    assert (bdir / "vmlinux").is_file()


def test_default_build_su_files(default_build):
    entries = read_json(default_build / "compile_commands.json")
    su = read_json(default_build / "stack_usage.json")
    bdir = default_build / "build"
    assert all(Path(f).is_file() for f in su["files"])
    # Every TU of vmlinux and the modules has its .su. The objects kbuild compiles with flags of
    # their own (no KCFLAGS, so no .su: boot decompressor, real-mode code, EFI stub, vDSO) are
    # separately linked images, dropped from the database (55 of them on 6.1 defconfig + BPF).
    assert su["tus_without_su"] == []
    assert su["files"] == sorted(str((bdir / build.object_of(e)).with_suffix(".su")) for e in entries)
    assert not [e["file"] for e in entries if build.SEPARATE_IMAGES.search(build.object_of(e))]
    for obj in ("kernel/bpf/helpers.su", "kernel/trace/bpf_trace.su", "net/core/filter.su"):
        assert str(bdir / obj) in su["files"]


def test_default_build_covers_bpf_core(default_build, bpf_core_build):
    def files(out: Path) -> set[str]:
        # Relative to the source tree, or to the build tree for generated sources.
        roots = (Path(read_json(out / "source.json")["path"]), out / "build")
        return {next(str(Path(e["file"]).relative_to(r)) for r in roots if Path(e["file"]).is_relative_to(r))
                for e in read_json(out / "compile_commands.json")}

    missing = files(bpf_core_build) - files(default_build)
    assert not missing, sorted(missing)
