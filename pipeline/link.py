"""The link stage: every TU's facts merged into one kernel-wide symbol table and call list.

Input: ``parse.json`` and the facts documents it names (TU documents and header-function
documents, shapes in :mod:`pipeline.facts`).  Output: ``linked.json.gz``::

  {schema, nodes: [Node], direct_edges: [{src, dst, callsites: ["file:line:col"]}],
   icall_sites: [indirect Call + {caller}], objects, stores, copies, casts, address_taken,
   layouts: {record: Layout|None}, offsetof_params: {"F#argI": {records, layers, passed,
   calls}}, bpf: {protos, proto_switches, verifier_ops, kfunc_sets, id_lists},
   duplicates: [...], failed_tus: [file], counts}

Node: ``{id, name, file, line, col, linkage, defined, type, attrs, section, bpf_kfunc}``.

The symbol table follows the linker:

- external functions are one symbol per name (their id is the name); a ``weak`` definition loses
  to a strong one, as ``ld`` does;
- internal (static) functions are per file; their id ``name@file`` already says so.  The same id
  from several TUs (a ``.c`` file ``#include``d by two TUs) is one function: its call lists are
  united (each TU may have seen different ``#ifdef`` branches; the union is sound);
- header static inlines come from header-function documents, once per run (dedupe by id);
- a function called or address-taken but defined nowhere (assembly, a failed TU) becomes a node
  with ``defined: false`` so edges never dangle; compiler builtins are left out (they are not
  calls at run time), and so are compiletime_assert()'s ``__compiletime_assert_N`` calls, which
  the parser drops (no built kernel has one: see pipeline.extract);
- two *strong* external definitions of one name can only come from code that is never linked
  together (modules, boot/vdso/EFI-stub objects beside vmlinux): one deterministic winner is kept
  (files that go into the kernel image first, then by path) and the others are listed in
  ``duplicates`` with the reason, never silently dropped.

Facts of failed TUs are absent: they are listed in ``failed_tus`` and counted, so the resolver and
the report can say how much of the kernel they did not see.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.build import SEPARATE_IMAGES
from pipeline.facts import FACTS_SCHEMA
from pipeline.fsutil import KcgError, atomic_write_bytes, read_json, sha256_bytes
from pipeline.runner import Context, Stage, StageResult, stage_input_hash
from pipeline.store import FactsStore

LINK_VERSION = 9  # bump whenever the linked document or a link rule changes
LINKED_FILE = "linked.json.gz"

# Calls the compiler expands itself; they never reach a symbol, so they are not graph edges.
BUILTIN_PREFIXES = ("__builtin_", "__sync_", "__atomic_", "__c11_atomic_", "__arithmetic_fence")

FACT_LISTS = ("stores", "copies", "casts", "address_taken")
BPF_LISTS = ("protos", "proto_switches", "verifier_ops", "kfunc_sets", "id_lists")


# --------------------------------------------------------------------------------------------
# Reading the parse stage's output (documents live in pipeline.store.FactsStore).
# --------------------------------------------------------------------------------------------


def load_parse_index(ctx: Context) -> dict[str, Any]:
    """``parse.json`` of the output directory (a clear error when parse has not run)."""
    return read_json(ctx.need("parse.json", "parse"))


def load_documents(index: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every facts document the parse stage produced: TU documents, then header functions.

    Failed TUs are yielded too (as their recorded status) so the linker can count them; their
    facts are never used.  Header-function keys are taken from ``parse.json`` and from every TU
    document (deduplicated), so a document is read once however many TUs include the header.
    """
    store = FactsStore(index["store"])
    header_keys: set[str] = set(index.get("header_functions") or ())
    for tu in index.get("tus", ()):
        key = tu.get("key")
        if tu.get("status") != "ok" or not key:
            yield {"kind": "tu", "file": tu.get("file"), "status": "failed",
                   "error": tu.get("error") or "no facts"}
            continue
        doc = store.get(key)
        if doc is None:
            raise KcgError(f"facts for {tu.get('file')} are missing from {index['store']} "
                           f"(evicted or corrupted): rerun the parse stage")
        header_keys.update(doc.get("header_functions") or ())
        yield doc
    for key in sorted(header_keys):
        doc = store.get(key)
        # A header function the parse stage could not extract is reported there; here its
        # absence is counted so the numbers say what the graph does not hold.
        yield doc if doc is not None else {"kind": "missing", "key": key}


# --------------------------------------------------------------------------------------------
# Linking
# --------------------------------------------------------------------------------------------


def is_builtin(call: dict[str, Any]) -> bool:
    """A call the compiler expands itself (``__builtin_*`` and friends, or flagged by parse)."""
    if call.get("builtin"):
        return True
    name = call.get("name") or call.get("callee") or ""
    return name.startswith(BUILTIN_PREFIXES)


def _in_image(file: str | None) -> bool:
    # The build stage already drops these TUs; a compile database from elsewhere may not.
    return not SEPARATE_IMAGES.search(file or "")


# One encoder for all canonical keys: json.dumps() builds a new encoder on every call when it
# is given options, which costs more than the encoding of a small fact.
_canon = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False).encode
_compact = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def write_json_fast(path: Path | str, obj: Any, *, compress: bool) -> bytes:
    """Write a large JSON output atomically, fast; returns the bytes written.

    Unlike :func:`pipeline.fsutil.write_json` keys are not re-sorted (every dict here is built
    in a fixed order, so the output is still a pure function of the input) and gzip uses
    level 1: on a full kernel this halves the write time for a ~25% larger file.
    """
    data = _compact(obj).encode()
    if compress:
        data = gzip.compress(data, compresslevel=1, mtime=0)
    atomic_write_bytes(path, data)
    return data


def _dedupe_sorted(items: Iterable[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Distinct items (by their JSON text), sorted by ``keys`` then by that text.

    The parser builds every fact of one kind with the same key order, so the compact encoding
    (no key sorting: 2x faster on ~250k facts) identifies equal facts; a fact written with
    another key order would only stay duplicated, which is harmless.
    """
    seen: dict[str, dict[str, Any]] = {}
    for it in items:
        seen.setdefault(_compact(it), it)

    def sort_key(pair: tuple[str, dict[str, Any]]) -> tuple[Any, ...]:
        text, it = pair
        return (*(str(it.get(k) if it.get(k) is not None else "") for k in keys),
                int(it.get("line") or 0), text)

    return [it for _, it in sorted(seen.items(), key=sort_key)]


def _call_key(call: dict[str, Any]) -> tuple[Any, ...]:
    # offsetof arguments are part of a call's identity: two calls one macro expands at one
    # place may pass different ones, and offsetof_params counts calls, not places.
    offsets = sorted((i, tuple(o["layer"])) for i, o in (call.get("offsetof_args") or {}).items())
    return (call.get("file") or "", int(call.get("line") or 0), int(call.get("col") or 0),
            call.get("kind"), call.get("callee") or "", call.get("expr") or "", tuple(offsets))


def _merge_calls(defs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls of one function seen in several TUs, united and deduplicated."""
    if len(defs) == 1:
        return list(defs[0].get("calls") or ())
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for fn in defs:
        for call in fn.get("calls") or ():
            merged.setdefault(_call_key(call), call)
    return [merged[k] for k in sorted(merged)]


def _offsetof_param(offsets: list[dict[str, Any]], calls: int) -> dict[str, Any]:
    """What the direct calls pass as one parameter when some pass ``offsetof(R, f)``: the
    records and layers, and whether every direct call does (``passed == calls``)."""
    return {"records": sorted({o["record"] for o in offsets}),
            "layers": [list(lay) for lay in sorted({tuple(o["layer"]) for o in offsets})],
            "passed": len(offsets), "calls": calls}


def _is_weak(fn: dict[str, Any]) -> bool:
    return fn.get("linkage") == "weak"


def _loc(fn: dict[str, Any]) -> tuple[str, int, int]:
    return (fn.get("file") or "", int(fn.get("line") or 0), int(fn.get("col") or 0))


def _pick(fid: str, defs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                         dict[str, Any] | None]:
    """The winning definition of one id, the definitions merged into it, and a duplicates row.

    Definitions at the same location are one definition seen from several TUs.  Among
    different locations: strong beats weak (the linker's rule), then image files beat
    non-image ones, then the smallest (path, line, col) — deterministic across runs.
    """
    if len(defs) == 1:
        return defs[0], defs, None
    by_loc: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for fn in defs:
        by_loc[_loc(fn)].append(fn)
    if len(by_loc) == 1:
        group = next(iter(by_loc.values()))
        return group[0], group, None

    def rank(loc: tuple[str, int, int]) -> tuple[Any, ...]:
        return (_is_weak(by_loc[loc][0]), not _in_image(loc[0]), loc)

    if "@" in fid:
        # One static id at several locations can only be a file compiled with different
        # macros (the same path); every variant is a body of the same symbol: unite them.
        order = sorted(by_loc, key=rank)
        group = [fn for loc in order for fn in by_loc[loc]]
        return group[0], group, None
    order = sorted(by_loc, key=rank)
    win = by_loc[order[0]]
    winner = win[0]
    dropped = []
    win_weak = _is_weak(winner)
    for loc in order[1:]:
        fn = by_loc[loc][0]
        weak = _is_weak(fn)
        if weak and not win_weak:
            reason = "weak definition overridden by a strong one"
        elif weak:
            reason = "two weak definitions: the first by path wins"
        else:
            reason = "second strong definition (not linked together with the winner)"
        dropped.append({"file": loc[0], "line": loc[1], "col": loc[2],
                        "linkage": "weak" if weak else fn.get("linkage"), "reason": reason,
                        "calls": len(fn.get("calls") or ())})
    row = {"id": fid,
           "kept": {"file": winner.get("file"), "line": winner.get("line"),
                    "col": winner.get("col"), "linkage": winner.get("linkage")},
           "dropped": dropped,
           "strong_conflict": not win_weak and any(d["linkage"] != "weak" for d in dropped)}
    return winner, win, row


def _node(fn: dict[str, Any], defined: bool) -> dict[str, Any]:
    return {
        "id": fn["id"], "name": fn.get("name"), "file": fn.get("file"), "line": fn.get("line"),
        "col": fn.get("col"), "linkage": fn.get("linkage"), "defined": defined,
        "type": fn.get("type"), "attrs": sorted(fn.get("attrs") or ()),
        "section": fn.get("section"), "bpf_kfunc": bool(fn.get("bpf_kfunc")),
    }


def _undefined_node(fid: str, name: str | None) -> dict[str, Any]:
    at = fid.find("@")
    return {
        "id": fid, "name": name or (fid[:at] if at > 0 else fid),
        "file": fid[at + 1:] if at > 0 else None, "line": None, "col": None,
        "linkage": "internal" if at > 0 else "external", "defined": False, "type": None,
        "attrs": [], "section": None, "bpf_kfunc": False,
    }


def _merge_layouts(seen: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One record's layout as every TU that cast it saw it; None unless they agree on every
    leaf's place and name (an ``#ifdef`` inside a record, or two records given one name, leave
    it unknown).  A leaf is tracked if any TU says so: a pointer to a record that is
    incomplete in one TU is tracked there, as it may hold function pointers.  A TU where the
    record is incomplete (``{"incomplete": true}``) says nothing: 6.12's verifier.c casts a
    ``struct bpf_arena *`` it has no definition of, kernel/bpf/arena.c gives the layout."""
    seen = [lay for lay in seen if not (lay and lay.get("incomplete"))]
    if not seen or any(lay is None for lay in seen):
        return None
    places = [tuple(tuple(leaf[:4]) for leaf in lay["leaves"]) for lay in seen]
    if any(p != places[0] for p in places[1:]):
        return None
    tracked = [any(lay["leaves"][i][4] for lay in seen) for i in range(len(places[0]))]
    kinds = [leaf[5:6] for leaf in seen[0]["leaves"]]  # what an untracked leaf holds
    return {"leaves": [[*place, t, *kind]
                       for place, t, kind in zip(places[0], tracked, kinds, strict=True)]}


def _merge_overlays(seen: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """A union's overlay (pipeline.facts) as every TU saw it: all their leaves together.

    Unlike a cast's layout, a disagreement (an ``#ifdef`` inside the union) must not lose the
    union: every leaf any TU saw may overlay the others, which can only add overlaps.
    """
    leaves = {tuple(leaf) for lay in seen if lay for leaf in lay["leaves"]}
    if not leaves:
        return None
    return {"leaves": [list(leaf) for leaf in sorted(
        leaves, key=lambda x: (x[0], x[1], x[2] or "", x[3] or "", x[4], x[5:]))]}


def link_documents(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge facts documents (TU and header-function) into the linked document (pure)."""
    defs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    objects: dict[str, list[dict[str, Any]]] = defaultdict(list)
    lists: dict[str, list[dict[str, Any]]] = {k: [] for k in FACT_LISTS}
    bpf: dict[str, list[dict[str, Any]]] = {k: [] for k in BPF_LISTS}
    failed: list[dict[str, Any]] = []
    missing_headers: list[str] = []
    layouts: dict[str, list[dict[str, Any] | None]] = defaultdict(list)
    n_tus = 0
    # Functions, not documents: TUs parsed in different runs may name two documents of one
    # header function (pipeline.parse.header_context); their calls are merged like any defs.
    header_fns: set[str] = set()
    schemas: set[Any] = set()

    for doc in docs:
        kind = doc.get("kind")
        if kind == "tu":
            n_tus += 1
            if doc.get("status") != "ok":
                failed.append({"file": doc.get("file"), "error": doc.get("error")})
                continue
            fns = doc.get("functions") or ()
        elif kind == "header_function":
            header_fns.add(doc["function"]["id"])
            fns = [doc["function"]]
        elif kind == "missing":
            missing_headers.append(doc["key"])
            continue
        else:
            raise KcgError(f"unknown facts document kind {kind!r}")
        if doc.get("schema") is not None:
            schemas.add(doc["schema"])
        for fn in fns:
            defs[fn["id"]].append(fn)
        for obj in doc.get("objects") or ():
            objects[obj["id"]].append(obj)
        for k in FACT_LISTS:
            lists[k].extend(doc.get(k) or ())
        for k in BPF_LISTS:
            bpf[k].extend((doc.get("bpf") or {}).get(k) or ())
        for rec, lay in (doc.get("layouts") or {}).items():
            layouts[rec].append(lay)

    if schemas - {FACTS_SCHEMA}:
        raise KcgError(f"facts schema {sorted(schemas, key=str)} differs from this kcg's "
                       f"{FACTS_SCHEMA}: rerun the parse stage")

    nodes: dict[str, dict[str, Any]] = {}
    duplicates: list[dict[str, Any]] = []
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    icall_sites: list[dict[str, Any]] = []
    called_names: dict[str, str | None] = {}
    direct_calls: dict[str, int] = defaultdict(int)  # callee -> direct calls (not places)
    offsetof_args: dict[str, list[dict[str, Any]]] = defaultdict(list)  # F#argI -> offsetofs
    builtin: dict[str, bool] = {}
    n_builtin = 0
    for fid in sorted(defs):
        winner, group, dup = _pick(fid, defs[fid])
        if dup:
            duplicates.append(dup)
        nodes[fid] = _node(winner, True)
        for call in _merge_calls(group):
            site = f"{call.get('file')}:{call.get('line')}:{call.get('col')}"
            if call.get("kind") == "direct":
                callee = call.get("callee")
                if not callee:
                    continue
                b = builtin.get(callee)
                if b is None or call.get("builtin"):
                    b = builtin[callee] = is_builtin(call)
                if b:
                    n_builtin += 1
                    continue
                edges[(fid, callee)].add(site)
                called_names.setdefault(callee, call.get("name"))
                direct_calls[callee] += 1
                for i, off in (call.get("offsetof_args") or {}).items():
                    offsetof_args[f"{callee}#arg{i}"].append(off)
            else:
                icall_sites.append({**call, "caller": fid})

    # Functions used but defined nowhere: called directly, or address-taken (an assembly
    # function put into an ops table is still a call target).
    for callee, name in called_names.items():
        if callee not in nodes:
            nodes[callee] = _undefined_node(callee, name)
    address_taken = _dedupe_sorted(lists["address_taken"], "file")
    for at in address_taken:
        if at.get("id") and at["id"] not in nodes:
            nodes[at["id"]] = _undefined_node(at["id"], None)

    merged_objects = []
    for oid in sorted(objects):
        group = objects[oid]
        obj = dict(min(group, key=lambda o: (o.get("file") or "", int(o.get("line") or 0))))
        if len(group) > 1:
            # A header object (static const in a .h) is seen by every TU that includes it:
            # one object; differing entries (different #ifdefs) are united, which is sound.
            entries = {_canon(e): e for o in group for e in o.get("entries") or ()}
            obj["entries"] = [entries[k] for k in sorted(entries)]
        merged_objects.append(obj)

    icall_sites.sort(key=lambda c: (c.get("file") or "", int(c.get("line") or 0),
                                    int(c.get("col") or 0), c["caller"], c.get("expr") or ""))
    direct_edges = [{"src": s, "dst": d, "callsites": sorted(cs)}
                    for (s, d), cs in sorted(edges.items())]
    linked = {
        "schema": LINK_VERSION,
        "facts_schema": FACTS_SCHEMA,
        "nodes": [nodes[k] for k in sorted(nodes)],
        "direct_edges": direct_edges,
        "icall_sites": icall_sites,
        "objects": merged_objects,
        "stores": _dedupe_sorted(lists["stores"], "file"),
        "copies": _dedupe_sorted(lists["copies"], "file"),
        "casts": _dedupe_sorted(lists["casts"], "file"),
        "address_taken": address_taken,
        "layouts": {rec: (_merge_overlays if rec.startswith("overlay:") else _merge_layouts)(
            layouts[rec]) for rec in sorted(layouts)},
        "bpf": {
            "protos": _dedupe_sorted(bpf["protos"], "id"),
            "proto_switches": _dedupe_sorted(bpf["proto_switches"], "function"),
            "verifier_ops": _dedupe_sorted(bpf["verifier_ops"], "id"),
            "kfunc_sets": _dedupe_sorted(bpf["kfunc_sets"], "file", "name"),
            "id_lists": _dedupe_sorted(bpf["id_lists"], "file", "name"),
        },
        "offsetof_params": {key: _offsetof_param(offs, direct_calls[key.rsplit("#", 1)[0]])
                            for key, offs in sorted(offsetof_args.items())},
        "duplicates": duplicates,
        "failed_tus": sorted(failed, key=lambda f: f["file"] or ""),
    }
    linked["counts"] = {
        "tus": n_tus, "tus_failed": len(failed), "header_functions": len(header_fns),
        "header_functions_missing": len(missing_headers),
        "nodes": len(nodes), "defined": sum(1 for n in nodes.values() if n["defined"]),
        "undefined": sum(1 for n in nodes.values() if not n["defined"]),
        "direct_edges": len(direct_edges), "icall_sites": len(icall_sites),
        "builtin_calls_skipped": n_builtin, "objects": len(merged_objects),
        "stores": len(linked["stores"]), "copies": len(linked["copies"]),
        "casts": len(linked["casts"]), "address_taken": len(address_taken),
        "layouts": len(linked["layouts"]),
        "duplicates": len(duplicates),
        "strong_duplicates": sum(1 for d in duplicates if d["strong_conflict"]),
    }
    return linked


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small dicts/lists are alive.

    These stages hold a whole kernel's facts (tens of millions of objects, no reference
    cycles); each automatic full collection would walk all of them, and with the default
    thresholds that happens often enough to double or triple the run time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# The linked document just written, kept for the resolve stage of the same process so it does
# not re-read and re-parse the file; resolve checks the file's hash before using it.
_MEMO_KEY = "link.linked"


def link_inputs(ctx: Context) -> dict[str, Any]:
    """What link depends on: parse's outputs (content-addressed keys) and our versions."""
    return {"parse": stage_input_hash(ctx, "parse"), "link_version": LINK_VERSION,
            "facts_schema": FACTS_SCHEMA}


def run_link(ctx: Context) -> StageResult:
    """Read every facts document, link, write ``linked.json.gz``."""
    index = load_parse_index(ctx)
    with no_gc():
        linked = link_documents(load_documents(index))
        data = write_json_fast(ctx.path(LINKED_FILE), linked, compress=True)
    ctx.extra[_MEMO_KEY] = (sha256_bytes(data), linked)
    c = linked["counts"]
    summary = [
        f"{c['defined']} functions defined, {c['undefined']} undefined, "
        f"{c['direct_edges']} direct edges, {c['icall_sites']} indirect call sites",
        f"{c['tus'] - c['tus_failed']}/{c['tus']} TUs with facts"
        + (f" ({c['tus_failed']} failed: their facts are absent)" if c["tus_failed"] else ""),
    ]
    if c["strong_duplicates"]:
        summary.append(f"{c['strong_duplicates']} names with two strong definitions "
                       f"(see duplicates in {LINKED_FILE})")
    return StageResult(outputs=[LINKED_FILE], counts=c, summary=summary)


def load_linked(ctx: Context) -> dict[str, Any]:
    """The linked document: from memory when this process just wrote it, else from disk."""
    path = ctx.need(LINKED_FILE, "link")
    memo = ctx.extra.pop(_MEMO_KEY, None)  # used once: later stages must not keep it alive
    if memo is not None:
        digest, linked = memo
        if os.path.getsize(path) and sha256_bytes(path.read_bytes()) == digest:
            return linked
    return read_json(path)


STAGE = Stage("link", link_inputs, run_link)
