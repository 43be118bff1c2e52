"""Indirect-call resolution end to end on small kernel-like C files (tests/fixtures/icalls).

The tree is copied into a temporary directory, compiled by the real gcc (``-O2 -fstack-usage``,
as kbuild would) with a compile database written here, and run through
``kcg run --source ... --compile-commands ... --to resolve`` (direct-tree mode: parse, link,
resolve).  Each test asserts the exact targets of one pattern from ``icalls.json``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from pipeline.fsutil import read_json
from tests.ctree import compile_tree

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "icalls"
@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    root = tmp_path_factory.mktemp("icalls")
    shutil.copytree(FIXTURE, root / "src")
    cc = compile_tree(root / "src", root / "build")
    out = root / "out"
    cmd = [sys.executable, "-m", "pipeline", "run", "--source", str(root / "src"),
           "--compile-commands", str(cc), "--output", str(out), "--to", "resolve",
           "--facts-store", str(root / "store"), "--no-progress", "-j", "1"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"kcg failed:\n{r.stdout}\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def sites(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for s in read_json(out / "icalls.json"):
        key = (s["caller"], s["expr"])
        assert key not in by_key, f"two sites {key}"
        by_key[key] = s
    return by_key


def targets(sites: dict[tuple[str, str], dict[str, Any]], caller: str, expr: str) -> list[str]:
    return sites[(caller, expr)]["targets"]


def test_decoy_ops_table(sites):
    s = sites[("map_lookup", "map->ops->lookup")]
    assert s["targets"] == ["array_lookup@map.c", "hash_lookup"]
    assert s["resolution"] == "field"
    # The type layer holds the decoy, the peek slot and the seq_operations-like start.
    assert s["type_layer_count"] == 5
    assert targets(sites, "ops_lookup", "ops->lookup") == [
        "array_lookup@map.c", "decoy_lookup@map.c", "hash_lookup"]


def test_local_definition_gives_layers(sites):
    s = sites[("local_def", "ops->lookup")]
    assert s["targets"] == ["array_lookup@map.c", "hash_lookup"]
    assert s["layers"] == [["struct map_ops", "lookup"], ["struct map", "ops"]]


def test_setter_storing_a_parameter(sites):
    # nb_register(&x, a_cb), nb_register(&y, b_cb): the parameter carries what callers pass.
    s = sites[("nb_fire", "nb->call")]
    assert s["targets"] == ["a_cb@notifier.c", "b_cb@notifier.c", "c_cb@notifier.c"]
    assert s["resolution"] == "field" and s["fallbacks"] == []
    assert s["type_layer_count"] == 4  # d_cb, same type, only ever in another record


def test_setter_storing_a_parameter_of_unknown_origin(sites):
    # nb_register_any(nb, fn) is called with a function read from a void * field.
    s = sites[("nb_fire_any", "nb->call")]
    assert s["resolution"] == "type" and len(s["targets"]) == s["type_layer_count"]
    # The fallback names where the unfollowable value entered: the call passing b->priv,
    # one parameter away from the slot the site reads.
    assert s["fallbacks"] == [{
        "layer": ["struct nb_any", "call"], "reason": "flow-from-untrusted",
        "origin": {"reason": "nonconst-store", "value": "other", "file": "notifier.c",
                   "line": 53, "function": "nb_setup_any",
                   "var": "nb_register_any@notifier.c#arg1"}}]


def test_record_cast(sites):
    s = sites[("run_a", "a->fn")]
    assert s["targets"] == ["fa@cast.c", "fb@cast.c", "fc@cast.c"]  # fb: stored through B
    assert s["resolution"] == "type"
    assert s["fallbacks"] == [{"layer": ["struct A", "fn"], "reason": "record-cast", "origin": {
        "reason": "record-cast", "cast": "struct A * -> struct B *", "file": "cast.c",
        "line": 18, "function": "poke", "slot": ["struct A", "fn"]}}]


def test_record_cast_in_the_store(sites):
    s = sites[("run_d", "d->fn")]
    assert s["targets"] == ["fd@cast.c", "fe@cast.c"] and s["resolution"] == "type"
    assert s["fallbacks"] == [{"layer": ["struct D", "fn"], "reason": "record-cast", "origin": {
        "reason": "record-cast", "cast": "struct D * -> struct E *", "file": "cast.c",
        "line": 45, "function": "poke_e", "slot": ["struct D", "fn"]}}]


def test_record_cast_leaves_other_records_confined(sites):
    assert targets(sites, "run_c", "c->fn") == ["fc@cast.c"]


def test_positional_and_nested_anonymous_initializers(sites):
    assert targets(sites, "use_drv", "d->ops.probe") == [
        "b1_probe@drv.c", "d1_probe@drv.c", "d2_probe@drv.c"]
    assert targets(sites, "use_drv", "d->ops.remove") == ["d1_remove@drv.c"]
    assert targets(sites, "use_bus", "b->drv.ops.probe") == ["b1_probe@drv.c"]
    assert sites[("use_drv", "d->ops.probe")]["layers"] == [
        ["struct drv::ops", "probe"], ["struct drv", "ops"]]


def test_array_of_records(sites):
    s = sites[("use_tbl", "tbl[i].fn")]
    assert s["targets"] == ["h0@drv.c", "h3@drv.c"] and s["resolution"] == "array"
    assert targets(sites, "use_h", "h->fn") == ["h0@drv.c", "h3@drv.c"]


def test_function_pointer_variables_and_arrays(sites):
    everything = ["hook_a@vars.c", "hook_b@vars.c", "t0@vars.c", "t1@vars.c", "t5@vars.c",
                  "unrelated@vars.c"]
    hook = sites[("call_all", "hook")]
    assert hook["targets"] == ["hook_a@vars.c", "hook_b@vars.c"] and hook["resolution"] == "var"
    table = sites[("call_all", "table[i]")]
    assert table["targets"] == ["t0@vars.c", "t1@vars.c", "t5@vars.c"]
    assert table["resolution"] == "array"
    # set_bad(f) stores its parameter; its one direct caller passes 'unrelated', but its
    # address is taken too, so callers no fact names may pass anything.
    bad = sites[("call_all", "bad")]
    assert bad["targets"] == everything and bad["resolution"] == "type"
    assert bad["fallbacks"] == [{"var": "bad@vars.c", "reason": "flow-from-untrusted",
                                 "origin": {"reason": "param-of-address-taken-function",
                                            "var": "set_bad#arg0"}}]
    # call_all is never called and its address is not taken: its parameter holds nothing.
    local = sites[("call_all", "local")]
    assert local["targets"] == [] and local["rule"] == "var" and local["type_layer_count"] == 6


def test_two_statics_with_one_name(sites, out):
    assert targets(sites, "run_sops", "s->fn") == ["helper@static_a.c", "helper@static_b.c"]
    g = nx.node_link_graph(read_json(out / "graph.json.gz"), edges="edges")
    assert set(g.successors("fa_direct")) == {"helper@static_a.c"}
    assert set(g.successors("fb_direct")) == {"helper@static_b.c"}
    assert g.nodes["helper@static_a.c"]["file"] == "static_a.c"
    assert g.nodes["helper@static_b.c"]["file"] == "static_b.c"


def test_header_static_inline_used_by_several_tus(out):
    g = nx.node_link_graph(read_json(out / "graph.json.gz"), edges="edges")
    hid = "hinl@include/linux/kcgfix.h"
    assert [n for n in g if n.startswith("hinl")] == [hid]
    assert g.nodes[hid]["defined"] and g.nodes[hid]["linkage"] == "internal"
    assert set(g.predecessors(hid)) == {"helper@static_a.c", "helper@static_b.c",
                                        "seq_start@map.c"}
    assert list(g.successors(hid)) == ["ext_helper"]
    assert g.nodes["ext_helper"]["defined"] is False


def test_weak_loses_to_strong(out):
    linked = read_json(out / "linked.json.gz")
    node = next(n for n in linked["nodes"] if n["id"] == "arch_setup")
    assert node["file"] == "strong.c" and node["linkage"] == "external"
    assert [d["id"] for d in linked["duplicates"]] == ["arch_setup"]
    assert linked["duplicates"][0]["dropped"][0]["file"] == "weak.c"
    g = nx.node_link_graph(read_json(out / "graph.json.gz"), edges="edges")
    assert set(g.successors("arch_setup")) == {"x86_only"}
    assert set(g.predecessors("arch_setup")) == {"start_kernel_fix"}
    assert "weak_only" not in g


def test_union_members_alias(sites):
    assert targets(sites, "fire_w", "w->cb.b") == ["via_a@union.c"]


def test_field_to_field_flow(sites):
    s = sites[("do_read", "f->f_op->read")]
    assert s["targets"] == ["ext4_read@flows.c", "pipe_read@flows.c"]
    assert s["resolution"] == "field" and s["trusted_layers"] == 2


def test_same_record_copy(sites):
    assert targets(sites, "run_holder", "h->c->go") == ["go_a@flows.c", "go_b@flows.c"]


def test_write_once_function_store(sites):
    s = sites[("do_tick", "t->handler")]
    assert s["targets"] == ["tick_a@wonce.c", "tick_b@wonce.c"] and s["resolution"] == "field"


def test_write_once_parameter_store(sites):
    """``WRITE_ONCE(t->handler, h)`` with a parameter: the slot must not be trusted."""
    s = sites[("do_tick2", "t->handler")]
    assert s["targets"] == ["t2_a@wonce.c", "t2_b@wonce.c"]  # t2_b: reg2() passes it
    assert s["resolution"] == "field" and s["fallbacks"] == []


def test_metrics(out, sites):
    m = read_json(out / "metrics.json")
    assert m["sites"] == len(sites)
    assert m["tus"] == 19 and m["tus_failed"] == 0
    assert sum(m["resolution_counts"].values()) == m["sites"]
    assert m["type_layer"]["mean"] >= m["targets"]["mean"]


# ---- parameters and locals as variables (params.c) -------------------------------------------
# Every function there has type int (int), like a few in other files.
PARAM_FNS = 8


def test_callback_parameter_gets_what_callers_pass(sites):
    s = sites[("run_cb@params.c", "cb")]
    assert s["targets"] == ["p_one@params.c", "p_three@params.c"]
    assert s["resolution"] == "var" and s["type_layer_count"] >= PARAM_FNS


def test_setter_through_a_wrapper_and_a_reassigned_parameter(sites):
    # set_fn_wrapper(p_one), set_fn_wrapper(0) → set_fn: 'if (!fn) fn = p_dflt; h->fn = fn'.
    s = sites[("fire_holder", "holder.fn")]
    assert s["targets"] == ["p_dflt@params.c", "p_one@params.c"]
    # 'static struct pholder holder;' has no initializer: an object whose slot holds NULL
    # but for the stores, so the call reads that variable's own slot.
    assert s["resolution"] == "var" and s["fallbacks"] == []


def test_setter_whose_address_is_taken_confines_nothing(sites):
    s = sites[("fire_slot", "slot.fn")]
    assert len(s["targets"]) == s["type_layer_count"]  # every int (int) function
    assert "p_decoy@params.c" in s["targets"]
    reasons = {f["reason"] for f in s["fallbacks"]}
    assert reasons & {"flow-from-untrusted", "param-of-address-taken-function"}, s["fallbacks"]


def test_initializer_storing_a_parameter(sites):
    # run_one: 'struct pwork work = { .fn = fn };' is a store of what callers pass (p_two,
    # p_three), as '.fn = fn;' would be; p_one (also int (int), passed elsewhere) is not.
    s = sites[("pwork_thread", "w->fn")]
    assert s["targets"] == ["p_three@params.c", "p_two@params.c"]
    assert s["resolution"] == "field"  # the local 'queued' holds an address nothing names


def test_local_with_two_definitions(sites):
    s = sites[("two_defs", "ops->op")]
    assert s["targets"] == ["p_one@params.c", "p_two@params.c"]  # not ops_c's p_three


def test_local_whose_address_escapes_is_not_confined(sites):
    s = sites[("escaped_local", "f")]
    assert len(s["targets"]) == s["type_layer_count"]


def test_read_once_of_a_function_pointer_variable(sites):
    assert targets(sites, "read_once_var", "f") == ["p_two@params.c"]


def test_void_pointer_field_converted_to_ops_is_not_confined(sites):
    # ops = b->priv (void *): the local confines nothing, and ops2 = ops inherits that; the
    # (struct pops, op) layer still holds, as for any pointer to a struct pops.
    s = sites[("via_void", "ops2->op")]
    assert s["targets"] == ["p_one@params.c", "p_three@params.c", "p_two@params.c"]
    assert s["resolution"] == "field"
    # Why ops2's own values were not used: it starts at 'ops = b->priv', not at 'ops2 = ops'.
    assert s["base_untrusted"] == {"reason": "flow-from-untrusted", "origin": {
        "reason": "nonconst-store", "value": "other", "file": "params.c", "line": 105,
        "function": "via_void", "var": "via_void#local:ops:105:21"}}


def test_returned_ops_table(sites):
    # pick_ops returns &ops_c or &ops_a (or NULL): not ops_b's p_two.
    assert targets(sites, "via_return", "pick_ops(sel)->op") == ["p_one@params.c",
                                                                  "p_three@params.c"]
    assert targets(sites, "via_return_local", "o->op") == ["p_one@params.c", "p_three@params.c"]


# ---- which slots are seen whole (slots.c) ----------------------------------------------------


def test_void_pointer_field_cast_at_the_call_is_not_confined(sites):
    [s] = [s for (caller, _), s in sites.items() if caller == "call_void_field"]
    # Not s_exported: its only address-taking is EXPORT_SYMBOL's discarded __ADDRESSABLE;
    # s_init's, an initcall's, stands for the asm table that is called through.
    assert s["targets"] == ["s_a@slots.c", "s_b@slots.c", "s_init"] and s["resolution"] == "type"
    assert s["fallbacks"][0]["reason"] == "unseen-slot"


def test_declared_function_pointer_never_written_has_no_target(sites):
    s = sites[("call_never_written", "n->fn")]
    assert s["targets"] == [] and s["rule"] == "field" and s["type_layer_count"] == 3


def test_union_members_are_not_seen_whole(sites):
    for caller, expr in (("call_union_member", "u->fn"), ("call_anon_union_member", "t->cb")):
        s = sites[(caller, expr)]
        assert s["targets"] == ["s_a@slots.c", "s_b@slots.c", "s_init"], (caller, s)


def test_rcu_assign_pointer_of_a_parameter(sites):
    # rh_set(&ops_b) → rcu_assign_pointer(rh.ops, ops): only ops_b's function.
    assert targets(sites, "rh_fire", "rh.ops->op") == ["p_two@params.c"]


def test_calls_inside_a_statement_expression_are_direct_edges(out):
    g = nx.node_link_graph(read_json(out / "graph.json.gz"), edges="edges")
    assert {"compute@params.c", "note_it@params.c"} <= set(g.successors("stmt_expr_user"))


def test_generic_selection_in_callee_position_is_a_direct_call(out, sites):
    g = nx.node_link_graph(read_json(out / "graph.json.gz"), edges="edges")
    assert set(g.successors("generic_user")) == {"gsel_mut"}
    assert not [k for k in sites if k[0] == "generic_user"]  # no indirect site
    with gzip.open(out / "linked.json.gz", "rt") as fh:
        taken = {at["id"] for at in json.load(fh)["address_taken"]}
    assert not taken & {"gsel_mut", "gsel_const"}


def test_dereferenced_function_pointer_is_the_function(sites):
    s = sites[("lcall", "lhook")]
    assert s["targets"] == ["l_one@params.c"] and s["resolution"] == "var"  # not l_decoy


def test_cast_of_a_record_incomplete_in_the_casting_tu(sites):
    # cast.c casts a struct aarena * (defined in layout.c only, its struct amap first) to
    # struct amap *: judged with layout.c's layout, the cast leaves struct amap confined.
    s = sites[("amap_lookup", "m->ops->lookup")]
    assert s["targets"] == ["arena_lookup@layout.c"] and s["fallbacks"] == []  # not the decoy


def test_rcu_dereference_of_a_function_pointer(sites):
    # A function-pointer local declared without initializer: its type's parameter is no
    # initializer; its one definition is the statement expression's local.
    assert targets(sites, "via_rcu", "cb") == ["p_three@params.c"]


def test_chained_assignment_and_poison_constant(sites):
    assert targets(sites, "lk_take", "lk.lock") == ["p_dflt@params.c"]


def test_facts_are_identical_from_run_to_run(out, tmp_path):
    """A second parse in a new process and a new store gives byte-identical documents
    (cursor hashes, addresses and timings must never reach the facts)."""
    from pipeline.store import FactsStore

    index = read_json(out / "parse.json")
    src = Path(index["source_root"])
    cc = Path(index["build_root"] or src.parent / "build") / "compile_commands.json"
    if not cc.exists():
        cc = src.parent / "build" / "compile_commands.json"
    again = tmp_path / "again"
    cmd = [sys.executable, "-m", "pipeline", "run", "--source", str(src), "--compile-commands",
           str(cc), "--output", str(again), "--to", "parse", "--facts-store",
           str(tmp_path / "store"), "--no-progress", "-j", "2"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    first, second = FactsStore(index["store"]), FactsStore(tmp_path / "store")
    tus = {t["file"]: t["key"] for t in index["tus"]}
    for t in read_json(again / "parse.json")["tus"]:
        assert t["key"] == tus[t["file"]]
        a, b = first.get(t["key"]), second.get(t["key"])
        for doc in (a, b):
            doc.pop("diagnostics", None)
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), t["file"]


def test_gnu_binary_conditional_keeps_both_values(sites):
    # ev.ops = o ?: &ops_c, with o = &ops_a: both, and not ops_b's p_two.
    assert targets(sites, "ev_fire", "ev.ops->op") == ["p_one@params.c", "p_three@params.c"]


def test_cast_to_a_record_embedding_it_first_keeps_the_slot_confined(sites):
    # struct btcp starts with a struct bsock (tcp_sock/sock); struct btw ends before the slot
    # (inet_timewait_sock): neither cast can write data_ready under another name.
    s = sites[("bsk_wake", "sk->data_ready")]
    assert s["targets"] == ["sk_ready_default@layout.c"]
    assert s["resolution"] == "field" and s["fallbacks"] == []
    assert s["type_layer_count"] == 3  # tcp_cb_fn and the decoy share the type


def test_cast_putting_an_integer_over_a_slot_is_not_confined(sites):
    s = sites[("p_run", "p->fn")]
    assert s["targets"] == ["p_fn@layout.c", "p_other@layout.c"] and s["resolution"] == "type"
    assert s["fallbacks"] == [{"layer": ["struct lslot", "fn"], "reason": "record-cast", "origin": {
        "reason": "record-cast", "cast": "struct lslot * -> struct lqword *", "file": "layout.c",
        "line": 56, "function": "q_poke", "slot": ["struct lslot", "fn"]}}]


def test_object_without_initializer_holds_null(sites):
    # zero_ops has no facts but its definition: its slots are NULL, not unknown.  unused_ops
    # is of the same record but never in a zholder.  wild_int is kept as an integer only;
    # wild_pun is written through a cast pointer, so it may sit in any slot of its type.
    s = sites[("zh_run", "h->ops->op")]
    assert s["fallbacks"] == [] and s["trusted_layers"] == 2
    assert s["targets"] == ["wild_pun@layout.c", "zop_a@layout.c"]


def test_cast_to_the_object_next_to_it_keeps_the_slot_confined(sites):
    s = sites[("hdr_complete", "h->done")]
    assert s["targets"] == ["hdr_done@layout.c"] and s["fallbacks"] == []


def test_function_pointer_variable_without_initializer(sites):
    s = sites[("do_power_off", "power_off_hook")]
    assert s["targets"] == ["power_off_a@layout.c"] and s["resolution"] == "var"
    s = sites[("do_power_off", "cached")]
    assert s["targets"] == [] and s["resolution"] == "unresolved" and s["fallbacks"] == []


def test_bpf_callback_reaches_a_bpf_program_not_every_helper(sites, out):
    s = sites[("____bpf_loop_like@bpfcb.c", "callback")]
    assert s["targets"] == ["bpf-program"] and s["resolution"] == "bpf-callback"
    assert s["type_layer_count"] == 3  # the three helpers with the callback's C type
    # A call of that C type spelled otherwise is the type layer, as any other.
    s = sites[("call_proto", "fn")]
    assert s["targets"] == ["bpf_find_vma_like", "bpf_helper_like", "bpf_loop_like"]
    assert s["resolution"] == "type"
    # BPF_CALL_x's '((btf_x)____x)(...)': the register cast to the callback reaches ____x's
    # parameter, which is therefore not confined (it held nothing: an empty result).
    s = sites[("____bpf_find_vma_like@bpfcb.c", "callback_fn")]
    assert s["targets"] == ["bpf-program"] and s["resolution"] == "bpf-callback"
    with gzip.open(out / "graph.json.gz") as fh:
        graph = json.load(fh)
    node = next(n for n in graph["nodes"] if n["id"] == "bpf-program")
    assert node["defined"] is False and node["linkage"] == "bpf"


def test_symbol_get_names_its_function(sites):
    s = sites[("use_symbol", "link")]
    assert s["targets"] == ["sym_target"] and s["resolution"] == "var"


def test_parameter_of_a_function_called_from_assembly_is_not_confined(sites):
    s = sites[("from_asm", "ops->hook")]
    assert s["targets"] == ["asm_hook_a@layout.c", "asm_hook_b@layout.c"]
    assert s["resolution"] == "field"  # the layer alone: every asmops object
    assert sites[("only_c@layout.c", "ops->hook")]["targets"] == ["asm_hook_a@layout.c"]


def test_callback_read_at_an_offsetof_the_callers_pass(sites):
    # __rpm_get_callback(dev, offsetof(struct dev_pm_ops, X)): the slots every direct call
    # names, of every dev_pm_ops object (the two calls are one return: context-insensitive).
    runtime = ["a_runtime_resume@rpm.c", "b_runtime_idle@rpm.c", "b_runtime_resume@rpm.c"]
    for caller in ("rpm_idle_like", "rpm_resume_like"):
        s = sites[(caller, "callback")]
        assert s["targets"] == runtime and s["resolution"] == "var", s
        assert s["type_layer_count"] == 6  # a_suspend, a_runtime_suspend, probe_like too
    # offsetof in place is the field itself.
    assert targets(sites, "fixed_slot", "cb") == ["b_runtime_idle@rpm.c"]


def test_offset_a_caller_computes_reads_any_slot(sites):
    # get_at(ops, n * sizeof(pm_callback_t)) beside an offsetof call: the offset is not known,
    # so the read is not confined (type layer), and so is the offsetof caller's (same return).
    for expr in ("cb", "other"):
        s = sites[("any_slot", expr)]
        assert len(s["targets"]) == s["type_layer_count"] == 6, s
        assert s["resolution"] == "type"
        assert s["fallbacks"] == [{"reason": "no-layers:local"}]  # the local is not trusted
        # ... because of the read at an offset get_at returns, not of the local's definition
        assert s["base_untrusted"] == {"reason": "flow-from-untrusted", "origin": {
            "reason": "unknown-offset", "file": "rpm.c", "line": 74,
            "function": "get_at@rpm.c", "var": "get_at@rpm.c#ret"}}


def test_slots_filled_through_a_word_view(sites):
    # finalize_ops copies inherited slots through 'void **': the ops record is not confined,
    # and the inherited base_setup (in no table stored into port.ops) is a target.
    s = sites[("port_setup", "p->ops->setup")]
    assert s["targets"] == ["base_setup@escapes.c"]
    assert s["resolution"] == "type"
    assert {"layer": ["struct port_ops", "setup"], "reason": "word-view", "origin": {
        "reason": "word-view", "cast": "struct port_ops * -> void **", "file": "escapes.c",
        "line": 25, "function": "finalize_ops@escapes.c", "record": "struct port_ops"}} \
        in s["fallbacks"]


def test_record_copied_through_a_parameter(sites):
    # '*drv = tmpl_driver' fills pci_driver (no initializer) through a parameter: hc_driver
    # is read layer-wide, so tmpl_reset is found; still a field walk.
    s = sites[("hcd_reset", "h->driver->reset")]
    assert s["targets"] == ["other_reset@escapes.c", "tmpl_reset@escapes.c"]
    assert s["resolution"] == "field"


def test_memcpy_of_another_record_type(sites):
    # memcpy from a legacy_ops into client.ops: anything of the slot's type may land.
    s = sites[("client_notify", "c->ops.notify")]
    assert s["targets"] == ["legacy_notify@escapes.c", "real_notify@escapes.c"]
    assert any(f.get("reason") == "copy-other-type" for f in s["fallbacks"])


def test_anonymous_union_member_overlaid_by_another(sites):
    # key_alloc writes index_key.type, the call reads the anonymous struct's type.
    s = sites[("key_preparse", "k->type->preparse")]
    assert s["targets"] == ["asym_preparse@escapes.c"]
    assert any(f.get("reason") == "union-overlay" for f in s["fallbacks"])


def test_compound_literals_are_objects(sites):
    # '&(const struct dom_ops){ .attach = f }' in a static initializer, and
    # 't->ops = (struct tick_ops){ .tick = f }' in a function: objects with entries.
    s = sites[("dom_attach", "d->ops->attach")]
    assert s["targets"] == ["amd_like_attach@escapes.c"] and s["resolution"] == "field"
    s = sites[("ticker_run", "t->ops.tick")]
    assert s["targets"] == ["lit_tick@escapes.c"] and s["resolution"] == "field"


def test_stores_through_a_pointer_to_the_slot(sites):
    # '*qp = qops' appends to a list through 'struct qd_ops **': the ops objects stored that
    # way may be read wherever a qd_ops is; '*slot = real_hook' makes real_hook wild.
    s = sites[("qd_change", "sch->ops->change")]
    assert s["targets"] == ["fifo_change@escapes.c"] and s["resolution"] == "field"
    s = sites[("run_hook", "h->hook")]
    assert s["targets"] == ["real_hook@escapes.c"]


def test_literal_copied_into_a_record_holding_an_ops_pointer(sites):
    s = sites[("pbuf_confirm", "b->ops->confirm")]
    assert s["targets"] == ["anon_confirm@escapes.c", "cache_confirm@escapes.c"]
    assert s["resolution"] == "field" and s["type_layer_count"] == 3


def test_store_by_inline_asm(sites):
    # cmpxchg's asm writes 'ops' into flavors[]: gss_auth is there beside null_auth; the
    # u64 view of the slot (6.1's 64-bit case) leaves krb_auth stored somewhere unnamed.
    s = sites[("auth_pseudoflavor", "ops->info2flavor")]
    assert s["targets"] == ["gss_info2flavor@escapes.c", "krb_info2flavor@escapes.c",
                            "null_info2flavor@escapes.c"]


# ---- definite stores (definite.c) ------------------------------------------------------------
DEF_ALL = ["chr_open@definite.c", "decoy_open@definite.c", "other_open@definite.c"]


def test_definite_store_before_the_call(sites):
    # chrdev_open's replace_fops(filp, fops); filp->f_op->open(filp): fops = p->ops holds the
    # cdev tables (chr_fops, other_fops), never decoy_fops, which only dfile_init stores.
    s = sites[("dchr_open", "filp->f_op->open")]
    assert s["targets"] == ["chr_open@definite.c", "other_open@definite.c"]
    # Read as 'fops->open', and fops as its one definition, 'p->ops'.
    assert s["base"]["via_store"] and s["base"]["via_local"]
    assert s["layers"] == [["struct dfops", "open"], ["struct dcdev", "ops"]]


def test_definite_store_in_a_loop_body(sites):
    s = sites[("dloop_inside", "filp->f_op->open")]
    assert s["targets"] == ["chr_open@definite.c", "other_open@definite.c"]


@pytest.mark.parametrize("caller", ["dmaybe_open", "dcall_between", "dother_base",
                                    "dcast_between", "dlabel", "dloop", "dloop_store"])
def test_store_that_may_not_hold_at_the_call(sites, caller):
    # One branch, a call, another base's f_op, a store through a cast, a label, an earlier
    # iteration's call or store: the call may read any table stored into (struct dfile, f_op).
    s = sites[(caller, "filp->f_op->open")]
    assert s["targets"] == DEF_ALL
    assert "via_store" not in s["base"]


@pytest.mark.parametrize("caller,expr", [
    ("dunion_nested", "u->f_op->open"), ("datomic_store", "filp->f_op->open"),
    ("dstruct_copy", "a.f_op->open"), ("dswitch_continue", "filp->f_op->open"),
    ("ddead_label", "filp->f_op->open"), ("dunsequenced", "filp->f_op->open"),
    ("dcleanup", "filp->f_op->open"), ("dsizeof", "filp->f_op->open")])
def test_store_that_may_not_hold_found_by_review(sites, caller, expr):
    # A union member under another name, an __atomic store, a struct copy taken for an alias,
    # 'continue' in a switch leaving a do-while(0), a goto into dead code, unsequenced
    # arguments, a cleanup function at scope exit, sizeof's unevaluated operand.
    s = sites[(caller, expr)]
    assert "via_store" not in s["base"]
    assert "decoy_open@definite.c" in s["targets"]


def test_gnu_binary_conditional_call_is_one_site(out):
    # 'f->f_op->open(f) ?: 7': clang lists the first operand three times (one cursor).
    hits = [s for s in read_json(out / "icalls.json") if s["caller"] == "delvis"]
    assert len(hits) == 1 and hits[0]["targets"] == DEF_ALL


def test_expression_deeper_than_the_python_stack_loses_nothing(tmp_path):
    """A 700-term sum in a function the definite-store pass analyses: the pass gives up on
    that function (no call read through the store) and the file's facts are kept."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    src = tmp_path / "src"
    src.mkdir()
    (src / "deep.c").write_text(
        "struct ops { int (*open)(int); };\n"
        "struct file { const struct ops *f_op; };\n"
        "struct cdev { const struct ops *ops; };\n"
        "static int o1(int x) { return x; }\n"
        "const struct ops O = { .open = o1 };\n"
        "int deep(struct cdev *p, struct file *f, int x)\n"
        "{\n\tint r = " + " + ".join(["x"] * 700) + ";\n"
        "\tf->f_op = p->ops;\n\treturn f->f_op->open(r);\n}\n")
    cc = compile_tree(src, tmp_path / "build")
    cmd = [sys.executable, "-m", "pipeline", "run", "--source", str(src), "--compile-commands",
           str(cc), "--output", str(tmp_path / "out"), "--to", "resolve", "--facts-store",
           str(tmp_path / "store"), "--no-progress", "-j", "1"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 TUs ok" in r.stdout and "0 failed" in r.stdout, r.stdout
    (site,) = read_json(tmp_path / "out" / "icalls.json")
    assert site["caller"] == "deep" and "via_store" not in site["base"]

