"""Real 6.1 .su files from the bpf-core build: every row parses and lands on a relative path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.facts import PathMap
from pipeline.fsutil import read_json
from pipeline.stackusage import fold_name, load

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bpf_core_out(request) -> Path:
    """outputs/bpf-core when a build is there, else the shared (cached) bpf-core build."""
    here = REPO / "outputs" / "bpf-core"
    if (here / "stack_usage.json").is_file() and (here / "build.json").is_file():
        return here
    return request.getfixturevalue("bpf_core_build")


@pytest.mark.kernel
def test_real_su_files_parse(bpf_core_out):
    files = read_json(bpf_core_out / "stack_usage.json")["files"]
    build = read_json(bpf_core_out / "build.json")
    assert files, "the bpf-core build wrote no .su files"
    su = load(files, PathMap(build["source"], build["build_dir"]), lambda f: build["build_dir"])
    lines = [ln for f in files for ln in Path(f).read_text().splitlines() if ln.strip()]
    assert su.counts["malformed"] == 0, su.errors[:5]
    assert su.counts["rows"] == len(lines) > 1000
    # O= build: every path is absolute in the source tree, and comes out relative
    assert not [p for p in su.files_seen if p.startswith("/")]
    assert "kernel/bpf/helpers.c" in su.files_seen and "include/linux/jhash.h" in su.files_seen

    # every row is in its folded function, whose frame is the largest of its clones, plus the
    # largest of its .part clones (called from the function's remaining body)
    whole: dict[tuple[str, str, int], int] = {}
    part: dict[tuple[str, str, int], int] = {}
    for ln in lines:
        loc, size, _q = ln.split("\t")
        path, line, _col, name = loc.rsplit(":", 3)
        rel = PathMap(build["source"], build["build_dir"]).rel(path)
        key = (rel, fold_name(name), int(line))
        bucket = part if ".part" in name else whole
        bucket[key] = max(bucket.get(key, 0), int(size))
    for key in whole.keys() | part.keys():
        rel, name, line = key
        assert su.lookup(rel, name, line).size == whole.get(key, 0) + part.get(key, 0)

    # a clone folded: trampoline.c has bpf_trampoline_put and bpf_trampoline_put.part.0
    tp = su.lookup("kernel/bpf/trampoline.c", "bpf_trampoline_put")
    assert {r.name for r in tp.rows} == {"bpf_trampoline_put", "bpf_trampoline_put.part.0"}
    # bpf_trampoline_put calls its .part.0 (gcc's partial inlining): the frames stack.
    by_name = {r.name: r.size for r in tp.rows}
    assert tp.size == by_name["bpf_trampoline_put"] + by_name["bpf_trampoline_put.part.0"]
    # gcc 12 drops clone numbers: "btf_show_obj_safe.constprop"
    assert su.lookup("kernel/bpf/btf.c", "btf_show_obj_safe") is not None
    # a header function out of line in several TUs: one function
    jh = su.lookup("include/linux/jhash.h", "jhash")
    assert len(jh.rows) >= 2 and len({r.su_file for r in jh.rows}) >= 2
    # the helper wrapper has a frame; its ____ body (always inline) has no row
    assert su.lookup("kernel/bpf/helpers.c", "bpf_map_lookup_elem") is not None
    assert su.lookup("kernel/bpf/helpers.c", "____bpf_map_lookup_elem") is None
    quals = {r.qualifier for fr in su.frames.values() for f in fr.values() for r in f.rows}
    assert quals <= {"static", "dynamic", "dynamic,bounded"} and "dynamic,bounded" in quals
