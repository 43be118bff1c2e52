"""The HTML report: ``report/index.html`` and one page per root under ``report/roots/``.

The index gives the kernel version, the config and a table of roots (sortable by a few lines of
inline JavaScript; the server-side order is already "deepest first", so it reads fine without
scripts).  A root's page gives its facts, why its stack is unbounded when it is, its critical
path, the unresolved indirect calls it can reach, and an SVG of its graph drawn by Graphviz.

Drawings are the slow part, so they are bounded four ways: at most ``max_svg`` roots are drawn
(deepest first; the others' pages say so and ship the DOT source), a graph larger than
``max_nodes`` functions is cut to the critical path plus the callees of its functions with the
largest worst-case stack (the page says so, and each drawn function says how many of its callees
were left out), each ``dot`` run has a timeout (a failure is written on the page), and all of
them together have a time budget (roots left undrawn when it runs out say so).

Everything is self-contained (inline CSS, JS and SVG): no network access is needed to view it.
Every string from the inputs goes through :func:`esc` (HTML) or the DOT quoting of
:func:`pipeline.graphs.dot_quote`; Graphviz escapes what it puts into the SVG.
"""

from __future__ import annotations

import contextlib
import html
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from pipeline.annotate import M_BPF
from pipeline.fsutil import _UMASK, atomic_write_text
from pipeline.graphs import cycles, dot_quote, iter_bits, reach, reached_by
from pipeline.resolve import why_lines

if TYPE_CHECKING:
    from pipeline.emit import EmitData

WIDEST_LISTED = 25  # indirect call sites on the index page, widest first
MAX_LISTED = 200  # rows of a per-root list (unresolved sites, unknown frames) before "and N more"
MAX_MARKERS = 12  # unresolved-call markers drawn per graph
OVER_BUDGET = "over the time budget"
MAX_CYCLES = 10  # recursive components listed per root page
MAX_CYCLE_NAMES = 12  # functions named per recursive component


@dataclass
class ReportResult:
    files: list[str]  # written, relative to the report directory
    pages: int = 0
    drawn: int = 0
    cut: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class RootInfo:
    root: dict[str, Any]
    slug: str
    unresolved: list[dict[str, Any]] = field(default_factory=list)  # sites in its reach
    dynamic: list[str] = field(default_factory=list)  # functions with an unbounded frame
    cycles: list[int] = field(default_factory=list)  # indices of unbounded cycles it reaches
    unknown: list[str] = field(default_factory=list)  # functions whose frame is unknown


@dataclass
class Drawing:
    dot: str
    nodes: int
    total: int
    cut: bool
    path_len: int
    path_drawn: int
    svg: str | None = None
    error: str | None = None


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def is_unresolved(site: dict[str, Any]) -> bool:
    return site.get("resolution") == "unresolved" or not site.get("targets")


def make_slugs(ids: list[str]) -> dict[str, str]:
    """File names for root pages: readable, unique even on a case-insensitive file system."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for rid in sorted(ids):
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", rid).strip("._") or "root"
        slug, k = base, 2
        while slug.lower() in used:
            slug, k = f"{base}-{k}", k + 1
        used.add(slug.lower())
        out[rid] = slug
    return out


# --- analysis ------------------------------------------------------------------------------------

def _node(cg: nx.DiGraph, frames: dict[str, dict[str, Any]], n: str) -> dict[str, Any]:
    """A pruned-graph node's attributes, falling back to frames.json for the frame fields."""
    a = dict(cg.nodes[n]) if n in cg else {}
    f = frames.get(n, {})
    for k, fk in (("frame", "frame"), ("frame_qualifier", "qualifier"), ("inlined", "inlined"),
                  ("max_stack", "max_stack"), ("max_stack_bounded", "max_stack_bounded"),
                  ("match", "match")):
        if a.get(k) is None and f.get(fk) is not None:
            a[k] = f[fk]
    a.setdefault("name", n.split("@", 1)[0])
    return a


def unbounded_cycles(cg: nx.DiGraph, frames: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Cycles whose frames are not all zero: their depth has no bound."""
    return [c for c in cycles(cg) if sum(_node(cg, frames, n).get("frame") or 0 for n in c)]


def analyse(data: EmitData, slugs: dict[str, str]) -> tuple[dict[str, RootInfo], list[list[str]]]:
    """Per root: the unresolved sites, dynamic frames, cycles and unknown frames it reaches."""
    cg = data.callgraph
    infos = {r["id"]: RootInfo(r, slugs[r["id"]]) for r in data.roots}
    ids = sorted(infos)
    bits = reached_by(cg, ids)
    unresolved: dict[str, list[dict[str, Any]]] = {}
    for s in data.icalls:
        if is_unresolved(s) and s["caller"] in bits:
            unresolved.setdefault(s["caller"], []).append(s)
    ucycles = unbounded_cycles(cg, data.frames)
    in_cycle = {n: i for i, c in enumerate(ucycles) for n in c}
    # Only the few "interesting" nodes are spread to their roots: cheap even on the full kernel.
    for n in sorted(bits):
        a = _node(cg, data.frames, n)
        dynamic = a.get("frame_qualifier") == "dynamic"
        unknown = a.get("frame") is None and not a.get("inlined")
        if not (n in unresolved or dynamic or unknown or n in in_cycle):
            continue
        for i in iter_bits(bits[n]):
            info = infos[ids[i]]
            info.unresolved += unresolved.get(n, [])
            if dynamic:
                info.dynamic.append(n)
            if unknown:
                info.unknown.append(n)
            if n in in_cycle and in_cycle[n] not in info.cycles:
                info.cycles.append(in_cycle[n])
    for info in infos.values():
        info.unresolved.sort(key=lambda s: (s["file"], s["line"], s.get("column") or 0))
        info.cycles.sort()
    return infos, ucycles


# --- drawing -------------------------------------------------------------------------------------

def critical_path(cg: nx.DiGraph, frames: dict[str, dict[str, Any]], root: dict[str, Any]
                  ) -> list[str]:
    """The root's critical path from roots.json; else follow the deepest callee."""
    path = [n for n in root.get("path") or [] if n in cg]
    if path and path[0] == root["id"]:
        return path
    path, seen, n = [root["id"]], {root["id"]}, root["id"]
    while True:
        nxt = sorted((s for s in cg.successors(n) if s not in seen),
                     key=lambda s: (-(_node(cg, frames, s).get("max_stack") or 0), s))
        if not nxt:
            return path
        n = nxt[0]
        path.append(n)
        seen.add(n)


def select_nodes(cg: nx.DiGraph, frames: dict[str, dict[str, Any]], root_id: str,
                 path: list[str], max_nodes: int) -> tuple[list[str], bool]:
    """What to draw: the whole reach if small, else the critical path plus its best callees.

    The critical path is drawn whole up to ``max_nodes`` functions; a longer one (never seen
    in a kernel, but a bad input must not make the report take hours) is drawn up to there.
    """
    small = reach(cg, root_id, limit=max_nodes)
    if len(small) <= max_nodes:
        return sorted(small), False
    path = path[:max_nodes]
    chosen = dict.fromkeys(path)  # an ordered set
    cands = {p: sorted((s for s in cg.successors(p) if s not in chosen),
                       key=lambda s: (-(_node(cg, frames, s).get("max_stack") or 0), s))
             for p in path}
    budget = max_nodes - len(chosen)
    rank = 0
    # Round-robin over the path: every function on it gets its deepest callee before any
    # gets a second one, so the neighbourhood stays spread along the whole path.
    while budget > 0 and any(rank < len(c) for c in cands.values()):
        for p in path:
            if budget > 0 and rank < len(cands[p]) and cands[p][rank] not in chosen:
                chosen[cands[p][rank]] = None
                budget -= 1
        rank += 1
    return sorted(chosen), True


_q = dot_quote


def _label(lines: list[str]) -> str:
    # "\n" is a DOT escape, so join after quoting each line.
    return "\\n".join(dot_quote(x)[1:-1] for x in lines)


def _frame_text(a: dict[str, Any]) -> str:
    if a.get("match") == M_BPF:
        return f"BPF program: stack <= {a.get('frame')} B (verifier)"
    if a.get("inlined"):
        return "inlined: no frame"
    if a.get("frame") is None:
        return "frame unknown" + ("" if a.get("defined", True) else " (no C definition)")
    q = a.get("frame_qualifier")
    extra = (" DYNAMIC (unbounded)" if q == "dynamic" else
             " (dynamic, bounded)" if q == "dynamic,bounded" else "")
    return f"frame {a['frame']} B{extra}"


def _stack_text(a: dict[str, Any]) -> str:
    ms = a.get("max_stack")
    if ms is None:
        return "max stack unknown"
    return f"max stack {ms} B" if a.get("max_stack_bounded", True) else f"max stack ≥ {ms} B"


def build_drawing(data: EmitData, info: RootInfo, slugs: dict[str, str],
                  ucycles: list[list[str]], max_nodes: int) -> Drawing:
    cg, frames = data.callgraph, data.frames
    rid = info.root["id"]
    path = critical_path(cg, frames, info.root)
    nodes, cut = select_nodes(cg, frames, rid, path, max_nodes)
    total = info.root.get("reachable")
    if not isinstance(total, int):
        total = len(reach(cg, rid)) if cut else len(nodes)
    drawn = set(nodes)
    path_len = len(path)
    path = [n for n in path if n in drawn]
    on_path = set(path)
    path_edges = set(zip(path, path[1:], strict=False))
    cyc_of = {n: i for i in info.cycles for n in ucycles[i]}
    unresolved_by: dict[str, list[dict[str, Any]]] = {}
    for s in info.unresolved:
        unresolved_by.setdefault(s["caller"], []).append(s)

    # Left to right reads best for a short chain; a long critical path laid out that way is a
    # strip too thin to read, so it goes top to bottom.
    rankdir = "LR" if len(path) <= 12 else "TB"
    out = [f"digraph {_q(rid)} {{",
           f'  graph [rankdir={rankdir}, nodesep=0.2, ranksep=0.35, fontname="Helvetica",'
           ' fontsize=10];',
           '  node [shape=box, style="rounded,filled", fillcolor="white", fontname="Helvetica",'
           ' fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.6];']
    for n in nodes:
        a = _node(cg, frames, n)
        lines = [a["name"], _frame_text(a), _stack_text(a)]
        hidden = sum(1 for s in cg.successors(n) if s not in drawn)
        if hidden:
            lines.append(f"+{hidden} callee{'s' if hidden > 1 else ''} not drawn")
        attrs = {"label": f'"{_label(lines)}"',
                 "tooltip": _q(f"{n} at {a.get('file') or '?'}:{a.get('line') or '?'}")}
        style = ["rounded", "filled"]
        if n == rid:
            attrs["fillcolor"] = '"#dbe9ff"'
        if a.get("frame_qualifier") == "dynamic" or n in cyc_of:
            attrs["fillcolor"] = '"#ffd0d0"'
        elif a.get("inlined"):
            attrs["fillcolor"] = '"#f3f3f3"'
        if a.get("frame") is None and not a.get("inlined"):
            style.append("dashed")
            attrs["fillcolor"] = '"#e8e8e8"'
            attrs["fontcolor"] = '"#555555"'
        if n in on_path:
            attrs["color"] = '"#e07000"'
            attrs["penwidth"] = "2.5"
        if n != rid and n in slugs:
            attrs["URL"] = _q(f"{slugs[n]}.html")
            attrs["target"] = '"_top"'
        attrs["style"] = _q(",".join(style))
        out.append(f"  {_q(n)} [{', '.join(f'{k}={v}' for k, v in attrs.items())}];")
    for u in nodes:
        for v in sorted(cg.successors(u)):
            if v not in drawn:
                continue
            d = cg.edges[u, v]
            attrs = {}
            if d.get("kind") == "indirect":
                attrs["style"] = '"dashed"'
                attrs["color"] = '"#2060c0"'
            if u in cyc_of and cyc_of.get(v) == cyc_of[u]:
                attrs["color"] = '"#d00000"'
                attrs["penwidth"] = "2"
                attrs["label"] = '"recursion"'
                attrs["fontcolor"] = '"#d00000"'
            if (u, v) in path_edges:  # the critical path stays orange, even inside a cycle
                attrs["color"] = '"#e07000"'
                attrs["penwidth"] = "2.5"
            body = f" [{', '.join(f'{k}={x}' for k, x in attrs.items())}]" if attrs else ""
            out.append(f"  {_q(u)} -> {_q(v)}{body};")
    markers = 0
    for n in nodes:
        for s in unresolved_by.get(n, []):
            if markers >= MAX_MARKERS:
                break
            markers += 1
            m = f"?unresolved {markers}"
            expr = s.get("expr") or ""
            expr = expr if len(expr) <= 48 else expr[:45] + "..."
            lines = ["unresolved indirect call", f"{s['file']}:{s['line']}", expr]
            out.append(f'  {_q(m)} [shape=note, style="filled", fillcolor="#fff0f0", '
                       f'color="#d00000", fontcolor="#d00000", label="{_label(lines)}"];')
            out.append(f'  {_q(n)} -> {_q(m)} [style="dotted", color="#d00000", '
                       f'arrowhead="empty"];')
    out.append("}")
    return Drawing(dot="\n".join(out) + "\n", nodes=len(nodes), total=total, cut=cut,
                   path_len=path_len, path_drawn=len(path))


def render_svg(dot_text: str, timeout: float) -> tuple[str | None, str | None]:
    """(svg, None) or (None, why it failed).  Never raises: a failed drawing is reported."""
    try:
        r = subprocess.run(["dot", "-Tsvg"], input=dot_text.encode(), capture_output=True,
                           timeout=timeout)
    except FileNotFoundError:
        return None, "Graphviz 'dot' is not installed (Debian package: graphviz)"
    except subprocess.TimeoutExpired:
        return None, f"dot did not finish within {timeout:g} s"
    except OSError as e:
        return None, f"dot could not run: {e}"
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()[-500:]
        return None, f"dot failed (exit {r.returncode}): {err}"
    svg = r.stdout.decode(errors="replace")
    start = svg.find("<svg")  # inline SVG: drop the XML prolog and DOCTYPE
    if start < 0:
        return None, "dot produced no SVG"
    return svg[start:], None


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 1.5em 2em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .3em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00000; font-weight: 600; } .ok { color: #1a7f37; }
.note { background: #fff8e0; border: 1px solid #e8d48a; padding: .5em .8em; max-width: 70em; }
.err { background: #ffecec; border: 1px solid #e0a0a0; padding: .5em .8em; }
code { font-size: 12px; } .legend span { margin-right: 1.2em; }
.drawing { overflow: auto; max-height: 90vh; border: 1px solid #ddd; }
.drawing svg { display: block; }
"""

SORT_JS = r"""
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var num = th.getAttribute("data-type") === "num";
      var asc = th.getAttribute("aria-sort") !== "ascending";
      t.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-sort"), y = b.cells[col].getAttribute("data-sort");
        var c = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
// index.html#sort=COLUMN[,asc|desc] opens the table sorted (a link can carry an order).
var m = /^#sort=(\d+)(?:,(asc|desc))?$/.exec(location.hash), t = document.getElementById("roots");
if (m && t && t.tHead.rows[0].cells[+m[1]]) {
  var th = t.tHead.rows[0].cells[+m[1]];
  th.click();
  if (m[2] === "desc" && th.getAttribute("aria-sort") === "ascending") { th.click(); }
}
"""


def _page(title: str, body: list[str], script: str = "") -> str:
    tail = f"<script>{script}</script>\n" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n" + tail + "</body>\n</html>\n")


def _kv_table(rows: list[tuple[str, Any]], cls: str = "facts") -> str:
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{cells}</table>'


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k in sorted(d):
            out += _flatten(d[k], f"{prefix}{k}.")
        return out
    return [(prefix[:-1], d)]


def _loc(a: dict[str, Any]) -> str:
    return f"{a.get('file') or '?'}:{a.get('line') or '?'}" if a.get("file") else "(no source)"


def _list_str(v: Any) -> str:
    return ", ".join(str(x) for x in v) if v else "–"


def index_html(data: EmitData, infos: dict[str, RootInfo]) -> str:
    run, g, cg = data.run, data.graph, data.callgraph
    roots = sorted(data.roots, key=lambda r: (-(r.get("max_stack") or 0), r["id"]))
    unresolved_all = sum(1 for s in data.icalls if is_unresolved(s))
    kinds: dict[str, int] = {}
    for r in roots:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    unbounded = sum(1 for r in roots if r.get("bounded") is False)
    title = f"kcg report: Linux {run.kernel_version or '?'} ({run.config or 'direct tree'})"
    body = [f"<h1>{esc(title)}</h1>", _kv_table([
        ("Kernel version", run.kernel_version or "unknown"),
        ("Config", run.config or "none (direct-tree mode)"),
        ("Source", run.source or "unknown"),
        ("Compiler", run.compiler_version or run.compiler or "unknown"),
        ("kcg version", run.kcg_version), ("Created", run.created),
        ("Full graph", f"{g.number_of_nodes()} functions, {g.number_of_edges()} calls"),
        ("Reached by roots", f"{cg.number_of_nodes()} functions, {cg.number_of_edges()} calls"),
        ("Indirect call sites", f"{len(data.icalls)} ({unresolved_all} unresolved)"),
        ("Roots", ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) or "none"),
        ("Unbounded roots", f"{unbounded} of {len(roots)}"),
    ])]
    body += ["<h2>Roots</h2>",
             '<p>Sorted by worst-case stack, deepest first; click a column heading to sort by it. '
             'An <span class="bad">unbounded</span> root reaches recursion, a dynamic frame or an unknown frame: its '
             'max stack is a lower bound.</p>',
             '<table id="roots" class="sortable"><thead><tr>'
             '<th data-type="text">Root</th><th data-type="text">Kind</th>'
             '<th data-type="text">Helper id</th>'
             '<th data-type="num" aria-sort="descending">Max stack (bytes)</th>'
             '<th data-type="text">Bounded</th><th data-type="num">Reachable functions</th>'
             '<th data-type="num">Unresolved indirect calls</th>'
             '<th data-type="num">Program types</th></tr></thead><tbody>']
    for r in roots:
        info = infos[r["id"]]
        ms = r.get("max_stack")
        bounded = r.get("bounded")
        btext, bcls = (("bounded", "ok") if bounded else ("unbounded", "bad")
                       if bounded is False else ("unknown", ""))
        reach_n = r.get("reachable")
        helper = _list_str(r.get("helper_ids"))
        nprog = len(r.get("prog_types") or [])
        body.append(
            f'<tr data-root="{esc(r["id"])}">'
            f'<td data-sort="{esc(r.get("name") or r["id"])}">'
            f'<a href="roots/{esc(info.slug)}.html">{esc(r.get("name") or r["id"])}</a></td>'
            f'<td data-sort="{esc(r["kind"])}">{esc(r["kind"])}</td>'
            f'<td data-sort="{esc(helper)}">{esc(helper)}</td>'
            f'<td class="num" data-sort="{ms if ms is not None else -1}">'
            f'{esc(ms if ms is not None else "?")}{"" if bounded is not False else "+"}</td>'
            f'<td data-sort="{btext}" class="{bcls}">{btext}</td>'
            f'<td class="num" data-sort="{reach_n if isinstance(reach_n, int) else -1}">'
            f'{esc(reach_n if reach_n is not None else "?")}</td>'
            f'<td class="num" data-sort="{len(info.unresolved)}">{len(info.unresolved)}</td>'
            f'<td class="num" data-sort="{nprog}">{nprog}</td></tr>')
    body.append("</tbody></table>")
    body += widest_sites_html(data)
    extra = _flatten({"indirect calls": data.metrics or {}, "frames": data.frames_match or {}})
    if extra:
        body += ["<h2>Metrics</h2>", _kv_table(extra, "metrics")]
    return _page(title, body, SORT_JS)


def widest_sites(data: EmitData, limit: int = WIDEST_LISTED) -> list[dict[str, Any]]:
    """The indirect call sites in functions the roots reach with the most targets: where the
    reachable sets fan out, so where precision (or a kernel change) matters most."""
    cg = data.callgraph
    reached = [s for s in data.icalls if s["caller"] in cg and len(s.get("targets") or ()) > 1]
    reached.sort(key=lambda s: (-len(s["targets"]), s["file"], s["line"], s.get("column") or 0))
    return reached[:limit]


def widest_sites_html(data: EmitData) -> list[str]:
    sites = widest_sites(data)
    if not sites:
        return []
    body = ["<h2>Widest indirect calls the roots reach</h2>",
            "<p>Each row is one call through a function pointer, with the rule that gave its "
            "targets and, where the resolver could not narrow further, why: the fact where "
            "an untrusted value entered. <code>kcg query icall FILE:LINE</code> lists the "
            "targets.</p>",
            '<table class="wide"><thead><tr><th>Location</th><th>In function</th><th>Call</th>'
            '<th>Targets</th><th>Type layer</th><th>Rule</th><th>Why not narrower</th>'
            "</tr></thead><tbody>"]
    for s in sites:
        why = why_lines(s)  # reads the entry's fallbacks and base_untrusted
        body.append(
            f"<tr><td>{esc(s['file'])}:{esc(s['line'])}:{esc(s.get('column'))}</td>"
            f"<td><code>{esc(s['caller'])}</code></td><td><code>{esc(s.get('expr'))}</code></td>"
            f'<td class="num">{len(s["targets"])}</td>'
            f'<td class="num">{esc(s.get("type_layer_count"))}</td>'
            f"<td>{esc(s.get('resolution'))}</td>"
            f"<td>{'<br>'.join(esc(w) for w in why) or '–'}</td></tr>")
    body.append("</tbody></table>")
    return body


LEGEND = (
    '<p class="legend"><span><b style="color:#e07000">orange</b>: critical path</span>'
    '<span><b style="color:#d00000">red</b>: unbounded (recursion, dynamic frame) or unresolved '
    'indirect call</span><span>dashed blue edge: indirect call</span>'
    '<span>dashed grey box: frame unknown (counted as 0 bytes)</span>'
    '<span>blue box: the root</span></p>')


def root_html(data: EmitData, info: RootInfo, slugs: dict[str, str], ucycles: list[list[str]],
              drawing: Drawing | None, not_drawn: str | None) -> str:
    cg, frames, r = data.callgraph, data.frames, info.root
    rid, name = r["id"], r.get("name") or r["id"]
    a = _node(cg, frames, rid) if rid in cg else {"name": name}
    title = f"{name} ({r['kind']}): max stack {r.get('max_stack')}"
    ms = r.get("max_stack")
    stack = ("unknown" if ms is None else f"{ms} bytes" if r.get("bounded") is not False
             else f"at least {ms} bytes (unbounded)")
    body = [f'<p><a href="../index.html">← all roots</a> · Linux {esc(data.run.kernel_version)} '
            f'({esc(data.run.config or "direct tree")})</p>',
            f"<h1>{esc(name)} <small>({esc(r['kind'])})</small></h1>",
            _kv_table([
                ("Id", rid), ("Defined at", _loc(a)), ("Kind", r["kind"]),
                ("Protos", _list_str(r.get("protos"))),
                ("Helper ids", _list_str(r.get("helper_ids"))),
                ("Program types", _list_str(r.get("prog_types"))),
                ("kfunc flags", _list_str(r.get("kfunc_flags"))),
                ("Worst-case stack", stack),
                ("Reachable functions", r.get("reachable", "?")),
                ("Unresolved indirect calls reached", len(info.unresolved)),
                ("Functions with unknown frames reached", len(info.unknown)),
            ])]
    if r.get("bounded") is False or info.dynamic or info.cycles:
        items: list[str] = []
        if r.get("unbounded_reason"):
            items.append(f"<li>{esc(r['unbounded_reason'])} <small>(annotate)</small></li>")
        # Largest cycles first; a kernel has recursive components of hundreds of functions, so
        # both the cycles and their members are listed only up to a point.
        by_size = sorted(info.cycles, key=lambda i: (-len(ucycles[i]), ucycles[i]))
        for i in by_size[:MAX_CYCLES]:
            c = ucycles[i]
            fs = sum(_node(cg, frames, n).get("frame") or 0 for n in c)
            names = ", ".join(f"<code>{esc(n)}</code>" for n in c[:MAX_CYCLE_NAMES])
            if len(c) > MAX_CYCLE_NAMES:
                names += f" … and {len(c) - MAX_CYCLE_NAMES} more"
            items.append(f"<li>recursion through {len(c)} function{'s' if len(c) > 1 else ''} "
                         f"({fs} bytes of frames per round): {names}</li>")
        if len(by_size) > MAX_CYCLES:
            items.append(f"<li>… and {len(by_size) - MAX_CYCLES} more recursive components</li>")
        for n in info.dynamic:
            f = _node(cg, frames, n)
            items.append(f"<li>dynamic frame (VLA or alloca) in <code>{esc(n)}</code> at "
                         f"{esc(_loc(f))}: at least {esc(f.get('frame'))} bytes</li>")
        reason = str(r.get("unbounded_reason") or "")
        if info.unknown and not (len(info.unknown) == 1 and info.unknown[0] in reason):
            items.append(f"<li>{len(info.unknown)} function{'s' if len(info.unknown) > 1 else ''}"
                         f" with an unknown frame (listed below), counted as 0 bytes</li>")
        if not items:
            items.append("<li>annotate marked it unbounded without saying why</li>")
        body += ['<h2 class="bad">Unbounded</h2>',
                 f'<p>The worst case is at least {esc(ms)} bytes and has no bound, because of:</p>',
                 "<ul>" + "".join(items) + "</ul>"]

    body.append("<h2>Call graph</h2>")
    if drawing is not None and drawing.cut:
        body.append(f'<p class="note">This root reaches {esc(drawing.total)} functions, too many '
                    f'to draw: the drawing is cut to the critical path and the callees of its '
                    f'functions with the largest worst-case stack ({drawing.nodes} functions in '
                    f'all). A "+N callees not drawn" line marks every function whose callees '
                    f'were left out.'
                    + (f' The critical path is {drawing.path_len} functions long: only its first '
                       f'{drawing.path_drawn} are drawn.' if drawing.path_drawn < drawing.path_len
                       else '') + '</p>')
    if drawing is not None and drawing.svg is not None:
        body += [LEGEND, f'<div class="drawing">{drawing.svg}</div>']
    elif drawing is not None:
        body.append(f'<p class="err">The drawing failed: {esc(drawing.error)}. '
                    f'Its Graphviz source is <a href="{esc(info.slug)}.dot">{esc(info.slug)}.dot'
                    f'</a>.</p>')
    else:
        body.append(f'<p class="note">Not drawn: {esc(not_drawn)}.</p>')

    path = critical_path(cg, frames, r) if rid in cg else []
    if path:
        body += ["<h2>Critical path</h2>",
                 '<table class="path"><thead><tr><th>#</th><th>Function</th><th>Defined at</th>'
                 '<th>Frame (bytes)</th><th>Max stack from here</th></tr></thead><tbody>']
        for i, n in enumerate(path):
            f = _node(cg, frames, n)
            fn = (f'<a href="{esc(slugs[n])}.html">{esc(n)}</a>' if n in slugs and n != rid
                  else esc(n))
            bad = f.get("frame_qualifier") == "dynamic" or f.get("max_stack_bounded") is False
            body.append(f'<tr><td class="num">{i}</td><td><code>{fn}</code></td>'
                        f"<td>{esc(_loc(f))}</td><td>{esc(_frame_text(f))}</td>"
                        f'<td class="num{" bad" if bad else ""}">{esc(_stack_text(f))}</td></tr>')
        body.append("</tbody></table>")

    if info.unresolved:
        body += [f'<h2 class="bad">Unresolved indirect calls reached ({len(info.unresolved)})</h2>',
                 "<p>Their targets are unknown: the worst case does not include them.</p>",
                 "<table><thead><tr><th>Location</th><th>In function</th><th>Call</th>"
                 "<th>Function type</th></tr></thead><tbody>"]
        for s in info.unresolved[:MAX_LISTED]:
            body.append(f"<tr><td>{esc(s['file'])}:{esc(s['line'])}:{esc(s.get('column'))}</td>"
                        f"<td><code>{esc(s['caller'])}</code></td>"
                        f"<td><code>{esc(s.get('expr'))}</code></td>"
                        f"<td><code>{esc(s.get('fn_type'))}</code></td></tr>")
        body.append("</tbody></table>")
        if len(info.unresolved) > MAX_LISTED:
            body.append(f"<p>… and {len(info.unresolved) - MAX_LISTED} more.</p>")
    if info.unknown:
        shown = ", ".join(f"<code>{esc(n)}</code>" for n in info.unknown[:MAX_LISTED])
        more = (f" … and {len(info.unknown) - MAX_LISTED} more"
                if len(info.unknown) > MAX_LISTED else "")
        body += [f"<h2>Functions with unknown frames ({len(info.unknown)})</h2>",
                 "<p>No C definition (assembly, for example) or no stack-usage line: counted as "
                 f"0 bytes.</p><p>{shown}{more}</p>"]
    return _page(title, body)


# --- the whole report ----------------------------------------------------------------------------

def write_report(report_dir: Path, data: EmitData, *, max_svg: int = 400, max_nodes: int = 60,
                 dot_timeout: float = 20.0, time_budget: float = 600.0, jobs: int = 1
                 ) -> ReportResult:
    """Write the report into ``report_dir`` (replaced whole); returns what was written."""
    parent = report_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{report_dir.name}.*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{report_dir.name}.", dir=parent))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; a published report must be readable
    try:
        result = _write_into(tmp, data, max_svg, max_nodes, dot_timeout, time_budget, jobs)
        old = None
        if report_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{report_dir.name}.", dir=parent))
            old.rmdir()
            report_dir.rename(old)
        tmp.rename(report_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return result
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise


def _write_into(out: Path, data: EmitData, max_svg: int, max_nodes: int, dot_timeout: float,
                time_budget: float, jobs: int) -> ReportResult:
    slugs = make_slugs([r["id"] for r in data.roots])
    infos, ucycles = analyse(data, slugs)
    result = ReportResult(files=[])
    # Deepest roots first get the drawings when there are more roots than max_svg.
    order = sorted(data.roots, key=lambda r: (-(r.get("max_stack") or 0), r["id"]))
    drawings: dict[str, Drawing] = {}
    not_drawn: dict[str, str] = {}
    for k, r in enumerate(order):
        if r["id"] not in data.callgraph:
            not_drawn[r["id"]] = "the root is not in callgraph.json"
        elif k >= max_svg:
            not_drawn[r["id"]] = (f"the report draws at most {max_svg} roots, deepest first; "
                                  f"render roots/{slugs[r['id']]}.dot with 'dot -Tsvg' yourself")
            result.skipped += 1
        else:
            drawings[r["id"]] = build_drawing(data, infos[r["id"]], slugs, ucycles, max_nodes)
    # Deepest first, so that if the time budget runs out it is the shallow roots that go undrawn.
    ids = [r["id"] for r in order if r["id"] in drawings]
    deadline = time.monotonic() + time_budget

    def render(rid: str) -> tuple[str | None, str | None]:
        if time.monotonic() > deadline:
            return None, OVER_BUDGET
        return render_svg(drawings[rid].dot, dot_timeout)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        # dot runs as a child process, so threads are enough to use the cores.
        rendered = list(pool.map(render, ids))
    for rid, (svg, err) in zip(ids, rendered, strict=True):
        if err == OVER_BUDGET:
            del drawings[rid]
            not_drawn[rid] = (f"the report's drawing time budget ({time_budget:g} s) ran out; "
                              f"render roots/{slugs[rid]}.dot with 'dot -Tsvg' yourself")
            result.skipped += 1
            continue
        drawings[rid].svg, drawings[rid].error = svg, err
        result.drawn += svg is not None
        result.failed += svg is None
        result.cut += drawings[rid].cut

    def put(rel: str, text: str) -> None:
        atomic_write_text(out / rel, text)
        result.files.append(rel)

    put("index.html", index_html(data, infos))
    for r in sorted(data.roots, key=lambda r: r["id"]):
        rid, slug = r["id"], slugs[r["id"]]
        if rid in data.callgraph:
            drawing = drawings.get(rid) or build_drawing(data, infos[rid], slugs, ucycles,
                                                         max_nodes)
            put(f"roots/{slug}.dot", drawing.dot)
        put(f"roots/{slug}.html", root_html(data, infos[rid], slugs, ucycles,
                                            drawings.get(rid), not_drawn.get(rid)))
        result.pages += 1
    result.files.sort()
    return result
