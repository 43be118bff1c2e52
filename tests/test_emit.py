"""The emit stage: every artifact loads back with its standard reader and agrees with the graph.

Runs on the synthetic output directories of ``tests/emit_fixture.py`` (the upstream stages'
contracts, hand-written), so it needs no kernel.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import networkx as nx
import pydot
import pytest
from emit_fixture import PLANTED, build_graph, emitted, frames_of, make_output, run_emit, simple

from pipeline import db, emit
from pipeline.fsutil import KcgError, read_json
from pipeline.graphs import load_simple_graph
from pipeline.stages import get_stages

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def out_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emitted(tmp_path_factory.mktemp("emit") / "a", "a")


def _pruned(out: Path) -> nx.DiGraph:
    return load_simple_graph(out / "callgraph.json")


def _full(out: Path) -> nx.MultiDiGraph:
    return nx.node_link_graph(json.loads(gzip.decompress((out / "graph.json.gz").read_bytes())),
                              edges="edges")


def test_stage_is_registered() -> None:
    assert get_stages()["emit"] is emit.STAGE


def test_every_deliverable_is_written(out_a: Path) -> None:
    for name in ("callgraph.json", "icalls.json", "roots.json", "metrics.json",
                 "callgraph.graphml", "callgraph.dot", "callgraph.sqlite", "report/index.html"):
        assert (out_a / name).is_file(), name
    man = read_json(out_a / "manifests" / "emit.json")
    assert "callgraph.sqlite" in man["outputs"] and "report/index.html" in man["outputs"]
    assert all((out_a / rel).is_file() for rel in man["outputs"])
    assert not list(out_a.glob(".*.tmp")) and not list(out_a.glob(".report.*"))


def test_node_link_inputs_load_back(out_a: Path) -> None:
    g = _pruned(out_a)
    assert isinstance(g, nx.DiGraph) and not g.is_multigraph()
    expected = build_graph("a")
    assert set(g) <= set(expected) and set(g.edges) <= set(simple(expected).edges)
    full = _full(out_a)
    assert full.is_multigraph() and set(full) == set(expected)
    assert set(full.edges(keys=True)) == set(expected.edges(keys=True))


def test_pruned_loader_merges_direct_and_indirect(out_a: Path) -> None:
    # callgraph.json has two records for this pair; plain networkx would keep only the last.
    data = read_json(out_a / "callgraph.json")
    pair = ("bpf_probe_read_kernel_common@kernel/trace/bpf_trace.c", "copy_from_kernel_nofault")
    recs = [e for e in data["edges"] if (e["source"], e["target"]) == pair]
    assert sorted(e["kind"] for e in recs) == ["direct", "indirect"]
    e = _pruned(out_a).edges[pair]
    assert e["kind"] == "direct"
    assert e["callsites"] == sorted({c for r in recs for c in r["callsites"]})


def _decode_graphml(v: object) -> object:
    if isinstance(v, str) and v[:1] in "[{":
        return json.loads(v)
    return v


def test_graphml_agrees_with_callgraph(out_a: Path) -> None:
    g = _pruned(out_a)
    h = nx.read_graphml(out_a / "callgraph.graphml")
    assert h.is_directed()
    assert h.graph["kcg_list_encoding"] == "json"
    assert set(h) == set(g)
    assert set(h.edges) == set(g.edges)
    for n, a in g.nodes(data=True):
        want = {k: v for k, v in a.items() if v is not None}
        got = {k: _decode_graphml(v) for k, v in h.nodes[n].items()}
        assert got == want, n
        # types survive: ints are ints and booleans booleans, not strings
        assert isinstance(h.nodes[n]["defined"], bool)
        if a["max_stack"] is not None:
            assert isinstance(h.nodes[n]["max_stack"], int)
    for u, v, d in g.edges(data=True):
        assert {k: _decode_graphml(x) for k, x in h.edges[u, v].items()} == d


def test_graphml_value_conversion() -> None:
    assert emit.graphml_value(None) is None
    assert emit.graphml_value(["a:1:2", "b:3:4"]) == '["a:1:2", "b:3:4"]'
    assert emit.graphml_value(True) is True and emit.graphml_value(7) == 7
    g = nx.DiGraph()
    g.add_node("x", frame=None, attrs=["noinline"], defined=False)
    h = emit.graphml_graph(g)
    assert h.nodes["x"] == {"attrs": '["noinline"]', "defined": False}


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return s


def test_dot_agrees_with_callgraph(out_a: Path) -> None:
    g = _pruned(out_a)
    (d,) = pydot.graph_from_dot_file(str(out_a / "callgraph.dot"))
    # pydot lists the default-attribute statement `node [...]` as a node named "node": unquoted.
    nodes = {_unquote(n.get_name()): n for n in d.get_nodes() if n.get_name().startswith('"')}
    assert set(nodes) == set(g)
    for n, a in g.nodes(data=True):
        attrs = {k: _unquote(v) for k, v in nodes[n].get_attributes().items()}
        assert attrs.pop("label") == a["name"]
        want = {k: ("true" if v is True else "false" if v is False else
                    " ".join(v) if isinstance(v, list) else str(v))
                for k, v in a.items() if v is not None and k != "name"}
        assert attrs == want, n
    edges = {(_unquote(e.get_source()), _unquote(e.get_destination())): e for e in d.get_edges()}
    assert set(edges) == set(g.edges)
    for (u, v), e in edges.items():
        attrs = {k: _unquote(x) for k, x in e.get_attributes().items()}
        assert attrs["kind"] == g.edges[u, v]["kind"]
        assert attrs["callsites"].split() == g.edges[u, v]["callsites"]
        assert (attrs.get("style") == "dashed") == (g.edges[u, v]["kind"] == "indirect")


def test_dot_quotes_keyword_names(tmp_path: Path) -> None:
    g = nx.DiGraph()
    g.add_edge("node", "graph", kind="direct", callsites=["a.c:1:2"])
    g.add_edge("graph", "edge@x/y.c", kind="indirect", callsites=[])
    for n in g:
        g.nodes[n]["name"] = n.split("@")[0]
    emit.write_dot(g, tmp_path / "k.dot")
    (d,) = pydot.graph_from_dot_file(str(tmp_path / "k.dot"))
    names = {_unquote(n.get_name()) for n in d.get_nodes() if n.get_name().startswith('"')}
    assert names == {"node", "graph", "edge@x/y.c"}


def _rows(conn: sqlite3.Connection, sql: str, *args: object) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def test_sqlite_holds_the_full_graph(out_a: Path) -> None:
    g, pruned = _full(out_a), _pruned(out_a)
    frames = read_json(out_a / "frames.json")["nodes"]
    conn = sqlite3.connect(out_a / "callgraph.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    meta = dict(_rows(conn, "SELECT key, value FROM meta"))
    assert meta["schema_version"] == str(db.SCHEMA_VERSION)
    assert json.loads(meta["metrics"]) == read_json(out_a / "metrics.json")

    fns = {r[1]: r for r in _rows(conn, "SELECT * FROM functions")}
    assert set(fns) == set(g)  # the full graph, not only the pruned one
    assert set(pruned) < set(g)
    ids = {fid: r[0] for fid, r in fns.items()}
    assert sorted(ids.values()) == list(range(1, len(ids) + 1))
    assert sorted(ids, key=ids.get) == sorted(ids)  # dense ids in sorted-id order: stable
    for n, a in g.nodes(data=True):
        (_, fid, name, file, line, linkage, defined, typ, attrs, section, kfunc, in_cg,
         in_graph) = fns[n]
        assert (name, file, line, linkage, bool(defined), typ, json.loads(attrs), section,
                bool(kfunc)) == (a["name"], a["file"], a["line"], a["linkage"], a["defined"],
                                 a["type"], a["attrs"], a["section"], a["bpf_kfunc"])
        assert bool(in_cg) == (n in pruned) and in_graph == 1
    byid = {v: k for k, v in ids.items()}

    calls = {(byid[u], byid[v], kind): cid
             for cid, u, v, kind in _rows(conn, "SELECT id, caller, callee, kind FROM calls")}
    assert set(calls) == set(g.edges(keys=True))  # a direct + indirect pair is two rows
    assert ("bpf_probe_read_kernel_common@kernel/trace/bpf_trace.c", "copy_from_kernel_nofault",
            "indirect") in calls
    for (u, v, kind), cid in calls.items():
        assert kind == g.edges[u, v, kind]["kind"]
        sites = [f"{f}:{ln}:{c}" for f, ln, c in _rows(
            conn, "SELECT file, line, col FROM callsites WHERE call = ? ORDER BY rowid", cid)]
        assert sites == g.edges[u, v, kind]["callsites"]

    for fid, f in frames.items():
        row = _rows(conn, "SELECT frame, qualifier, inlined, max_stack, max_stack_bounded,"
                    " unbounded_reason, next FROM frames WHERE function = ?", ids[fid])[0]
        assert row == (f["frame"], f["qualifier"], int(f["inlined"]), f["max_stack"],
                       int(f["max_stack_bounded"]), f["unbounded_reason"],
                       ids[f["next"]] if f["next"] else None)

    icalls = read_json(out_a / "icalls.json")
    sites = _rows(conn, "SELECT id, caller, file, line, col, expr, fn_type, layers, resolution,"
                  " type_layer_count, why FROM icall_sites")
    assert len(sites) == len(icalls)
    got = {}
    for sid, caller, file, line, col, expr, fn_type, layers, res, tlc, why in sites:
        targets = sorted(byid[t] for (t,) in _rows(
            conn, "SELECT target FROM icall_targets WHERE site = ?", sid))
        got[(file, line, col)] = {"caller": byid[caller], "file": file, "line": line,
                                  "column": col, "expr": expr, "fn_type": fn_type,
                                  "layers": json.loads(layers), "resolution": res,
                                  "targets": targets, "type_layer_count": tlc,
                                  **(json.loads(why) if why else {})}
    assert got == {(s["file"], s["line"], s["column"]): {**s, "targets": sorted(s["targets"])}
                   for s in icalls}
    assert sum(1 for s in sites if s[-1]) == 2  # the two fixture sites with fallbacks

    roots = read_json(out_a / "roots.json")
    rows = {byid[r[0]]: r[1:] for r in _rows(
        conn, "SELECT function, name, kind, max_stack, bounded, reachable, unbounded_reason"
        " FROM roots")}
    assert set(rows) == {r["id"] for r in roots}
    for r in roots:
        rid = ids[r["id"]]
        assert rows[r["id"]] == (r["name"], r["kind"], r["max_stack"], int(r["bounded"]),
                                 r["reachable"], r["unbounded_reason"])
        for table, col, key in (("root_helper_ids", "helper_id", "helper_ids"),
                                ("root_prog_types", "prog_type", "prog_types"),
                                ("root_kfunc_flags", "flag", "kfunc_flags"),
                                ("root_protos", "proto", "protos")):
            got_list = [x for (x,) in _rows(
                conn, f"SELECT {col} FROM {table} WHERE root = ? ORDER BY {col}", rid)]
            assert got_list == sorted(r[key]), (r["id"], table)
        path = [byid[f] for (f,) in _rows(
            conn, "SELECT function FROM root_path WHERE root = ? ORDER BY depth", rid)]
        assert path == r["path"]

    cyc: dict[int, set[str]] = {}
    for c, f in _rows(conn, "SELECT cycle, function FROM cycles"):
        cyc.setdefault(c, set()).add(byid[f])
    assert sorted(map(sorted, cyc.values())) == sorted(
        sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1)

    run = _rows(conn, "SELECT kernel_version, config, compiler, compiler_version, kcg_version"
                " FROM runs")
    assert run == [("6.1.192", None, "gcc", "gcc (Debian 12.2.0-14) 12.2.0", "0.1.0")]
    indexes = {r[0] for r in _rows(conn, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"calls_callee", "functions_name", "icall_sites_loc"} <= indexes
    conn.close()


def test_rerun_is_skipped_and_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    outs = [emitted(tmp_path / n, "a") for n in ("x", "y")]
    files = sorted(str(p.relative_to(outs[0])) for p in outs[0].rglob("*")
                   if p.is_file() and "manifests" not in p.parts and p.name != ".kcg.lock")
    assert "callgraph.sqlite" in files and "report/index.html" in files
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    assert run_emit(outs[0]) is None  # inputs unchanged, outputs intact: skipped


def test_missing_input_names_the_stage(tmp_path: Path) -> None:
    out = make_output(tmp_path / "o")
    (out / "frames.json").unlink()
    with pytest.raises(KcgError, match=r"frames.json is missing: run the 'annotate' stage"):
        run_emit(out)


def test_failed_database_build_keeps_the_old_one(out_a: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "callgraph.sqlite"
    target.write_bytes((out_a / "callgraph.sqlite").read_bytes())
    before = target.read_bytes()
    data = emit.load_emit_data(out_a, None)

    def boom(conn: sqlite3.Connection, data: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(db, "_fill", boom)
    with pytest.raises(RuntimeError):
        db.write_database(target, data)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["callgraph.sqlite"]


def test_cli_emit_with_a_config(tmp_path: Path) -> None:
    from pipeline.cli import main

    out = make_output(tmp_path / "o", "b")
    assert main(["emit", "--config", str(REPO / "configs" / "bpf-core.yaml"),
                 "--output", str(out), "--no-progress", "-j", "1"]) == 0
    conn = sqlite3.connect(out / "callgraph.sqlite")
    assert conn.execute("SELECT kernel_version, config FROM runs").fetchone() == (
        "6.12.57", "bpf-core")
    assert "Linux 6.12.57 (bpf-core)" in (out / "report" / "index.html").read_text()


# --- the report ----------------------------------------------------------------------------------

class _Rows(HTMLParser):
    """The data-root of each row of the roots table, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "tr" and d.get("data-root"):
            self.rows.append(d["data-root"] or "")


def test_index_lists_roots_deepest_first(out_a: Path) -> None:
    text = (out_a / "report" / "index.html").read_text()
    roots = read_json(out_a / "roots.json")
    p = _Rows()
    p.feed(text)
    assert p.rows == [r["id"] for r in sorted(roots, key=lambda r: (-r["max_stack"], r["id"]))]
    assert "6.1.192" in text and "<script>" in text
    assert "http://" not in text and "https://" not in text  # nothing fetched from a network
    for r in roots:
        assert (out_a / "report" / "roots" / f"{r['id']}.html").is_file()


def test_index_lists_the_widest_indirect_calls(out_a: Path) -> None:
    text = (out_a / "report" / "index.html").read_text()
    table = text.split("<h2>Widest indirect calls the roots reach</h2>", 1)[1]
    table = table.split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>([^<]+)</td>", table)
    # sites in functions the roots reach with more than one target, widest first; vfs_read
    # (one target) is not one
    assert rows == ["kernel/bpf/helpers.c:41:9", "kernel/bpf/helpers.c:47:9"]
    assert "not narrowed by struct bpf_map.ops: opaque-object" in table
    assert "vfs_read" not in table


def test_root_pages_escape_mark_and_draw(out_a: Path) -> None:
    pages = out_a / "report" / "roots"
    upd = (pages / "bpf_map_update_elem.html").read_text()
    # the unresolved call's C text is escaped, never raw
    assert "c-&gt;refill &amp;&amp; c-&gt;refill(c, cnt &lt; 8 ? 8 : cnt)" in upd
    assert "c->refill && c->refill(c, cnt < 8" not in upd
    assert "Unresolved indirect calls reached (1)" in upd
    assert "<svg" in upd and "unresolved indirect call" in upd  # the marker in the drawing
    assert "unknown frame: memcpy" in upd  # annotate's reason, and memcpy listed
    drop = (pages / "bpf_obj_drop_impl.html").read_text()
    assert "recursion through 2 functions" in drop and ">recursion<" in drop
    printk = (pages / "bpf_trace_printk.html").read_text()
    assert "dynamic frame (VLA or alloca) in <code>bpf_trace_copy_string@" in printk
    assert "DYNAMIC (unbounded)" in printk
    ok = (pages / "bpf_task_from_pid.html").read_text()
    assert "Unbounded" not in ok and "too many to draw" not in ok


def test_large_graph_is_cut_and_says_so(out_a: Path) -> None:
    page = (out_a / "report" / "roots" / "bpf_skb_load_bytes.html").read_text()
    assert "too many to draw" in page and "callees not drawn" in page
    dot_text = (out_a / "report" / "roots" / "bpf_skb_load_bytes.dot").read_text()
    (d,) = pydot.graph_from_dot_data(dot_text)
    drawn = {_unquote(n.get_name()) for n in d.get_nodes() if n.get_name().startswith('"')}
    assert len(drawn) <= emit.REPORT_MAX_NODES
    roots = {r["id"]: r for r in read_json(out_a / "roots.json")}
    assert set(roots["bpf_skb_load_bytes"]["path"]) <= drawn  # the critical path is whole
    assert roots["bpf_skb_load_bytes"]["reachable"] > emit.REPORT_MAX_NODES
    m = re.search(r"reaches (\d+) functions", page)
    assert m and int(m.group(1)) == roots["bpf_skb_load_bytes"]["reachable"]


def test_cap_and_failed_dot_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A `dot` that hangs: each drawing must time out and say so on its page, not crash the stage.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dot").write_text('#!/bin/sh\n[ "$1" = -V ] && { echo "dot - fake" >&2; exit 0; }\n'
                              "exec sleep 30\n")
    (fake / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    out = make_output(tmp_path / "o")
    res = run_emit(out, report_max_svg=2, dot_timeout=0.5)
    assert res.counts["report_failed"] == 2 and res.counts["report_skipped"] == 8
    pages = out / "report" / "roots"
    deepest = sorted(read_json(out / "roots.json"), key=lambda r: (-r["max_stack"], r["id"]))
    first = (pages / f"{deepest[0]['id']}.html").read_text()
    assert "The drawing failed: dot did not finish within 0.5 s" in first
    last = (pages / f"{deepest[-1]['id']}.html").read_text()
    assert "Not drawn: the report draws at most 2 roots" in last
    assert (pages / f"{deepest[-1]['id']}.dot").is_file()


def test_graph_of_b_reflects_its_changes(tmp_path: Path) -> None:
    out = emitted(tmp_path / "b", "b")
    g = nx.read_graphml(out / "callgraph.graphml")
    assert "bpf_user_ringbuf_drain" in g and "bpf_probe_read" not in g
    (entered,) = PLANTED["entered"]["bpf_map_lookup_elem"]
    assert g.has_edge("htab_map_lookup_elem@kernel/bpf/hashtab.c", entered)
    frames = frames_of(build_graph("b"), "b")
    assert g.nodes["bpf_map_update_elem"]["max_stack"] == frames["bpf_map_update_elem"]["max_stack"]


def test_time_budget_and_long_paths_are_bounded(tmp_path: Path) -> None:
    out = make_output(tmp_path / "o")
    res = run_emit(out, report_time_budget=0)
    assert res.counts["report_drawn"] == 0 and res.counts["report_skipped"] == 10
    page = (out / "report" / "roots" / "bpf_loop.html").read_text()
    assert "drawing time budget (0 s) ran out" in page
    # A critical path longer than a drawing may hold is drawn up to the limit, and said so.
    res = run_emit(out, report_max_nodes=3, report_max_svg=1)
    page = (out / "report" / "roots" / "bpf_trace_printk.html").read_text()  # the deepest
    assert "too many to draw" in page
    assert "The critical path is 4 functions long: only its first 3 are drawn." in page


def test_report_shows_a_bpf_callback_as_a_bpf_program():
    from pipeline.report import _frame_text, _node
    cg = nx.DiGraph()
    cg.add_node("bpf-program", name="bpf-program", frame=512, inlined=False)
    frames = {"bpf-program": {"frame": 512, "match": "bpf_program", "qualifier": None}}
    assert _frame_text(_node(cg, frames, "bpf-program")) == "BPF program: stack <= 512 B (verifier)"
