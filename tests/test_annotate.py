"""Frames and worst-case stack: the SCC algorithm on hand-made graphs, then a C fixture compiled by
gcc with -fstack-usage in the test, with a hand-built graph and hand-computed expected stacks."""

from __future__ import annotations

import json
import platform
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import networkx as nx
import pytest

from pipeline import annotate as an
from pipeline import roots as roots_stage
from pipeline.facts import PathMap
from pipeline.fsutil import read_json, write_json
from pipeline.runner import Context
from pipeline.stackusage import load

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "stack" / "src"


# ---- the algorithm on hand-made graphs ----------------------------------------------------------


def _wc(edges: list[tuple[str, str]], frames: dict[str, int | None],
        reasons: dict[str, str] | None = None) -> an.StackResult:
    succ: dict[str, list[str]] = {}
    for u, v in edges:
        succ.setdefault(u, []).append(v)
    return an.worst_case(succ, frames, reasons or {})


def test_chain_and_branches():
    r = _wc([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], {"a": 10, "b": 5, "c": 20, "d": 1})
    assert r.max_stack == {"a": 31, "b": 6, "c": 21, "d": 1}
    assert all(r.bounded.values())
    assert r.path("a") == ["a", "c", "d"]


def test_ties_go_to_the_smaller_id():
    r = _wc([("a", "y"), ("a", "x")], {"a": 1, "x": 4, "y": 4})
    assert r.path("a") == ["a", "x"]


def test_cycle_of_zero_frames_is_bounded():
    # b <-> c both inlined (frame 0); the cycle adds nothing; its best exit is e (via c)
    r = _wc([("a", "b"), ("b", "c"), ("c", "b"), ("b", "d"), ("c", "e")],
            {"a": 8, "b": 0, "c": 0, "d": 16, "e": 32})
    assert r.max_stack["a"] == 40 and r.bounded["a"]
    assert r.max_stack["b"] == r.max_stack["c"] == 32
    assert r.path("a") == ["a", "b", "c", "e"]


def test_recursion_is_unbounded_with_a_lower_bound_and_the_cycle_named():
    # a -> b -> c -> b ; c -> d.  Without going round: a, b, c, d = 1 + 10 + 100 + 1000
    r = _wc([("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")], {"a": 1, "b": 10, "c": 100, "d": 1000})
    assert r.max_stack["a"] == 1111
    assert not r.bounded["a"] and not r.bounded["b"] and r.bounded["d"]
    assert r.reason["a"] == "recursion: c -> b -> c"
    assert r.path("a") == ["a", "b", "c", "d"]


def test_self_recursion():
    r = _wc([("top", "rec"), ("rec", "rec")], {"top": 8, "rec": 64})
    assert r.max_stack == {"top": 72, "rec": 64}
    assert r.reason["top"] == "recursion: rec -> rec"


def test_self_loop_with_zero_frame_is_bounded():
    r = _wc([("a", "z"), ("z", "z"), ("z", "leaf")], {"a": 8, "z": 0, "leaf": 8})
    assert r.max_stack["a"] == 16 and r.bounded["a"]


def test_dynamic_and_unknown_frames_propagate_up():
    r = _wc([("a", "dyn"), ("a", "ok"), ("b", "undef")], {"a": 8, "dyn": 16, "ok": 100,
                                                          "b": 4, "undef": None},
            {"dyn": "dynamic frame: dyn", "undef": "unknown frame: undef"})
    assert (r.max_stack["a"], r.bounded["a"], r.reason["a"]) == (108, False, "dynamic frame: dyn")
    assert (r.max_stack["b"], r.bounded["b"], r.reason["b"]) == (4, False, "unknown frame: undef")
    assert r.bounded["ok"]


def test_reach_counts_match_descendants():
    rng = random.Random(5)
    n = 300
    edges = [(f"n{rng.randrange(n)}", f"n{rng.randrange(n)}") for _ in range(700)]
    frames = {f"n{i}": rng.randrange(0, 64) for i in range(n)}
    r = _wc(edges, frames)
    roots = [f"n{i}" for i in range(0, n, 7)]
    g = nx.DiGraph(edges)
    g.add_nodes_from(frames)
    got = an.reach_counts(r, roots)
    assert got == {x: len(nx.descendants(g, x)) + 1 for x in roots}


def test_lower_bound_is_a_real_simple_path_on_random_graphs():
    """Every critical path is a simple path of the graph whose frames sum to max_stack, and on
    acyclic graphs max_stack is the exact longest path."""
    rng = random.Random(11)
    for trial in range(20):
        n = 60
        edges = {(f"n{rng.randrange(n)}", f"n{rng.randrange(n)}") for _ in range(120)}
        if trial % 2:  # acyclic: edges go from lower to higher index only
            edges = {(u, v) for u, v in edges if int(u[1:]) < int(v[1:])}
        frames = {f"n{i}": rng.randrange(1, 50) for i in range(n)}
        r = _wc(sorted(edges), frames)
        g = nx.DiGraph(list(edges))
        g.add_nodes_from(frames)
        for x in frames:
            p = r.path(x)
            assert len(set(p)) == len(p)
            assert all(g.has_edge(u, v) for u, v in zip(p, p[1:], strict=False))
            assert sum(frames[y] for y in p) == r.max_stack[x]
        if trial % 2:
            for x in frames:
                longest = max(sum(frames[y] for y in path)
                              for t in [x, *nx.descendants(g, x)]
                              for path in nx.all_simple_paths(g, x, t)) if nx.descendants(
                    g, x) else frames[x]
                assert r.max_stack[x] == longest
                assert r.bounded[x]


def test_fast_on_a_100k_node_graph():
    rng = random.Random(1)
    n = 100_000
    nodes = [f"f{i}" for i in range(n)]
    succ: dict[str, list[str]] = {}
    for i in range(n):
        # mostly "downward" calls, with a few back edges making cycles (one big component)
        succ[nodes[i]] = [nodes[rng.randrange(i, n)] if rng.random() < 0.97 else
                          nodes[rng.randrange(0, n)] for _ in range(3)]
    frames = {x: rng.randrange(0, 200) for x in nodes}
    t0 = time.monotonic()
    r = an.worst_case(succ, frames, {})
    counts = an.reach_counts(r, nodes[:400])
    elapsed = time.monotonic() - t0
    assert len(r.max_stack) == n and len(counts) == 400
    assert elapsed < 60, f"worst_case + reach on 100k nodes took {elapsed:.1f}s"


# ---- the gcc fixture ---------------------------------------------------------------------------

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None or platform.machine() != "x86_64",
                               reason="needs gcc on x86_64 (the kernel's -mno-red-zone frames)")
CFLAGS = ["-O2", "-mno-red-zone", "-fstack-usage"]


def compile_fixture(tmp: Path) -> dict:
    """Copy the fixture sources and build them two ways, as kbuild would:

    - a.c out of tree (cwd = build dir, absolute source path, like ``make O=``);
    - b.c in the source dir with a relative path, its object (and .su) in the build dir.
    """
    src, bld = tmp / "src", tmp / "build"
    shutil.copytree(FIXTURE, src)
    bld.mkdir()
    a_cmd = [GCC, *CFLAGS, f"-I{src}/include", "-c", str(src / "a.c"), "-o", "a.o"]
    b_cmd = [GCC, *CFLAGS, "-Iinclude", "-c", "b.c", "-o", str(bld / "b.o")]
    subprocess.run(a_cmd, cwd=bld, check=True)
    subprocess.run(b_cmd, cwd=src, check=True)
    cc = [{"directory": str(bld), "file": str(src / "a.c"), "arguments": [*a_cmd, "-D__KERNEL__"]},
          {"directory": str(src), "file": "b.c", "arguments": [*b_cmd, "-D__KERNEL__"]}]
    return {"src": src, "build": bld, "su": [bld / "a.su", bld / "b.su"], "cc": cc}


def raw_frames(su_files: list[Path]) -> dict[tuple[str, str], tuple[int, str]]:
    """The .su rows read the simplest way (independently of pipeline.stackusage)."""
    out: dict[tuple[str, str], tuple[int, str]] = {}
    for f in su_files:
        for line in f.read_text().splitlines():
            loc, size, qual = line.split("\t")
            path, _line, _col, name = loc.rsplit(":", 3)
            key = (Path(path).name, name)
            out[key] = max(out.get(key, (0, "")), (int(size), qual))
    return out


def fixture_graph() -> dict:
    """The fixture's call graph, by hand (as resolve would write it)."""
    def fn(fid, file, line, defined=True, linkage=None):
        name = fid.split("@", 1)[0]
        return {"id": fid, "name": name, "file": file, "line": line, "defined": defined,
                "linkage": linkage or ("internal" if "@" in fid else "external"), "type": "",
                "attrs": [], "section": None, "bpf_kfunc": False}
    nodes = [
        fn("leaf", "a.c", 6), fn("twin@a.c", "a.c", 15), fn("rec", "a.c", 24), fn("dyn", "a.c", 36),
        fn("scale@a.c", "a.c", 45), fn("use_scale1", "a.c", 53), fn("use_scale2", "a.c", 58),
        fn("small@a.c", "a.c", 64), fn("calls_unknown", "a.c", 69),
        fn("____bpf_demo@a.c", "a.c", 75), fn("bpf_demo", "a.c", 80),
        fn("ext_unknown", None, None, defined=False),
        fn("hdr_noinline@include/h.h", "include/h.h", 6),
        fn("hdr_inline@include/h.h", "include/h.h", 14),
        fn("twin@b.c", "b.c", 6), fn("isra_user@b.c", "b.c", 20), fn("entry_b", "b.c", 28),
        fn("unreached@b.c", "b.c", 99),
    ]
    edges = [
        ("bpf_demo", "____bpf_demo@a.c"), ("____bpf_demo@a.c", "twin@a.c"),
        ("____bpf_demo@a.c", "hdr_inline@include/h.h"), ("twin@a.c", "leaf"),
        ("rec", "rec"), ("use_scale1", "scale@a.c"), ("use_scale2", "scale@a.c"),
        ("use_scale2", "hdr_noinline@include/h.h"), ("calls_unknown", "ext_unknown"),
        ("calls_unknown", "small@a.c"), ("entry_b", "twin@b.c"), ("entry_b", "isra_user@b.c"),
        ("entry_b", "hdr_inline@include/h.h"), ("twin@b.c", "hdr_noinline@include/h.h"),
        ("isra_user@b.c", "leaf"), ("unreached@b.c", "leaf"),
    ]
    # As resolve writes it: a multigraph keyed by edge kind; entry_b calls twin@b.c both
    # directly and through a pointer.
    out = [{"source": u, "target": v, "key": "direct", "kind": "direct",
            "callsites": [f"x.c:{i}:1"]} for i, (u, v) in enumerate(edges)]
    out.append({"source": "entry_b", "target": "twin@b.c", "key": "indirect", "kind": "indirect",
                "callsites": ["b.c:40:9"]})
    return {"directed": True, "multigraph": True, "graph": {}, "nodes": nodes, "edges": out}


FIXTURE_FACTS = {
    "protos": [{"id": "bpf_demo_proto", "name": "bpf_demo_proto", "func": "bpf_demo",
                "file": "a.c", "line": 90},
               {"id": "bpf_null_proto", "name": "bpf_null_proto", "func": None, "file": "a.c",
                "line": 95}],
    "proto_switches": [{"function": "demo_func_proto@a.c", "fallbacks": [], "cases": [
        {"ids": ["BPF_FUNC_demo"], "protos": ["bpf_demo_proto"], "calls": []}]}],
    "verifier_ops": [], "kfunc_sets": [], "id_lists": [],
}
EXTRA = ["rec", "dyn", "use_scale1", "use_scale2", "calls_unknown", "entry_b"]


@needs_gcc
def test_fixture_su_shapes(tmp_path):
    """What the fixture is for: gcc really cloned, really inlined, and the VLA is dynamic."""
    fx = compile_fixture(tmp_path)
    text = "".join(p.read_text() for p in fx["su"])
    assert re.search(r":scale\.constprop(\.\d+)?\t", text)  # IPA-CP clone
    assert re.search(r":isra_user\.isra(\.\d+)?\t", text)  # IPA-SRA clone
    assert re.search(r":dyn\t\d+\tdynamic\n", text)
    assert ":small\t" not in text and ":hdr_inline\t" not in text and "____bpf_demo" not in text
    assert text.count(":hdr_noinline\t") == 2  # one copy per TU
    assert text.count(":twin\t") == 2
    assert "\tinclude/h.h:" not in text and text.startswith(str(fx["src"]) + "/")
    assert "\ninclude/h.h:6:" in text or text.startswith("include/h.h:6:")  # b.c: relative


@needs_gcc
def test_fixture_frames_and_stacks(tmp_path):
    fx = compile_fixture(tmp_path)
    raw = raw_frames(fx["su"])

    def F(file: str, name: str) -> int:  # noqa: N802 - reads like the hand computation
        return raw[(file, name)][0]

    graph = fixture_graph()
    bpf_roots = roots_stage.compute_roots({"bpf": FIXTURE_FACTS, "nodes": []}, graph,
                                          source_root=None, kconfig=None, extra=EXTRA)
    assert [r["id"] for r in bpf_roots["roots"] if r["kind"] == "helper"] == ["bpf_demo"]
    assert bpf_roots["roots"][0]["body"] == "____bpf_demo@a.c"
    assert "unreached@b.c" not in bpf_roots["reachable"]

    cwd = {str(fx["build"] / "a.su"): str(fx["build"]), str(fx["build"] / "b.su"): str(fx["src"])}
    su = load(fx["su"], PathMap(fx["src"], fx["build"]), cwd.get)
    assert su.counts["malformed"] == 0
    out = an.annotate(graph, bpf_roots, su, tu_files=["a.c", "b.c"])
    fr = out["frames"]

    # frames: matched by (file, name); clones folded; the header static once for both TUs
    assert fr["leaf"]["frame"] == F("a.c", "leaf") > 0
    assert fr["twin@a.c"]["frame"] == F("a.c", "twin")
    assert fr["twin@b.c"]["frame"] == F("b.c", "twin")
    assert fr["twin@a.c"]["frame"] != fr["twin@b.c"]["frame"]  # two statics, one name
    scale = max(v for (f, n), v in raw.items() if f == "a.c" and n.startswith("scale."))[0]
    assert fr["scale@a.c"]["frame"] == scale
    isra = max(v for (f, n), v in raw.items() if f == "b.c" and n.startswith("isra_user."))[0]
    assert fr["isra_user@b.c"]["frame"] == isra
    assert fr["hdr_noinline@include/h.h"]["frame"] == F("h.h", "hdr_noinline")
    assert fr["hdr_noinline@include/h.h"]["match"] == "su"
    assert (fr["small@a.c"]["frame"], fr["small@a.c"]["inlined"]) == (0, True)
    assert (fr["hdr_inline@include/h.h"]["frame"], fr["hdr_inline@include/h.h"]["inlined"]) == (0, True)
    assert fr["____bpf_demo@a.c"]["match"] == "helper_body" and fr["____bpf_demo@a.c"]["inlined"]
    assert fr["ext_unknown"]["frame"] is None and fr["ext_unknown"]["match"] == "undefined"
    assert fr["dyn"]["qualifier"] == "dynamic"
    assert out["counts"]["match"]["su"] == 13

    # worst-case stacks, computed by hand along each path
    roots = {r["id"]: r for r in out["roots"]}
    demo = roots["bpf_demo"]
    assert demo["max_stack"] == F("a.c", "bpf_demo") + F("a.c", "twin") + F("a.c", "leaf")
    assert demo["bounded"] and demo["path"] == ["bpf_demo", "____bpf_demo@a.c", "twin@a.c", "leaf"]
    assert demo["helper_ids"] == ["BPF_FUNC_demo"] and demo["reachable"] == 5

    rec = roots["rec"]
    assert (rec["max_stack"], rec["bounded"]) == (F("a.c", "rec"), False)
    assert rec["unbounded_reason"] == "recursion: rec -> rec"

    dyn = roots["dyn"]
    assert (dyn["max_stack"], dyn["bounded"]) == (F("a.c", "dyn"), False)
    assert dyn["unbounded_reason"].startswith("dynamic frame: dyn")

    assert roots["use_scale1"]["max_stack"] == F("a.c", "use_scale1") + scale
    s2 = F("a.c", "use_scale2") + max(scale, F("h.h", "hdr_noinline"))
    assert roots["use_scale2"]["max_stack"] == s2 and roots["use_scale2"]["bounded"]

    cu = roots["calls_unknown"]
    assert (cu["max_stack"], cu["bounded"]) == (F("a.c", "calls_unknown"), False)
    assert cu["unbounded_reason"].startswith("unknown frame: ext_unknown")

    eb = roots["entry_b"]
    via_twin = F("b.c", "twin") + F("h.h", "hdr_noinline")
    via_isra = isra + F("a.c", "leaf")
    assert eb["max_stack"] == F("b.c", "entry_b") + max(via_twin, via_isra)
    assert eb["path"][1] == ("twin@b.c" if via_twin >= via_isra else "isra_user@b.c")

    # the pruned graph: the §7 contract, readable by networkx
    cg = out["callgraph"]
    g = nx.node_link_graph(cg, edges="edges")
    assert "unreached@b.c" not in g and "leaf" in g
    assert g.number_of_edges() == 15
    want = {"id", "name", "file", "line", "linkage", "defined", "inlined", "frame",
            "frame_qualifier", "root", "helper_id", "max_stack", "max_stack_bounded",
            "max_stack_path"}
    for n in cg["nodes"]:
        assert set(n) == want
    for e in cg["edges"]:
        assert set(e) == {"source", "target", "kind", "callsites"}
    assert not cg["multigraph"]
    assert g.edges["entry_b", "twin@b.c"] == {"kind": "direct", "callsites": ["b.c:40:9", "x.c:10:1"]}
    b = g.nodes["bpf_demo"]
    assert (b["root"], b["helper_id"], b["max_stack_path"]) == (
        "helper", "BPF_FUNC_demo", demo["path"])
    assert g.nodes["rec"]["root"] is None  # an extra root: the contract knows helper/kfunc only
    assert g.nodes["leaf"]["max_stack_path"] is None


@needs_gcc
def test_stage_functions_on_a_fixture_output_dir(tmp_path):
    """run_roots + run_annotate on an output directory laid out as the stages leave it."""
    fx = compile_fixture(tmp_path / "fx")
    out = tmp_path / "out"
    out.mkdir()
    write_json(out / "graph.json.gz", fixture_graph(), compress=True)
    write_json(out / "linked.json.gz", {"bpf": FIXTURE_FACTS, "nodes": []}, compress=True)
    write_json(out / "stack_usage.json", {"files": [str(p) for p in fx["su"]], "tus_without_su": []})
    write_json(out / "compile_commands.json", fx["cc"])
    write_json(out / "build.json", {"build_dir": str(fx["build"]), "source": str(fx["src"])})
    ctx = Context(out=out, config=None, jobs=1, progress=False)
    r1 = roots_stage.run_roots(ctx)
    assert r1.outputs == ["bpf_roots.json"] and r1.counts["helper_roots"] == 1
    r2 = an.run_annotate(ctx)
    assert sorted(r2.outputs) == ["callgraph.json", "frames.json", "roots.json"]
    frames = read_json(out / "frames.json")
    assert frames["nodes"]["twin@b.c"]["frame"] > 0 and frames["match"]["su"] == 13
    roots = read_json(out / "roots.json")
    assert isinstance(roots, list) and [r["id"] for r in roots] == ["bpf_demo"]
    assert any(line.strip().startswith("bpf_demo: ") for line in r2.summary)
    cg = json.loads((out / "callgraph.json").read_text())
    assert {n["id"] for n in cg["nodes"]} == {"bpf_demo", "____bpf_demo@a.c", "twin@a.c", "leaf",
                                              "hdr_inline@include/h.h"}


def test_a_bpf_callback_counts_the_bpf_stack_and_stays_a_lower_bound():
    # bpf_loop -> ____bpf_loop -> bpf-program (resolve's node for the BPF callback).
    nodes = {"bpf_loop": {"name": "bpf_loop", "file": "k/b.c", "defined": True},
             "bpf-program": {"name": "bpf-program", "file": None, "defined": False}}
    su = load([], PathMap(Path("/nonexistent"), Path("/nonexistent")))
    frames, counts = an.node_frames(nodes, su)
    assert frames["bpf-program"]["frame"] == an.MAX_BPF_STACK and counts["bpf_program"] == 1
    why = an.own_unbounded("bpf-program", frames["bpf-program"])
    assert why.startswith("calls BPF code: bpf-program")
    r = _wc([("bpf_loop", "bpf-program")], {"bpf_loop": 48, "bpf-program": an.MAX_BPF_STACK},
            {"bpf-program": why})
    assert r.max_stack["bpf_loop"] == 48 + 512 and not r.bounded["bpf_loop"]
