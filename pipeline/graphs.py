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
    """A directed graph from node-link data (``edges`` key), refusing anything else."""
    if not isinstance(data, dict) or "nodes" not in data or "edges" not in data:
        raise KcgError(f"{what}: not networkx node-link data with 'nodes' and 'edges' keys")
    g = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
    if not g.is_directed() or g.is_multigraph():
        raise KcgError(f"{what}: expected a directed simple graph")
    return g


def load_graph(path: Path) -> nx.DiGraph:
    """Read a node-link JSON graph (``.json`` or ``.json.gz``)."""
    return graph_from_node_link(read_json(path), str(path))


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
