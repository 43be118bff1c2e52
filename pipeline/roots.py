"""The roots stage: which functions BPF programs can call, and what they reach.

Reads ``linked.json.gz`` (link: the merged ``bpf`` facts and the nodes' ``bpf_kfunc``) and
``graph.json.gz`` (resolve: the full graph), plus three headers of the source tree and the build's
``.config`` (see :mod:`pipeline.bpf`), and writes ``bpf_roots.json``::

    {roots: [{id, name, kind: "helper"|"kfunc"|"extra", kinds, protos, helper_ids, prog_types,
              kfunc_flags, kfunc_sets, body}],
     reachable: [id],          # every node some root reaches, roots included, sorted
     problems: [{what, root_kind, ref, detail}],   # roots named by the facts but not usable
     prog_types: [...],        # bpf_types.h entries with their #ifdef conditions
     counts: {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import bpf
from pipeline.build import read_kconfig
from pipeline.fsutil import KcgError, read_json, sha256_file, write_json
from pipeline.runner import Context, Stage, StageResult, stage_input_hash

HEADERS = ("include/linux/bpf_types.h", "include/linux/btf_ids.h", "include/uapi/linux/bpf.h")


def _source_root(ctx: Context) -> str | None:
    for name, key in (("build.json", "source"), ("source.json", "path")):
        p = ctx.path(name)
        if p.exists():
            v = read_json(p).get(key)
            if v:
                return str(v)
    return None


def _dotconfig(ctx: Context) -> Path | None:
    """The build's .config: in the O= build dir, or in the tree itself (direct-tree mode)."""
    p = ctx.path("build.json")
    bdir = read_json(p).get("build_dir") if p.exists() else None
    cands = [Path(bdir) / ".config"] if bdir else []
    cands.append(ctx.path("build", ".config"))
    src = _source_root(ctx)
    if src:
        cands.append(Path(src) / ".config")
    return next((c for c in cands if c.is_file()), None)


def _roots_config(ctx: Context) -> dict[str, Any]:
    c = ctx.config
    if c is None:  # direct-tree mode: every helper and kfunc, no extras
        return {"helpers": True, "kfuncs": True, "extra": []}
    return c.fingerprint("roots")


def roots_inputs(ctx: Context) -> dict[str, Any]:
    src = _source_root(ctx)
    dotconfig = _dotconfig(ctx)
    headers = {}
    for h in HEADERS:
        p = Path(src) / h if src else None
        headers[h] = sha256_file(p) if p is not None and p.is_file() else "missing"
    return {"link": stage_input_hash(ctx, "link"), "resolve": stage_input_hash(ctx, "resolve"),
            "config": _roots_config(ctx), "headers": headers,
            "dotconfig": sha256_file(dotconfig) if dotconfig else "missing"}


def compute_roots(linked: dict[str, Any], graph: dict[str, Any], *, source_root: str | None,
                  kconfig: dict[str, str] | None, helpers: bool = True, kfuncs: bool = True,
                  extra: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """``bpf_roots.json`` from loaded inputs (tests call this directly)."""
    if not isinstance(graph, dict) or "nodes" not in graph or "edges" not in graph:
        raise KcgError("graph.json.gz: not node-link data with an 'edges' key")
    nodes: dict[str, dict[str, Any]] = {n["id"]: dict(n) for n in graph["nodes"]}
    # The link stage's nodes carry bpf_kfunc too; trust either (resolve may drop attributes).
    for n in linked.get("nodes", []):
        if n.get("bpf_kfunc") and n.get("id") in nodes:
            nodes[n["id"]]["bpf_kfunc"] = True
    succ: dict[str, list[str]] = {}
    for e in graph["edges"]:
        succ.setdefault(e["source"], []).append(e["target"])
    facts = linked.get("bpf") or {}
    types = bpf.read_bpf_types(source_root, kconfig)
    roots, problems = bpf.find_roots(
        facts, nodes, succ, helpers=helpers, kfuncs=kfuncs, extra=extra, bpf_types=types,
        func_ids=bpf.read_func_ids(source_root),
        kfunc_macros=bpf.kfunc_set_macros(source_root, facts.get("kfunc_sets", [])))
    reach = bpf.reachable([r["id"] for r in roots], succ)
    by_kind = {k: sum(1 for r in roots if r["kind"] == k) for k in bpf.ROOT_KINDS}
    counts = {
        "roots": len(roots), **{f"{k}_roots": v for k, v in by_kind.items()},
        "protos": len(facts.get("protos", [])),
        "protos_with_func": sum(1 for p in facts.get("protos", []) if p.get("func")),
        "helpers_with_ids": sum(1 for r in roots if r["helper_ids"]),
        "helpers_with_prog_types": sum(1 for r in roots if r["prog_types"]),
        "helpers_with_body": sum(1 for r in roots if r["body"]),
        "kfunc_sets": len(facts.get("kfunc_sets", [])),
        "prog_types": sum(1 for t in types if t["enabled"] is not False),
        "reachable": len(reach), "problems": len(problems),
    }
    return {"roots": roots, "reachable": sorted(reach), "problems": problems,
            "prog_types": types, "counts": counts}


def run_roots(ctx: Context) -> StageResult:
    linked = read_json(ctx.need("linked.json.gz", "link"))
    graph = read_json(ctx.need("graph.json.gz", "resolve"))
    src = _source_root(ctx)
    dotconfig = _dotconfig(ctx)
    kconfig = read_kconfig(dotconfig) if dotconfig else None
    rc = _roots_config(ctx)
    out = compute_roots(linked, graph, source_root=src, kconfig=kconfig, helpers=rc["helpers"],
                        kfuncs=rc["kfuncs"], extra=rc["extra"])
    write_json(ctx.path("bpf_roots.json"), out)
    c = out["counts"]
    summary = [f"roots: {c['helper_roots']} helpers ({c['protos_with_func']} protos with .func), "
               f"{c['kfunc_roots']} kfuncs, {c['extra_roots']} extra; they reach {c['reachable']} "
               f"functions"]
    if not kconfig:
        summary.append("  no .config found: every BPF_PROG_TYPE in bpf_types.h counted")
    for p in out["problems"][:10]:
        summary.append(f"  {p['what']}: {p['root_kind']} {p['ref']} ({p['detail']})")
    if len(out["problems"]) > 10:
        summary.append(f"  ... {len(out['problems']) - 10} more problems in bpf_roots.json")
    return StageResult(outputs=["bpf_roots.json"], counts=c, summary=summary)


STAGE = Stage("roots", roots_inputs, run_roots)
