"""The emit stage: the callgraph in standard formats, a database and an HTML report.

Reads what resolve and annotate wrote (``graph.json.gz``, ``icalls.json``, ``metrics.json``,
``frames.json``, ``callgraph.json``, ``roots.json``) plus ``source.json`` and ``build.json``, and
writes:

- ``callgraph.graphml``: the pruned graph of ``callgraph.json`` (networkx ``write_graphml``).
  GraphML has no null and no list: a ``None`` attribute is left out of that node or edge, and a
  list (``callsites``, ``max_stack_path``, ``attrs``) is JSON text; the graph attribute
  ``kcg_list_encoding`` says so.
- ``callgraph.dot``: the same graph, written with pydot.  Node names are always quoted (a
  function named ``node`` or ``graph`` is otherwise a DOT keyword); the function's ``name`` is
  the node's ``label`` (pydot cannot read back an attribute called ``name``); a list is its
  items joined by spaces; ``None`` attributes are left out; indirect calls are dashed.
- ``callgraph.sqlite``: the **full** graph and everything about it (:mod:`pipeline.db`).
- ``report/``: ``index.html`` and a page per root (:mod:`pipeline.report`).

Every file is written atomically; the report directory is built beside the old one and swapped
in, so a reader sees either the old report or the new one.
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import pydot

from pipeline import __version__
from pipeline.fsutil import KcgError, atomic_write_bytes, atomic_write_text, read_json
from pipeline.graphs import dot_quote, load_graph, load_simple_graph, sorted_edges
from pipeline.runner import Context, Stage, StageResult, file_fingerprint

EMIT_VERSION = 2  # bump when the emitted files change for the same inputs (2: icall_sites.why)

REQUIRED = {  # input file -> the stage that writes it
    "graph.json.gz": "resolve",
    "icalls.json": "resolve",
    "frames.json": "annotate",
    "callgraph.json": "annotate",
    "roots.json": "annotate",
}
OPTIONAL = ("metrics.json", "source.json", "build.json")

# Report limits (overridable through ctx.extra, e.g. by tests): drawings are the slow part.
REPORT_MAX_SVG = 400  # roots drawn, deepest first; the others get a page without a drawing
REPORT_MAX_NODES = 60  # functions per drawing before it is cut to the critical path and around
DOT_TIMEOUT = 20.0  # seconds per `dot -Tsvg` (a drawing of REPORT_MAX_NODES takes well under 1)
REPORT_TIME_BUDGET = 600.0  # seconds for all drawings together


@dataclass
class RunInfo:
    kernel_version: str | None
    config: str | None
    compiler: str | None
    compiler_version: str | None
    kcg_version: str
    created: str
    source: str | None


@dataclass
class EmitData:
    """Everything emit reads, loaded and checked once."""

    graph: nx.DiGraph  # the full graph (resolve): a MultiDiGraph keyed by edge kind
    callgraph: nx.DiGraph  # the pruned graph (annotate, callgraph.json)
    frames: dict[str, dict[str, Any]]
    frames_match: dict[str, Any]
    icalls: list[dict[str, Any]]
    roots: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    run: RunInfo


def created_timestamp() -> str:
    """UTC creation time; ``SOURCE_DATE_EPOCH`` pins it, for byte-identical rebuilds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = int(epoch) if epoch and epoch.isdigit() else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _optional(out: Path, name: str) -> Any:
    p = out / name
    return read_json(p) if p.exists() else None


def _describe_source(source: dict[str, Any]) -> str | None:
    if source.get("debian_package"):
        return f"{source['debian_package']} {source.get('debian_version') or ''}".strip()
    return source.get("path")


def load_emit_data(out: Path, config_name: str | None) -> EmitData:
    """Load and sanity-check the emit inputs of output directory ``out``."""
    for name, producer in REQUIRED.items():
        if not (out / name).exists():
            raise KcgError(f"{out / name} is missing: run the '{producer}' stage first "
                           f"(kcg run --to {producer} ...)")
    graph = load_graph(out / "graph.json.gz")
    callgraph = load_simple_graph(out / "callgraph.json")
    frames_doc = read_json(out / "frames.json")
    icalls = read_json(out / "icalls.json")
    roots = read_json(out / "roots.json")
    if not isinstance(frames_doc, dict) or not isinstance(frames_doc.get("nodes"), dict):
        raise KcgError(f"{out / 'frames.json'}: expected {{'nodes': {{id: frame}}, 'match': ...}}")
    if not isinstance(icalls, list) or not isinstance(roots, list):
        raise KcgError(f"{out}: icalls.json and roots.json must be JSON lists")
    for r in roots:
        if "id" not in r or "kind" not in r:
            raise KcgError(f"{out / 'roots.json'}: every root needs 'id' and 'kind': {r!r:.200}")
    missing = sorted(n for n in callgraph if n not in graph)
    if missing:
        raise KcgError(f"{out}: callgraph.json has functions the full graph lacks, e.g. "
                       f"{', '.join(missing[:5])}: rerun resolve and annotate")
    source = _optional(out, "source.json") or {}
    build = _optional(out, "build.json") or {}
    run = RunInfo(kernel_version=source.get("kernelversion"), config=config_name,
                  compiler=build.get("compiler"), compiler_version=build.get("compiler_version"),
                  kcg_version=__version__, created=created_timestamp(),
                  source=_describe_source(source))
    return EmitData(graph=graph, callgraph=callgraph, frames=frames_doc["nodes"],
                    frames_match=frames_doc.get("match") or {}, icalls=icalls, roots=roots,
                    metrics=_optional(out, "metrics.json"), run=run)


# --- GraphML -------------------------------------------------------------------------------------

def graphml_value(v: Any) -> Any:
    """A GraphML-legal value, or None meaning "leave the attribute out"."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple | dict | set):
        return json.dumps(sorted(v) if isinstance(v, set) else v, sort_keys=True)
    return str(v)


def graphml_graph(g: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``g`` whose attributes GraphML can hold, in sorted order."""
    h = nx.DiGraph()
    h.graph.update({k: graphml_value(v) for k, v in sorted(g.graph.items()) if v is not None})
    h.graph["kcg_list_encoding"] = "json"
    for n in sorted(g):
        h.add_node(n, **{k: graphml_value(v) for k, v in sorted(g.nodes[n].items())
                         if v is not None})
    for u, v, d in sorted_edges(g):
        h.add_edge(u, v, **{k: graphml_value(x) for k, x in sorted(d.items()) if x is not None})
    return h


def write_graphml(g: nx.DiGraph, path: Path) -> None:
    buf = io.BytesIO()
    nx.write_graphml(graphml_graph(g), buf, encoding="utf-8", prettyprint=True)
    atomic_write_bytes(path, buf.getvalue())


# --- DOT -----------------------------------------------------------------------------------------

def dot_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return dot_quote(" ".join(str(x) for x in v))
    return dot_quote(str(v))


def dot_graph(g: nx.DiGraph, name: str = "callgraph") -> pydot.Dot:
    """The pydot graph of ``g``: every attribute kept (None left out), lists space-joined."""
    d = pydot.Dot(dot_quote(name), graph_type="digraph")
    d.set_node_defaults(shape="box", fontname="Helvetica")
    for n in sorted(g):
        # The function's name is the node's label: pydot's own parser cannot read back a node
        # attribute called "name" (it collides with a parameter of pydot.Node).
        attrs = {k: dot_value(v) for k, v in sorted(g.nodes[n].items())
                 if v is not None and k not in ("name", "label")}
        attrs["label"] = dot_quote(str(g.nodes[n].get("name") or n))
        node = pydot.Node(dot_quote(n))
        for k, v in attrs.items():
            node.set(k, v)
        d.add_node(node)
    for u, v, data in sorted_edges(g):
        attrs = {k: dot_value(x) for k, x in sorted(data.items()) if x is not None}
        if data.get("kind") == "indirect":
            attrs["style"] = "dashed"
        edge = pydot.Edge(dot_quote(u), dot_quote(v))
        for k, x in attrs.items():
            edge.set(k, x)
        d.add_edge(edge)
    return d


def write_dot(g: nx.DiGraph, path: Path) -> None:
    atomic_write_text(path, dot_graph(g).to_string())


def graphviz_version() -> str:
    """``dot -V`` (the drawings depend on it), asked once per PATH."""
    return _graphviz_version(os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=4)
def _graphviz_version(path_env: str) -> str:
    try:
        r = subprocess.run(["dot", "-V"], capture_output=True, text=True, timeout=5)
        return (r.stderr or r.stdout).strip() or "unknown"
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return "missing"


# --- the stage -----------------------------------------------------------------------------------

def _config_name(ctx: Context) -> str | None:
    return ctx.config.name if ctx.config else None


def emit_inputs(ctx: Context) -> dict[str, Any]:
    # Fingerprint the files themselves rather than upstream manifests: emit only cares about
    # their content, and this also works on an output directory assembled by hand.
    names = sorted([*REQUIRED, *OPTIONAL])
    return {"files": {n: file_fingerprint(ctx.path(n)) for n in names},
            "config": _config_name(ctx), "emit_version": EMIT_VERSION,
            "graphviz": graphviz_version(),
            "report": {k: ctx.extra.get(k) for k in
                       ("report_max_svg", "report_max_nodes", "dot_timeout",
                        "report_time_budget")}}


def run_emit(ctx: Context) -> StageResult:
    from pipeline import db, report

    t0 = time.monotonic()
    data = load_emit_data(ctx.out, _config_name(ctx))
    write_graphml(data.callgraph, ctx.path("callgraph.graphml"))
    write_dot(data.callgraph, ctx.path("callgraph.dot"))
    t_formats = time.monotonic() - t0
    t0 = time.monotonic()
    db_counts = db.write_database(ctx.path("callgraph.sqlite"), data)
    t_db = time.monotonic() - t0
    t0 = time.monotonic()
    rep = report.write_report(
        ctx.path("report"), data,
        max_svg=int(ctx.extra.get("report_max_svg", REPORT_MAX_SVG)),
        max_nodes=int(ctx.extra.get("report_max_nodes", REPORT_MAX_NODES)),
        dot_timeout=float(ctx.extra.get("dot_timeout", DOT_TIMEOUT)),
        time_budget=float(ctx.extra.get("report_time_budget", REPORT_TIME_BUDGET)),
        jobs=max(1, ctx.jobs))
    t_report = time.monotonic() - t0
    outputs = ["callgraph.graphml", "callgraph.dot", "callgraph.sqlite",
               *(f"report/{f}" for f in rep.files)]
    summary = [
        f"emit: graphml/dot of {data.callgraph.number_of_nodes()} functions, "
        f"{data.callgraph.number_of_edges()} calls ({t_formats:.1f}s); sqlite of the full graph: "
        f"{db_counts['functions']} functions, {db_counts['calls']} calls, "
        f"{db_counts['icall_sites']} indirect sites ({t_db:.1f}s)",
        f"  report: {rep.pages} root pages, {rep.drawn} drawn ({rep.cut} cut), "
        f"{rep.failed} drawings failed, {rep.skipped} not drawn (cap or time budget) "
        f"({t_report:.1f}s): "
        f"{ctx.path('report', 'index.html')}",
    ]
    if db_counts["dangling_ids"]:
        summary.append(f"  warning: {db_counts['dangling_ids']} ids in icalls.json/roots.json "
                       f"are not in the graph (kept as in_graph = 0 rows)")
    return StageResult(
        outputs=outputs,
        counts={**{f"db_{k}": v for k, v in db_counts.items()},
                "report_pages": rep.pages, "report_drawn": rep.drawn, "report_cut": rep.cut,
                "report_failed": rep.failed, "report_skipped": rep.skipped},
        tools={"graphviz": graphviz_version(), "networkx": nx.__version__,
               "pydot": pydot.__version__},
        summary=summary)


STAGE = Stage("emit", emit_inputs, run_emit)
