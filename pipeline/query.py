"""``kcg query --db callgraph.sqlite WHAT ...``: questions answered from the database alone.

- ``stack FN``: FN's frame and worst-case stack, its critical path (a root's is the one annotate
  stored; for any other function a recursive query follows the deepest callee), what it reaches
  and why the result is unbounded (dynamic frames, recursion cycles in its reach).
- ``callers FN`` / ``callees FN``: one level with call kinds and call sites; ``--depth N`` for N
  levels (with the distance of each), ``--depth 0`` for all of them.
- ``path FROM TO``: a shortest call chain.
- ``icall FILE:LINE[:COL]``: the indirect call sites there, how they were resolved, their targets.
  FILE may be a trailing part of the path (``helpers.c:41``).
- ``roots``: every root with its worst-case stack.

A function is named by its id (``name`` or ``name@path``) or by its name when that is unique; an
unknown name is an error that suggests close names.  Every walk over the graph is a recursive
common table expression (reach, the corridor of a path, the critical-path walks) or, for call
distances, a breadth-first search done level by level in SQLite; the work happens inside SQLite.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from pipeline import resolve
from pipeline.db import open_database
from pipeline.fsutil import KcgError

DEFAULT_MAX_DEPTH = 256  # longest call chain `path` searches; real kernel chains are far shorter


class Query:
    """The queries, on an open database; each returns a JSON-ready dict."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    # --- names -----------------------------------------------------------------------------------

    def function(self, text: str) -> sqlite3.Row:
        """The function row for an id or a unique name; a helpful error otherwise."""
        c = self.conn
        row = c.execute("SELECT * FROM functions WHERE fid = ?", (text,)).fetchone()
        if row:
            return row
        rows = c.execute("SELECT * FROM functions WHERE name = ? ORDER BY fid", (text,)).fetchall()
        if len(rows) == 1:
            return rows[0]
        if rows:
            raise KcgError(f"'{text}' names {len(rows)} functions; give one of their ids: "
                           + ", ".join(r["fid"] for r in rows[:20]))
        raise KcgError(f"no function '{text}' in the graph" + self._suggest(text))

    def _suggest(self, text: str) -> str:
        # Candidates: names sharing a substring with the query (cheap in SQL), then difflib's
        # closest; this keeps difflib off the full 60,000-name list.
        base = text.split("@", 1)[0]
        keys = {base, base.strip("_")} | {base[i:i + 6] for i in range(0, max(1, len(base) - 5), 3)}
        cands: set[str] = set()
        for k in sorted(x for x in keys if len(x) >= 3):
            cands.update(r[0] for r in self.conn.execute(
                "SELECT fid FROM functions WHERE instr(fid, ?) > 0 LIMIT 500", (k,)))
        close = difflib.get_close_matches(text, sorted(cands), n=6, cutoff=0.5)
        return f"; did you mean: {', '.join(close)}?" if close else ""

    def _info(self, fn_id: int) -> dict[str, Any]:
        r = self.conn.execute(
            "SELECT f.fid, f.name, f.file, f.line, f.defined, fr.frame, fr.qualifier, fr.inlined,"
            " fr.max_stack, fr.max_stack_bounded FROM functions f"
            " LEFT JOIN frames fr ON fr.function = f.id WHERE f.id = ?", (fn_id,)).fetchone()
        return {"id": r["fid"], "name": r["name"], "file": r["file"], "line": r["line"],
                "defined": bool(r["defined"]), "frame": r["frame"], "qualifier": r["qualifier"],
                "inlined": None if r["inlined"] is None else bool(r["inlined"]),
                "max_stack": r["max_stack"],
                "max_stack_bounded": None if r["max_stack_bounded"] is None
                else bool(r["max_stack_bounded"])}

    # --- callers / callees -----------------------------------------------------------------------

    def neighbours(self, text: str, direction: str, depth: int = 1) -> dict[str, Any]:
        """Callers (``direction="callers"``) or callees of a function, ``depth`` levels deep."""
        fn = self.function(text)
        near, far = ("callee", "caller") if direction == "callers" else ("caller", "callee")
        c = self.conn
        if depth == 1:
            rows = c.execute(
                f"SELECT k.id AS call, f.fid, k.kind FROM calls k JOIN functions f ON f.id = k.{far}"
                f" WHERE k.{near} = ? ORDER BY f.fid, k.kind", (fn["id"],)).fetchall()
            # One entry per function: a pair can be linked by a direct and an indirect call.
            merged: dict[str, dict[str, Any]] = {}
            for r in rows:
                e = merged.setdefault(r["fid"], {"id": r["fid"], "kinds": [], "depth": 1,
                                                 "callsites": []})
                e["kinds"].append(r["kind"])
                e["callsites"] += [
                    f"{s['file']}:{s['line']}" + (f":{s['col']}" if s["col"] is not None else "")
                    for s in c.execute("SELECT file, line, col FROM callsites WHERE call = ?",
                                       (r["call"],))]
            out = list(merged.values())
            for e in out:
                e["callsites"] = sorted(set(e["callsites"]))
        elif depth > 1:
            dist = self._distances(fn["id"], direction, depth)
            names = dict(c.execute("SELECT f.id, f.fid FROM temp.dist JOIN functions f"
                                   " ON f.id = dist.fn").fetchall())
            # The function itself, when it is in a recursion short enough to be seen.
            back = c.execute(f"SELECT MIN(dist.d) FROM calls k JOIN temp.dist ON dist.fn = k.{near}"
                             f" WHERE k.{far} = ?", (fn["id"],)).fetchone()[0]
            if back is not None and back + 1 <= depth:
                dist[fn["id"]] = back + 1
            else:
                dist.pop(fn["id"])
            out = [{"id": names[i], "depth": d}
                   for i, d in sorted(dist.items(), key=lambda x: (x[1], names[x[0]]))]
        else:
            # All levels: a set-valued walk (UNION on the function alone ends on cycles).
            rows = c.execute(
                f"WITH RECURSIVE walk(fn) AS (SELECT ? UNION"
                f" SELECT k.{far} FROM calls k JOIN walk ON k.{near} = walk.fn)"
                f" SELECT f.fid FROM walk JOIN functions f ON f.id = walk.fn ORDER BY f.fid",
                (fn["id"],)).fetchall()
            self_loop = c.execute("SELECT 1 FROM calls WHERE caller = ? AND callee = ?",
                                  (fn["id"], fn["id"])).fetchone()
            in_cycle = self_loop or c.execute(
                f"WITH RECURSIVE walk(fn) AS (SELECT k.{far} FROM calls k WHERE k.{near} = ?"
                f" UNION SELECT k.{far} FROM calls k JOIN walk ON k.{near} = walk.fn)"
                f" SELECT 1 FROM walk WHERE fn = ?", (fn["id"], fn["id"])).fetchone()
            out = [{"id": r["fid"], "depth": None} for r in rows
                   if r["fid"] != fn["fid"] or in_cycle]
        return {"query": direction, "function": fn["fid"], "depth": depth, direction: out}

    # --- path ------------------------------------------------------------------------------------

    def path(self, a: str, b: str, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
        """A shortest call chain from ``a`` to ``b`` (ties: smallest ids), or none."""
        fa, fb = self.function(a), self.function(b)
        c = self.conn
        # First the corridor (reachable from a AND reaching b), each a set-valued recursive
        # walk costing one pass over the calls; then distances from a inside the corridor only,
        # so the search never wanders into the rest of the kernel.
        c.execute("DROP TABLE IF EXISTS temp.corridor")
        # Declared INTEGER PRIMARY KEY: a CREATE TABLE AS column has no type, and SQLite then
        # scans the table for every lookup instead of using its index.
        c.execute("CREATE TEMP TABLE corridor (fn INTEGER PRIMARY KEY)")
        c.execute(
            "INSERT INTO temp.corridor WITH RECURSIVE"
            " fwd(fn) AS (SELECT ? UNION SELECT k.callee FROM calls k JOIN fwd ON k.caller = fwd.fn),"
            " bwd(fn) AS (SELECT ? UNION SELECT k.caller FROM calls k JOIN bwd ON k.callee = bwd.fn)"
            " SELECT fn FROM fwd INTERSECT SELECT fn FROM bwd", (fa["id"], fb["id"]))
        dist = self._distances(fa["id"], "callees", max_depth, stop=fb["id"], corridor=True)
        result: dict[str, Any] = {"query": "path", "from": fa["fid"], "to": fb["fid"]}
        if fb["id"] not in dist:
            corridor = c.execute("SELECT count(*) FROM corridor").fetchone()[0]
            result.update(path=None, reason="no call chain" if corridor == 0 else
                          f"no call chain of at most {max_depth} calls")
            return result
        # Walk back from b: each step to a caller one call closer to a.
        chain = [fb["id"]]
        while dist[chain[-1]] > 0:
            cur = chain[-1]
            prev = c.execute(
                "SELECT k.caller FROM calls k JOIN functions f ON f.id = k.caller"
                " WHERE k.callee = ? ORDER BY f.fid", (cur,)).fetchall()
            chain.append(next(p[0] for p in prev if dist.get(p[0]) == dist[cur] - 1))
        chain.reverse()
        hops = []
        for u, v in zip(chain, chain[1:], strict=False):
            kinds = [k[0] for k in c.execute(
                "SELECT kind FROM calls WHERE caller = ? AND callee = ? ORDER BY kind", (u, v))]
            site = c.execute("SELECT s.file, s.line, s.col FROM callsites s JOIN calls k"
                             " ON k.id = s.call WHERE k.caller = ? AND k.callee = ?"
                             " ORDER BY s.file, s.line, s.col LIMIT 1", (u, v)).fetchone()
            hops.append({"kinds": kinds, "callsite":
                         f"{site['file']}:{site['line']}:{site['col']}" if site else None})
        ids = [self._info(i)["id"] for i in chain]
        result.update(path=ids, calls=hops, length=len(hops))
        return result

    def _distances(self, start: int, direction: str, max_depth: int, *, stop: int | None = None,
                   corridor: bool = False) -> dict[int, int]:
        """Call distance from ``start`` (to callees, or to callers), up to ``max_depth``.

        Breadth-first, one ``INSERT ... SELECT`` per level into a temporary table keyed by the
        function: a function is entered once, at its shortest distance.  (A recursive CTE that
        carries depths cannot skip functions it has seen, so inside a recursive component it
        revisits each one at every depth: hopeless on a kernel-sized graph.)
        """
        near, far = ("callee", "caller") if direction == "callers" else ("caller", "callee")
        c = self.conn
        c.execute("DROP TABLE IF EXISTS temp.dist")
        c.execute("CREATE TEMP TABLE dist (fn INTEGER PRIMARY KEY, d INTEGER NOT NULL)")
        c.execute("CREATE INDEX temp.dist_d ON dist(d)")
        c.execute("INSERT INTO temp.dist VALUES (?, 0)", (start,))
        within = f" JOIN temp.corridor ON corridor.fn = k.{far}" if corridor else ""
        for d in range(max_depth):
            added = c.execute(
                f"INSERT OR IGNORE INTO temp.dist SELECT k.{far}, ? FROM temp.dist"
                f" JOIN calls k ON k.{near} = dist.fn{within} WHERE dist.d = ?", (d + 1, d)).rowcount
            if added == 0 or (stop is not None and c.execute(
                    "SELECT 1 FROM temp.dist WHERE fn = ?", (stop,)).fetchone()):
                break
        return dict(c.execute("SELECT fn, d FROM temp.dist").fetchall())

    # --- stack -----------------------------------------------------------------------------------

    def stack(self, text: str) -> dict[str, Any]:
        fn = self.function(text)
        c = self.conn
        info = self._info(fn["id"])
        root = c.execute("SELECT * FROM roots WHERE function = ?", (fn["id"],)).fetchone()
        if root:
            ids = [r[0] for r in c.execute(
                "SELECT function FROM root_path WHERE root = ? ORDER BY depth", (fn["id"],))]
            source = "roots.json"
        elif c.execute("SELECT 1 FROM frames WHERE next IS NOT NULL LIMIT 1").fetchone():
            ids = self._next_chain(fn["id"])
            source = "frames"
        else:
            ids = self._deepest_walk(fn["id"])
            source = "walk"
        path = [self._info(i) for i in ids]
        # What the function reaches, once, as a temporary table for the questions below.
        c.execute("DROP TABLE IF EXISTS temp.reach")
        c.execute("CREATE TEMP TABLE reach (fn INTEGER PRIMARY KEY)")
        c.execute("INSERT INTO temp.reach WITH RECURSIVE r(fn) AS (SELECT ? UNION"
                  " SELECT k.callee FROM calls k JOIN r ON k.caller = r.fn) SELECT fn FROM r",
                  (fn["id"],))
        reachable = c.execute("SELECT count(*) FROM reach").fetchone()[0]
        dynamic = [r[0] for r in c.execute(
            "SELECT f.fid FROM reach JOIN frames fr ON fr.function = reach.fn"
            " JOIN functions f ON f.id = reach.fn WHERE fr.qualifier = 'dynamic' ORDER BY f.fid")]
        unknown = c.execute(
            "SELECT count(*) FROM reach JOIN frames fr ON fr.function = reach.fn"
            " WHERE fr.frame IS NULL AND NOT fr.inlined").fetchone()[0]
        cyc = []
        for (cid,) in c.execute("SELECT DISTINCT y.cycle FROM reach JOIN cycles y"
                                " ON y.function = reach.fn ORDER BY y.cycle").fetchall():
            members = c.execute(
                "SELECT f.fid, COALESCE(fr.frame, 0) FROM cycles y JOIN functions f"
                " ON f.id = y.function LEFT JOIN frames fr ON fr.function = y.function"
                " WHERE y.cycle = ? ORDER BY f.fid", (cid,)).fetchall()
            frames = sum(m[1] for m in members)
            cyc.append({"functions": [m[0] for m in members], "frames": frames,
                        "unbounded": frames > 0})
        unresolved = c.execute(
            "SELECT count(*) FROM reach JOIN icall_sites s ON s.caller = reach.fn"
            " WHERE s.resolution = 'unresolved'"
            " OR NOT EXISTS (SELECT 1 FROM icall_targets t WHERE t.site = s.id)").fetchone()[0]
        fr = c.execute("SELECT unbounded_reason FROM frames WHERE function = ?",
                       (fn["id"],)).fetchone()
        reason = (root["unbounded_reason"] if root else None) or (fr[0] if fr else None)
        out: dict[str, Any] = {
            "query": "stack", "function": info["id"], "frame": info["frame"],
            "qualifier": info["qualifier"], "inlined": info["inlined"],
            "max_stack": root["max_stack"] if root else info["max_stack"],
            "bounded": (bool(root["bounded"]) if root and root["bounded"] is not None
                        else info["max_stack_bounded"]),
            "unbounded_reason": reason,
            "path_source": source, "path": path,
            "path_frames": sum(p["frame"] or 0 for p in path),
            "reachable": reachable, "dynamic_frames": dynamic, "cycles": cyc,
            "unknown_frames": unknown, "unresolved_icalls": unresolved,
        }
        if root:
            out["root"] = {"kind": root["kind"], "name": root["name"],
                           "reachable": root["reachable"]}
        return out

    def _next_chain(self, start: int) -> list[int]:
        """The critical path annotate stored: follow ``frames.next`` (a cycle ends it)."""
        rows = self.conn.execute(
            "WITH RECURSIVE p(step, fn, seen) AS (SELECT 0, ?1, ',' || ?1 || ','"
            " UNION ALL SELECT p.step + 1, fr.next, p.seen || fr.next || ',' FROM p"
            " JOIN frames fr ON fr.function = p.fn"
            " WHERE fr.next IS NOT NULL AND instr(p.seen, ',' || fr.next || ',') = 0)"
            " SELECT fn FROM p ORDER BY step", (start,)).fetchall()
        return [r[0] for r in rows]

    def _deepest_walk(self, start: int) -> list[int]:
        """The critical path below ``start``: from each function, the callee with the largest
        worst-case stack (ties: smallest id), never revisiting one (so cycles end it)."""
        # The next function is a correlated scalar subquery (SQLite forbids the recursive table
        # inside a FROM subquery); it is spelled three times and SQLite evaluates it per use,
        # which costs three index lookups per step of a path a few dozen calls long.
        nxt = ("(SELECT k.callee FROM calls k JOIN functions f ON f.id = k.callee"
               " LEFT JOIN frames fr ON fr.function = k.callee"
               " WHERE k.caller = walk.fn AND instr(walk.seen, ',' || k.callee || ',') = 0"
               " ORDER BY COALESCE(fr.max_stack, 0) DESC, f.fid LIMIT 1)")
        rows = self.conn.execute(
            "WITH RECURSIVE walk(step, fn, seen) AS ("
            " SELECT 0, ?1, ',' || ?1 || ','"
            f" UNION ALL SELECT step + 1, {nxt}, seen || {nxt} || ',' FROM walk"
            f" WHERE {nxt} IS NOT NULL)"
            " SELECT fn FROM walk ORDER BY step", (start,)).fetchall()
        return [r[0] for r in rows]

    # --- icall / roots ---------------------------------------------------------------------------

    def icall(self, loc: str) -> dict[str, Any]:
        parts = loc.rsplit(":", 2)
        nums = [p for p in parts[1:] if p.isdigit()]
        if len(parts) < 2 or len(nums) != len(parts) - 1:
            raise KcgError(f"icall wants FILE:LINE or FILE:LINE:COL, got '{loc}'")
        file, line = parts[0], int(parts[1])
        col = int(parts[2]) if len(parts) == 3 else None
        c = self.conn
        where = "(s.file = ?1 OR s.file LIKE '%/' || ?1)"
        rows = c.execute(
            f"SELECT s.*, f.fid AS caller_id FROM icall_sites s JOIN functions f"
            f" ON f.id = s.caller WHERE {where} AND s.line = ?2 AND (?3 IS NULL OR s.col = ?3)"
            f" ORDER BY s.file, s.line, s.col", (file, line, col)).fetchall()
        if not rows:
            near = c.execute(f"SELECT DISTINCT s.file, s.line FROM icall_sites s WHERE {where}"
                             f" ORDER BY abs(s.line - ?2) LIMIT 8", (file, line)).fetchall()
            hint = (": indirect calls nearby are at " + ", ".join(f"{r[0]}:{r[1]}" for r in near)
                    if near else f": no indirect call site is recorded in a file '{file}'")
            raise KcgError(f"no indirect call site at {loc}{hint}")
        sites = []
        for s in rows:
            targets = [{"id": t["fid"], "file": t["file"], "line": t["line"]}
                       for t in c.execute("SELECT f.fid, f.file, f.line FROM icall_targets t"
                                          " JOIN functions f ON f.id = t.target"
                                          " WHERE t.site = ? ORDER BY f.fid", (s["id"],))]
            sites.append({"caller": s["caller_id"], "file": s["file"], "line": s["line"],
                          "column": s["col"], "expr": s["expr"], "fn_type": s["fn_type"],
                          "layers": json.loads(s["layers"]) if s["layers"] else [],
                          "resolution": s["resolution"],
                          "type_layer_count": s["type_layer_count"],
                          "why": json.loads(s["why"]) if s["why"] else None,
                          "targets": targets})
        return {"query": "icall", "location": loc, "sites": sites}

    def roots(self) -> dict[str, Any]:
        rows = self.conn.execute(
            "SELECT f.fid, r.name, r.kind, r.max_stack, r.bounded, r.reachable,"
            " (SELECT group_concat(helper_id, ',') FROM (SELECT helper_id FROM root_helper_ids h"
            "   WHERE h.root = r.function ORDER BY helper_id)) AS helper_ids"
            " FROM roots r JOIN functions f ON f.id = r.function"
            " ORDER BY COALESCE(r.max_stack, -1) DESC, f.fid").fetchall()
        return {"query": "roots", "roots": [
            {"id": r["fid"], "name": r["name"], "kind": r["kind"], "max_stack": r["max_stack"],
             "bounded": None if r["bounded"] is None else bool(r["bounded"]),
             "reachable": r["reachable"],
             "helper_ids": r["helper_ids"].split(",") if r["helper_ids"] else []}
            for r in rows]}


# --- text output ---------------------------------------------------------------------------------

def _fn_line(p: dict[str, Any]) -> str:
    if p["inlined"]:
        frame = "inlined"
    elif p["frame"] is None:
        frame = "frame ?"
    else:
        frame = f"frame {p['frame']}" + (f" {p['qualifier']}" if p["qualifier"] not in
                                         (None, "static") else "")
    loc = f"{p['file']}:{p['line']}" if p["file"] else "(no source)"
    return f"{p['id']}  [{frame}; max {p['max_stack']}]  {loc}"


def format_text(res: dict[str, Any]) -> str:
    q = res["query"]
    lines: list[str] = []
    if q == "stack":
        b = {True: "bounded", False: "UNBOUNDED (lower bound)", None: "unknown"}[res["bounded"]]
        head = f"{res['function']}: worst-case stack {res['max_stack']} bytes, {b}"
        if "root" in res:
            head += f" ({res['root']['kind']} root)"
        if res.get("unbounded_reason"):
            head += f"\n  why unbounded: {res['unbounded_reason']}"
        lines += [head, f"reaches {res['reachable']} functions (itself included); "
                  f"{res['unresolved_icalls']} unresolved indirect calls, "
                  f"{res['unknown_frames']} unknown frames",
                  f"critical path ({res['path_source']}, frames add up to "
                  f"{res['path_frames']} bytes):"]
        lines += [f"  {i:3}  {_fn_line(p)}" for i, p in enumerate(res["path"])]
        for f in res["dynamic_frames"]:
            lines.append(f"unbounded: dynamic frame in {f}")
        for cy in res["cycles"]:
            what = "unbounded: recursion" if cy["unbounded"] else "recursion (0-byte frames)"
            lines.append(f"{what} through {', '.join(cy['functions'])} "
                         f"({cy['frames']} bytes per round)")
    elif q in ("callers", "callees"):
        items = res[q]
        levels = {0: " (all levels)", 1: ""}.get(res["depth"], f" (up to {res['depth']} levels)")
        lines.append(f"{len(items)} {q} of {res['function']}{levels}")
        for it in items:
            if "callsites" in it:
                lines.append(f"  {it['id']}  {'+'.join(it['kinds'])}  {' '.join(it['callsites'])}")
            elif it["depth"] is not None:
                lines.append(f"  {it['depth']:3}  {it['id']}")
            else:
                lines.append(f"  {it['id']}")
    elif q == "path":
        if res["path"] is None:
            lines.append(f"{res['from']} -> {res['to']}: {res['reason']}")
        else:
            lines.append(f"{res['from']} -> {res['to']}: {res['length']} calls")
            lines.append(f"  {res['path'][0]}")
            for hop, fid in zip(res["calls"], res["path"][1:], strict=True):
                lines.append(f"  -> {fid}  ({'+'.join(hop['kinds'])} at {hop['callsite']})")
    elif q == "icall":
        for s in res["sites"]:
            lines += [f"{s['file']}:{s['line']}:{s['column']} in {s['caller']}",
                      f"  call:       {s['expr']}", f"  type:       {s['fn_type']}",
                      "  layers:     " + (" <- ".join(f"{r}.{f}" for r, f in s["layers"]) or "-"),
                      f"  resolution: {s['resolution']} ({len(s['targets'])} targets; "
                      f"type layer alone: {s['type_layer_count']})"]
            lines += [f"  {w}" for w in resolve.why_lines(s.get("why"))]
            lines += [f"    {t['id']}  {t['file']}:{t['line']}" for t in s["targets"]]
    elif q == "roots":
        lines.append(f"{'max stack':>10}  {'bounded':8} {'kind':7} {'reach':>6}  root")
        for r in res["roots"]:
            b = {True: "yes", False: "NO", None: "?"}[r["bounded"]]
            lines.append(f"{r['max_stack'] if r['max_stack'] is not None else '?':>10}  {b:8} "
                         f"{r['kind']:7} {r['reachable'] if r['reachable'] is not None else '?':>6}"
                         f"  {r['id']}" + (f"  ({', '.join(r['helper_ids'])})"
                                           if r["helper_ids"] else ""))
    return "\n".join(lines) + "\n"


ARITY = {"stack": 1, "callers": 1, "callees": 1, "path": 2, "icall": 1, "roots": 0}
USAGE = {"stack": "stack FN", "callers": "callers FN", "callees": "callees FN",
         "path": "path FROM TO", "icall": "icall FILE:LINE[:COL]", "roots": "roots"}


def run_query(db: Path, what: str, args: list[str], *, depth: int = 1,
              max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Answer one query; the result is what ``--json`` prints."""
    if len(args) != ARITY[what]:
        raise KcgError(f"usage: kcg query --db FILE {USAGE[what]}")
    if depth < 0:
        raise KcgError(f"--depth must be 0 (all levels) or more, got {depth}")
    conn = open_database(db)
    try:
        q = Query(conn)
        if what == "stack":
            return q.stack(args[0])
        if what in ("callers", "callees"):
            return q.neighbours(args[0], what, depth)
        if what == "path":
            return q.path(args[0], args[1], max_depth)
        if what == "icall":
            return q.icall(args[0])
        return q.roots()
    finally:
        conn.close()


def main(args: argparse.Namespace) -> int:
    res = run_query(args.db, args.what, args.args, depth=getattr(args, "depth", 1),
                    max_depth=getattr(args, "max_depth", DEFAULT_MAX_DEPTH))
    if args.json:
        sys.stdout.write(json.dumps(res, indent=1, sort_keys=True) + "\n")
    else:
        sys.stdout.write(format_text(res))
    return 0
