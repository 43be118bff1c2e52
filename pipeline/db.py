"""The callgraph SQLite database: schema, writer and the checks a reader makes.

One database per output directory (``callgraph.sqlite``), holding the **full** graph of the
resolve stage (not only what the roots reach; ``functions.in_callgraph`` marks the pruned part),
with frames, indirect call sites and their targets, roots, recursion cycles and one ``runs`` row
saying what was analysed.  ``kcg query`` answers from it without rerunning anything.

Versioning: ``PRAGMA user_version`` and ``meta.schema_version`` both hold :data:`SCHEMA_VERSION`;
a reader refuses another version instead of misreading it.  Bump it on any change to the tables.

Ids: ``functions.id`` is a dense integer given in sorted order of the graph id (``fid``: ``name``
or ``name@path``), so the same graph gives the same numbers on every run.  List-valued fields are
rows of child tables (``root_helper_ids``, ``callsites``...), so they can be queried; free-form
lists that are only ever shown (an icall's ``layers``, a function's ``attrs``) are JSON text.

The file is built under a temporary name in the same directory and renamed into place, so a
reader never sees a half-written database and an interrupted run leaves the old one intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.fsutil import _UMASK, KcgError
from pipeline.graphs import cycles, edge_rows, split_callsite

if TYPE_CHECKING:
    from pipeline.emit import EmitData

SCHEMA_VERSION = 2  # 2: icall_sites.why

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    kernel_version TEXT, config TEXT, compiler TEXT, compiler_version TEXT,
    kcg_version TEXT NOT NULL, created TEXT NOT NULL, source TEXT);
CREATE TABLE functions (
    id INTEGER PRIMARY KEY,
    fid TEXT NOT NULL UNIQUE,          -- graph id: name (external) or name@path (internal)
    name TEXT NOT NULL, file TEXT, line INTEGER, linkage TEXT,
    defined INTEGER NOT NULL, type TEXT, attrs TEXT, section TEXT,
    bpf_kfunc INTEGER NOT NULL,
    in_callgraph INTEGER NOT NULL,     -- 1: some root reaches it (the pruned callgraph.json)
    in_graph INTEGER NOT NULL);        -- 0: named by icalls/roots but missing from the graph
CREATE TABLE frames (
    function INTEGER PRIMARY KEY REFERENCES functions(id),
    frame INTEGER, qualifier TEXT, inlined INTEGER NOT NULL,
    max_stack INTEGER, max_stack_bounded INTEGER,
    unbounded_reason TEXT,             -- why max_stack is only a lower bound (annotate's words)
    next INTEGER REFERENCES functions(id),  -- the callee on the critical path, when annotate gives it
    match TEXT);                       -- how the frame was found (annotate's match kind)
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    caller INTEGER NOT NULL REFERENCES functions(id),
    callee INTEGER NOT NULL REFERENCES functions(id),
    kind TEXT NOT NULL,                -- direct | indirect (a pair can have both: two rows)
    UNIQUE (caller, callee, kind));
CREATE TABLE callsites (
    call INTEGER NOT NULL REFERENCES calls(id),
    file TEXT NOT NULL, line INTEGER, col INTEGER);
CREATE TABLE icall_sites (
    id INTEGER PRIMARY KEY,
    caller INTEGER NOT NULL REFERENCES functions(id),
    file TEXT NOT NULL, line INTEGER NOT NULL, col INTEGER,
    expr TEXT, fn_type TEXT, layers TEXT, resolution TEXT, type_layer_count INTEGER,
    why TEXT);                         -- JSON: the resolver's fallbacks and their origins
CREATE TABLE icall_targets (
    site INTEGER NOT NULL REFERENCES icall_sites(id),
    target INTEGER NOT NULL REFERENCES functions(id),
    PRIMARY KEY (site, target)) WITHOUT ROWID;
CREATE TABLE roots (
    function INTEGER PRIMARY KEY REFERENCES functions(id),
    name TEXT NOT NULL, kind TEXT NOT NULL,      -- helper | kfunc | extra
    max_stack INTEGER, bounded INTEGER, reachable INTEGER, unbounded_reason TEXT);
CREATE TABLE root_path (                          -- the critical path, root first
    root INTEGER NOT NULL REFERENCES roots(function), depth INTEGER NOT NULL,
    function INTEGER NOT NULL REFERENCES functions(id),
    PRIMARY KEY (root, depth)) WITHOUT ROWID;
CREATE TABLE root_helper_ids (root INTEGER NOT NULL REFERENCES roots(function),
    helper_id TEXT NOT NULL, PRIMARY KEY (root, helper_id)) WITHOUT ROWID;
CREATE TABLE root_prog_types (root INTEGER NOT NULL REFERENCES roots(function),
    prog_type TEXT NOT NULL, PRIMARY KEY (root, prog_type)) WITHOUT ROWID;
CREATE TABLE root_protos (root INTEGER NOT NULL REFERENCES roots(function),
    proto TEXT NOT NULL, PRIMARY KEY (root, proto)) WITHOUT ROWID;
CREATE TABLE root_kfunc_flags (root INTEGER NOT NULL REFERENCES roots(function),
    flag TEXT NOT NULL, PRIMARY KEY (root, flag)) WITHOUT ROWID;
CREATE TABLE cycles (                             -- strongly connected components of the graph
    cycle INTEGER NOT NULL, function INTEGER NOT NULL REFERENCES functions(id),
    PRIMARY KEY (cycle, function)) WITHOUT ROWID;
"""

# Built after the rows are in: one sort per index instead of one b-tree update per row.
INDEXES = """
CREATE INDEX functions_name ON functions(name);
CREATE INDEX calls_callee ON calls(callee);
CREATE INDEX callsites_call ON callsites(call);
CREATE INDEX icall_sites_caller ON icall_sites(caller);
CREATE INDEX icall_sites_loc ON icall_sites(file, line);
CREATE INDEX icall_targets_target ON icall_targets(target);
CREATE INDEX root_helper_ids_id ON root_helper_ids(helper_id);
CREATE INDEX root_prog_types_type ON root_prog_types(prog_type);
CREATE INDEX cycles_function ON cycles(function);
"""
# calls(caller) is covered by the UNIQUE (caller, callee, kind) index.


def _b(v: Any) -> int | None:
    return None if v is None else int(bool(v))


def _json(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True)


def why_wide(site: dict[str, Any]) -> dict[str, Any] | None:
    """What kept an indirect call site from being narrowed further (None: nothing did)."""
    why = {k: site[k] for k in ("fallbacks", "base_untrusted") if site.get(k)}
    return why or None


def write_database(path: Path, data: EmitData) -> dict[str, int]:
    """Build the database for ``data`` at ``path`` (atomically); returns row counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            # A private temporary file: no journal needed, we fsync once at the end.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(SCHEMA)
            counts = _fill(conn, data)
            conn.executescript(INDEXES)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
            conn.execute("ANALYZE")  # planner statistics for the recursive queries
            conn.commit()
        finally:
            conn.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp made it private; it is published
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return counts


def _fill(conn: sqlite3.Connection, data: EmitData) -> dict[str, int]:
    g, cg = data.graph, data.callgraph
    # Ids named by icalls.json or roots.json but absent from the graph would break every join;
    # keep them as placeholder rows (in_graph = 0) and count them, rather than drop the facts.
    named: set[str] = set()
    for site in data.icalls:
        named.add(site["caller"])
        named.update(site.get("targets") or [])
    for r in data.roots:
        named.add(r["id"])
        named.update(r.get("path") or [])
    named.update(f["next"] for f in data.frames.values() if f.get("next"))
    dangling = sorted(named - set(g))
    fids = sorted(set(g) | set(dangling))
    num = {fid: i + 1 for i, fid in enumerate(fids)}

    rows = []
    for fid in fids:
        a = g.nodes[fid] if fid in g else {}
        rows.append((num[fid], fid, a.get("name") or fid.split("@", 1)[0], a.get("file"),
                     a.get("line"), a.get("linkage"), _b(a.get("defined", False)), a.get("type"),
                     _json(a.get("attrs")), a.get("section"), _b(a.get("bpf_kfunc", False)),
                     int(fid in cg), int(fid in g)))
    conn.executemany("INSERT INTO functions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    conn.executemany(
        "INSERT INTO frames VALUES (?,?,?,?,?,?,?,?,?)",
        [(num[fid], f.get("frame"), f.get("qualifier"), _b(f.get("inlined", False)),
          f.get("max_stack"), _b(f.get("max_stack_bounded")), f.get("unbounded_reason"),
          num.get(f.get("next") or ""), f.get("match"))
         for fid, f in sorted(data.frames.items()) if fid in num])

    call_rows, site_rows = [], []
    for i, (u, v, kind, d) in enumerate(edge_rows(g)):
        call_rows.append((i + 1, num[u], num[v], kind))
        for cs in d.get("callsites") or []:
            site_rows.append((i + 1, *split_callsite(cs)))
    conn.executemany("INSERT INTO calls VALUES (?,?,?,?)", call_rows)
    conn.executemany("INSERT INTO callsites VALUES (?,?,?,?)", site_rows)

    icall_rows, target_rows = [], []
    icalls = sorted(data.icalls, key=lambda s: (s["file"], s["line"], s.get("column") or 0,
                                                s["caller"], s.get("expr") or ""))
    for i, s in enumerate(icalls):
        icall_rows.append((i + 1, num[s["caller"]], s["file"], s["line"], s.get("column"),
                           s.get("expr"), s.get("fn_type"), _json(s.get("layers")),
                           s.get("resolution"), s.get("type_layer_count"), _json(why_wide(s))))
        target_rows += [(i + 1, num[t]) for t in sorted(set(s.get("targets") or []))]
    conn.executemany("INSERT INTO icall_sites VALUES (?,?,?,?,?,?,?,?,?,?,?)", icall_rows)
    conn.executemany("INSERT INTO icall_targets VALUES (?,?)", target_rows)

    def child(table: str, pairs: Iterable[tuple[int, str]]) -> None:
        conn.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?,?)", sorted(pairs))

    roots = sorted(data.roots, key=lambda r: r["id"])
    conn.executemany("INSERT INTO roots VALUES (?,?,?,?,?,?,?)", [
        (num[r["id"]], r.get("name") or r["id"], r["kind"], r.get("max_stack"),
         _b(r.get("bounded")), r.get("reachable"), r.get("unbounded_reason")) for r in roots])
    conn.executemany("INSERT INTO root_path VALUES (?,?,?)", [
        (num[r["id"]], d, num[f]) for r in roots for d, f in enumerate(r.get("path") or [])])
    child("root_helper_ids", ((num[r["id"]], h) for r in roots for h in r.get("helper_ids") or []))
    child("root_prog_types", ((num[r["id"]], p) for r in roots for p in r.get("prog_types") or []))
    child("root_protos", ((num[r["id"]], str(p)) for r in roots for p in r.get("protos") or []))
    child("root_kfunc_flags",
          ((num[r["id"]], f) for r in roots for f in r.get("kfunc_flags") or []))

    cyc = cycles(g)
    conn.executemany("INSERT INTO cycles VALUES (?,?)",
                     [(i + 1, num[f]) for i, comp in enumerate(cyc) for f in comp])

    run = data.run
    conn.execute("INSERT INTO runs VALUES (1,?,?,?,?,?,?,?)",
                 (run.kernel_version, run.config, run.compiler, run.compiler_version,
                  run.kcg_version, run.created, run.source))
    meta = {"schema_version": str(SCHEMA_VERSION), "kcg_version": run.kcg_version,
            "created": run.created, "frames_match": _json(data.frames_match) or "{}",
            "metrics": _json(data.metrics) or "{}", "dangling_ids": _json(dangling) or "[]"}
    conn.executemany("INSERT INTO meta VALUES (?,?)", sorted(meta.items()))
    return {"functions": len(rows), "calls": len(call_rows), "callsites": len(site_rows),
            "icall_sites": len(icall_rows), "icall_targets": len(target_rows),
            "roots": len(roots), "cycles": len(cyc), "dangling_ids": len(dangling)}


def open_database(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only, refusing a file that is missing or of another schema version."""
    path = Path(path)
    if not path.is_file():
        raise KcgError(f"{path}: no such database (kcg emit writes callgraph.sqlite)")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            raise KcgError(f"{path}: not a kcg callgraph database (no meta table)")
    except sqlite3.DatabaseError as e:
        raise KcgError(f"{path}: not an SQLite database ({e})") from None
    if version != SCHEMA_VERSION:
        conn.close()
        raise KcgError(f"{path}: schema version {version}, this kcg reads {SCHEMA_VERSION}: "
                       f"rerun 'kcg emit' to rebuild it")
    conn.row_factory = sqlite3.Row
    return conn
