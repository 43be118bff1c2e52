"""The annotate stage: frame sizes from ``.su`` files, worst-case stack depth, the pruned graph.

Reads ``graph.json.gz`` (resolve), ``bpf_roots.json`` (roots), ``stack_usage.json`` /
``build.json`` / ``compile_commands.json`` (build) and writes:

- ``frames.json``: for every node of the full graph ``{frame, qualifier, inlined, match,
  max_stack, max_stack_bounded, unbounded_reason, next}`` and the match counts;
- ``callgraph.json``: the graph the roots reach, networkx node-link with an ``edges`` key, node and
  edge attributes exactly as issue 5 §7 fixes them;
- ``roots.json``: one entry per root (a JSON list) with its max stack and critical path.

Frames.  A node is matched to its ``.su`` rows by (id path, name) — the line picks among rows of
one name in one file — and an external function not found that way by its name alone when only one
file has rows of that name (macro-made functions whose recorded file differs).  A defined function
with no row was inlined everywhere: frame 0, ``inlined``.  A helper's ``____name`` body is inline
by construction (``BPF_CALL_n``).  A function defined in a ``.c`` file that produced no ``.su`` at
all (not compiled, or failed) and an undefined function have an unknown frame (None) — except
the kernel's build-error stubs (``__bad_size_call_parameter`` and friends,
:data:`BUILD_ERROR_STUBS`), which no built kernel calls.

Worst case.  ``max_stack(n) = frame(n) + max(max_stack(callee))``, computed once per strongly
connected component in reverse topological order of the condensation, so the whole graph costs
O(V + E) however many roots there are; the critical path is rebuilt from the stored argmax callee
(``next``).  The result is unbounded (and ``max_stack`` only a lower bound) when below the node
there is a cycle whose frames are not all zero, a plain ``dynamic`` (alloca/VLA) frame, or an
unknown frame; ``unbounded_reason`` names the cycle or the function.  For a cycle the lower bound is
the deepest call chain that does not go round it: the component is made acyclic by dropping the
back edges of a depth-first search, and every chain in what is left is a real, simple call chain.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline.bpf import HELPER, KFUNC, helper_bodies
from pipeline.build import object_of
from pipeline.facts import PathMap, is_header
from pipeline.fsutil import KcgError, read_json, write_json
from pipeline.resolve import BPF_PROGRAM_NODE
from pipeline.runner import Context, Stage, StageResult, stage_input_hash
from pipeline.stackusage import DYNAMIC, StackUsage, load, summary_counts

# How a node got its frame (frames.json "match").
M_SU, M_SU_NAME, M_INLINED, M_BODY, M_UNDEFINED, M_NO_SU, M_STUB, M_BPF = (
    "su", "su_by_name", "inlined", "helper_body", "undefined", "no_su_for_file",
    "build_error_stub", "bpf_program")

# The resolve stage's node for a BPF program a helper calls back (BPF_PROGRAM_NODE, bpf_loop's
# callback): JITed code whose stack is at most MAX_BPF_STACK (include/linux/filter.h, 512 in 6.1
# and 6.12).  The helpers it may call in turn are not edges here: what is below it is a lower
# bound.
MAX_BPF_STACK = 512

# Functions the kernel declares and never defines on purpose: a call to one that survives
# optimisation fails the build (an error attribute, or an undefined symbol at link time), so in a
# kernel that built no such call is left.  The source-level graph still has the call (it sits in a
# branch the compiler removes); these are not unknown frames, they never run: frame 0, bounded.
# (compiletime_assert()'s __compiletime_assert_N calls are not in the facts at all: see
# pipeline.extract.)
BUILD_ERROR_STUBS = re.compile(
    r"__bad_size_call_parameter"  # include/linux/percpu-defs.h
    r"|__(?:cmp)?xchg_wrong_size|__xadd_wrong_size|__add_wrong_size"  # arch/x86/.../cmpxchg.h
    r"|__get_user_bad|__put_user_bad"  # arch/x86/include/asm/uaccess.h
    r"|__bad_copy_from|__bad_copy_to"  # include/linux/thread_info.h: check_copy_size()
    r"|____wrong_branch_error")  # include/linux/jump_label.h


# ---- frames -------------------------------------------------------------------------------------


def node_frames(nodes: Mapping[str, Mapping[str, Any]], su: StackUsage, *,
                bodies: Iterable[str] = (), tu_files: Iterable[str] = ()
                ) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Each node's frame: ``{frame, qualifier, inlined, match}`` and the match counts.

    ``nodes``: id -> attributes (``name``, ``file``, ``line``, ``defined``, ``linkage``).
    ``bodies``: ids of helper ``____name`` bodies.  ``tu_files``: id paths of the TUs that have a
    ``.su`` file (a ``.c`` function there with no row was inlined; elsewhere it is unknown).
    """
    bodies = set(bodies)
    covered = set(tu_files) | su.files_seen
    used: set[tuple[str | None, str]] = set()
    internal = {(a.get("file"), str(a.get("name"))) for nid, a in nodes.items() if "@" in nid}
    out: dict[str, dict[str, Any]] = {}
    counts = dict.fromkeys(
        (M_SU, M_SU_NAME, M_INLINED, M_BODY, M_UNDEFINED, M_NO_SU, M_STUB, M_BPF), 0)
    for nid, a in nodes.items():
        name = str(a.get("name") or nid.split("@", 1)[0])
        file = a.get("file")
        line = a.get("line")
        defined = bool(a.get("defined"))
        rec: dict[str, Any] = {"frame": None, "qualifier": None, "inlined": False, "match": None}
        if nid in bodies:
            # BPF_CALL_n's ____name is __always_inline: its locals live in the wrapper's frame.
            rec.update(frame=0, inlined=True, match=M_BODY)
        elif nid == BPF_PROGRAM_NODE:
            rec.update(frame=MAX_BPF_STACK, match=M_BPF)
        elif not defined and "@" not in nid and BUILD_ERROR_STUBS.fullmatch(name):
            rec.update(frame=0, match=M_STUB)
        else:
            fr = su.lookup(file, name, line) if file else None
            how, key = M_SU, (file, name)
            if fr is None and "@" not in nid:
                # External names are unique in the image: take the rows of that name when they
                # are all in one file and no static function of the graph owns them.
                files = su.by_name.get(name, set())
                if len(files) == 1:
                    only = next(iter(files))
                    if (only, name) not in internal:
                        fr = su.lookup(only, name, line if only == file else None)
                        how, key = M_SU_NAME, (only, name)
            if fr is not None:
                used.add(key)
                rec.update(frame=fr.size, qualifier=fr.qualifier, match=how)
            elif not defined:
                rec["match"] = M_UNDEFINED
            elif file and (file in covered or is_header(file)):
                rec.update(frame=0, inlined=True, match=M_INLINED)
            else:
                rec["match"] = M_NO_SU
        counts[rec["match"]] += 1
        out[nid] = rec
    counts["su_functions"] = len(su.frames)
    counts["su_functions_matched"] = len(used)
    return out, counts


def own_unbounded(nid: str, rec: Mapping[str, Any], file: str | None = None) -> str | None:
    """Why a node's own frame makes anything above it unbounded, or None."""
    if rec.get("match") == M_BPF:
        return (f"calls BPF code: {nid} (its {MAX_BPF_STACK}-byte stack is counted; the helpers "
                "it may call are not edges here)")
    if rec.get("qualifier") == DYNAMIC:
        return f"dynamic frame: {nid} ({rec['frame']} bytes is only a lower bound)"
    if rec.get("frame") is None:
        if rec.get("match") == M_NO_SU:
            return f"unknown frame: {nid} (no .su for {file})"
        return f"unknown frame: {nid} (not defined in the build)"
    return None


# ---- worst-case stack -----------------------------------------------------------------------------


@dataclass
class StackResult:
    """Worst-case stack per node; ``next`` is the callee on the critical path."""

    max_stack: dict[str, int]
    bounded: dict[str, bool]
    reason: dict[str, str | None]
    next: dict[str, str | None]
    cond: nx.DiGraph  # the condensation (SCC DAG), reused for reach counts

    def path(self, nid: str) -> list[str]:
        """The critical path from ``nid`` (itself first) along the stored argmax callees."""
        out = [nid]
        seen = {nid}
        n = self.next.get(nid)
        while n is not None and n not in seen:
            out.append(n)
            seen.add(n)
            n = self.next.get(n)
        return out


def _describe_cycle(start: str, members: set[str], succ: Mapping[str, Sequence[str]]) -> str:
    """A concrete cycle through ``start`` inside its component, as ``a -> b -> a``."""
    parent: dict[str, str] = {}
    q = deque([start])
    found = start in succ.get(start, ())
    last = start
    while q and not found:
        x = q.popleft()
        for s in succ.get(x, ()):
            if s == start:
                found, last = True, x
                break
            if s in members and s not in parent:
                parent[s] = x
                q.append(s)
    chain = [start]
    if last != start:
        back = [last]
        while back[-1] != start:
            back.append(parent[back[-1]])
        chain = list(reversed(back))
    chain.append(start)
    if len(chain) > 8:
        chain = chain[:4] + [f"... ({len(chain) - 1} functions)"] + chain[-3:]
    text = " -> ".join(chain)
    if len(members) > len(chain) - 1:
        text += f" (one of the cycles of a {len(members)}-function recursive component)"
    return f"recursion: {text}"


def worst_case(succ: Mapping[str, Sequence[str]], frame: Mapping[str, int | None],
               own_reason: Mapping[str, str | None]) -> StackResult:
    """Worst-case stack of every node of ``frame`` (see the module docstring).

    ``succ``: id -> callee ids; ``frame``: id -> bytes (None: unknown, counted as 0 for the lower
    bound); ``own_reason``: id -> why its own frame is unbounded (dynamic/unknown) or None.
    """
    g = nx.DiGraph()
    g.add_nodes_from(frame)
    g.add_edges_from((u, v) for u, vs in succ.items() if u in frame for v in vs if v in frame)
    cond = nx.condensation(g)
    value: dict[str, int] = {}
    bounded: dict[str, bool] = {}
    reason: dict[str, str | None] = {}
    nxt: dict[str, str | None] = {}
    w = {n: (f or 0) for n, f in frame.items()}
    gsucc = {n: list(g.successors(n)) for n in g}

    def better(s: str, best: str | None) -> bool:
        # Larger value wins; ties go to the smaller id, so runs are reproducible.
        return best is None or value[s] > value[best] or (value[s] == value[best] and s < best)

    def worst_bad(cands: Iterable[str]) -> str | None:
        bad = None
        for s in cands:
            if not bounded[s] and better(s, bad):
                bad = s
        return bad

    for c in reversed(list(nx.topological_sort(cond))):
        members: set[str] = cond.nodes[c]["members"]
        if len(members) == 1:
            n = next(iter(members))
            ss = gsucc[n]
            if n not in ss:
                best = None
                for s in ss:
                    if better(s, best):
                        best = s
                value[n] = w[n] + (value[best] if best is not None else 0)
                nxt[n] = best
                own = own_reason.get(n)
                if own is None:
                    if best is not None and not bounded[best]:
                        own = reason[best]
                    else:
                        bad = worst_bad(ss)
                        own = reason[bad] if bad is not None else None
                bounded[n] = own is None
                reason[n] = own
                continue
        _cyclic_component(members, gsucc, w, own_reason, value, bounded, reason, nxt, better,
                          worst_bad)
    return StackResult(value, bounded, reason, nxt, cond)


def _cyclic_component(members: set[str], gsucc: Mapping[str, list[str]], w: Mapping[str, int],
                      own_reason: Mapping[str, str | None], value: dict[str, int],
                      bounded: dict[str, bool], reason: dict[str, str | None],
                      nxt: dict[str, str | None], better: Any, worst_bad: Any) -> None:
    """Fill value/bounded/reason/next for the members of one strongly connected component."""
    exits = [(m, s) for m in members for s in gsucc[m] if s not in members]
    heavy = [m for m in members if w[m] > 0]
    recursion = None
    if not heavy:
        # Every frame in the cycle is 0: going round adds nothing.  Every member reaches every
        # exit, so all get the best exit; paths lead to it through the component (reverse BFS).
        best_exit: tuple[str, str] | None = None
        for u, v in exits:
            if best_exit is None or better(v, best_exit[1]) or (
                    v == best_exit[1] and u < best_exit[0]):
                best_exit = (u, v)
        top = value[best_exit[1]] if best_exit else 0
        for m in members:
            value[m] = top
            nxt[m] = None
        if best_exit is not None:
            u, v = best_exit
            pred: dict[str, list[str]] = {}
            for m in members:
                for s in gsucc[m]:
                    if s in members:
                        pred.setdefault(s, []).append(m)
            nxt[u] = v
            seen = {u}
            q = deque([u])
            while q:
                x = q.popleft()
                for p in sorted(pred.get(x, ())):
                    if p not in seen:
                        seen.add(p)
                        nxt[p] = x
                        q.append(p)
    else:
        # Lower bound: drop the back edges of a DFS over the component; a node's value is then
        # computed at its DFS finish from finished (acyclic) members and the exits.
        start = max(heavy, key=lambda m: (w[m], m))
        recursion = _describe_cycle(start, members, gsucc)
        state: dict[str, int] = {}  # 1: on the DFS stack, 2: finished
        order = sorted(members)  # deterministic roots for the DFS (one suffices; kept safe)
        for root in order:
            if root in state:
                continue
            state[root] = 1
            stack: list[tuple[str, Iterable[str]]] = [(root, iter(gsucc[root]))]
            while stack:
                x, it = stack[-1]
                pushed = False
                for s in it:
                    if s in members and s not in state:
                        state[s] = 1
                        stack.append((s, iter(gsucc[s])))
                        pushed = True
                        break
                if pushed:
                    continue
                stack.pop()
                best = None
                for s in gsucc[x]:
                    if s in members and state.get(s) != 2:
                        continue  # back edge (or x itself): would go round the cycle
                    if better(s, best):
                        best = s
                value[x] = w[x] + (value[best] if best is not None else 0)
                nxt[x] = best
                state[x] = 2
    # One reason for the component: its recursion, else a member's own frame, else what lies below.
    own = sorted((m for m in members if own_reason.get(m)), key=lambda m: (-w[m], m))
    bad_exit = worst_bad(v for _, v in exits)
    comp_reason = recursion or (own_reason[own[0]] if own else None) or (
        reason[bad_exit] if bad_exit is not None else None)
    for m in members:
        r = own_reason.get(m) or comp_reason
        reason[m] = r
        bounded[m] = r is None


def reach_counts(res: StackResult, roots: Sequence[str]) -> dict[str, int]:
    """How many nodes each root reaches (itself included), in one pass over the condensation.

    Each component gets the bit set of the roots that reach it (Python ints); components with the
    same bit set are then counted together, so the work is the number of distinct sets, not
    roots x nodes.
    """
    cond = res.cond
    mapping: dict[str, int] = cond.graph["mapping"]
    index = {r: i for i, r in enumerate(roots) if r in mapping}
    bits: dict[int, int] = {}
    for r, i in index.items():
        c = mapping[r]
        bits[c] = bits.get(c, 0) | (1 << i)
    for c in nx.topological_sort(cond):
        b = bits.get(c)
        if b:
            for s in cond.successors(c):
                bits[s] = bits.get(s, 0) | b
    by_set: dict[int, int] = {}
    for c, b in bits.items():
        by_set[b] = by_set.get(b, 0) + len(cond.nodes[c]["members"])
    counts = [0] * len(roots)
    for b, size in by_set.items():
        while b:
            low = b & -b
            counts[low.bit_length() - 1] += size
            b ^= low
    return {r: counts[i] for r, i in index.items()}


# ---- the stage ------------------------------------------------------------------------------------


def _su_locations(ctx: Context, build: Mapping[str, Any], source_root: str,
                  build_root: str | None, su_files: Sequence[str]
                  ) -> tuple[dict[str, str], set[str]]:
    """(.su file -> compile directory, id paths of the TUs that have a .su) from the compile db."""
    pm = PathMap(source_root, build_root)
    cwd: dict[str, str] = {}
    tus: set[str] = set()
    wanted = {os.path.realpath(f) for f in su_files}
    alt_root = build.get("stack_usage")
    cc = ctx.path("compile_commands.json")
    entries = read_json(cc) if cc.exists() else []
    for e in entries:
        d = str(e.get("directory", "."))
        obj = object_of(e)
        if not obj:
            continue
        cands = [Path(d) / Path(obj).with_suffix(".su")]
        if alt_root:  # direct-tree --stack-usage DIR mirrors the object tree there
            cands.append(Path(alt_root) / Path(obj).with_suffix(".su"))
        for p in cands:
            rp = os.path.realpath(p)
            if rp in wanted:
                cwd[rp] = d
                tus.add(pm.rel(str(e.get("file", "")), d))
    return cwd, tus


def _roots_meta(roots: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {r["id"]: r for r in roots}


def annotate(graph: Mapping[str, Any], bpf_roots: Mapping[str, Any], su: StackUsage,
             tu_files: Iterable[str] = ()) -> dict[str, Any]:
    """Everything the stage writes, from already-loaded inputs (tests call this directly).

    Returns ``{frames, callgraph, roots, counts, deepest}``.
    """
    nodes = {n["id"]: n for n in graph["nodes"]}
    # resolve writes a multigraph (one edge per kind between two functions): one callee once.
    succ_d: dict[str, dict[str, None]] = {}
    for e in graph["edges"]:
        succ_d.setdefault(e["source"], {})[e["target"]] = None
    succ = {u: list(vs) for u, vs in succ_d.items()}
    roots = list(bpf_roots.get("roots", []))
    frames, match_counts = node_frames(nodes, su, bodies=helper_bodies(roots), tu_files=tu_files)
    own = {n: own_unbounded(n, frames[n], nodes[n].get("file")) for n in nodes}
    res = worst_case(succ, {n: frames[n]["frame"] for n in nodes}, own)

    frames_out = {}
    for n, f in frames.items():
        frames_out[n] = {**f, "max_stack": res.max_stack[n], "max_stack_bounded": res.bounded[n],
                         "unbounded_reason": res.reason[n], "next": res.next[n]}

    meta = _roots_meta(roots)
    root_ids = [r["id"] for r in roots if r["id"] in nodes]
    reach = reach_counts(res, root_ids)
    roots_out = []
    for r in roots:
        rid = r["id"]
        if rid not in nodes:
            continue
        path = res.path(rid)
        roots_out.append({
            "id": rid, "name": r["name"], "kind": r["kind"], "protos": r.get("protos", []),
            "helper_ids": r.get("helper_ids", []), "prog_types": r.get("prog_types", []),
            "kfunc_flags": r.get("kfunc_flags", []), "kfunc_sets": r.get("kfunc_sets", []),
            "body": r.get("body"), "max_stack": res.max_stack[rid], "bounded": res.bounded[rid],
            "path": path, "path_frames": [frames[p]["frame"] for p in path],
            "reachable": reach.get(rid, 0), "unbounded_reason": res.reason[rid]})

    # The pruned graph: what the roots reach (the roots stage's list), exactly the §7 contract.
    keep = set(bpf_roots.get("reachable") or []) & set(nodes)
    if not keep and root_ids:
        keep = {n for n in nodes if n in _reach_all(root_ids, succ)}
    cg_nodes = []
    for n in sorted(keep):
        a = nodes[n]
        f = frames_out[n]
        m = meta.get(n)
        kind = m["kind"] if m is not None and m["kind"] in (HELPER, KFUNC) else None
        if kind is None and m is not None:
            # An extra root that is also a helper/kfunc is named by that; pure extras are null
            # (the contract's root attribute knows helper and kfunc only; roots.json has "extra").
            kind = next((k for k in m.get("kinds", []) if k in (HELPER, KFUNC)), None)
        ids = m.get("helper_ids", []) if m is not None else []
        linkage = a.get("linkage") or ("internal" if "@" in n else "external")
        cg_nodes.append({
            "id": n, "name": a.get("name"), "file": a.get("file"), "line": a.get("line"),
            # weak definitions are external symbols (overridable): the contract has two values.
            "linkage": "internal" if linkage == "internal" else "external",
            "defined": bool(a.get("defined")), "inlined": f["inlined"], "frame": f["frame"],
            "frame_qualifier": f["qualifier"], "root": kind,
            "helper_id": ids[0] if ids else None,
            "max_stack": f["max_stack"], "max_stack_bounded": f["max_stack_bounded"],
            "max_stack_path": res.path(n) if m is not None else None})
    # The contract's graph is simple: a direct and an indirect edge between the same two
    # functions become one edge, "direct" (the call certainly happens), with all callsites.
    merged: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for e in graph["edges"]:
        if e["source"] in keep and e["target"] in keep:
            kinds, sites = merged.setdefault((e["source"], e["target"]), (set(), set()))
            kinds.add(e.get("kind", "direct"))
            sites.update(e.get("callsites", []))
    cg_edges = [{"source": u, "target": v,
                 "kind": "direct" if "direct" in kinds else "indirect",
                 "callsites": sorted(sites)}
                for (u, v), (kinds, sites) in sorted(merged.items())]
    callgraph = {"directed": True, "multigraph": False,
                 "graph": {"name": "kcg pruned callgraph", "roots": len(root_ids)},
                 "nodes": cg_nodes, "edges": cg_edges}

    reachable_defined = [n for n in keep if nodes[n].get("defined")]
    with_frame = sum(1 for n in reachable_defined if frames[n]["match"] in (M_SU, M_SU_NAME))
    inlined = sum(1 for n in reachable_defined if frames[n]["inlined"])
    counts = {
        "nodes": len(nodes), "edges": len(graph["edges"]), "roots": len(roots_out),
        "pruned_nodes": len(cg_nodes), "pruned_edges": len(cg_edges),
        "reachable_defined": len(reachable_defined), "reachable_defined_su_frame": with_frame,
        "reachable_defined_inlined": inlined,
        "reachable_defined_unknown": len(reachable_defined) - with_frame - inlined,
        "reachable_undefined": len(keep) - len(reachable_defined),
        "reachable_unknown_frame": sum(1 for n in keep if frames[n]["frame"] is None),
        "roots_bounded": sum(1 for r in roots_out if r["bounded"]),
        "match": match_counts, "su": summary_counts(su),
    }
    helpers = [r for r in roots_out if r["kind"] == HELPER]
    deepest = sorted(helpers, key=lambda r: (-r["max_stack"], r["id"]))[:10]
    return {"frames": frames_out, "callgraph": callgraph, "roots": roots_out, "counts": counts,
            "deepest": deepest}


def _reach_all(roots: Iterable[str], succ: Mapping[str, Sequence[str]]) -> set[str]:
    from pipeline.bpf import reachable
    return reachable(roots, succ)


def _short_path(names: list[str], head: int = 8, tail: int = 3) -> str:
    """A path for a one-line summary; the whole path is in roots.json."""
    if len(names) > head + tail + 1:
        names = names[:head] + [f"...{len(names) - head - tail} more..."] + names[-tail:]
    return " > ".join(names)


def _short_reason(reason: str) -> str:
    """'recursion: a -> b -> ... (one of the cycles of a N-function recursive component)' ->
    'recursion, a N-function recursive component'."""
    kind = reason.split(":", 1)[0]
    if m := re.search(r"a (\d+)-function recursive component", reason):
        return f"{kind}, a {m.group(1)}-function recursive component"
    return reason if len(reason) <= 60 else reason[:57] + "..."


def annotate_inputs(ctx: Context) -> dict[str, Any]:
    return {"resolve": stage_input_hash(ctx, "resolve"), "roots": stage_input_hash(ctx, "roots"),
            "build": stage_input_hash(ctx, "build")}


def run_annotate(ctx: Context) -> StageResult:
    graph = read_json(ctx.need("graph.json.gz", "resolve"))
    if not isinstance(graph, dict) or "nodes" not in graph or "edges" not in graph:
        raise KcgError(f"{ctx.path('graph.json.gz')}: not node-link data with an 'edges' key")
    bpf_roots = read_json(ctx.need("bpf_roots.json", "roots"))
    stack_usage = read_json(ctx.need("stack_usage.json", "build"))
    build = read_json(ctx.need("build.json", "build"))
    source_root = build.get("source")
    if not source_root:
        source_root = read_json(ctx.need("source.json", "source"))["path"]
    build_root = build.get("build_dir")
    files = list(stack_usage.get("files", []))
    cwd_map, tus = _su_locations(ctx, build, source_root, build_root, files)
    default_cwd = build_root or source_root
    su = load(files, PathMap(source_root, build_root),
              lambda f: cwd_map.get(os.path.realpath(f), default_cwd))
    out = annotate(graph, bpf_roots, su, tus)

    write_json(ctx.path("frames.json"), {
        "nodes": out["frames"], "match": out["counts"]["match"],
        "su": {"counts": out["counts"]["su"], "malformed": su.errors[:200]}})
    write_json(ctx.path("callgraph.json"), out["callgraph"])
    write_json(ctx.path("roots.json"), out["roots"])

    c = out["counts"]
    share = (100.0 * c["reachable_defined_su_frame"] / c["reachable_defined"]
             if c["reachable_defined"] else 0.0)
    summary = [
        f"annotate: {c['roots']} roots reach {c['pruned_nodes']} of {c['nodes']} functions; "
        f"{c['reachable_defined']} reachable defined: {c['reachable_defined_su_frame']} with a "
        f".su frame ({share:.1f}%), {c['reachable_defined_inlined']} inlined, "
        f"{c['reachable_defined_unknown']} unknown; {c['reachable_undefined']} reachable "
        f"undefined ({c['reachable_unknown_frame']} with no known frame, the rest build-error "
        f"stubs{' or BPF code' if c['match'].get(M_BPF) else ''}); "
        f"{c['roots_bounded']} of {c['roots']} roots bounded",
        f"  .su: {c['su']['rows']} rows in {c['su']['su_files']} files, "
        f"{c['su']['malformed']} malformed"
        + (f" (first: {su.errors[0]})" if su.errors else ""),
        "  deepest helpers:"]
    # One line each, so the run's summary fits a screen; roots.json has every path and reason.
    for r in out["deepest"][:5]:
        bound = "" if r["bounded"] else f" (lower bound: {_short_reason(r['unbounded_reason'])})"
        names = _short_path([p.split("@", 1)[0] for p in r["path"]], head=3, tail=2)
        summary.append(f"    {r['name']}: {r['max_stack']} B{bound}: {names}")
    return StageResult(
        outputs=["frames.json", "callgraph.json", "roots.json"],
        counts={k: v for k, v in c.items() if k not in ("match", "su")}
        | {"match": c["match"], "su_rows": c["su"]["rows"], "su_malformed": c["su"]["malformed"]},
        summary=summary)


STAGE = Stage("annotate", annotate_inputs, run_annotate)
