"""Graph helpers shared by emit, report and diff: loading node-link files, reach, recursion.

The graphs here are the ones the resolve and annotate stages write (networkx node-link JSON with
an ``edges`` key).  Reach per root is computed once for all roots at the same time ("which roots
reach this node", as a bit set over the roots) because computing each root's descendants one by
one costs the whole graph per root; on the full kernel that is hundreds of passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline.fsutil import KcgError, read_json


def graph_from_node_link(data: dict[str, Any], what: str = "graph") -> nx.DiGraph:
    """A directed graph from node-link data (``edges`` key): a MultiDiGraph when the data says
    ``multigraph`` (the resolve stage's full graph, edge key = kind), else a DiGraph."""
    if not isinstance(data, dict) or "nodes" not in data or "edges" not in data:
        raise KcgError(f"{what}: not networkx node-link data with 'nodes' and 'edges' keys")
    if not data.get("directed", True):
        raise KcgError(f"{what}: expected a directed graph")
    multi = bool(data.get("multigraph", False))
    return nx.node_link_graph(data, directed=True, multigraph=multi, edges="edges")


def load_graph(path: Path) -> nx.DiGraph:
    """Read a node-link JSON graph (``.json`` or ``.json.gz``), multigraph or not."""
    return graph_from_node_link(read_json(path), str(path))


def simple_graph_from_node_link(data: dict[str, Any], what: str = "graph") -> nx.DiGraph:
    """A DiGraph with one edge per (caller, callee), whatever the data holds.

    callgraph.json is a simple graph, but it is written one record per edge of the full
    multigraph, so a function that calls another both directly and through a pointer appears
    twice; networkx would silently keep only the last record.  Merge them instead: callsites
    united, ``kind`` "direct" when either is (a direct call is the stronger fact).
    """
    if not isinstance(data, dict) or "nodes" not in data or "edges" not in data:
        raise KcgError(f"{what}: not networkx node-link data with 'nodes' and 'edges' keys")
    g = nx.DiGraph()
    g.graph.update(data.get("graph") or {})
    for n in data["nodes"]:
        g.add_node(n["id"], **{k: v for k, v in n.items() if k != "id"})
    for e in data["edges"]:
        u, v = e["source"], e["target"]
        attrs = {k: x for k, x in e.items() if k not in ("source", "target", "key")}
        if g.has_edge(u, v):
            old = g.edges[u, v]
            sites = sorted(set(old.get("callsites") or []) | set(attrs.get("callsites") or []))
            kind = "direct" if "direct" in (old.get("kind"), attrs.get("kind")) else old.get("kind")
            old.update({**attrs, **old, "callsites": sites, "kind": kind})
        else:
            g.add_edge(u, v, **attrs)
    return g


def load_simple_graph(path: Path) -> nx.DiGraph:
    """Read a node-link JSON graph as a DiGraph (see :func:`simple_graph_from_node_link`)."""
    return simple_graph_from_node_link(read_json(path), str(path))


def edge_rows(g: nx.DiGraph) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(caller, callee, kind, attributes) for every edge of a graph or multigraph, sorted."""
    if g.is_multigraph():
        rows = [(u, v, d.get("kind") or str(k), d) for u, v, k, d in g.edges(keys=True, data=True)]
    else:
        rows = [(u, v, d.get("kind") or "direct", d) for u, v, d in g.edges(data=True)]
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def cycles(g: nx.DiGraph) -> list[list[str]]:
    """Strongly connected components that are real cycles (size > 1 or a self call), sorted."""
    out = []
    for comp in nx.strongly_connected_components(g):
        if len(comp) > 1 or any(g.has_edge(n, n) for n in comp):
            out.append(sorted(comp))
    return sorted(out)


def reached_by(g: nx.DiGraph, roots: list[str]) -> dict[str, int]:
    """For every node some root reaches, the bit set (bit i = ``roots[i]``) of the roots that do.

    A root reaches itself.  Works on the condensation, so cycles cost nothing extra; the bit
    sets are Python ints, so one pass serves any number of roots.
    """
    index = {r: i for i, r in enumerate(roots) if r in g}
    if not index:
        return {}
    cond = nx.condensation(g)
    mapping: dict[str, int] = cond.graph["mapping"]
    bits: dict[int, int] = {}
    for r, i in index.items():
        c = mapping[r]
        bits[c] = bits.get(c, 0) | (1 << i)
    for c in nx.topological_sort(cond):
        b = bits.get(c, 0)
        if not b:
            continue
        for s in cond.successors(c):
            bits[s] = bits.get(s, 0) | b
    return {n: bits[c] for n, c in mapping.items() if bits.get(c)}


def iter_bits(b: int) -> Iterator[int]:
    """The indices of the set bits of ``b``, lowest first."""
    while b:
        low = b & -b
        yield low.bit_length() - 1
        b ^= low


def reach(g: nx.DiGraph, root: str, limit: int | None = None) -> set[str]:
    """The functions ``root`` reaches, itself included; stops early past ``limit`` nodes."""
    seen = {root}
    todo = [root]
    while todo:
        n = todo.pop()
        for s in g.successors(n):
            if s not in seen:
                seen.add(s)
                if limit is not None and len(seen) > limit:
                    return seen
                todo.append(s)
    return seen


def sorted_edges(g: nx.DiGraph) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """Edges in (caller, callee) order: every writer emits them the same way on every run."""
    return sorted(g.edges(data=True), key=lambda e: (e[0], e[1]))


def split_callsite(site: str) -> tuple[str, int | None, int | None]:
    """``"file:line:col"`` (or ``"file:line"``, as clang-style locations have it) -> parts.

    Split from the right: a file name may contain a colon, a line number may not.
    """
    parts = site.rsplit(":", 2)
    nums: list[int | None] = []
    while len(parts) > 1 and parts[-1].isdigit() and len(nums) < 2:
        nums.insert(0, int(parts.pop()))
    if not nums:
        return site, None, None
    file = ":".join(parts)
    return (file, nums[0], nums[1]) if len(nums) == 2 else (file, nums[0], None)


def dot_quote(s: str) -> str:
    """A DOT double-quoted string (always quoted: an id can be a DOT keyword such as ``node``)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
