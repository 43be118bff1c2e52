"""Link and resolve on hand-written facts documents (no libclang, no compiler).

Each test builds the facts the parse stage would extract from a small kernel-like C pattern
(shown in the test's docstring) and asserts the exact targets of the indirect calls.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from pipeline.facts import FACTS_SCHEMA, empty_tu, function_id
from pipeline.link import link_documents
from pipeline.resolve import resolve_linked, why_lines
from pipeline.runner import Context, run_stages

LOOKUP_T = "void *(struct map *, void *)"
VOID_T = "void (void)"
INT_T = "int (int)"


# ---- builders --------------------------------------------------------------------------------

def fn(name: str, file: str = "a.c", *, linkage: str = "external", type: str = VOID_T,
       calls: list[dict[str, Any]] | None = None, line: int = 1) -> dict[str, Any]:
    return {"id": function_id(name, linkage, file), "name": name, "linkage": linkage,
            "file": file, "line": line, "col": 5, "type": type, "attrs": [], "section": None,
            "bpf_kfunc": False, "calls": calls or []}


def dcall(callee: str, name: str | None = None, file: str = "a.c", line: int = 10,
          col: int = 3) -> dict[str, Any]:
    name = name or callee.split("@")[0]
    return {"kind": "direct", "callee": callee, "name": name, "file": file, "line": line,
            "col": col, "expr": name}


def icall(fn_type: str, layers: list[list[str]] | None = None, *, base_kind: str = "param",
          base_id: str | None = None, subscript: bool = False, file: str = "a.c",
          line: int = 20, col: int = 9, expr: str = "x") -> dict[str, Any]:
    base: dict[str, Any] = {"kind": base_kind, "name": "p"}
    if base_id:
        base["id"] = base_id
    return {"kind": "indirect", "fn_type": fn_type, "layers": layers or [], "base": base,
            "subscript": subscript, "file": file, "line": line, "col": col, "expr": expr}


def F(fid: str) -> dict[str, Any]:
    return {"kind": "function", "id": fid}


def OBJ(oid: str) -> dict[str, Any]:
    return {"kind": "object", "id": oid}


def NC(what: str = "param", text: str = "fn") -> dict[str, Any]:
    return {"kind": "nonconst", "what": what, "text": text}


def obj(oid: str, type: str, entries: list[tuple[list[list[Any]], dict[str, Any]]],
        file: str = "a.c") -> dict[str, Any]:
    return {"id": oid, "name": oid.split("@")[0], "linkage": "internal" if "@" in oid else
            "external", "type": type, "file": file, "line": 1,
            "entries": [{"path": p, "value": v} for p, v in entries]}


def store(value: dict[str, Any], *, layers: list[list[str]] | None = None,
          var: str | None = None, function: str = "init", file: str = "a.c") -> dict[str, Any]:
    target: dict[str, Any] = {"var": var} if var else {"layers": layers}
    return {"target": target, "value": value, "function": function, "file": file, "line": 30}


def tu(file: str, functions: list[dict[str, Any]], *, objects: list[dict[str, Any]] = (),
       stores: list[dict[str, Any]] = (), copies: list[dict[str, Any]] = (),
       casts: list[dict[str, Any]] = (), taken: list[str] = (),
       header_functions: list[str] = ()) -> dict[str, Any]:
    """A TU document; address_taken is derived from objects/stores like the parser does."""
    doc = empty_tu(file)
    doc.update(functions=list(functions), objects=list(objects), stores=list(stores),
               copies=list(copies), casts=list(casts), header_functions=list(header_functions))
    at = []
    for o in objects:
        for e in o["entries"]:
            if e["value"]["kind"] == "function":
                at.append({"id": e["value"]["id"], "context": "init",
                           "where": {"object": o["id"], "path": e["path"]},
                           "file": o["file"], "line": 2})
    for s in stores:
        if s["value"]["kind"] == "function":
            at.append({"id": s["value"]["id"], "context": "store",
                       "where": {"target": s["target"]}, "file": file, "line": 30})
    for fid in taken:
        at.append({"id": fid, "context": "arg", "where": {"callee": None, "index": 1},
                   "file": file, "line": 40})
    doc["address_taken"] = at
    return doc


def run(*docs: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any],
                                         dict[str, Any]]:
    linked = link_documents(docs)
    graph, sites, metrics = resolve_linked(linked)
    return linked, graph, sites, metrics


def bare(fallbacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A site's fallbacks without the origins (tested on their own)."""
    return [{k: v for k, v in f.items() if k != "origin"} for f in fallbacks]


def site_of(sites: list[dict[str, Any]], expr: str) -> dict[str, Any]:
    found = [s for s in sites if s["expr"] == expr]
    assert len(found) == 1, (expr, [s["expr"] for s in sites])
    return found[0]


# ---- the map/ops pattern used by several tests -------------------------------------------------

MAP_LOOKUP = [["struct map_ops", "lookup"], ["struct map", "ops"]]


def map_tu(extra_stores: list[dict[str, Any]] = (), copies: list[dict[str, Any]] = (),
           extra_objects: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """::

      struct map_ops { void *(*lookup)(struct map *, void *); void *(*peek)(...); };
      struct seq_ops { void *(*start)(struct map *, void *); };
      static const struct map_ops array_ops = { .lookup = array_lookup, .peek = array_peek };
      const struct map_ops hash_ops = { .lookup = hash_lookup };
      static const struct map_ops decoy_ops = { .lookup = decoy_lookup };  // never a map's ops
      static const struct seq_ops seq = { .start = seq_start };
      static struct map the_map = { .ops = &array_ops };
      void map_init(struct map *m) { m->ops = &hash_ops; }
      void *lookup(struct map *map, void *k) { return map->ops->lookup(map, k); }
      void *lookup1(const struct map_ops *ops, ...) { return ops->lookup(map, k); }
    """
    funcs = [fn(n, linkage="internal", type=LOOKUP_T)
             for n in ("array_lookup", "array_peek", "decoy_lookup", "seq_start")]
    funcs += [fn("hash_lookup", type=LOOKUP_T),
              fn("map_init", type="void (struct map *)"),
              fn("lookup", type=LOOKUP_T, calls=[icall(LOOKUP_T, MAP_LOOKUP,
                                                       expr="map->ops->lookup")]),
              fn("lookup1", type=LOOKUP_T, calls=[icall(LOOKUP_T, MAP_LOOKUP[:1],
                                                        expr="ops->lookup", line=21)])]
    objects = [
        obj("array_ops@a.c", "const struct map_ops",
            [([["struct map_ops", "lookup"]], F("array_lookup@a.c")),
             ([["struct map_ops", "peek"]], F("array_peek@a.c"))]),
        obj("hash_ops", "const struct map_ops",
            [([["struct map_ops", "lookup"]], F("hash_lookup"))]),
        obj("decoy_ops@a.c", "const struct map_ops",
            [([["struct map_ops", "lookup"]], F("decoy_lookup@a.c"))]),
        obj("seq@a.c", "const struct seq_ops",
            [([["struct seq_ops", "start"]], F("seq_start@a.c"))]),
        obj("the_map@a.c", "struct map", [([["struct map", "ops"]], OBJ("array_ops@a.c"))]),
        *extra_objects,
    ]
    stores = [store(OBJ("hash_ops"), layers=[["struct map", "ops"]], function="map_init"),
              *extra_stores]
    return tu("a.c", funcs, objects=objects, stores=stores, copies=list(copies))


def test_decoy_ops_table_is_excluded():
    _, _, sites, _ = run(map_tu())
    s = site_of(sites, "map->ops->lookup")
    assert s["targets"] == ["array_lookup@a.c", "hash_lookup"]
    assert s["resolution"] == "field" and s["trusted_layers"] == 2
    # The type layer alone: every address-taken function of this type.
    assert s["type_layer_count"] == 5
    # One layer only (a parameter of the ops type): every .lookup, still no peek/seq_start.
    s1 = site_of(sites, "ops->lookup")
    assert s1["targets"] == ["array_lookup@a.c", "decoy_lookup@a.c", "hash_lookup"]
    assert s1["resolution"] == "field"


def test_copy_of_same_record_reads_layer_wide():
    """``*m->ops_rw = decoy_ops``: a same-type copy may put the decoy's slots into a map's table."""
    copy = {"dst_type": "struct map_ops", "src_type": "struct map_ops", "src": OBJ("decoy_ops@a.c"),
            "function": "map_init", "file": "a.c", "line": 50}
    _, _, sites, _ = run(map_tu(copies=[copy]))
    assert site_of(sites, "map->ops->lookup")["targets"] == [
        "array_lookup@a.c", "decoy_lookup@a.c", "hash_lookup"]


def test_copy_from_other_type_untrusts_the_layer():
    copy = {"dst_type": "struct map_ops", "src_type": None, "src": NC("param", "buf"),
            "function": "map_init", "file": "a.c", "line": 50}
    _, _, sites, metrics = run(map_tu(copies=[copy]))
    s = site_of(sites, "map->ops->lookup")
    assert s["resolution"] == "type" and s["trusted_layers"] == 0
    assert s["fallbacks"][0] == {"layer": ["struct map_ops", "lookup"],
                                 "reason": "copy-other-type", "origin": {
                                     "reason": "copy-other-type", "file": "a.c", "line": 50,
                                     "function": "map_init", "source": "param: buf",
                                     "record": "struct map_ops"}}
    assert s["targets"] == ["array_lookup@a.c", "array_peek@a.c", "decoy_lookup@a.c",
                            "hash_lookup", "seq_start@a.c"]
    assert metrics["fallbacks"]["fallback:copy-other-type"] == 2


@pytest.mark.parametrize(("view", "untrusted"), [
    ("void **", True), ("unsigned long *", True), ("void (**)(void)", True),
    ("void *const *", False), ("const unsigned long *", False), ("char *", False)])
def test_record_read_as_words_is_not_confined(view: str, untrusted: bool):
    """``void **pp = (void **)ops; *pp = *inherit;`` (ata_finalize_port_ops) writes slots by
    no name; a read-only view or a byte view (memset, checksums) does not."""
    doc = map_tu()
    doc["casts"] = [{"from": "struct map_ops *", "to": view, "from_record": "struct map_ops",
                     "to_record": None, "function": "map_init", "file": "a.c", "line": 60}]
    _, _, sites, _ = run(doc)
    s = site_of(sites, "map->ops->lookup")
    if untrusted:
        assert s["resolution"] == "type"
        assert bare(s["fallbacks"])[0] == {"layer": ["struct map_ops", "lookup"],
                                           "reason": "word-view"}
        assert s["fallbacks"][0]["origin"] == {
            "reason": "word-view", "file": "a.c", "line": 60, "function": "map_init",
            "cast": f"struct map_ops * -> {view}", "record": "struct map_ops"}
    else:
        assert s["targets"] == ["array_lookup@a.c", "hash_lookup"]
    # The other direction: pointers kept in a 'void **' array read as the record are the
    # same pun; 'unsigned long priv[]' storage read as it (hcd_to_xhci) is its own memory.
    doc["casts"][0].update({"from": view, "to": "struct map_ops *", "from_record": None,
                            "to_record": "struct map_ops"})
    _, _, sites, _ = run(doc)
    assert (site_of(sites, "map->ops->lookup")["resolution"] == "type") is (
        untrusted and "**" in view)


@pytest.mark.parametrize(("other", "untrusted"), [
    ([64, 64, "struct index_key", "ops", True, "rec"], True),
    ([64, 64, "struct index_key", "cookie", False, "word"], True),
    ([64, 64, "struct index_key", "free", True, "fn"], False),  # no object in a fn pointer
    ([64, 32, "struct index_key", "data", False, "ptr"], False),
    ([64, 64, "struct index_key", "len", False, "int"], False),
    ([64, 64, "struct map", "ops", True, "rec"], False)])  # the same slot: nothing new
def test_union_member_laid_over_a_slot(other: list[Any], untrusted: bool):
    """``union { struct index_key ik; struct { long h; const struct map_ops *ops; }; }``
    inside struct map: a write to ``ik.ops`` is a write to ``map->ops``."""
    doc = map_tu()
    doc["layouts"] = {"overlay:struct map::(anonymous union at a.h:3:2)": {"leaves": [
        [0, 64, "struct map", "h", False, "int"], [0, 64, "struct index_key", "h", False, "int"],
        [64, 64, "struct map", "ops", True, "rec"], other]}}
    _, _, sites, _ = run(doc)
    s = site_of(sites, "map->ops->lookup")
    if untrusted:
        assert bare(s["fallbacks"]) == [{"layer": ["struct map", "ops"], "reason": "union-overlay"}]
        assert s["targets"] == ["array_lookup@a.c", "decoy_lookup@a.c", "hash_lookup"]
    else:
        assert s["fallbacks"] == [] and s["targets"] == ["array_lookup@a.c", "hash_lookup"]


def test_nonconst_store_into_outer_layer_falls_back_to_inner():
    """``m->ops = ops_param;``: (struct map, ops) escapes, (struct map_ops, lookup) still holds."""
    _, _, sites, metrics = run(map_tu(extra_stores=[
        store(NC("param", "ops"), layers=[["struct map", "ops"]], function="map_set_ops")]))
    s = site_of(sites, "map->ops->lookup")
    assert s["targets"] == ["array_lookup@a.c", "decoy_lookup@a.c", "hash_lookup"]
    assert s["resolution"] == "field" and s["trusted_layers"] == 1
    assert bare(s["fallbacks"]) == [{"layer": ["struct map", "ops"], "reason": "nonconst-store"}]
    assert metrics["fallbacks"] == {"fallback:nonconst-store": 1}


def test_opaque_object_makes_the_layer_unseen():
    """``m->ops = &asm_ops;`` where asm_ops has no facts (assembly, failed TU)."""
    _, _, sites, _ = run(map_tu(extra_stores=[
        store(OBJ("asm_ops"), layers=[["struct map", "ops"]], function="map_init")]))
    s = site_of(sites, "map->ops->lookup")
    assert s["fallbacks"] == [{"layer": ["struct map", "ops"], "reason": "opaque-object"}]
    assert s["targets"] == ["array_lookup@a.c", "decoy_lookup@a.c", "hash_lookup"]


def test_runtime_store_into_the_inner_slot_is_seen_through_every_table():
    """``map_ops_rw.lookup = late_lookup;`` (a run-time store into any map_ops)."""
    doc = map_tu(extra_stores=[store(F("late_lookup"), layers=[["struct map_ops", "lookup"]],
                                     function="late_init")])
    doc["functions"].append(fn("late_lookup", type=LOOKUP_T))
    _, _, sites, _ = run(doc)
    assert site_of(sites, "map->ops->lookup")["targets"] == [
        "array_lookup@a.c", "hash_lookup", "late_lookup"]


def test_setter_storing_a_parameter():
    """::

      struct nb { int (*call)(int); };
      void nb_register(struct nb *nb, int (*fn)(int)) { nb->call = fn; }
      nb_register(&x, a_cb); nb_register(&y, b_cb);
      static struct nb z = { .call = c_cb };
      struct other { int (*g)(int); };  static struct other o = { .g = unrelated };
      int fire(struct nb *nb) { return nb->call(1); }
    """
    funcs = [fn(n, type=INT_T) for n in ("a_cb", "b_cb", "c_cb", "unrelated")]
    funcs += [fn("nb_register", type="void (struct nb *, int (*)(int))"),
              fn("fire", type="int (struct nb *)",
                 calls=[icall(INT_T, [["struct nb", "call"]], expr="nb->call")])]
    doc = tu("a.c", funcs,
             objects=[obj("z@a.c", "struct nb", [([["struct nb", "call"]], F("c_cb"))]),
                      obj("o@a.c", "struct other", [([["struct other", "g"]], F("unrelated"))])],
             stores=[store(NC("param", "fn"), layers=[["struct nb", "call"]],
                           function="nb_register")],
             taken=["a_cb", "b_cb"])
    _, _, sites, _ = run(doc)
    s = site_of(sites, "nb->call")
    assert {"a_cb", "b_cb", "c_cb"} <= set(s["targets"])
    assert s["targets"] == ["a_cb", "b_cb", "c_cb", "unrelated"]  # the type layer
    assert s["resolution"] == "type"
    assert bare(s["fallbacks"]) == [{"layer": ["struct nb", "call"], "reason": "nonconst-store"}]


def test_record_cast_untrusts_both_records():
    """::

      struct A { void (*fn)(void); };  struct B { void (*fn)(void); };  // same layout
      static struct A a_obj = { .fn = fa };  struct C { void (*fn)(void); } c_obj = { .fn = fc };
      void poke(struct A *a) { struct B *b = (struct B *)a; b->fn = fb; }
      void run_a(struct A *a) { a->fn(); }     void run_c(struct C *c) { c->fn(); }
    """
    funcs = [fn(n) for n in ("fa", "fb", "fc")]
    funcs += [fn("poke", type="void (struct A *)"),
              fn("run_a", type="void (struct A *)",
                 calls=[icall(VOID_T, [["struct A", "fn"]], expr="a->fn")]),
              fn("run_c", type="void (struct C *)",
                 calls=[icall(VOID_T, [["struct C", "fn"]], expr="c->fn")])]
    cast = {"from": "struct A *", "to": "struct B *", "from_record": "struct A",
            "to_record": "struct B", "function": "poke", "file": "a.c", "line": 60}
    void_cast = {"from": "struct C *", "to": "void *", "from_record": "struct C",
                 "to_record": None, "function": "poke", "file": "a.c", "line": 61}
    doc = tu("a.c", funcs,
             objects=[obj("a_obj@a.c", "struct A", [([["struct A", "fn"]], F("fa"))]),
                      obj("c_obj", "struct C", [([["struct C", "fn"]], F("fc"))])],
             stores=[store(F("fb"), layers=[["struct B", "fn"]], function="poke")],
             casts=[cast, void_cast])
    _, _, sites, _ = run(doc)
    s = site_of(sites, "a->fn")
    assert s["targets"] == ["fa", "fb", "fc"]
    assert s["resolution"] == "type"
    assert bare(s["fallbacks"]) == [{"layer": ["struct A", "fn"], "reason": "record-cast"}]
    # A cast to void* is not a record-to-record cast: struct C stays confined.
    c = site_of(sites, "c->fn")
    assert c["targets"] == ["fc"] and c["resolution"] == "field"


def test_positional_and_nested_anonymous_initializers():
    """::

      struct drv { const char *name; struct { int (*probe)(int); int (*remove)(int); } ops; };
      static struct drv d1 = { "d1", { d1_probe, d1_remove } };          // positional
      static struct drv d2 = { .ops = { .probe = d2_probe } };            // nested designated
      struct bus { struct drv drv; };                                      // drv embedded
      static struct bus b1 = { .drv = { .ops = { .probe = b1_probe } } };
      struct other { int (*probe)(int); } o = { other_probe };            // decoy, same type
      d->ops.probe(1);  bus->drv.ops.probe(1);  d->ops.remove(1);
    """
    anon = "struct drv::ops"
    funcs = [fn(n, type=INT_T, linkage="internal")
             for n in ("d1_probe", "d1_remove", "d2_probe", "b1_probe", "other_probe")]
    funcs.append(fn("use", calls=[
        icall(INT_T, [[anon, "probe"], ["struct drv", "ops"]], expr="d->ops.probe"),
        icall(INT_T, [[anon, "probe"], ["struct drv", "ops"], ["struct bus", "drv"]],
              expr="bus->drv.ops.probe", line=21),
        icall(INT_T, [[anon, "remove"], ["struct drv", "ops"]], expr="d->ops.remove", line=22),
    ]))
    doc = tu("a.c", funcs, objects=[
        obj("d1@a.c", "struct drv", [([["struct drv", "ops"], [anon, "probe"]], F("d1_probe@a.c")),
                                    ([["struct drv", "ops"], [anon, "remove"]],
                                     F("d1_remove@a.c"))]),
        obj("d2@a.c", "struct drv", [([["struct drv", "ops"], [anon, "probe"]],
                                      F("d2_probe@a.c"))]),
        obj("b1@a.c", "struct bus", [([["struct bus", "drv"], ["struct drv", "ops"],
                                       [anon, "probe"]], F("b1_probe@a.c"))]),
        obj("o", "struct other", [([["struct other", "probe"]], F("other_probe@a.c"))]),
    ])
    _, _, sites, _ = run(doc)
    assert site_of(sites, "d->ops.probe")["targets"] == [
        "b1_probe@a.c", "d1_probe@a.c", "d2_probe@a.c"]
    # Through the bus: only the probe inside a bus's drv.
    assert site_of(sites, "bus->drv.ops.probe")["targets"] == ["b1_probe@a.c"]
    assert site_of(sites, "d->ops.remove")["targets"] == ["d1_remove@a.c"]


def test_array_of_structs_and_designated_array_indices():
    """``static const struct handler tbl[] = { [0] = { .fn = h0 }, [3] = { .fn = h3 } };``
    ``tbl[i].fn(x)`` and ``h->fn(x)``, with a decoy of the same type elsewhere."""
    funcs = [fn(n, type=INT_T) for n in ("h0", "h3", "decoy")]
    funcs.append(fn("use", calls=[
        icall(INT_T, [["struct handler", "fn"]], base_kind="array", base_id="tbl@a.c",
              subscript=True, expr="tbl[i].fn"),
        icall(INT_T, [["struct handler", "fn"]], expr="h->fn", line=21)]))
    doc = tu("a.c", funcs, objects=[
        obj("tbl@a.c", "const struct handler[4]",
            [([["[]", 0], ["struct handler", "fn"]], F("h0")),
             ([["[]", 3], ["struct handler", "fn"]], F("h3"))]),
        obj("x", "struct handler", [([["struct handler", "fn"]], F("h0"))]),
        obj("y", "struct notahandler", [([["struct notahandler", "fn"]], F("decoy"))]),
    ])
    _, _, sites, _ = run(doc)
    s = site_of(sites, "tbl[i].fn")
    assert s["targets"] == ["h0", "h3"] and s["resolution"] == "array"
    assert site_of(sites, "h->fn")["targets"] == ["h0", "h3"]


def test_function_pointer_variables_and_arrays():
    """::

      static int (*hook)(int) = hook_a;          void set(void) { hook = hook_b; }
      int (*table[])(int) = { t0, t1, [5] = t5 };
      static int (*bad)(int);   void setbad(int (*f)(int)) { bad = f; }
      extern int (*elsewhere)(int);              // no facts at all
      hook(1); table[i](1); bad(1); elsewhere(1); local_fp(1);
      int unrelated(int) -- address taken, same type: only in the type layer
    """
    names = ("hook_a", "hook_b", "t0", "t1", "t5", "unrelated")
    funcs = [fn(n, type=INT_T) for n in names]
    funcs.append(fn("use", calls=[
        icall(INT_T, base_kind="static", base_id="hook@a.c", expr="hook"),
        icall(INT_T, base_kind="array", base_id="table", subscript=True, expr="table[i]",
              line=21),
        icall(INT_T, base_kind="static", base_id="bad@a.c", expr="bad", line=22),
        icall(INT_T, base_kind="global", base_id="elsewhere", expr="elsewhere", line=23),
        icall(INT_T, base_kind="local", expr="local_fp", line=24),
    ]))
    doc = tu("a.c", funcs, objects=[
        obj("hook@a.c", "int (*)(int)", [([], F("hook_a"))]),
        obj("table", "int (*[6])(int)", [([["[]", 0]], F("t0")), ([["[]", 1]], F("t1")),
                                         ([["[]", 5]], F("t5"))]),
    ], stores=[store(F("hook_b"), var="hook@a.c", function="set"),
               store(NC("param", "f"), var="bad@a.c", function="setbad")],
        taken=["unrelated"])
    _, _, sites, metrics = run(doc)
    everything = sorted(names)
    assert site_of(sites, "hook")["targets"] == ["hook_a", "hook_b"]
    assert site_of(sites, "hook")["resolution"] == "var"
    assert site_of(sites, "table[i]")["targets"] == ["t0", "t1", "t5"]
    assert site_of(sites, "table[i]")["resolution"] == "array"
    bad = site_of(sites, "bad")
    assert bad["targets"] == everything and bad["resolution"] == "type"
    assert bare(bad["fallbacks"]) == [{"var": "bad@a.c", "reason": "nonconst-store"}]
    assert site_of(sites, "elsewhere")["fallbacks"] == [{"var": "elsewhere",
                                                         "reason": "opaque-var"}]
    loc = site_of(sites, "local_fp")
    assert loc["targets"] == everything
    assert loc["fallbacks"] == [{"reason": "no-layers:local"}]
    assert metrics["rule_counts"] == {"array": 1, "type": 3, "var": 1}
    assert metrics["type_layer"]["mean"] == 6.0
    assert metrics["targets"]["max"] == 6 and metrics["targets"]["median"] == 6.0
    assert metrics["targets"]["mean"] == pytest.approx((2 + 3 + 6 * 3) / 5, abs=1e-3)


def test_pointer_variable_as_root_of_a_layer():
    """``static const struct map_ops *cur = &array_ops; cur->lookup(m, k);``"""
    doc = map_tu(extra_objects=[obj("cur@a.c", "const struct map_ops *",
                                    [([], OBJ("array_ops@a.c"))])])
    doc["functions"].append(fn("use", calls=[icall(
        LOOKUP_T, [["struct map_ops", "lookup"]], base_kind="static", base_id="cur@a.c",
        expr="cur->lookup", line=70)]))
    _, _, sites, _ = run(doc)
    s = site_of(sites, "cur->lookup")
    assert s["targets"] == ["array_lookup@a.c"] and s["resolution"] == "var"


def test_local_with_a_layered_definition():
    """``const struct map_ops *ops = map->ops; ops->lookup(map, k);`` (layers appended)."""
    doc = map_tu()
    doc["functions"].append(fn("use", calls=[icall(LOOKUP_T, MAP_LOOKUP, base_kind="param",
                                                   expr="ops->lookup (ops = map->ops)",
                                                   line=80)]))
    _, _, sites, _ = run(doc)
    assert site_of(sites, "ops->lookup (ops = map->ops)")["targets"] == [
        "array_lookup@a.c", "hash_lookup"]


def test_union_members_alias():
    """::

      union cb { void (*a)(void); void (*b)(void); };
      struct w { union cb cb; };
      void set(struct w *w) { w->cb.a = via_a; }
      void fire(struct w *w) { w->cb.b(); }
    """
    funcs = [fn("via_a"), fn("decoy"), fn("fire", calls=[icall(
        VOID_T, [["union cb", "b"], ["struct w", "cb"]], expr="w->cb.b")])]
    doc = tu("a.c", funcs,
             objects=[obj("d", "struct other", [([["struct other", "b"]], F("decoy"))])],
             stores=[store(F("via_a"), layers=[["union cb", "a"], ["struct w", "cb"]])])
    _, _, sites, _ = run(doc)
    assert site_of(sites, "w->cb.b")["targets"] == ["via_a"]


def test_nonconst_initializer_entry_untrusts():
    funcs = [fn("f1"), fn("f2"), fn("use", calls=[icall(VOID_T, [["struct s", "fn"]],
                                                        expr="s->fn")])]
    doc = tu("a.c", funcs, objects=[
        obj("s1", "struct s", [([["struct s", "fn"]], F("f1"))]),
        obj("s2", "struct s", [([["struct s", "fn"]], NC("other", "(void *)&x.y"))]),
    ], taken=["f2"])
    _, _, sites, _ = run(doc)
    s = site_of(sites, "s->fn")
    assert s["targets"] == ["f1", "f2"]
    assert bare(s["fallbacks"]) == [{"layer": ["struct s", "fn"], "reason": "nonconst-init"}]


# ---- linking ----------------------------------------------------------------------------------

def test_two_statics_with_one_name_in_two_files():
    """``static int helper(int)`` in a.c and in b.c; each file's ops table and caller."""
    a = tu("a.c", [fn("helper", "a.c", linkage="internal", type=INT_T),
                   fn("fa", "a.c", calls=[dcall("helper@a.c", file="a.c")]),
                   fn("run_a", "a.c", calls=[icall(INT_T, [["struct ops", "fn"]],
                                                   expr="o->fn", file="a.c")])],
           objects=[obj("ops_a@a.c", "struct ops", [([["struct ops", "fn"]], F("helper@a.c"))])])
    b = tu("b.c", [fn("helper", "b.c", linkage="internal", type=INT_T),
                   fn("fb", "b.c", calls=[dcall("helper@b.c", file="b.c")])],
           objects=[obj("ops_b@b.c", "struct ops", [([["struct ops", "fn"]], F("helper@b.c"))],
                        file="b.c")])
    linked, graph, sites, _ = run(a, b)
    ids = {n["id"]: n for n in linked["nodes"]}
    assert ids["helper@a.c"]["file"] == "a.c" and ids["helper@b.c"]["file"] == "b.c"
    assert ids["helper@a.c"]["linkage"] == "internal" and ids["helper@a.c"]["defined"]
    edges = {(e["src"], e["dst"]) for e in linked["direct_edges"]}
    assert edges == {("fa", "helper@a.c"), ("fb", "helper@b.c")}
    assert site_of(sites, "o->fn")["targets"] == ["helper@a.c", "helper@b.c"]
    assert linked["duplicates"] == []


def test_header_static_inline_used_by_several_tus():
    """``static inline int hinl(int)`` in include/linux/h.h, called from a.c and b.c, calling
    ``ext`` itself: one node, one body, edges from both TUs."""
    hid = "hinl@include/linux/h.h"
    hdoc = {"schema": FACTS_SCHEMA, "kind": "header_function", "key": "k1",
            "function": fn("hinl", "include/linux/h.h", linkage="internal", type=INT_T,
                           calls=[dcall("ext", file="include/linux/h.h", line=3)]),
            "header_functions": [], "stores": [], "copies": [], "casts": [],
            "address_taken": []}
    a = tu("a.c", [fn("fa", "a.c", calls=[dcall(hid, file="a.c")])], header_functions=["k1"])
    # b.c was parsed in another run: it names another document of the same function
    # (pipeline.parse.header_context), which says the same.
    b = tu("b.c", [fn("fb", "b.c", calls=[dcall(hid, file="b.c", line=7)])],
           header_functions=["k2"])
    ext = tu("c.c", [fn("ext", "c.c", type=INT_T)])
    linked, graph, _, _ = run(a, b, ext, hdoc, {**hdoc, "key": "k2"})
    hnodes = [n for n in linked["nodes"] if n["name"] == "hinl"]
    assert len(hnodes) == 1 and hnodes[0]["id"] == hid and hnodes[0]["defined"]
    assert linked["counts"]["header_functions"] == 1  # functions, not documents
    assert hnodes[0]["file"] == "include/linux/h.h"
    assert [(e["src"], e["dst"], e["callsites"]) for e in linked["direct_edges"]] == [
        ("fa", hid, ["a.c:10:3"]), ("fb", hid, ["b.c:7:3"]),
        (hid, "ext", ["include/linux/h.h:3:3"])]
    g = nx.node_link_graph(graph, edges="edges")
    assert set(g.predecessors(hid)) == {"fa", "fb"}


def test_weak_loses_to_strong():
    """``__weak void arch_setup(void)`` in kernel/setup.c, strong one in arch/x86/setup.c."""
    weak = tu("kernel/setup.c", [
        fn("arch_setup", "kernel/setup.c", linkage="weak", calls=[dcall("weak_only")]),
        fn("start", "kernel/setup.c", calls=[dcall("arch_setup", file="kernel/setup.c")])])
    strong = tu("arch/x86/setup.c", [fn("arch_setup", "arch/x86/setup.c", line=9,
                                        calls=[dcall("x86_only", file="arch/x86/setup.c")])])
    for order in ((weak, strong), (strong, weak)):
        linked, _, _, _ = run(*order)
        ids = {n["id"]: n for n in linked["nodes"]}
        assert ids["arch_setup"]["file"] == "arch/x86/setup.c"
        assert ids["arch_setup"]["linkage"] == "external"
        edges = {(e["src"], e["dst"]) for e in linked["direct_edges"]}
        # The weak body is not in the image: its calls are gone.
        assert edges == {("start", "arch_setup"), ("arch_setup", "x86_only")}
        assert len(linked["duplicates"]) == 1
        dup = linked["duplicates"][0]
        assert dup["id"] == "arch_setup" and not dup["strong_conflict"]
        assert dup["dropped"][0]["file"] == "kernel/setup.c"
        assert dup["dropped"][0]["linkage"] == "weak"


def test_two_strong_definitions_keep_a_deterministic_winner():
    boot = tu("arch/x86/boot/string.c", [fn("memcmp", "arch/x86/boot/string.c", type=INT_T)])
    lib = tu("lib/string.c", [fn("memcmp", "lib/string.c", type=INT_T, line=50)])
    other = tu("z/string.c", [fn("memcmp", "z/string.c", type=INT_T)])
    for order in ((boot, lib, other), (other, lib, boot)):
        linked, _, _, _ = run(*order)
        ids = {n["id"]: n for n in linked["nodes"]}
        assert ids["memcmp"]["file"] == "lib/string.c"  # in the image, first by path
        (dup,) = linked["duplicates"]
        assert dup["strong_conflict"]
        assert [d["file"] for d in dup["dropped"]] == ["z/string.c", "arch/x86/boot/string.c"]
        assert linked["counts"]["strong_duplicates"] == 1


def test_undefined_callees_builtins_and_failed_tus():
    a = tu("a.c", [fn("f", calls=[dcall("asm_entry"), dcall("__builtin_memcpy", line=11),
                                  dcall("__atomic_load_n", line=12),
                                  dcall("noproto", line=13) | {"builtin": True},
                                  dcall("g", line=14)]),
                   fn("g")],
           objects=[obj("t", "struct ops", [([["struct ops", "fn"]], F("asm_handler"))])])
    failed = {"kind": "tu", "file": "broken.c", "status": "failed", "error": "timeout"}
    linked, graph, _, _ = run(a, failed)
    ids = {n["id"]: n for n in linked["nodes"]}
    assert ids["asm_entry"]["defined"] is False and ids["asm_entry"]["name"] == "asm_entry"
    assert ids["asm_handler"]["defined"] is False  # address-taken, defined nowhere
    assert not any(k.startswith("__") or k == "noproto" for k in ids)
    assert {(e["src"], e["dst"]) for e in linked["direct_edges"]} == {("f", "asm_entry"),
                                                                       ("f", "g")}
    assert linked["counts"]["builtin_calls_skipped"] == 3
    assert linked["counts"]["tus_failed"] == 1 and linked["counts"]["tus"] == 2
    assert linked["failed_tus"] == [{"file": "broken.c", "error": "timeout"}]


def test_same_static_from_two_tus_unites_calls_and_facts_dedupe():
    """lib/x.c ``#include``d by two TUs: one function, calls united, facts deduplicated."""
    body1 = fn("inc", "lib/x.c", linkage="internal", calls=[dcall("a1", file="lib/x.c")])
    body2 = fn("inc", "lib/x.c", linkage="internal", calls=[dcall("a1", file="lib/x.c"),
                                                           dcall("a2", file="lib/x.c", line=12)])
    o = obj("tab@lib/x.c", "struct ops", [([["struct ops", "fn"]], F("inc@lib/x.c"))],
            file="lib/x.c")
    t1 = tu("one.c", [body1], objects=[o])
    t2 = tu("two.c", [body2], objects=[o])
    linked, _, _, _ = run(t1, t2)
    assert [e["dst"] for e in linked["direct_edges"]] == ["a1", "a2"]
    assert len(linked["objects"]) == 1 and len(linked["address_taken"]) == 1


def test_graph_has_direct_and_indirect_edges():
    linked, graph, sites, metrics = run(map_tu())
    g = nx.node_link_graph(graph, edges="edges")
    assert g.is_multigraph() and g.is_directed()
    kinds = {(u, v, k) for u, v, k in g.edges(keys=True)}
    assert ("lookup", "hash_lookup", "indirect") in kinds
    data = g.get_edge_data("lookup", "hash_lookup")["indirect"]
    assert data["callsites"] == ["a.c:20:9"] and data["kind"] == "indirect"
    node = g.nodes["hash_lookup"]
    assert set(node) == {"name", "file", "line", "linkage", "defined", "type", "attrs",
                         "section", "bpf_kfunc"}
    assert metrics["sites"] == 2 and metrics["graph"]["indirect_edges"] == 5


# ---- the stages through the runner ---------------------------------------------------------------

def _fake_parse(out: Path, docs: list[dict[str, Any]]) -> None:
    """parse.json + a gzip facts store, as the parse stage lays them out."""
    store = out / "store"
    tus = []
    for i, d in enumerate(docs):
        key = f"{i:02d}" + "ab" * 31
        p = store / key[:2] / f"{key}.json.gz"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(gzip.compress(json.dumps(d).encode()))
        tus.append({"file": d["file"], "key": key, "status": d["status"], "error": None,
                    "cached": False})
    tus.append({"file": "broken.c", "key": None, "status": "failed", "error": "segfault",
                "cached": False})
    index = {"schema": FACTS_SCHEMA, "store": str(store), "source_root": str(out),
             "build_root": None, "tus": tus, "header_functions": [], "counts": {}}
    (out / "parse.json").write_text(json.dumps(index))
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    (out / "manifests" / "parse.json").write_text(json.dumps({"outputs": {"parse.json": "x"}}))


def test_stages_write_their_files(tmp_path: Path):
    from pipeline import link, resolve
    from pipeline.fsutil import read_json

    _fake_parse(tmp_path, [map_tu()])
    ctx = Context(out=tmp_path, config=None, jobs=1, progress=False)
    rows = run_stages(ctx, [link.STAGE, resolve.STAGE], log=lambda s: None)
    assert [r[0] for r in rows] == ["link", "resolve"]
    linked = read_json(tmp_path / "linked.json.gz")
    assert linked["counts"]["tus_failed"] == 1
    icalls = read_json(tmp_path / "icalls.json")
    assert [s["expr"] for s in icalls] == ["map->ops->lookup", "ops->lookup"]
    assert icalls[0]["targets"] == ["array_lookup@a.c", "hash_lookup"]
    assert set(icalls[0]) >= {"caller", "file", "line", "column", "expr", "fn_type", "layers",
                              "resolution", "targets", "type_layer_count"}
    metrics = read_json(tmp_path / "metrics.json")
    assert metrics["sites"] == 2 and metrics["tus_failed"] == 1
    graph = read_json(tmp_path / "graph.json.gz")
    assert nx.node_link_graph(graph, edges="edges").number_of_nodes() == len(linked["nodes"])
    # A second run with nothing changed skips both; resolve alone re-reads linked.json.gz.
    rows = run_stages(Context(out=tmp_path, config=None, jobs=1, progress=False),
                      [link.STAGE, resolve.STAGE], log=lambda s: None)
    assert [r[1] for r in rows] == ["skipped", "skipped"]
    rows = run_stages(Context(out=tmp_path, config=None, jobs=1, progress=False, force=True),
                      [resolve.STAGE], log=lambda s: None)
    assert read_json(tmp_path / "icalls.json") == icalls


# ---- slots the facts cannot see whole ----------------------------------------------------------

SEQ_T = "void *(struct seq_file *, long *)"


def seq_tu(private_entries: list[tuple[list[list[Any]], dict[str, Any]]]) -> dict[str, Any]:
    """::

      struct seq_operations { void *(*start)(struct seq_file *, long *); };
      static const struct seq_operations sa = { .start = start_a }, sb = { .start = start_b };
      void seq_setup(struct seq_file *s) { s->op = &sa; }     // sb is never a seq_file's op
      ssize_t rd(struct file *file) { struct seq_file *seq = file->private_data;  // void *
                                      return seq->op->start(seq, 0); }
    """
    funcs = [fn("start_a", type=SEQ_T), fn("start_b", type=SEQ_T),
             fn("rd", calls=[icall(SEQ_T, [["struct seq_operations", "start"],
                                           ["struct seq_file", "op"],
                                           ["struct file", "private_data"]],
                                   expr="seq->op->start")])]
    objects = [obj("sa", "const struct seq_operations",
                   [([["struct seq_operations", "start"]], F("start_a"))]),
               obj("sb", "const struct seq_operations",
                   [([["struct seq_operations", "start"]], F("start_b"))])]
    if private_entries:
        objects.append(obj("a_file", "struct file", private_entries))
        objects.append(obj("other", "struct other", [([["struct other", "x"]], {"kind": "null"})]))
    return tu("a.c", funcs, objects=objects,
              stores=[store(OBJ("sa"), layers=[["struct seq_file", "op"]], function="seq_setup")])


def test_void_pointer_layer_without_facts_is_unseen():
    _, _, sites, metrics = run(seq_tu([]))
    s = site_of(sites, "seq->op->start")
    assert s["fallbacks"] == [{"layer": ["struct file", "private_data"], "reason": "unseen-slot"}]
    assert s["targets"] == ["start_a"] and s["trusted_layers"] == 2
    assert metrics["fallbacks"] == {"fallback:unseen-slot": 1}


def test_void_pointer_layer_holding_other_records_is_a_mismatch():
    _, _, sites, _ = run(seq_tu([([["struct file", "private_data"]], OBJ("other"))]))
    s = site_of(sites, "seq->op->start")
    assert s["fallbacks"] == [{"layer": ["struct file", "private_data"],
                               "reason": "slot-type-mismatch"}]
    assert s["targets"] == ["start_a"]


def test_innermost_slot_without_facts_falls_back_to_the_type_layer():
    """``((int (*)(int))obj->data)(x)``: the parser strips the cast; ``data`` is a ``void *``."""
    funcs = [fn("f1", type=INT_T), fn("use", calls=[icall(INT_T, [["struct obj", "data"]],
                                                          expr="obj->data")])]
    _, _, sites, _ = run(tu("a.c", funcs, taken=["f1"]))
    s = site_of(sites, "obj->data")
    assert s["targets"] == ["f1"] and s["resolution"] == "type"
    assert s["fallbacks"] == [{"layer": ["struct obj", "data"], "reason": "unseen-slot"}]


# ---- value flows -----------------------------------------------------------------------------------

def test_flow_from_a_variable_and_from_an_untrusted_field():
    """::

      static void (*default_cb)(void) = cb_default;     // a global function pointer
      void set1(struct a *a) { a->cb = default_cb; }     // (struct a, cb) gets cb_default
      void set2(struct b *b, void (*p)(void)) { b->cb = p; }
      void set3(struct c *c, struct b *b) { c->cb = b->cb; }  // from a tainted slot
      a->cb(); c->cb();
    """
    funcs = [fn("cb_default"), fn("cb_init"), fn("cb_param"), fn("use", calls=[
        icall(VOID_T, [["struct a", "cb"]], expr="a->cb"),
        icall(VOID_T, [["struct c", "cb"]], expr="c->cb", line=21)])]
    doc = tu("a.c", funcs, objects=[
        obj("default_cb@a.c", "void (*)(void)", [([], F("cb_default"))]),
        obj("a0", "struct a", [([["struct a", "cb"]], F("cb_init"))])],
        stores=[store({"kind": "nonconst", "what": "global", "id": "default_cb@a.c",
                       "text": "default_cb"}, layers=[["struct a", "cb"]], function="set1"),
                store(NC("param", "p"), layers=[["struct b", "cb"]], function="set2"),
                store({"kind": "nonconst", "what": "field", "layers": [["struct b", "cb"]],
                       "text": "cb"}, layers=[["struct c", "cb"]], function="set3")],
        taken=["cb_param"])
    _, _, sites, metrics = run(doc)
    assert site_of(sites, "a->cb")["targets"] == ["cb_default", "cb_init"]
    c = site_of(sites, "c->cb")
    assert bare(c["fallbacks"]) == [{"layer": ["struct c", "cb"], "reason": "flow-from-untrusted"}]
    # The origin is where the untrusted value entered (set2's store into struct b), not the
    # copy into struct c that carried it here.
    assert c["fallbacks"][0]["origin"] == {
        "reason": "nonconst-store", "value": "param: p", "file": "a.c", "line": 30,
        "function": "set2", "slot": ["struct b", "cb"]}
    assert c["targets"] == ["cb_default", "cb_init", "cb_param"]
    assert metrics["value_flows"] == 2


def test_function_stored_into_an_unnamed_slot_is_kept_by_field_walks():
    """``*(volatile typeof(t->fn) *)&t->fn = late;``: the store's slot is not named."""
    doc = map_tu()
    doc["functions"].append(fn("late_lookup", type=LOOKUP_T))
    doc["address_taken"].append({"id": "late_lookup", "context": "store",
                                 "where": {"target": {"other": "void *(*)(struct map *, void *)"}},
                                 "file": "a.c", "line": 90})
    _, _, sites, metrics = run(doc)
    assert site_of(sites, "map->ops->lookup")["targets"] == [
        "array_lookup@a.c", "hash_lookup", "late_lookup"]
    assert metrics["wild_functions"] == 1


def test_undefined_address_taken_functions_use_their_declared_type():
    """An assembly function in an ops table: typed by the address-taken fact if given, else
    in every type class (sound, counted)."""
    funcs = [fn("c_fn", type=INT_T), fn("use", calls=[
        icall(INT_T, expr="fp_int", base_kind="local"),
        icall(VOID_T, expr="fp_void", base_kind="local", line=21)])]
    doc = tu("a.c", funcs, objects=[obj("t", "struct ops", [
        ([["struct ops", "a"]], F("asm_typed")), ([["struct ops", "b"]], F("asm_untyped")),
        ([["struct ops", "c"]], F("c_fn"))])])
    for at in doc["address_taken"]:
        if at["id"] == "asm_typed":
            at["type"] = INT_T
    linked, _, sites, metrics = run(doc)
    assert site_of(sites, "fp_int")["targets"] == ["asm_typed", "asm_untyped", "c_fn"]
    assert site_of(sites, "fp_void")["targets"] == ["asm_untyped"]
    assert metrics["untyped_address_taken"] == 1
    assert {n["id"]: n["defined"] for n in linked["nodes"]}["asm_typed"] is False


def test_variable_root_must_hold_the_outer_record():
    """``static void *cookie = &some_other_obj; ((struct map_ops *)cookie)->lookup(...)``"""
    doc = map_tu(extra_objects=[obj("cookie@a.c", "void *", [([], OBJ("seq@a.c"))])])
    doc["functions"].append(fn("use", calls=[icall(
        LOOKUP_T, [["struct map_ops", "lookup"]], base_kind="static", base_id="cookie@a.c",
        expr="cookie->lookup", line=70)]))
    _, _, sites, _ = run(doc)
    s = site_of(sites, "cookie->lookup")
    assert s["fallbacks"] == [{"var": "cookie@a.c", "reason": "slot-type-mismatch"}]
    assert s["resolution"] == "field"
    assert s["targets"] == ["array_lookup@a.c", "decoy_lookup@a.c", "hash_lookup"]


# ---- static calls ------------------------------------------------------------------------------

def _static_call_site(name: str, fn_type: str, line: int) -> dict[str, Any]:
    c = icall(fn_type, base_kind="static_call", base_id=f"__SCK__{name}",
              expr=f"static_call({name})", line=line)
    c["base"]["name"] = name
    return c


TP_T = "int (void *, int)"      # __traceiter_x (6.1 trampolines return int)
PROBE_T = "void (void *, int)"  # the probes


def tracepoint_doc(*, rogue: bool = False) -> dict[str, Any]:
    """::

      DEFINE_STATIC_CALL(cond_resched, __cond_resched);     // __SCK__cond_resched.func
      static_call_update(cond_resched, __static_call_return0);
      DEFINE_STATIC_CALL_NULL(hook, void_fn);                // no facts, never updated here
      // tracepoint x (and y, same prototype): DEFINE_TRACE + TRACE_EVENT + a raw BPF map
      DEFINE_STATIC_CALL(tp_func_x, __traceiter_x);
      static struct trace_event_class event_class_t = { .probe = trace_event_raw_event_t,
          .perf_probe = perf_trace_t, .reg = trace_event_reg };
      static struct trace_event_call event_x = { .class = &event_class_t,
          { .tp = &__tracepoint_x } };
      static struct bpf_raw_event_map __bpf_trace_tp_map_x = { .tp = &__tracepoint_x,
          .bpf_func = __bpf_trace_t };
      register_trace_x(probe_x, NULL); register_trace_y(probe_y, NULL);
      static_call(cond_resched)(); static_call(tp_func_x)(data, 1); static_call(hook)();
      // rogue: tracepoint_probe_register(tp, fn, NULL), a registrar the model does not know
    """
    tec, cls, bmap = "struct trace_event_call", "struct trace_event_class", \
        "struct bpf_raw_event_map"
    reg_x, reg_y = "register_trace_x@inc.h", "register_trace_y@inc.h"
    funcs = [fn("__cond_resched", type="int (void)"), fn("__static_call_return0",
                                                          type="long (void)"),
             fn("other_int", type="int (void)"),
             fn("__traceiter_x", type=TP_T, calls=[icall(PROBE_T, base_kind="local",
                                                         expr="it_func", line=80)]),
             fn("__traceiter_y", type=TP_T)]
    funcs += [fn(n, linkage="internal", type=PROBE_T) for n in (
        "probe_x", "probe_y", "trace_event_raw_event_t", "perf_trace_t", "__bpf_trace_t",
        "unrelated_probe")]
    funcs += [fn("trace_event_reg", type="int (void *, int, void *)"),
              fn("tracepoint_probe_register", type="int (void *, void *, void *)"),
              fn("register_trace_x", "inc.h", linkage="internal",
                 calls=[dcall("tracepoint_probe_register")]),
              fn("register_trace_y", "inc.h", linkage="internal",
                 calls=[dcall("tracepoint_probe_register")]),
              fn("setup", calls=[dcall(reg_x, line=60), dcall(reg_y, line=61)]),
              fn("use", calls=[_static_call_site("cond_resched", "int (void)", 20),
                               _static_call_site("tp_func_x", TP_T, 21),
                               _static_call_site("hook", "int (void)", 22)])]
    if rogue:
        funcs.append(fn("rogue", calls=[dcall("tracepoint_probe_register")]))
    key = "struct static_call_key"
    doc = tu("a.c", funcs, objects=[
        obj("__SCK__cond_resched", key, [([[key, "func"]], F("__cond_resched"))]),
        obj("__SCK__tp_func_x", key, [([[key, "func"]], F("__traceiter_x"))]),
        obj("event_class_t@a.c", cls, [([[cls, "probe"]], F("trace_event_raw_event_t@a.c")),
                                       ([[cls, "perf_probe"]], F("perf_trace_t@a.c")),
                                       ([[cls, "reg"]], F("trace_event_reg"))]),
        obj("event_x@a.c", tec, [([[tec, "class"]], OBJ("event_class_t@a.c")),
                                 ([[tec, "tp"]], OBJ("__tracepoint_x"))]),
        obj("__bpf_trace_tp_map_x@a.c", bmap, [([[bmap, "tp"]], OBJ("__tracepoint_x")),
                                               ([[bmap, "bpf_func"]], F("__bpf_trace_t@a.c"))])],
        stores=[{"target": {"var": "__SCK__cond_resched", "static_call": True},
                 "value": F("__static_call_return0"), "function": "sched_dynamic_update",
                 "file": "a.c", "line": 50},
                {"target": {"var": f"{reg_x}#arg0", "param": True},
                 "value": F("probe_x@a.c"), "function": "setup", "file": "a.c", "line": 60},
                {"target": {"var": f"{reg_y}#arg0", "param": True},
                 "value": F("probe_y@a.c"), "function": "setup", "file": "a.c", "line": 61}],
        taken=["probe_x@a.c", "probe_y@a.c", "other_int", "unrelated_probe@a.c"])
    return doc


def test_static_calls():
    _, _, sites, metrics = run(tracepoint_doc())
    s = site_of(sites, "static_call(cond_resched)")
    # No type filter: __static_call_return0 (long) is a real target of the patched jump.
    assert s["targets"] == ["__cond_resched", "__static_call_return0"]
    assert s["resolution"] == "var" and s["fallbacks"] == []
    hook = site_of(sites, "static_call(hook)")
    assert hook["fallbacks"] == [{"var": "__SCK__hook", "reason": "opaque-var"}]
    assert hook["targets"] == ["__cond_resched", "__static_call_return0", "other_int"]


def test_tracepoint_static_call_reaches_its_registered_probes():
    _, _, sites, _ = run(tracepoint_doc())
    tp = site_of(sites, "static_call(tp_func_x)")
    # Its trampoline, the event class's probes, the raw BPF probe and register_trace_x's
    # argument; not probe_y (tracepoint y) nor unrelated_probe, though of the same type.
    assert tp["targets"] == ["__bpf_trace_t@a.c", "__traceiter_x", "perf_trace_t@a.c",
                             "probe_x@a.c", "trace_event_raw_event_t@a.c"]
    assert tp["resolution"] == "var" and tp["fallbacks"] == []
    # __traceiter_x's loop over the registered probes: the same probes, of the exact type.
    it = site_of(sites, "it_func")
    assert it["targets"] == ["__bpf_trace_t@a.c", "perf_trace_t@a.c", "probe_x@a.c",
                             "trace_event_raw_event_t@a.c"]
    assert it["resolution"] == "var"


def test_tracepoint_with_an_unknown_registrar_falls_back():
    _, _, sites, metrics = run(tracepoint_doc(rogue=True))
    tp = site_of(sites, "static_call(tp_func_x)")
    assert tp["fallbacks"] == [{"var": "__SCK__tp_func_x",
                                "reason": "tracepoint-registrar:rogue"}]
    assert "unrelated_probe@a.c" in tp["targets"] and "probe_y@a.c" in tp["targets"]
    assert "unrelated_probe@a.c" in site_of(sites, "it_func")["targets"]
    assert metrics["fallbacks"]["fallback:tracepoint-registrar:rogue"] == 1


def test_cond_syscall_stubs_are_weak():
    """kernel/sys_ni.c: ``COND_SYSCALL(socket)`` makes a ``__weak`` stub (the parser reads the
    attribute from the AST, see test_parse); the real syscall must win over it."""
    regs = "long (const struct pt_regs *)"
    stub = tu("kernel/sys_ni.c", [
        fn("__x64_sys_socket", "kernel/sys_ni.c", linkage="weak", type=regs,
           calls=[dcall("sys_ni_syscall")]),
        fn("sys_ni_syscall", "kernel/sys_ni.c", type="long (void)")])
    real = tu("net/socket.c", [fn("__x64_sys_socket", "net/socket.c", type=regs,
                                  calls=[dcall("__sys_socket", file="net/socket.c")])])
    linked, _, _, _ = run(stub, real)
    node = next(n for n in linked["nodes"] if n["id"] == "__x64_sys_socket")
    assert node["file"] == "net/socket.c"
    (dup,) = linked["duplicates"]
    assert not dup["strong_conflict"] and dup["dropped"][0]["linkage"] == "weak"
    assert {(e["src"], e["dst"]) for e in linked["direct_edges"]} == {
        ("__x64_sys_socket", "__sys_socket")}


def _callback_docs() -> list[dict[str, Any]]:
    """``static int run(int (*cb)(int)) { return cb(1); }`` called as ``run(f1)``; f2 has the
    same type and is address-taken elsewhere."""
    site = icall(INT_T, base_kind="param", base_id="run@a.c#arg0", expr="cb", line=5)
    funcs = [fn("f1", type=INT_T), fn("f2", type=INT_T),
             fn("run", linkage="internal", type="int (int (*)(int))", calls=[site]),
             fn("main", calls=[dcall("run@a.c", line=9)])]
    doc = tu("a.c", funcs, stores=[{"target": {"var": "run@a.c#arg0", "param": True},
                                    "value": F("f1"), "function": "main", "file": "a.c",
                                    "line": 9}], taken=["f1", "f2"])
    return [doc]


def test_callback_parameter_holds_what_direct_callers_pass():
    _, _, sites, _ = run(*_callback_docs())
    s = site_of(sites, "cb")
    assert s["targets"] == ["f1"] and s["resolution"] == "var"


def test_a_failed_tu_makes_every_parameter_unknown():
    """A TU that did not parse may call run() with anything: the type layer again."""
    failed = empty_tu("b.c")
    failed.update(status="failed", error="libclang worker died (signal 11)")
    _, _, sites, metrics = run(*_callback_docs(), failed)
    s = site_of(sites, "cb")
    assert s["targets"] == ["f1", "f2"] and s["rule"] == "type"
    assert metrics["fallbacks"]["pseudo-var-not-used:param-callers-unknown:failed-tu"] == 1


def _leaves(*leaves: tuple[int, int, str | None, str | None, bool]) -> dict[str, Any]:
    return {"leaves": [list(x) for x in leaves]}


def test_cast_overlaps_compares_layouts_leaf_by_leaf():
    from pipeline.resolve import cast_overlaps
    sock = _leaves((0, 64, "struct sock_common", "skc_family", False),
                   (64, 64, "struct sock_common", "skc_prot", True),
                   (512, 64, "struct sock", "sk_data_ready", True))
    # struct tcp_sock { struct sock sk; ... void (*cb)(void); }: the sock's own layers.
    tcp = _leaves(*[tuple(x) for x in sock["leaves"]], (640, 64, "struct tcp_sock", "cb", True))
    assert cast_overlaps(sock, tcp) == set()
    # inet_timewait_sock: the common part, then a long where sock has nothing tracked.
    tw = _leaves((0, 64, "struct sock_common", "skc_family", False),
                 (64, 64, "struct sock_common", "skc_prot", True),
                 (128, 64, "struct inet_timewait_sock", "tw_ttd", False))
    assert cast_overlaps(sock, tw) == set()
    # A long over a function pointer: both sides' slots there are not confined.
    other = _leaves((0, 64, "struct other", "a", False), (64, 64, "struct other", "b", False),
                    (512, 64, "struct other", "fn", True))
    assert cast_overlaps(sock, other) == {("struct sock_common", "skc_prot"),
                                          ("struct sock", "sk_data_ready"),
                                          ("struct other", "fn")}
    # An unnamed tracked leaf (an array of records holding function pointers) or an
    # unknown layout: whole records.
    arr = _leaves((0, 1024, None, None, True))
    assert cast_overlaps(sock, arr) is None
    assert cast_overlaps(sock, None) is None
    # Union members are one slot: the same union at the same place is the same layer.
    u1 = _leaves((0, 64, "union u", "f", True))
    u2 = _leaves((0, 64, "union u", "g", True), (64, 64, "struct x", "y", False))
    assert cast_overlaps(u1, u2) == set()


def test_layouts_from_several_tus_merge_with_tracked_united():
    from pipeline.link import _merge_layouts
    a = _leaves((0, 64, "struct t", "p", False), (64, 64, "struct t", "q", True))
    b = _leaves((0, 64, "struct t", "p", True), (64, 64, "struct t", "q", False))
    assert _merge_layouts([a, b]) == _leaves((0, 64, "struct t", "p", True),
                                             (64, 64, "struct t", "q", True))
    moved = _leaves((0, 64, "struct t", "p", False), (128, 64, "struct t", "q", True))
    assert _merge_layouts([a, moved]) is None
    assert _merge_layouts([a, None]) is None


def test_record_cast_with_layouts_untrusts_only_overlapped_slots():
    """::

      struct A { void (*fn)(void); void (*keep)(void); };  struct B { long x; };
      void poke(struct A *a) { ((struct B *)a)->x = 0; }   // B covers fn only
    """
    funcs = [fn(n) for n in ("fa", "fk", "fdecoy")]
    funcs += [fn("run", type="void (struct A *)",
                 calls=[icall(VOID_T, [["struct A", "fn"]], expr="a->fn"),
                        icall(VOID_T, [["struct A", "keep"]], expr="a->keep", col=9)])]
    cast = {"from": "struct A *", "to": "struct B *", "from_record": "struct A",
            "to_record": "struct B", "function": "run", "file": "a.c", "line": 60}
    doc = tu("a.c", funcs,
             objects=[obj("a_obj@a.c", "struct A", [([["struct A", "fn"]], F("fa")),
                                                   ([["struct A", "keep"]], F("fk"))]),
                      obj("d_obj", "struct D", [([["struct D", "fn"]], F("fdecoy"))])],
             casts=[cast])
    doc["layouts"] = {"struct A": _leaves((0, 64, "struct A", "fn", True),
                                          (64, 64, "struct A", "keep", True)),
                      "struct B": _leaves((0, 64, "struct B", "x", False))}
    _, _, sites, _ = run(doc)
    s = site_of(sites, "a->fn")
    assert s["resolution"] == "type" and s["targets"] == ["fa", "fdecoy", "fk"]
    assert bare(s["fallbacks"]) == [{"layer": ["struct A", "fn"], "reason": "record-cast"}]
    k = site_of(sites, "a->keep")
    assert k["resolution"] == "field" and k["targets"] == ["fk"] and k["fallbacks"] == []
    # The same cast moved off the object ('(struct B *)(a + 1)') reads nothing as two records.
    doc["casts"] = [dict(cast, offset=True)]
    _, _, sites, _ = run(doc)
    assert site_of(sites, "a->fn")["targets"] == ["fa"]


def test_function_kept_as_an_integer_is_not_wild():
    """``ip = (unsigned long)f`` into a variable declared ``unsigned long``: not in every slot;
    ``*(unsigned long *)slot = (unsigned long)g``: may be."""
    doc = map_tu()
    doc["functions"] += [fn("kept_lookup", type=LOOKUP_T), fn("punned_lookup", type=LOOKUP_T)]
    doc["address_taken"] += [
        {"id": "kept_lookup", "context": "store",
         "where": {"target": {"other": "unsigned long", "lvalue": "var"}}, "file": "a.c",
         "line": 91},
        {"id": "punned_lookup", "context": "store",
         "where": {"target": {"other": "unsigned long", "lvalue": "other"}}, "file": "a.c",
         "line": 92}]
    _, _, sites, metrics = run(doc)
    assert site_of(sites, "map->ops->lookup")["targets"] == [
        "array_lookup@a.c", "hash_lookup", "punned_lookup"]
    assert metrics["wild_functions"] == 1


def _offset_doc(offsets: list[dict[str, Any] | None], *, taken: list[str] = ()) -> dict[str, Any]:
    """::

      struct ops { int (*a)(int); int (*b)(int); } o1 = { a1, b1 }, o2 = { a2, b2 };
      static cb_t get(struct ops *ops, size_t off) { return *(cb_t *)((void *)ops + off); }
      void use(int x) { cb_t cb = get(p, offsetof(struct ops, b)); cb(x); }   // one call each
    """
    ops = "struct ops"
    calls = []
    for i, off in enumerate(offsets):
        call = dcall("get@a.c", line=40 + i)
        if off is not None:
            call["offsetof_args"] = {"1": off}
        calls.append(call)
    funcs = [fn(n, type=INT_T) for n in ("a1", "b1", "a2", "b2")] + [
        fn("get", linkage="internal", type="int (*(struct ops *, unsigned long))(int)"),
        fn("use", calls=calls + [icall(INT_T, base_kind="local", base_id="use#local:cb",
                                       expr="cb")])]
    read = {"kind": "nonconst", "what": "offset-read", "record": ops, "offset": "get@a.c#arg1"}
    return tu("a.c", funcs, objects=[
        obj("o1", ops, [([[ops, "a"]], F("a1")), ([[ops, "b"]], F("b1"))]),
        obj("o2", ops, [([[ops, "a"]], F("a2")), ([[ops, "b"]], F("b2"))])],
        stores=[store(read, var="get@a.c#ret", function="get@a.c"),
                store({"kind": "nonconst", "what": "call", "id": "get@a.c#ret"},
                      var="use#local:cb", function="use")], taken=taken)


def test_offset_read_takes_the_offsetof_slots_every_direct_call_passes():
    b = {"record": "struct ops", "layer": ["struct ops", "b"]}
    linked, _, sites, _ = run(_offset_doc([b, b]))
    assert linked["offsetof_params"] == {"get@a.c#arg1": {
        "records": ["struct ops"], "layers": [["struct ops", "b"]], "passed": 2, "calls": 2}}
    s = site_of(sites, "cb")
    assert s["targets"] == ["b1", "b2"] and s["resolution"] == "var"


def test_offset_read_is_not_confined_unless_every_call_passes_a_known_offsetof():
    b = {"record": "struct ops", "layer": ["struct ops", "b"]}
    every = ["a1", "a2", "b1", "b2"]
    # One direct call passes a computed size.
    _, _, sites, _ = run(_offset_doc([b, None]))
    assert site_of(sites, "cb")["targets"] == every
    # offsetof in another record than the pointer's.
    other = {"record": "struct wrapper", "layer": ["struct ops", "b"]}
    _, _, sites, _ = run(_offset_doc([b, other]))
    assert site_of(sites, "cb")["targets"] == every
    # get's address is taken: callers no fact names may pass anything.
    _, _, sites, metrics = run(_offset_doc([b], taken=["get@a.c"]))
    assert site_of(sites, "cb")["targets"] == every
    # Two calls one macro expands at one place, one with offsetof: two calls, one offsetof.
    doc = _offset_doc([b, None])
    for c in doc["functions"][-1]["calls"][:2]:
        c["line"] = 40
    linked, _, sites, _ = run(doc)
    assert linked["offsetof_params"]["get@a.c#arg1"]["calls"] == 2
    assert site_of(sites, "cb")["targets"] == every


@pytest.mark.parametrize("style", ["6.1", "6.12"])
def test_struct_ops_slots_reach_bpf_programs(style: str):
    """``icsk->icsk_ca_ops->cong_avoid``: a struct_ops map registers a tcp_congestion_ops
    whose slots are trampolines into BPF programs (written through ``void *``).  6.1 names
    the record by the object's name (``bpf_tcp_congestion_ops``), 6.12 by its cfi_stubs."""
    ca_t = "void (struct sock *)"
    ca = [["struct tcp_congestion_ops", "cong_avoid"], ["struct icsk", "ca_ops"]]
    funcs = [fn("reno_cong_avoid", file="c.c", type=ca_t),
             fn("stub_cong_avoid", file="b.c", type=ca_t, linkage="internal"),
             fn("tcp_ack", file="c.c", type=VOID_T,
                calls=[icall(ca_t, ca, file="c.c", expr="icsk->ca_ops->cong_avoid")])]
    st_ops_entries: list[tuple[list[list[Any]], dict[str, Any]]] = []
    objects = [obj("tcp_reno", "struct tcp_congestion_ops",
                   [([["struct tcp_congestion_ops", "cong_avoid"]], F("reno_cong_avoid"))]),
               obj("init_icsk", "struct icsk", [([["struct icsk", "ca_ops"]], OBJ("tcp_reno"))])]
    if style == "6.12":
        objects.append(obj("__bpf_ops_tcp_congestion_ops@b.c", "struct tcp_congestion_ops",
                           [([["struct tcp_congestion_ops", "cong_avoid"]],
                             F("stub_cong_avoid@b.c"))], file="b.c"))
        st_ops_entries.append(([["struct bpf_struct_ops", "cfi_stubs"]],
                               OBJ("__bpf_ops_tcp_congestion_ops@b.c")))
        st_ops_id = "tcp_ca_st_ops@b.c"  # no bpf_<record> name: cfi_stubs tells
    else:
        st_ops_id = "bpf_tcp_congestion_ops"
    objects.append(obj(st_ops_id, "struct bpf_struct_ops", st_ops_entries, file="b.c"))
    _, graph, sites, _ = run(tu("c.c", funcs, objects=objects), map_tu())
    s = site_of(sites, "icsk->ca_ops->cong_avoid")
    assert "bpf-program" in s["targets"] and "reno_cong_avoid" in s["targets"]
    assert s["resolution"] == "field"
    assert "bpf-program" not in site_of(sites, "map->ops->lookup")["targets"]
    assert any(e["target"] == "bpf-program" for e in graph["edges"])


def test_bpf_program_entry_calls_reach_bpf_programs():
    """``bpf_dispatcher_nop_func``'s ``bpf_func(ctx, insnsi)``: the interpreters and the JIT's
    image (stored as ``(void *)image``, no C function) may run there."""
    entry_t = "unsigned int (const void *, const struct bpf_insn *)"
    funcs = [fn("__bpf_prog_run32", type=entry_t, linkage="internal"),
             fn("nop_func", type=entry_t, calls=[icall(entry_t, expr="bpf_func")]),
             fn("other", type=VOID_T, calls=[icall(INT_T, expr="cb")])]
    _, _, sites, _ = run(tu("a.c", funcs, taken=["__bpf_prog_run32@a.c"]))
    s = site_of(sites, "bpf_func")
    assert s["targets"] == ["__bpf_prog_run32@a.c", "bpf-program"]
    assert "bpf-program" not in site_of(sites, "cb")["targets"]


def test_union_overlays_seen_differently_by_two_tus_keep_every_leaf():
    """An ``#ifdef`` inside a union: one TU sees a member the other does not.  The union's
    leaves are united (a cast's layout would be dropped as unknown), so the slot the extra
    member overlays is still untrusted."""
    key = "overlay:struct map::(anonymous union at a.h:3:2)"
    base = [[0, 64, "struct map", "h", False, "int"], [64, 64, "struct map", "ops", True, "rec"]]
    a = map_tu()
    a["layouts"] = {key: {"leaves": base}}
    b = tu("b.c", [fn("other_fn", file="b.c")])
    b["layouts"] = {key: {"leaves": [*base, [64, 64, "struct dbg_key", "ops", True, "rec"]]}}
    linked, _, sites, _ = run(a, b)
    assert len(linked["layouts"][key]["leaves"]) == 3
    s = site_of(sites, "map->ops->lookup")
    assert bare(s["fallbacks"]) == [{"layer": ["struct map", "ops"], "reason": "union-overlay"}]


def test_fallback_origin_of_a_record_tainted_through_the_record_embedding_it():
    """::

      struct inner { void (*fn)(void); };  struct outer { struct inner in; };
      struct outer o1 = { .in = { .fn = fi } };           // outer embeds inner
      void pun(struct outer *o) { ((struct other *)o)->x = 0; }
      void use(struct inner *i) { i->fn(); }

    The cast taints struct outer whole, and with it the struct inner inside it: the site's
    fallback names the cast, the record it was on, and the record embedding the slot."""
    cast = {"from": "struct outer *", "to": "struct other *", "from_record": "struct outer",
            "to_record": "struct other", "function": "pun", "file": "a.c", "line": 70}
    doc = tu("a.c", [fn("fi"), fn("use", type="void (struct inner *)",
                                    calls=[icall(VOID_T, [["struct inner", "fn"]],
                                                 expr="i->fn")])],
             objects=[obj("o1", "struct outer",
                          [([["struct outer", "in"], ["struct inner", "fn"]], F("fi"))])],
             casts=[cast])
    _, _, sites, _ = run(doc)
    s = site_of(sites, "i->fn")
    assert s["fallbacks"] == [{"layer": ["struct inner", "fn"], "reason": "record-cast",
                               "origin": {"reason": "record-cast", "file": "a.c", "line": 70,
                                          "function": "pun",
                                          "cast": "struct outer * -> struct other *",
                                          "record": "struct outer",
                                          "embedded": "struct inner"}}]
    assert why_lines(s) == [
        "not narrowed by struct inner.fn: record-cast",
        "  because of a.c:70 in pun: record-cast [struct outer * -> struct other *] of "
        "struct outer, which embeds struct inner"]


def test_fallback_origin_of_an_escaped_store():
    """::

      void put(struct map_ops **pp, struct box *b) { *pp = b->priv; }   // no slot named
      void *lookup(struct map *map, void *k) { return map->ops->lookup(map, k); }

    A value nothing follows, stored where no fact names the slot, leaves every layer that
    holds a ``struct map_ops`` pointer unconfined (here ``struct map.ops``): the fallback
    points at that store."""
    esc = {"target": {"escaped": True, "record": "struct map_ops"},
           "value": NC("other", ""), "function": "put", "file": "b.c", "line": 7}
    doc = map_tu(extra_stores=[esc])
    _, _, sites, _ = run(doc)
    s = site_of(sites, "map->ops->lookup")
    assert s["fallbacks"] == [{"layer": ["struct map", "ops"],
                               "reason": "escaped-nonconst-store",
                               "origin": {"reason": "nonconst-store", "value": "other",
                                          "file": "b.c", "line": 7, "function": "put",
                                          "var": "escaped:record:struct map_ops"}}]


def lsm_612_doc(*, stored: bool = False, whole: bool = False,
                rogue: bool = False) -> dict[str, Any]:
    """Linux 6.12's LSM hooks as static calls (security/security.c)::

      static struct security_hook_list selinux_hooks[] = {
          LSM_HOOK_INIT(file_open, selinux_file_open),
          LSM_HOOK_INIT(task_getpgid, selinux_task_getpgid), };   // same type as file_open's
      static struct security_hook_list bpf_lsm_hooks[] = {
          LSM_HOOK_INIT(file_open, bpf_lsm_file_open), };
      lsm_static_call_init(hl): __static_call_update(scall->key, ..., hl->hook.lsm_func_addr);
      security_file_open(f): static_call(lsm_static_call_file_open_0)(f) ... _1(f)
      DEFINE_BPF_DISPATCHER(xdp): static_call(bpf_dispatcher_xdp_call)(ctx, insn, bpf_func)
      // stored: hl->hook.file_open = evil_open;  whole: hl->hook = *other_hook (an object)
      // rogue: another __static_call_update caller
    """
    hook_t = "int (struct file *)"
    shl, uni = "struct security_hook_list", "union security_list_options"
    funcs = [fn("selinux_file_open", "s.c", linkage="internal", type=hook_t),
             fn("selinux_task_getpgid", "s.c", linkage="internal", type=hook_t),
             fn("bpf_lsm_file_open", type=hook_t), fn("evil_open", type=hook_t),
             fn("bpf_dispatcher_nop_func", "bpf.h", linkage="internal",
                type="unsigned int (const void *, const void *)"),
             fn("__static_call_update", type="void (void *, void *, void *)"),
             fn("lsm_static_call_init", calls=[dcall("__static_call_update")]),
             fn("bpf_dispatcher_update", calls=[dcall("__static_call_update")]),
             fn("security_file_open", type=hook_t, calls=[
                 _static_call_site("lsm_static_call_file_open_0", hook_t, 20),
                 _static_call_site("lsm_static_call_file_open_1", hook_t, 21)]),
             fn("xdp_run", calls=[_static_call_site(
                 "bpf_dispatcher_xdp_call", "unsigned int (const void *, const void *)", 30)])]
    if rogue:
        funcs.append(fn("rogue", calls=[dcall("__static_call_update")]))
    key = "struct static_call_key"
    objects = [
        obj("selinux_hooks@s.c", f"{shl}[2]", [
            ([["[]", 0], [shl, "hook"], [uni, "file_open"]], F("selinux_file_open@s.c")),
            ([["[]", 1], [shl, "hook"], [uni, "task_getpgid"]], F("selinux_task_getpgid@s.c"))]),
        obj("bpf_lsm_hooks", f"{shl}[1]", [
            ([["[]", 0], [shl, "hook"], [uni, "file_open"]], F("bpf_lsm_file_open"))]),
        obj("__SCK__bpf_dispatcher_xdp_call", key,
            [([[key, "func"]], F("bpf_dispatcher_nop_func@bpf.h"))])]
    stores = [store(F("evil_open"), layers=[[uni, "file_open"], [shl, "hook"]])] if stored else []
    if whole:
        objects.append(obj("other_hook", uni, [([[uni, "file_open"]], F("evil_open"))]))
        stores.append(store(OBJ("other_hook"), layers=[[shl, "hook"]]))
    return tu("a.c", funcs, objects=objects, stores=stores, taken=["evil_open"])


def test_lsm_static_calls_reach_the_functions_registered_for_their_hook():
    _, _, sites, _ = run(lsm_612_doc())
    for line in (20, 21):
        s = [x for x in sites if x["line"] == line][0]
        # file_open's registrations, not task_getpgid's (same type), nor evil_open
        assert s["targets"] == ["bpf_lsm_file_open", "selinux_file_open@s.c"], s
        assert s["resolution"] == "var" and s["fallbacks"] == []


def test_lsm_hook_written_at_run_time_may_be_any_hooks():
    # A store keeps no union member name (every member is one slot): the function stored
    # may sit under any hook, so every hook's keys get it.
    _, _, sites, _ = run(lsm_612_doc(stored=True))
    s = [x for x in sites if x["line"] == 20][0]
    assert s["targets"] == ["bpf_lsm_file_open", "evil_open", "selinux_file_open@s.c"]
    assert s["fallbacks"] == []


def test_lsm_hook_union_written_whole_is_not_confined():
    _, _, sites, _ = run(lsm_612_doc(whole=True))
    s = [x for x in sites if x["line"] == 20][0]
    assert s["fallbacks"] == [{"var": "__SCK__lsm_static_call_file_open_0",
                               "reason": "lsm-hook-stored"}]
    assert s["resolution"] == "type" and "evil_open" in s["targets"]  # the parameter list's


def test_bpf_dispatcher_static_call_reaches_bpf_programs():
    _, _, sites, metrics = run(lsm_612_doc())
    s = [x for x in sites if x["line"] == 30][0]
    assert s["targets"] == ["bpf-program", "bpf_dispatcher_nop_func@bpf.h"]
    assert metrics["fallbacks"]["bpf-dispatcher"] == 1


def test_static_call_updated_by_an_unknown_key_confines_nothing():
    _, _, sites, metrics = run(lsm_612_doc(rogue=True))
    for line in (20, 30):
        s = [x for x in sites if x["line"] == line][0]
        assert s["fallbacks"][0]["reason"] == "static-call-unknown-updater", s
        assert s["resolution"] == "type"
    assert metrics["fallbacks"]["fallback:static-call-unknown-updater"] == 3
