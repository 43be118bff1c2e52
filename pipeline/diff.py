"""``kcg diff OUT_A OUT_B``: what changed between two output directories (two kernel versions).

Reports helpers, kfuncs and other roots added or removed, BPF helper ids added or removed, for
every root present in both the functions that entered or left its graph (what it reaches), and
the roots whose worst-case stack (or its boundedness) changed.  Roots and functions are compared
by graph id, so a static function that moved to another file counts as one leaving and one
entering.

Each side is read from ``roots.json`` + ``callgraph.json`` when they are there, else from
``callgraph.sqlite`` (the pruned graph is the full graph restricted to ``in_callgraph``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline.db import open_database
from pipeline.fsutil import KcgError, read_json
from pipeline.graphs import iter_bits, load_simple_graph, reached_by


@dataclass
class Side:
    dir: Path
    kernel_version: str | None
    roots: dict[str, dict[str, Any]]  # by id
    graph: nx.DiGraph  # the pruned graph: what the roots reach
    source: str  # "json" | "sqlite"


def load_side(out: Path) -> Side:
    """One output directory's roots and pruned graph."""
    out = Path(out)
    if not out.is_dir():
        raise KcgError(f"{out}: no such output directory")
    src = out / "source.json"
    version = read_json(src).get("kernelversion") if src.exists() else None
    if (out / "roots.json").exists() and (out / "callgraph.json").exists():
        roots = read_json(out / "roots.json")
        if not isinstance(roots, list):
            raise KcgError(f"{out / 'roots.json'}: expected a JSON list of roots")
        return Side(out, version, {r["id"]: r for r in roots}, load_simple_graph(out / "callgraph.json"),
                    "json")
    if (out / "callgraph.sqlite").exists():
        conn = open_database(out / "callgraph.sqlite")
        try:
            return _side_from_sqlite(out, conn, version)
        finally:
            conn.close()
    raise KcgError(f"{out}: neither roots.json + callgraph.json nor callgraph.sqlite: "
                   f"run kcg up to the annotate (or emit) stage first")


def _side_from_sqlite(out: Path, conn: sqlite3.Connection, version: str | None) -> Side:
    if version is None:
        row = conn.execute("SELECT kernel_version FROM runs ORDER BY id LIMIT 1").fetchone()
        version = row[0] if row else None
    fid = dict(conn.execute("SELECT id, fid FROM functions").fetchall())

    def children(table: str, col: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for r, v in conn.execute(f"SELECT root, {col} FROM {table} ORDER BY root, {col}"):
            out.setdefault(r, []).append(v)
        return out

    helper_ids = children("root_helper_ids", "helper_id")
    prog_types = children("root_prog_types", "prog_type")
    flags = children("root_kfunc_flags", "flag")
    protos = children("root_protos", "proto")
    paths: dict[int, list[str]] = {}
    for r, f in conn.execute("SELECT root, function FROM root_path ORDER BY root, depth"):
        paths.setdefault(r, []).append(fid[f])
    roots = {}
    for r in conn.execute("SELECT function, name, kind, max_stack, bounded, reachable FROM roots"):
        rid = fid[r[0]]
        roots[rid] = {"id": rid, "name": r[1], "kind": r[2], "max_stack": r[3],
                      "bounded": None if r[4] is None else bool(r[4]), "reachable": r[5],
                      "helper_ids": helper_ids.get(r[0], []), "prog_types": prog_types.get(r[0], []),
                      "kfunc_flags": flags.get(r[0], []), "protos": protos.get(r[0], []),
                      "path": paths.get(r[0], [])}
    g = nx.DiGraph()
    g.add_nodes_from(f for (f,) in conn.execute("SELECT fid FROM functions WHERE in_callgraph"))
    g.add_edges_from(conn.execute(
        "SELECT a.fid, b.fid FROM calls k JOIN functions a ON a.id = k.caller"
        " JOIN functions b ON b.id = k.callee WHERE a.in_callgraph AND b.in_callgraph"))
    return Side(out, version, roots, g, "sqlite")


def _added_removed(a: set[str], b: set[str]) -> dict[str, list[str]]:
    return {"added": sorted(b - a), "removed": sorted(a - b)}


def diff_sides(a: Side, b: Side) -> dict[str, Any]:
    """The differences from ``a`` to ``b``, JSON-ready and in a stable order."""
    def ids(side: Side, kinds: tuple[str, ...]) -> set[str]:
        return {rid for rid, r in side.roots.items() if r["kind"] in kinds}

    def helper_ids(side: Side) -> set[str]:
        return {h for r in side.roots.values() for h in r.get("helper_ids") or []}

    common = sorted(set(a.roots) & set(b.roots))
    # Reach of every common root on both sides in one pass each (bit i = common[i]); a node's
    # bits that differ between the sides are exactly the roots it entered or left.
    bits_a, bits_b = reached_by(a.graph, common), reached_by(b.graph, common)
    entered: dict[str, list[str]] = {}
    left: dict[str, list[str]] = {}
    for n in sorted(set(bits_a) | set(bits_b)):
        x, y = bits_a.get(n, 0), bits_b.get(n, 0)
        for i in iter_bits(y & ~x):
            entered.setdefault(common[i], []).append(n)
        for i in iter_bits(x & ~y):
            left.setdefault(common[i], []).append(n)
    graph_changes = {r: {"entered": entered.get(r, []), "left": left.get(r, [])}
                     for r in common if r in entered or r in left}

    stack_changes = []
    for r in common:
        ra, rb = a.roots[r], b.roots[r]
        ma, mb = ra.get("max_stack"), rb.get("max_stack")
        if ma != mb or ra.get("bounded") != rb.get("bounded"):
            stack_changes.append({
                "root": r, "kind": rb["kind"], "a": ma, "b": mb,
                "delta": mb - ma if isinstance(ma, int) and isinstance(mb, int) else None,
                "bounded_a": ra.get("bounded"), "bounded_b": rb.get("bounded")})
    stack_changes.sort(key=lambda c: (-abs(c["delta"] or 0), c["root"]))
    return {
        "a": {"dir": str(a.dir), "kernel_version": a.kernel_version, "roots": len(a.roots),
              "read_from": a.source},
        "b": {"dir": str(b.dir), "kernel_version": b.kernel_version, "roots": len(b.roots),
              "read_from": b.source},
        "helpers": _added_removed(ids(a, ("helper",)), ids(b, ("helper",))),
        "kfuncs": _added_removed(ids(a, ("kfunc",)), ids(b, ("kfunc",))),
        "other_roots": _added_removed(set(a.roots) - ids(a, ("helper", "kfunc")),
                                      set(b.roots) - ids(b, ("helper", "kfunc"))),
        "helper_ids": _added_removed(helper_ids(a), helper_ids(b)),
        "common_roots": len(common),
        "graph_changes": graph_changes,
        "max_stack_changes": stack_changes,
    }


def _cut(items: list[str], limit: int) -> tuple[list[str], int]:
    if limit <= 0 or len(items) <= limit:
        return items, 0
    return items[:limit], len(items) - limit


def format_text(d: dict[str, Any], limit: int = 20) -> str:
    a, b = d["a"], d["b"]
    lines = [f"kcg diff: {a['dir']} (Linux {a['kernel_version'] or '?'}, {a['roots']} roots) -> "
             f"{b['dir']} (Linux {b['kernel_version'] or '?'}, {b['roots']} roots)"]
    for key, title in (("helpers", "helpers"), ("kfuncs", "kfuncs"),
                       ("other_roots", "other roots"), ("helper_ids", "helper ids")):
        ch = d[key]
        if key == "other_roots" and not (ch["added"] or ch["removed"]):
            continue
        lines.append(f"{title}: {len(ch['added'])} added, {len(ch['removed'])} removed")
        for sign, k in (("+", "added"), ("-", "removed")):
            lines += _listing(sign, ch[k], limit, "  ")
    sc = d["max_stack_changes"]
    lines.append(f"max stack changes: {len(sc)} of {d['common_roots']} roots in both")

    def fmt(v: Any, bounded: Any) -> str:
        return "?" if v is None else f"{v}{'+' if bounded is False else ''}"

    for c in sc:
        delta = f" ({c['delta']:+d})" if c["delta"] is not None else ""
        lines.append(f"  {c['root']}: {fmt(c['a'], c['bounded_a'])} -> "
                     f"{fmt(c['b'], c['bounded_b'])}{delta}")
    gc = d["graph_changes"]
    lines.append(f"graph changes: {len(gc)} of {d['common_roots']} roots in both")
    for r, ch in gc.items():
        lines.append(f"  {r}: {len(ch['entered'])} entered, {len(ch['left'])} left")
        for sign, k in (("+", "entered"), ("-", "left")):
            lines += _listing(sign, ch[k], limit, "    ")
    return "\n".join(lines) + "\n"


def _listing(sign: str, items: list[str], limit: int, indent: str) -> list[str]:
    """``+ name`` lines, cut at ``limit`` with a line saying how many more there are."""
    shown, more = _cut(items, limit)
    out = [f"{indent}{sign} {x}" for x in shown]
    if more:
        out.append(f"{indent}{sign} ... and {more} more (--limit 0 or --json for all)")
    return out


def main(args: argparse.Namespace) -> int:
    d = diff_sides(load_side(args.out_a), load_side(args.out_b))
    if args.json:
        sys.stdout.write(json.dumps(d, indent=1, sort_keys=True) + "\n")
    else:
        sys.stdout.write(format_text(d, getattr(args, "limit", 20)))
    return 0
