"""The source and build stages on the real Linux 6.1 tree (Debian's linux-source-6.1).

The .deb, the extracted tree and the bpf-core build live under the kcg cache, so only the first
run on a machine pays for the download (~140 MB), the extraction and the build (~1 minute).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from pipeline import build
from pipeline.fsutil import cache_dir, read_json, sha256_file

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parent.parent
BPF_CORE = REPO / "configs" / "bpf-core.yaml"
SU_LINE = re.compile(r"^(.+):(\d+):(\d+):([\w.]+)\t(\d+)\t(static|dynamic|dynamic,bounded)$")


def ok(r) -> None:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def test_source_stage_from_the_debian_package(kcg, tmp_path):
    out = tmp_path / "out"
    r = kcg("source", "--config", BPF_CORE, "--output", out, "--no-progress")
    ok(r)
    info = read_json(out / "source.json")
    assert info["kind"] == "debian_package" and info["debian_package"] == "linux-source-6.1"
    assert info["kernelversion"].startswith("6.1.")
    # Debian's version is the upstream one plus a Debian revision: 6.1.192-2 is 6.1.192.
    assert info["debian_version"].split("-")[0] == info["kernelversion"]
    deb = Path(info["deb"])
    assert deb.parent == cache_dir() / "debs" and sha256_file(deb) == info["deb_sha256"]
    tree = Path(info["path"])
    assert tree.is_relative_to(cache_dir() / "src")
    assert (tree / "kernel" / "bpf" / "helpers.c").is_file()
    assert (tree / "scripts" / "clang-tools" / "gen_compile_commands.py").is_file()
    man = read_json(out / "manifests" / "source.json")
    assert man["counts"]["kernelversion"] == info["kernelversion"]
    assert f"kernel {info['kernelversion']} at {tree}" in r.stdout
    # The same source again, through `kcg run`: fresh, so skipped.
    r = kcg("run", "--config", BPF_CORE, "--to", "source", "--output", out, "--no-progress")
    ok(r)
    assert "[source] up to date, skipped" in r.stderr


def test_bpf_core_build_su_file_for_every_object(bpf_core_build):
    out = bpf_core_build
    bdir = out / "build"
    entries = read_json(out / "compile_commands.json")
    assert len(entries) >= 40
    objects = set()
    for e in entries:
        args = e.get("arguments") or shlex.split(e["command"])
        assert "-D__KERNEL__" in args and "-fstack-usage" in args, e["file"]
        assert Path(e["directory"]) == bdir
        obj = bdir / build.object_of(e)
        assert obj.is_file(), f"{e['file']}: no object {obj}"
        su = obj.with_suffix(".su")
        assert su.is_file(), f"{e['file']}: no .su {su}"
        if not e["file"].endswith("scripts/mod/empty.c"):  # the one TU without a function
            assert su.stat().st_size > 0, f"{su} is empty"
        objects.add(obj)
    # Every object built under kernel/bpf/ (and the two named objects) has an entry.
    built = set((bdir / "kernel" / "bpf").rglob("*.o"))
    assert len(built) >= 40 and built <= objects, sorted(map(str, built - objects))
    assert {bdir / "kernel/trace/bpf_trace.o", bdir / "net/core/filter.o"} <= objects
    su = read_json(out / "stack_usage.json")
    assert su["files"] == sorted(str(o.with_suffix(".su")) for o in objects)
    assert su["tus_without_su"] == []
    counts = read_json(out / "manifests" / "build.json")["counts"]
    assert counts["tus"] == len(entries) and counts["su_files"] == len(objects)
    assert counts["dropped_non_kernel"] > 0  # host tools under scripts/ were in the raw database


def test_bpf_core_su_rows_are_gcc_stack_usage(bpf_core_build):
    bdir = bpf_core_build / "build"
    rows = 0
    for su in read_json(bpf_core_build / "stack_usage.json")["files"]:
        for line in Path(su).read_text().splitlines():
            assert SU_LINE.match(line), f"{su}: {line!r}"
            rows += 1
    assert rows > 1000
    helpers = (bdir / "kernel/bpf/helpers.su").read_text()
    assert re.search(r"kernel/bpf/helpers\.c:\d+:\d+:bpf_map_lookup_elem\t\d+\tstatic$", helpers, re.M)
    filt = (bdir / "net/core/filter.su").read_text()
    assert re.search(r":bpf_skb_store_bytes\t\d+\t", filt)


def test_bpf_core_build_record_and_kconfig(bpf_core_build):
    info = read_json(bpf_core_build / "build.json")
    assert info["failed_objects"] == [] and info["make_exit"] == 0
    assert info["kconfig_mismatches"] == []  # every fragment option took effect
    assert info["targets"] == ["kernel/bpf/", "kernel/trace/bpf_trace.o", "net/core/filter.o"]
    dotconfig = (bpf_core_build / "build" / ".config").read_text()
    for opt in ("BPF_SYSCALL", "BPF_JIT", "DEBUG_INFO_BTF", "BPF_LSM", "BPF_KPROBE_OVERRIDE",
                "XDP_SOCKETS", "CGROUP_BPF", "LWTUNNEL_BPF"):
        assert f"\nCONFIG_{opt}=y\n" in dotconfig, opt
    assert "# CONFIG_BPF_PRELOAD is not set" in dotconfig
    lsm = re.search(r'^CONFIG_LSM="([^"]*)"$', dotconfig, re.M).group(1)
    assert "bpf" in lsm.split(",")
    log = (bpf_core_build / "logs" / "build.log").read_text()
    assert re.search(r"^\$ make .* -k -j\d+ KCFLAGS=-fstack-usage kernel/bpf/ ", log, re.M)


def test_source_tree_stays_pristine(bpf_core_build):
    tree = Path(read_json(bpf_core_build / "source.json")["path"])
    assert not (tree / ".config").exists()
    assert not (tree / "include" / "generated").exists()
    assert not list((tree / "kernel" / "bpf").glob("*.o"))
    assert not list((tree / "kernel" / "bpf").glob("*.su"))


def test_rerun_skips_both_stages(kcg_when_free, bpf_core_build):
    r = kcg_when_free("run", "--config", BPF_CORE, "--to", "build", "--output", bpf_core_build, "--no-progress")
    ok(r)
    assert "[source] up to date, skipped" in r.stderr
    assert "[build] up to date, skipped" in r.stderr


def test_direct_tree_mode_on_the_built_tree(kcg, bpf_core_build, tmp_path):
    src = read_json(bpf_core_build / "source.json")["path"]
    raw = bpf_core_build / "build" / "compile_commands.json"  # as gen_compile_commands.py wrote it
    out = tmp_path / "direct"
    ok(kcg("run", "--source", src, "--compile-commands", raw, "--output", out, "--to", "build"))
    assert read_json(out / "source.json")["kernelversion"].startswith("6.1.")
    assert read_json(out / "compile_commands.json") == read_json(bpf_core_build / "compile_commands.json")
    assert read_json(out / "stack_usage.json") == read_json(bpf_core_build / "stack_usage.json")

    # --stack-usage DIR: the .su files under another root, mirroring the object tree.
    mirror = tmp_path / "su"
    bdir = bpf_core_build / "build"
    for su in read_json(bpf_core_build / "stack_usage.json")["files"]:
        dest = mirror / Path(su).relative_to(bdir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(su, dest)
    out2 = tmp_path / "direct-su"
    ok(kcg("run", "--source", src, "--compile-commands", raw, "--stack-usage", mirror,
           "--output", out2, "--to", "build"))
    files = read_json(out2 / "stack_usage.json")["files"]
    assert len(files) == len(read_json(bpf_core_build / "stack_usage.json")["files"])
    assert all(Path(f).is_relative_to(mirror) for f in files)


def test_path_source_on_the_real_tree(kcg, bpf_core_build, tmp_path):
    tree = read_json(bpf_core_build / "source.json")["path"]
    cfg = tmp_path / "own-tree.yaml"
    cfg.write_text(BPF_CORE.read_text().replace(
        "source:\n  debian_package: linux-source-6.1",
        f"source:\n  path: {tree}").replace(
        "fragments: [kconfig/bpf.config]", f"fragments: [{BPF_CORE.parent}/kconfig/bpf.config]"))
    ok(kcg("run", "--config", cfg, "--to", "source", "--output", tmp_path / "out"))
    info = read_json(tmp_path / "out" / "source.json")
    assert info["kind"] == "path" and info["path"] == tree
    assert info["kernelversion"] == read_json(bpf_core_build / "source.json")["kernelversion"]
