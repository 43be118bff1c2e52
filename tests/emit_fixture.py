"""A small, realistic synthetic output directory for testing the emit stage, query and diff.

The upstream stages (resolve, roots, annotate) write ``graph.json.gz``, ``icalls.json``,
``metrics.json``, ``frames.json``, ``callgraph.json`` and ``roots.json``; this module writes the
same files, with the shapes of their contracts (docs/artifacts.md, issue 5 section 7), from a
hand-written graph modelled on Linux's BPF core: helpers calling their inlined ``____`` bodies,
map helpers fanning out through ``map->ops``, a recursive kfunc, a dynamic (VLA) frame, an
unresolved indirect call, an undefined (assembly) function, two statics sharing a name, a part of
the graph no root reaches, and one helper whose graph is wide enough that the report must cut it.

``make_output(dir, "a")`` is a 6.1-like version; ``"b"`` is a 6.12-like version with exactly the
changes listed in :data:`PLANTED` (what ``kcg diff`` must report).

The frame/max-stack computation here is a deliberately simple stand-in for the annotate stage:
frames add along call paths, a strongly connected component counts its frames once and is
unbounded when they are non-zero, an unknown frame (undefined function) counts 0; recursion, a
``dynamic`` frame and an unknown frame make everything above them unbounded, with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline.fsutil import write_json

INLINED = "inlined"  # a defined function with no .su line: frame 0, marked inlined


@dataclass
class Fn:
    id: str
    file: str | None
    line: int | None
    frame: int | str | None  # bytes, INLINED, or None (undefined: unknown)
    qualifier: str | None = "static"
    kfunc: bool = False
    section: str | None = None
    attrs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.id.split("@", 1)[0]

    @property
    def defined(self) -> bool:
        return self.frame is not None


H = "kernel/bpf/helpers.c"
HT = "kernel/bpf/hashtab.c"
AM = "kernel/bpf/arraymap.c"
TR = "kernel/trace/bpf_trace.c"
SKB = "net/core/skbuff.c"


def _functions(variant: str, wide: int) -> list[Fn]:
    fns = [
        # map helpers: the exported wrapper, its inlined body, and the map implementations
        Fn("bpf_map_lookup_elem", H, 34, 16),
        Fn(f"____bpf_map_lookup_elem@{H}", H, 34, INLINED, None),
        Fn("bpf_map_update_elem", H, 43, 24),
        Fn(f"____bpf_map_update_elem@{H}", H, 43, INLINED, None),
        Fn(f"array_map_lookup_elem@{AM}", AM, 166, 8),
        Fn(f"array_map_update_elem@{AM}", AM, 310, 40),
        Fn("copy_map_value@include/linux/bpf.h", "include/linux/bpf.h", 390, INLINED, None),
        Fn("memcpy", None, None, None, None),  # arch/x86/lib/memcpy_64.S: no C definition
        Fn("memset", None, None, None, None),
        Fn(f"htab_map_lookup_elem@{HT}", HT, 676, 32),
        Fn(f"__htab_map_lookup_elem@{HT}", HT, 651, 48),
        Fn(f"lookup_nulls_elem_raw@{HT}", HT, 630, INLINED, None),
        Fn("jhash@include/linux/jhash.h", "include/linux/jhash.h", 71, INLINED, None),
        Fn(f"htab_map_update_elem@{HT}", HT, 1053, 128 if variant == "b" else 96,
           "dynamic,bounded"),
        Fn(f"check_flags@{HT}", HT, 1040, INLINED, None),
        Fn(f"alloc_htab_elem@{HT}", HT, 950, 64),
        Fn(f"htab_lock_bucket@{HT}", HT, 150, 16),
        Fn("bpf_mem_cache_alloc", "kernel/bpf/memalloc.c", 700, 24),
        Fn("unit_alloc@kernel/bpf/memalloc.c", "kernel/bpf/memalloc.c", 600, 16),
        # bpf_loop: its callback is an integer cast to a function pointer: unresolved
        Fn("bpf_loop", "kernel/bpf/bpf_iter.c", 723, 40),
        Fn("____bpf_loop@kernel/bpf/bpf_iter.c", "kernel/bpf/bpf_iter.c", 723, INLINED, None),
        # tracing helpers; bpf_trace_copy_string has a VLA (a dynamic frame)
        Fn("bpf_trace_printk", TR, 375, 40),
        Fn(f"____bpf_trace_printk@{TR}", TR, 375, INLINED, None),
        Fn("bpf_bprintf_prepare", H, 800, 176, "dynamic,bounded"),
        Fn("bstr_printf", "lib/vsprintf.c", 3150, 120),
        Fn(f"bpf_trace_copy_string@{TR}", TR, 330, 64, "dynamic"),
        Fn("bpf_probe_read", TR, 200, 16),
        Fn(f"____bpf_probe_read@{TR}", TR, 200, INLINED, None),
        Fn(f"bpf_probe_read_kernel_common@{TR}", TR, 180, 32),
        Fn("copy_from_kernel_nofault", "mm/maccess.c", 80, 48),
        # a networking helper whose graph is too wide to draw whole
        Fn("bpf_skb_load_bytes", "net/core/filter.c", 1750, 32),
        Fn("____bpf_skb_load_bytes@net/core/filter.c", "net/core/filter.c", 1750, INLINED, None),
        Fn("skb_header_pointer@include/linux/skbuff.h", "include/linux/skbuff.h", 4000,
           INLINED, None),
        Fn("skb_copy_bits", SKB, 2450, 72),
        # kfuncs; __bpf_obj_drop_impl and bpf_obj_free_fields call each other
        Fn("bpf_cgroup_acquire", H, 2000, 8, kfunc=True),
        Fn("cgroup_tryget@include/linux/cgroup.h", "include/linux/cgroup.h", 320, INLINED, None),
        Fn("percpu_ref_tryget@include/linux/percpu-refcount.h",
           "include/linux/percpu-refcount.h", 250, INLINED, None),
        Fn("bpf_obj_drop_impl", H, 1800, 16, kfunc=True),
        Fn("__bpf_obj_drop_impl", H, 1780, 32),
        Fn("bpf_obj_free_fields", "kernel/bpf/syscall.c", 550, 48),
        Fn("kfree", "mm/slab_common.c", 1000, 24),
        Fn("bpf_task_from_pid", H, 2100, 24, kfunc=True),
        Fn("find_task_by_pid_ns", "kernel/pid.c", 410, 16),
        Fn("idr_find", "lib/idr.c", 170, 8),
        # no root reaches these (the full graph keeps them, the pruned one does not)
        Fn("vfs_read", "fs/read_write.c", 450, 64, section=".text"),
        Fn("rw_verify_area@fs/read_write.c", "fs/read_write.c", 360, 32),
        Fn("seq_read", "fs/seq_file.c", 150, 80),
        Fn("do_fcntl", "fs/fcntl.c", 420, 56),
        Fn("check_flags@fs/fcntl.c", "fs/fcntl.c", 40, 8),
    ]
    if variant == "a":
        fns.append(Fn("bpf_cgroup_kptr_get", H, 2020, 16, kfunc=True))
    else:
        fns += [
            Fn("bpf_user_ringbuf_drain", "kernel/bpf/ringbuf.c", 740, 48),
            Fn("____bpf_user_ringbuf_drain@kernel/bpf/ringbuf.c", "kernel/bpf/ringbuf.c", 740,
               INLINED, None),
            Fn("__bpf_user_ringbuf_peek@kernel/bpf/ringbuf.c", "kernel/bpf/ringbuf.c", 650, 32),
            Fn("bpf_iter_num_new", "kernel/bpf/bpf_iter.c", 790, 16, kfunc=True),
            Fn(f"htab_lock_check@{HT}", HT, 140, 8),
        ]
    for i in range(wide):
        fns.append(Fn(f"skb_walk_frag_{i:03d}@{SKB}", SKB, 2500 + i, 8 + (i % 7) * 8))
    return fns


def _direct(variant: str, wide: int) -> list[tuple[str, str]]:
    e = [
        ("bpf_map_lookup_elem", f"____bpf_map_lookup_elem@{H}"),
        ("bpf_map_update_elem", f"____bpf_map_update_elem@{H}"),
        (f"htab_map_lookup_elem@{HT}", f"__htab_map_lookup_elem@{HT}"),
        (f"__htab_map_lookup_elem@{HT}", f"lookup_nulls_elem_raw@{HT}"),
        (f"__htab_map_lookup_elem@{HT}", "jhash@include/linux/jhash.h"),
        (f"htab_map_update_elem@{HT}", f"check_flags@{HT}"),
        (f"htab_map_update_elem@{HT}", f"alloc_htab_elem@{HT}"),
        (f"htab_map_update_elem@{HT}", f"htab_lock_bucket@{HT}"),
        (f"alloc_htab_elem@{HT}", "bpf_mem_cache_alloc"),
        ("bpf_mem_cache_alloc", "unit_alloc@kernel/bpf/memalloc.c"),
        ("bpf_loop", "____bpf_loop@kernel/bpf/bpf_iter.c"),
        ("bpf_trace_printk", f"____bpf_trace_printk@{TR}"),
        (f"____bpf_trace_printk@{TR}", "bpf_bprintf_prepare"),
        (f"____bpf_trace_printk@{TR}", "bstr_printf"),
        ("bpf_bprintf_prepare", f"bpf_trace_copy_string@{TR}"),
        ("bpf_probe_read", f"____bpf_probe_read@{TR}"),
        (f"____bpf_probe_read@{TR}", f"bpf_probe_read_kernel_common@{TR}"),
        (f"bpf_probe_read_kernel_common@{TR}", "copy_from_kernel_nofault"),
        (f"bpf_probe_read_kernel_common@{TR}", "memset"),
        ("bpf_skb_load_bytes", "____bpf_skb_load_bytes@net/core/filter.c"),
        ("____bpf_skb_load_bytes@net/core/filter.c", "skb_header_pointer@include/linux/skbuff.h"),
        ("skb_header_pointer@include/linux/skbuff.h", "skb_copy_bits"),
        ("bpf_cgroup_acquire", "cgroup_tryget@include/linux/cgroup.h"),
        ("cgroup_tryget@include/linux/cgroup.h",
         "percpu_ref_tryget@include/linux/percpu-refcount.h"),
        ("bpf_obj_drop_impl", "__bpf_obj_drop_impl"),
        ("__bpf_obj_drop_impl", "bpf_obj_free_fields"),
        ("bpf_obj_free_fields", "__bpf_obj_drop_impl"),
        ("bpf_obj_free_fields", "kfree"),
        ("bpf_task_from_pid", "find_task_by_pid_ns"),
        ("find_task_by_pid_ns", "idr_find"),
        ("vfs_read", "rw_verify_area@fs/read_write.c"),
        ("do_fcntl", "check_flags@fs/fcntl.c"),
    ]
    if variant == "a":
        e += [
            (f"array_map_update_elem@{AM}", "copy_map_value@include/linux/bpf.h"),
            ("copy_map_value@include/linux/bpf.h", "memcpy"),
            ("bpf_cgroup_kptr_get", "cgroup_tryget@include/linux/cgroup.h"),
        ]
    else:
        e += [
            ("bpf_user_ringbuf_drain", "____bpf_user_ringbuf_drain@kernel/bpf/ringbuf.c"),
            ("____bpf_user_ringbuf_drain@kernel/bpf/ringbuf.c",
             "__bpf_user_ringbuf_peek@kernel/bpf/ringbuf.c"),
            (f"htab_map_lookup_elem@{HT}", f"htab_lock_check@{HT}"),
        ]
    # The wide part: skb_copy_bits fans out to a two-level tree of frag walkers.
    fan = max(1, wide // 8)
    for i in range(wide):
        parent = "skb_copy_bits" if i < fan else f"skb_walk_frag_{(i - fan) % fan:03d}@{SKB}"
        e.append((parent, f"skb_walk_frag_{i:03d}@{SKB}"))
    return e


def _icalls(variant: str) -> list[dict[str, Any]]:
    return [
        {"caller": f"____bpf_map_lookup_elem@{H}", "file": H, "line": 41, "column": 9,
         "expr": "map->ops->map_lookup_elem(map, key)",
         "fn_type": "void *(struct bpf_map *, void *)",
         "layers": [["struct bpf_map_ops", "map_lookup_elem"], ["struct bpf_map", "ops"]],
         "resolution": "field",
         "targets": [f"array_map_lookup_elem@{AM}", f"htab_map_lookup_elem@{HT}"],
         "type_layer_count": 7},
        {"caller": f"____bpf_map_update_elem@{H}", "file": H, "line": 47, "column": 9,
         "expr": "map->ops->map_update_elem(map, key, value, flags)",
         "fn_type": "long (struct bpf_map *, void *, void *, u64)",
         "layers": [["struct bpf_map_ops", "map_update_elem"], ["struct bpf_map", "ops"]],
         "resolution": "field",
         "targets": [f"array_map_update_elem@{AM}", f"htab_map_update_elem@{HT}"],
         "type_layer_count": 4,
         "fallbacks": [{"layer": ["struct bpf_map", "ops"], "reason": "opaque-object"}]},
        {"caller": "____bpf_loop@kernel/bpf/bpf_iter.c", "file": "kernel/bpf/bpf_iter.c",
         "line": 742, "column": 9,
         "expr": "((bpf_callback_t)callback_fn)(i, (u64)(long)callback_ctx, 0, 0, 0)",
         "fn_type": "u64 (u64, u64, u64, u64, u64)", "layers": [], "resolution": "unresolved",
         "targets": [], "type_layer_count": 0},
        {"caller": "unit_alloc@kernel/bpf/memalloc.c", "file": "kernel/bpf/memalloc.c",
         "line": 612, "column": 3,
         # an expression with HTML metacharacters: the report must escape it
         "expr": "c->refill && c->refill(c, cnt < 8 ? 8 : cnt)",
         "fn_type": "void (struct bpf_mem_cache *, int)",
         "layers": [["struct bpf_mem_cache", "refill"]], "resolution": "unresolved",
         "targets": [], "type_layer_count": 0},
        {"caller": f"bpf_probe_read_kernel_common@{TR}", "file": TR, "line": 190, "column": 8,
         "expr": "copy(dst, unsafe_ptr, size)", "fn_type": "long (void *, const void *, size_t)",
         "layers": [], "resolution": "var", "targets": ["copy_from_kernel_nofault"],
         "type_layer_count": 3},
        {"caller": "vfs_read", "file": "fs/read_write.c", "line": 468, "column": 9,
         "expr": "file->f_op->read(file, buf, count, pos)",
         "fn_type": "ssize_t (struct file *, char *, size_t, loff_t *)",
         "layers": [["struct file_operations", "read"], ["struct file", "f_op"]],
         "resolution": "type", "targets": ["seq_read"], "type_layer_count": 1,
         # why resolve could not narrow it, as icalls.json says (kcg query icall shows it)
         "fallbacks": [{"layer": ["struct file", "f_op"], "reason": "flow-from-untrusted",
                        "origin": {"reason": "nonconst-store", "value": "call",
                                   "file": "fs/inode.c", "line": 2300,
                                   "function": "init_special_inode",
                                   "slot": ["struct inode", "i_fop"]}}]},
    ]


_HELPERS = {
    "bpf_map_lookup_elem": ["BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_SCHED_CLS",
                            "BPF_PROG_TYPE_XDP"],
    "bpf_map_update_elem": ["BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_SCHED_CLS",
                            "BPF_PROG_TYPE_XDP"],
    "bpf_loop": ["BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_XDP"],
    "bpf_trace_printk": ["BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_TRACEPOINT"],
    "bpf_probe_read": ["BPF_PROG_TYPE_KPROBE"],
    "bpf_skb_load_bytes": ["BPF_PROG_TYPE_SCHED_CLS", "BPF_PROG_TYPE_SOCKET_FILTER"],
    "bpf_user_ringbuf_drain": ["BPF_PROG_TYPE_KPROBE"],
}
_KFUNCS = {
    "bpf_cgroup_acquire": ["KF_ACQUIRE", "KF_RCU", "KF_RET_NULL"],
    "bpf_obj_drop_impl": ["KF_RELEASE"],
    "bpf_task_from_pid": ["KF_ACQUIRE", "KF_RET_NULL"],
    "bpf_cgroup_kptr_get": ["KF_ACQUIRE", "KF_KPTR_GET", "KF_RET_NULL"],
    "bpf_iter_num_new": ["KF_ITER_NEW"],
}

# What `kcg diff a b` must report, and nothing else.
PLANTED: dict[str, Any] = {
    "helpers": {"added": ["bpf_user_ringbuf_drain"], "removed": ["bpf_probe_read"]},
    "kfuncs": {"added": ["bpf_iter_num_new"], "removed": ["bpf_cgroup_kptr_get"]},
    "helper_ids": {"added": ["BPF_FUNC_user_ringbuf_drain"], "removed": ["BPF_FUNC_probe_read"]},
    "entered": {"bpf_map_lookup_elem": [f"htab_lock_check@{HT}"]},
    "left": {"bpf_map_update_elem": ["copy_map_value@include/linux/bpf.h", "memcpy"]},
    "max_stack_delta": {"bpf_map_update_elem": 32},
    # memcpy (no C definition: unknown frame) left its graph, so it became bounded
    "bounded": {"bpf_map_update_elem": (False, True)},
}


def build_graph(variant: str = "a", wide: int = 90) -> nx.MultiDiGraph:
    """The full graph of one version, as resolve writes it: a multigraph keyed by edge kind."""
    g = nx.MultiDiGraph()
    for f in sorted(_functions(variant, wide), key=lambda f: f.id):
        g.add_node(f.id, name=f.name, file=f.file, line=f.line,
                   linkage="internal" if "@" in f.id else "external", defined=f.defined,
                   type="long (u64, u64, u64, u64, u64)" if f.defined else None,
                   attrs=sorted(f.attrs + (["noinline"] if f.kfunc else [])),
                   section=f.section, bpf_kfunc=f.kfunc)
    for src, dst in _direct(variant, wide):
        assert src in g and dst in g, (src, dst)
        file = g.nodes[src]["file"] or "?"
        line = (g.nodes[src]["line"] or 0) + 3
        g.add_edge(src, dst, key="direct", kind="direct", callsites=[f"{file}:{line}:2"])
    for site in _icalls(variant):
        for t in site["targets"]:
            assert site["caller"] in g and t in g
            cs = f"{site['file']}:{site['line']}:{site['column']}"
            if g.has_edge(site["caller"], t, key="indirect"):
                g.edges[site["caller"], t, "indirect"]["callsites"].append(cs)
            else:
                g.add_edge(site["caller"], t, key="indirect", kind="indirect", callsites=[cs])
    return g


def simple(g: nx.MultiDiGraph) -> nx.DiGraph:
    """One edge per pair, merged as kcg merges them (kind "direct" wins, callsites united)."""
    h = nx.DiGraph()
    h.add_nodes_from(g.nodes(data=True))
    for u, v, d in g.edges(data=True):
        if h.has_edge(u, v):
            e = h.edges[u, v]
            e["callsites"] = sorted(set(e["callsites"]) | set(d["callsites"]))
            e["kind"] = "direct" if "direct" in (e["kind"], d["kind"]) else e["kind"]
        else:
            h.add_edge(u, v, kind=d["kind"], callsites=sorted(d["callsites"]))
    return h


def frames_of(g: nx.DiGraph, variant: str = "a", wide: int = 90) -> dict[str, dict[str, Any]]:
    """frames.json's ``nodes``: frame, qualifier, inlined, worst-case stack, reason and next."""
    fns = {f.id: f for f in _functions(variant, wide)}
    base: dict[str, dict[str, Any]] = {}
    for n in g:
        f = fns[n]
        if f.frame == INLINED:
            base[n] = {"frame": 0, "qualifier": None, "inlined": True, "match": "inlined"}
        elif f.frame is None:
            base[n] = {"frame": None, "qualifier": None, "inlined": False, "match": "undefined"}
        else:
            base[n] = {"frame": f.frame, "qualifier": f.qualifier, "inlined": False, "match": "su"}
    cond = nx.condensation(g)
    members = cond.graph["mapping"]
    comp_nodes: dict[int, list[str]] = {}
    for n, c in members.items():
        comp_nodes.setdefault(c, []).append(n)
    best: dict[int, tuple[int, str | None]] = {}  # component -> (max stack, unbounded reason)
    for c in reversed(list(nx.topological_sort(cond))):
        nodes = sorted(comp_nodes[c])
        own = sum(base[n]["frame"] or 0 for n in nodes)
        reason = None
        if (len(nodes) > 1 or g.has_edge(nodes[0], nodes[0])) and own:
            reason = "recursion: " + " -> ".join([*nodes, nodes[0]])
        for n in nodes:
            if reason is None and base[n]["qualifier"] == "dynamic":
                reason = f"dynamic frame: {n} ({base[n]['frame']} bytes is only a lower bound)"
            if reason is None and base[n]["frame"] is None:
                reason = f"unknown frame: {n} (not defined in the build)"
        below = sorted((best[s] for s in cond.successors(c)), key=lambda b: -b[0])
        deepest = below[0][0] if below else 0
        if reason is None:
            reason = next((b[1] for b in below if b[1]), None)
        best[c] = (own + deepest, reason)
    out = {}
    for n in g:
        ms, reason = best[members[n]]
        out[n] = {**base[n], "max_stack": ms, "max_stack_bounded": reason is None,
                  "unbounded_reason": reason, "next": None}
    for n in g:  # the critical path's next step, as annotate stores it
        path = critical_path(g, out, n)
        out[n]["next"] = path[1] if len(path) > 1 else None
    return out


def critical_path(g: nx.DiGraph, frames: dict[str, dict[str, Any]], root: str) -> list[str]:
    """Follow the callee with the largest worst-case stack (ties: smallest id) down to a leaf."""
    path, seen, n = [root], {root}, root
    while True:
        nxt = sorted((s for s in g.successors(n) if s not in seen),
                     key=lambda s: (-(frames[s]["max_stack"] or 0), s))
        if not nxt:
            return path
        n = nxt[0]
        path.append(n)
        seen.add(n)


def roots_of(g: nx.DiGraph, frames: dict[str, dict[str, Any]], variant: str) -> list[dict[str, Any]]:
    out = []
    for name, progs in _HELPERS.items():
        if name not in g or (variant == "b" and name == "bpf_probe_read"):
            continue
        out.append({"id": name, "name": name, "kind": "helper", "protos": [f"{name}_proto"],
                    "helper_ids": [f"BPF_FUNC_{name[4:]}"], "prog_types": sorted(progs),
                    "kfunc_flags": []})
    for name, flags in _KFUNCS.items():
        if name in g:
            out.append({"id": name, "name": name, "kind": "kfunc", "protos": [],
                        "helper_ids": [], "prog_types": [], "kfunc_flags": flags})
    for r in out:
        fr = frames[r["id"]]
        path = critical_path(g, frames, r["id"])
        r.update(max_stack=fr["max_stack"], bounded=fr["max_stack_bounded"], path=path,
                 path_frames=[frames[p]["frame"] for p in path],
                 reachable=len(nx.descendants(g, r["id"])) + 1,
                 unbounded_reason=fr["unbounded_reason"], kfunc_sets=[], body=None)
    return sorted(out, key=lambda r: r["id"])


def pruned_graph(g: nx.MultiDiGraph, frames: dict[str, dict[str, Any]],
                 roots: list[dict[str, Any]]) -> dict[str, Any]:
    """callgraph.json: what the roots reach, with the issue 5 section 7 attributes.

    Written like annotate writes it: node-link data of a simple graph, but one edge record per
    edge of the full multigraph (so a direct + indirect pair gives two records).
    """
    keep: set[str] = set()
    for r in roots:
        keep |= nx.descendants(g, r["id"]) | {r["id"]}
    by_id = {r["id"]: r for r in roots}
    nodes = []
    for n in sorted(keep):
        a, fr, r = g.nodes[n], frames[n], by_id.get(n)
        nodes.append({
            "id": n, "name": a["name"], "file": a["file"], "line": a["line"],
            "linkage": a["linkage"], "defined": a["defined"], "inlined": fr["inlined"],
            "frame": fr["frame"], "frame_qualifier": fr["qualifier"],
            "root": r["kind"] if r else None,
            "helper_id": (r["helper_ids"] or [None])[0] if r else None,
            "max_stack": fr["max_stack"], "max_stack_bounded": fr["max_stack_bounded"],
            "max_stack_path": r["path"] if r else None})
    edges = [{"source": u, "target": v, "kind": d["kind"], "callsites": list(d["callsites"])}
             for u, v, d in sorted(g.edges(data=True), key=lambda e: (e[0], e[1], e[2]["kind"]))
             if u in keep and v in keep]
    return {"directed": True, "multigraph": False,
            "graph": {"name": "kcg pruned callgraph", "roots": len(roots)},
            "nodes": nodes, "edges": edges}


def make_output(out: Path, variant: str = "a", *, wide: int = 90) -> Path:
    """Write a complete pre-emit output directory for ``variant`` ("a" ~ 6.1, "b" ~ 6.12)."""
    out.mkdir(parents=True, exist_ok=True)
    g = build_graph(variant, wide)
    frames = frames_of(g, variant, wide)
    roots = roots_of(g, frames, variant)
    icalls = _icalls(variant)
    full = nx.node_link_data(g, edges="edges")
    full["graph"] = {"name": "kcg full callgraph"}
    write_json(out / "graph.json.gz", full, compress=True)
    write_json(out / "frames.json", {"nodes": frames, "match": {
        "su_rows": sum(1 for f in frames.values() if f["qualifier"]),
        "matched": sum(1 for f in frames.values() if f["qualifier"]),
        "inlined": sum(1 for f in frames.values() if f["inlined"]),
        "undefined": sum(1 for f in frames.values() if f["frame"] is None)}})
    write_json(out / "icalls.json", icalls)
    write_json(out / "metrics.json", {
        "sites": len(icalls),
        "targets": {"mean": 1.0, "median": 1, "max": 2},
        "type_layer": {"mean": 2.4, "median": 1, "max": 7},
        "resolved_by": {"field": 0.4, "type": 0.2, "unresolved": 0.4}})
    write_json(out / "roots.json", roots)
    write_json(out / "callgraph.json", pruned_graph(g, frames, roots))
    version = "6.1.192" if variant == "a" else "6.12.57"
    write_json(out / "source.json", {"kind": "debian_package", "kernelversion": version,
                                     "path": f"/nonexistent/linux-source-{version}"})
    write_json(out / "build.json", {"compiler": "gcc",
                                    "compiler_version": "gcc (Debian 12.2.0-14) 12.2.0",
                                    "failed_objects": []})
    return out


def run_emit(out: Path, *, config: Any = None, jobs: int = 2, **extra: Any) -> Any:
    """Run the emit stage on ``out`` through the runner; returns its StageResult (None: skipped)."""
    from pipeline.runner import Context, run_stages
    from pipeline.stages import get_stages

    ctx = Context(out=out, config=config, jobs=jobs, extra=dict(extra))
    rows = run_stages(ctx, [get_stages()["emit"]], log=lambda s: None)
    return rows[0][2]


def emitted(out: Path, variant: str = "a", **extra: Any) -> Path:
    """A fixture output directory with the emit stage run on it."""
    make_output(out, variant)
    run_emit(out, **extra)
    return out
