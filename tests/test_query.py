"""``kcg query``: every answer from SQLite equals the networkx computation on the same graph."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import networkx as nx
import pytest
from emit_fixture import build_graph, emitted, frames_of

from pipeline.cli import main
from pipeline.db import open_database
from pipeline.fsutil import KcgError, read_json
from pipeline.query import Query, run_query


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emitted(tmp_path_factory.mktemp("query") / "a", "a")


@pytest.fixture(scope="module")
def g() -> nx.MultiDiGraph:
    return build_graph("a")


@pytest.fixture(scope="module")
def frames(g: nx.DiGraph) -> dict:
    return frames_of(g, "a")


@pytest.fixture(scope="module")
def q(out: Path):
    conn = open_database(out / "callgraph.sqlite")
    yield Query(conn)
    conn.close()


def test_callers_and_callees_one_level(q: Query, g: nx.MultiDiGraph) -> None:
    for n in sorted(g):
        res = q.neighbours(n, "callers")
        assert [c["id"] for c in res["callers"]] == sorted(g.predecessors(n))
        for c in res["callers"]:
            edges = g[c["id"]][n]  # kind -> attributes: a pair can be direct and indirect
            assert c["kinds"] == sorted(edges)
            assert c["callsites"] == sorted({s for e in edges.values() for s in e["callsites"]})
        res = q.neighbours(n, "callees")
        assert [c["id"] for c in res["callees"]] == sorted(g.successors(n))
    pair = q.neighbours("copy_from_kernel_nofault", "callers")["callers"]
    assert pair[0]["kinds"] == ["direct", "indirect"]


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_callers_and_callees_with_depth(q: Query, g: nx.DiGraph, depth: int) -> None:
    for n in sorted(g):
        for direction, graph in (("callees", g), ("callers", g.reverse(copy=False))):
            want = nx.single_source_shortest_path_length(graph, n, cutoff=depth)
            want.pop(n)
            # a function in a recursion reaches itself: listed at its shortest cycle's length
            back = [want.get(p, 0 if p == n else None) for p in graph.predecessors(n)]
            cycle = min((d + 1 for d in back if d is not None), default=None)
            if cycle is not None and cycle <= depth:
                want[n] = cycle
            got = {c["id"]: c["depth"] for c in q.neighbours(n, direction, depth)[direction]}
            assert got == want, (n, direction)


def test_callers_and_callees_all_levels(q: Query, g: nx.DiGraph) -> None:
    for n in sorted(g):
        in_cycle = any(n in c and (len(c) > 1 or g.has_edge(n, n))
                       for c in nx.strongly_connected_components(g))
        extra = {n} if in_cycle else set()
        got = {c["id"] for c in q.neighbours(n, "callees", 0)["callees"]}
        assert got == nx.descendants(g, n) | extra, n
        got = {c["id"] for c in q.neighbours(n, "callers", 0)["callers"]}
        assert got == nx.ancestors(g, n) | extra, n


def test_path_is_a_shortest_call_chain(q: Query, g: nx.DiGraph, out: Path) -> None:
    roots = [r["id"] for r in read_json(out / "roots.json")]
    checked = 0
    for a in roots + ["bpf_obj_free_fields", "vfs_read"]:
        for b in sorted(g):
            res = q.path(a, b)
            if not nx.has_path(g, a, b):
                assert res["path"] is None and res["reason"] == "no call chain"
                continue
            p = res["path"]
            assert p[0] == a and p[-1] == b
            assert len(p) - 1 == res["length"] == nx.shortest_path_length(g, a, b), (a, b)
            assert all(g.has_edge(u, v) for u, v in zip(p, p[1:], strict=False))
            assert [h["kinds"] for h in res["calls"]] == [
                sorted(g[u][v]) for u, v in zip(p, p[1:], strict=False)]
            checked += 1
    assert checked > 100


def test_path_respects_max_depth(q: Query) -> None:
    res = q.path("bpf_map_update_elem", "unit_alloc@kernel/bpf/memalloc.c", max_depth=2)
    assert res["path"] is None and "at most 2 calls" in res["reason"]


def _nx_max_stack(g: nx.DiGraph, frames: dict, n: str) -> int:
    """Longest node-weighted path from n, by networkx on a DAG (weights on the edges into v)."""
    sub = g.subgraph(nx.descendants(g, n) | {n})
    assert nx.is_directed_acyclic_graph(sub)
    h = nx.DiGraph()
    h.add_edge("<start>", n, w=frames[n]["frame"] or 0)
    for u, v in sub.edges():
        h.add_edge(u, v, w=frames[v]["frame"] or 0)
    return nx.dag_longest_path_length(h, weight="w")


def test_stack_equals_networkx(q: Query, g: nx.DiGraph, frames: dict, out: Path) -> None:
    roots = {r["id"]: r for r in read_json(out / "roots.json")}
    cyclic = set().union(*(c for c in nx.strongly_connected_components(g) if len(c) > 1))
    for n in sorted(g):
        res = q.stack(n)
        assert res["reachable"] == len(nx.descendants(g, n)) + 1
        p = [x["id"] for x in res["path"]]
        assert p[0] == n and all(g.has_edge(u, v) for u, v in zip(p, p[1:], strict=False))
        if n in roots:
            assert res["path_source"] == "roots.json" and p == roots[n]["path"]
            assert (res["max_stack"], res["bounded"]) == (roots[n]["max_stack"],
                                                          roots[n]["bounded"])
        if nx.descendants(g, n) & cyclic or n in cyclic:
            continue
        want = _nx_max_stack(g, frames, n)
        assert res["max_stack"] == want == res["path_frames"], n


def test_stack_walk_without_stored_next(out: Path, tmp_path: Path, g: nx.DiGraph,
                                        frames: dict) -> None:
    # An annotate that gives no critical-path `next`: the recursive deepest-callee walk.
    copy = tmp_path / "c.sqlite"
    shutil.copy(out / "callgraph.sqlite", copy)
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE frames SET next = NULL")
    conn.commit()
    conn.close()
    for n in ("htab_map_update_elem@kernel/bpf/hashtab.c", "skb_copy_bits", "vfs_read"):
        res = run_query(copy, "stack", [n])
        assert res["path_source"] == "walk"
        assert res["path_frames"] == _nx_max_stack(g, frames, n) == res["max_stack"]


def test_stack_explains_unbounded(q: Query) -> None:
    res = q.stack("bpf_obj_drop_impl")
    assert res["bounded"] is False and res["root"]["kind"] == "kfunc"
    assert res["cycles"] == [{"functions": ["__bpf_obj_drop_impl", "bpf_obj_free_fields"],
                              "frames": 80, "unbounded": True}]
    res = q.stack("bpf_trace_printk")
    assert res["dynamic_frames"] == ["bpf_trace_copy_string@kernel/trace/bpf_trace.c"]
    assert res["unbounded_reason"].startswith("dynamic frame: bpf_trace_copy_string@")
    res = q.stack("bpf_map_update_elem")
    assert (res["unresolved_icalls"], res["unknown_frames"]) == (1, 1)


def test_icall_sites(q: Query, out: Path) -> None:
    for site in read_json(out / "icalls.json"):
        for loc in (f"{site['file']}:{site['line']}",
                    f"{site['file'].rsplit('/', 1)[-1]}:{site['line']}:{site['column']}"):
            (got,) = q.icall(loc)["sites"]
            assert got["caller"] == site["caller"] and got["expr"] == site["expr"]
            assert [t["id"] for t in got["targets"]] == sorted(site["targets"])
            assert got["resolution"] == site["resolution"]
            assert got["layers"] == site["layers"]
    (vfs,) = q.icall("fs/read_write.c:468")["sites"]
    assert vfs["why"] == {"fallbacks": [site for site in read_json(out / "icalls.json")
                                        if site["caller"] == "vfs_read"][0]["fallbacks"]}
    assert q.icall("helpers.c:41")["sites"][0]["why"] is None  # narrowed by every layer
    with pytest.raises(KcgError, match=r"nearby are at kernel/bpf/helpers.c:41"):
        q.icall("helpers.c:40")
    with pytest.raises(KcgError, match="FILE:LINE"):
        q.icall("helpers.c")


def test_roots_listing(q: Query, out: Path) -> None:
    roots = read_json(out / "roots.json")
    got = q.roots()["roots"]
    assert [r["id"] for r in got] == [r["id"] for r in
                                      sorted(roots, key=lambda r: (-r["max_stack"], r["id"]))]
    by = {r["id"]: r for r in roots}
    for r in got:
        assert (r["max_stack"], r["bounded"], r["reachable"], r["helper_ids"]) == (
            by[r["id"]]["max_stack"], by[r["id"]]["bounded"], by[r["id"]]["reachable"],
            by[r["id"]]["helper_ids"])


def test_unknown_and_ambiguous_names(q: Query) -> None:
    with pytest.raises(KcgError, match=r"no function 'bpf_map_lookup'.*did you mean: "
                                       r"bpf_map_lookup_elem"):
        q.stack("bpf_map_lookup")
    with pytest.raises(KcgError, match=r"htab_map_lookup_elem@kernel/bpf/hashtab.c"):
        q.neighbours("htab_lookup_elem", "callers")
    with pytest.raises(KcgError, match=r"'check_flags' names 2 functions.*"
                                       r"check_flags@fs/fcntl.c, check_flags@kernel/bpf/hashtab.c"):
        q.stack("check_flags")
    # a unique name needs no path; an id always works
    assert q.stack("alloc_htab_elem")["function"] == "alloc_htab_elem@kernel/bpf/hashtab.c"
    assert q.stack("check_flags@fs/fcntl.c")["max_stack"] == 8


def test_cli_text_and_json(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(out / "callgraph.sqlite")
    assert main(["query", "--db", db, "--json", "stack", "bpf_map_lookup_elem"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["max_stack"] == 96 and res["bounded"] is True
    assert main(["query", "--db", db, "path", "bpf_loop", "bpf_map_lookup_elem"]) == 0
    assert "no call chain" in capsys.readouterr().out
    assert main(["query", "--db", db, "callers", "--depth", "0", "memcpy"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("4 callers of memcpy (all levels)") and "bpf_map_update_elem" in text
    for what in (["roots"], ["icall", "bpf_iter.c:742"], ["callees", "bpf_loop"],
                 ["stack", "bpf_obj_drop_impl"]):
        assert main(["query", "--db", db, *what]) == 0
        assert capsys.readouterr().out.strip()
    # why a site is not narrower: the fallback, and where the untrusted value entered
    assert main(["query", "--db", db, "icall", "read_write.c:468"]) == 0
    text = capsys.readouterr().out
    assert "  not narrowed by struct file.f_op: flow-from-untrusted\n    because of " \
           "fs/inode.c:2300 in init_special_inode: nonconst-store (call) into " \
           "struct inode.i_fop\n    seq_read" in text, text
    assert main(["query", "--db", db, "stack", "no_such_fn"]) == 2
    assert "no function 'no_such_fn'" in capsys.readouterr().err
    assert main(["query", "--db", db, "path", "bpf_loop"]) == 2
    assert "usage: kcg query --db FILE path FROM TO" in capsys.readouterr().err


def test_refuses_other_schema_versions(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "old.sqlite"
    shutil.copy(out / "callgraph.sqlite", copy)
    conn = sqlite3.connect(copy)
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(KcgError, match="schema version 999"):
        run_query(copy, "roots", [])
    with pytest.raises(KcgError, match="no such database"):
        run_query(tmp_path / "missing.sqlite", "roots", [])
    (tmp_path / "junk.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(KcgError, match="not an SQLite database"):
        run_query(tmp_path / "junk.sqlite", "roots", [])
