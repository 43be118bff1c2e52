"""BPF idioms: helper ids, program types, kfunc sets by era, roots, bpf_types.h and the uapi enum."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import bpf
from pipeline.build import read_kconfig
from pipeline.fsutil import read_json

# ---- headers ----------------------------------------------------------------------------------

UAPI_61 = """
#define __BPF_FUNC_MAPPER(FN)		\\
	FN(unspec),			\\
	FN(map_lookup_elem),		\\
	FN(map_update_elem),		\\
	FN(trace_printk),		\\
	/* */

#define __BPF_ENUM_FN(x) BPF_FUNC_ ## x
"""

UAPI_612 = """
#define ___BPF_FUNC_MAPPER(FN, ctx...)			\\
	FN(unspec, 0, ##ctx)				\\
	FN(map_lookup_elem, 1, ##ctx)			\\
	FN(trace_printk, 6, ##ctx)			\\
	/* */
"""


def test_func_ids_6_1_by_position():
    assert bpf.parse_func_ids(UAPI_61) == {
        "BPF_FUNC_unspec": 0, "BPF_FUNC_map_lookup_elem": 1, "BPF_FUNC_map_update_elem": 2,
        "BPF_FUNC_trace_printk": 3}


def test_func_ids_6_2_explicit_numbers():
    assert bpf.parse_func_ids(UAPI_612) == {
        "BPF_FUNC_unspec": 0, "BPF_FUNC_map_lookup_elem": 1, "BPF_FUNC_trace_printk": 6}


@pytest.mark.parametrize("expr, expect", [
    ("defined(CONFIG_A)", True),
    ("defined(CONFIG_M)", False),  # =m defines CONFIG_M_MODULE, not CONFIG_M
    ("IS_ENABLED(CONFIG_M)", True),
    ("IS_BUILTIN(CONFIG_M)", False),
    ("IS_MODULE(CONFIG_M)", True),
    ("defined(CONFIG_A) && !defined(CONFIG_N)", True),
    ("defined(CONFIG_N) || defined(CONFIG_A)", True),
    ("defined(CONFIG_N) || (defined(CONFIG_A) && defined(CONFIG_N))", False),
    ("CONFIG_A", True),
    ("0", False),
    ("defined(CONFIG_A) && FOO(1)", None),  # cannot be decided: said so
])
def test_eval_condition(expr, expect):
    assert bpf.eval_condition(expr, {"CONFIG_A": "y", "CONFIG_M": "m", "CONFIG_N": "n"}) == expect


BPF_TYPES = """\
#ifdef CONFIG_NET
BPF_PROG_TYPE(BPF_PROG_TYPE_SCHED_CLS, tc_cls_act,
              struct __sk_buff, struct sk_buff)
BPF_PROG_TYPE(BPF_PROG_TYPE_SCHED_ACT, tc_cls_act,
              struct __sk_buff, struct sk_buff)
#ifdef CONFIG_CGROUP_BPF
BPF_PROG_TYPE(BPF_PROG_TYPE_CGROUP_SKB, cg_skb, struct __sk_buff, struct sk_buff)
#endif
#endif
#if defined(CONFIG_BPF_JIT)
BPF_PROG_TYPE(BPF_PROG_TYPE_EXT, bpf_extension, void *, void *)
#elif defined(CONFIG_X)
BPF_PROG_TYPE(BPF_PROG_TYPE_X, x, void *, void *)
#else
BPF_PROG_TYPE(BPF_PROG_TYPE_Y, y, void *, void *)
#endif /* CONFIG_BPF_JIT */
BPF_PROG_TYPE(BPF_PROG_TYPE_SYSCALL, bpf_syscall, void *, void *)
BPF_MAP_TYPE(BPF_MAP_TYPE_ARRAY, array_map_ops)
"""


def test_bpf_types_with_config():
    kc = {"CONFIG_NET": "y", "CONFIG_BPF_JIT": "y", "CONFIG_X": "y"}
    got = {t["prog_type"]: t for t in bpf.parse_bpf_types(BPF_TYPES, kc)}
    assert {k: v["enabled"] for k, v in got.items()} == {
        "BPF_PROG_TYPE_SCHED_CLS": True, "BPF_PROG_TYPE_SCHED_ACT": True,
        "BPF_PROG_TYPE_CGROUP_SKB": False, "BPF_PROG_TYPE_EXT": True,
        "BPF_PROG_TYPE_X": False, "BPF_PROG_TYPE_Y": False, "BPF_PROG_TYPE_SYSCALL": True}
    assert got["BPF_PROG_TYPE_SCHED_ACT"]["verifier_ops"] == "tc_cls_act_verifier_ops"
    assert got["BPF_PROG_TYPE_CGROUP_SKB"]["condition"] == (
        "defined(CONFIG_NET) && defined(CONFIG_CGROUP_BPF)")
    assert got["BPF_PROG_TYPE_SCHED_ACT"]["line"] == 4
    # the #elif branch: taken only when no earlier one was
    kc2 = {"CONFIG_X": "y"}
    got2 = {t["prog_type"]: t["enabled"] for t in bpf.parse_bpf_types(BPF_TYPES, kc2)}
    assert (got2["BPF_PROG_TYPE_EXT"], got2["BPF_PROG_TYPE_X"], got2["BPF_PROG_TYPE_Y"]) == (
        False, True, False)


def test_bpf_types_without_config_keeps_everything_undecided():
    got = bpf.parse_bpf_types(BPF_TYPES, None)
    assert len(got) == 7
    assert {t["enabled"] for t in got if t["condition"]} == {None}
    assert [t["enabled"] for t in got if not t["condition"]] == [True]


def _kernel_61(bpf_core_build: Path) -> Path:
    """The Debian linux-source-6.1 tree the bpf-core build fixture unpacked."""
    return Path(read_json(bpf_core_build / "source.json")["path"])


@pytest.mark.kernel
def test_bpf_types_real_6_1(bpf_core_build):
    tree = _kernel_61(bpf_core_build)
    every = bpf.read_bpf_types(tree)
    assert len(every) == 31  # BPF_PROG_TYPE lines of 6.1's bpf_types.h
    assert {t["prog_type"] for t in every} >= {"BPF_PROG_TYPE_XDP", "BPF_PROG_TYPE_KPROBE",
                                                "BPF_PROG_TYPE_LSM", "BPF_PROG_TYPE_SYSCALL"}
    lsm = next(t for t in every if t["prog_type"] == "BPF_PROG_TYPE_LSM")
    assert lsm["condition"] == "defined(CONFIG_BPF_JIT) && defined(CONFIG_BPF_LSM)"
    kc = {"CONFIG_NET": "y", "CONFIG_BPF_EVENTS": "y", "CONFIG_CGROUP_BPF": "y",
          "CONFIG_INET": "y", "CONFIG_BPF_JIT": "y"}
    on = {t["prog_type"] for t in bpf.read_bpf_types(tree, kc) if t["enabled"]}
    assert "BPF_PROG_TYPE_LIRC_MODE2" not in on and "BPF_PROG_TYPE_LSM" not in on
    assert len(on) == 29
    ids = bpf.read_func_ids(tree)
    assert ids["BPF_FUNC_map_lookup_elem"] == 1 and ids["BPF_FUNC_user_ringbuf_drain"] == 209
    assert bpf.kfunc_set_macros(tree) == bpf.KFUNC_SET_MACROS_OLD


@pytest.mark.kernel
def test_bpf_types_real_6_1_with_build_config(bpf_core_build):
    """Against the bpf-core build's .config."""
    tree = _kernel_61(bpf_core_build)
    types = bpf.read_bpf_types(tree, read_kconfig(bpf_core_build / "build" / ".config"))
    assert all(t["enabled"] is not None for t in types)
    on = {t["prog_type"] for t in types if t["enabled"]}
    assert {"BPF_PROG_TYPE_XDP", "BPF_PROG_TYPE_TRACING", "BPF_PROG_TYPE_SYSCALL"} <= on


# ---- helper ids and program types -------------------------------------------------------------

# Modelled on 6.1: tc_cls_act_func_proto switches and falls back to bpf_sk_base_func_proto, which
# falls back to bpf_base_func_proto; the tracing switch returns bpf_get_trace_printk_proto(),
# whose own `return &bpf_trace_printk_proto;` sits outside any switch (invisible in the facts).
FACTS: dict = {
    "protos": [
        {"id": "bpf_map_lookup_elem_proto", "name": "bpf_map_lookup_elem_proto",
         "func": "bpf_map_lookup_elem", "file": "kernel/bpf/helpers.c", "line": 41},
        {"id": "bpf_skb_store_bytes_proto", "name": "bpf_skb_store_bytes_proto",
         "func": "bpf_skb_store_bytes", "file": "net/core/filter.c", "line": 1},
        {"id": "sk_reuseport_load_bytes_proto@net/core/filter.c",
         "name": "sk_reuseport_load_bytes_proto", "func": "sk_reuseport_load_bytes@net/core/filter.c",
         "file": "net/core/filter.c", "line": 2},
        {"id": "bpf_trace_printk_proto@kernel/trace/bpf_trace.c", "name": "bpf_trace_printk_proto",
         "func": "bpf_trace_printk@kernel/trace/bpf_trace.c", "file": "kernel/trace/bpf_trace.c",
         "line": 3},
        {"id": "bpf_tail_call_proto", "name": "bpf_tail_call_proto", "func": None,
         "file": "kernel/bpf/core.c", "line": 4},
        {"id": "bpf_ktime_get_ns_proto", "name": "bpf_ktime_get_ns_proto",
         "func": "bpf_ktime_get_ns", "file": "kernel/bpf/helpers.c", "line": 5},
        {"id": "bpf_gone_proto", "name": "bpf_gone_proto", "func": "bpf_gone",
         "file": "kernel/bpf/helpers.c", "line": 6},
    ],
    "proto_switches": [
        {"function": "bpf_base_func_proto", "fallbacks": [], "cases": [
            {"ids": ["BPF_FUNC_map_lookup_elem"], "protos": ["bpf_map_lookup_elem_proto"],
             "calls": []},
            {"ids": ["BPF_FUNC_tail_call"], "protos": ["bpf_tail_call_proto"], "calls": []},
            {"ids": ["BPF_FUNC_skb_load_bytes"], "protos": ["bpf_skb_store_bytes_proto"],
             "calls": []}]},
        {"function": "bpf_sk_base_func_proto", "fallbacks": ["bpf_base_func_proto"], "cases": []},
        {"function": "tc_cls_act_func_proto@net/core/filter.c",
         "fallbacks": ["bpf_sk_base_func_proto"], "cases": [
             {"ids": ["BPF_FUNC_skb_store_bytes"], "protos": ["bpf_skb_store_bytes_proto"],
              "calls": []}]},
        {"function": "sk_reuseport_func_proto@net/core/filter.c",
         "fallbacks": ["bpf_base_func_proto"], "cases": [
             # overrides the base's skb_load_bytes: the base's proto must not leak in
             {"ids": ["BPF_FUNC_skb_load_bytes"],
              "protos": ["sk_reuseport_load_bytes_proto@net/core/filter.c"], "calls": []}]},
        {"function": "bpf_tracing_func_proto", "fallbacks": ["bpf_base_func_proto"], "cases": [
            {"ids": ["BPF_FUNC_trace_printk"], "protos": [],
             "calls": ["bpf_get_trace_printk_proto@kernel/trace/bpf_trace.c"]}]},
        {"function": "bpf_get_trace_printk_proto@kernel/trace/bpf_trace.c", "fallbacks": [],
         "cases": []},
        {"function": "kprobe_prog_func_proto@kernel/trace/bpf_trace.c",
         "fallbacks": ["bpf_tracing_func_proto"], "cases": []},
    ],
    "verifier_ops": [
        {"id": "tc_cls_act_verifier_ops", "name": "tc_cls_act_verifier_ops",
         "get_func_proto": "tc_cls_act_func_proto@net/core/filter.c"},
        {"id": "sk_reuseport_verifier_ops", "name": "sk_reuseport_verifier_ops",
         "get_func_proto": "sk_reuseport_func_proto@net/core/filter.c"},
        {"id": "kprobe_verifier_ops", "name": "kprobe_verifier_ops",
         "get_func_proto": "kprobe_prog_func_proto@kernel/trace/bpf_trace.c"},
        {"id": "lirc_mode2_verifier_ops", "name": "lirc_mode2_verifier_ops",
         "get_func_proto": "bpf_base_func_proto"},
    ],
    "kfunc_sets": [
        {"name": "tracing_btf_ids", "macro": "BTF_SET8_START", "file": "kernel/bpf/helpers.c",
         "line": 1818, "kfuncs": [{"name": "crash_kexec", "flags": ["KF_DESTRUCTIVE"]},
                                  {"name": "bpf_obj_new_impl", "flags": ["KF_ACQUIRE", "KF_RET_NULL"]}]},
        {"name": "generic_btf_ids", "macro": "BTF_KFUNCS_START", "file": "kernel/bpf/helpers.c",
         "line": 2000, "kfuncs": [{"name": "bpf_task_acquire", "flags": ["KF_ACQUIRE"]}]},
    ],
    "id_lists": [
        {"name": "btf_allowlist_d_path", "macro": "BTF_SET_START", "file": "kernel/trace/bpf_trace.c",
         "line": 900, "names": ["vfs_truncate"]},
    ],
}

TYPES = [
    {"prog_type": "BPF_PROG_TYPE_SCHED_CLS", "verifier_ops": "tc_cls_act_verifier_ops", "enabled": True},
    {"prog_type": "BPF_PROG_TYPE_SCHED_ACT", "verifier_ops": "tc_cls_act_verifier_ops", "enabled": True},
    {"prog_type": "BPF_PROG_TYPE_SK_REUSEPORT", "verifier_ops": "sk_reuseport_verifier_ops",
     "enabled": True},
    {"prog_type": "BPF_PROG_TYPE_KPROBE", "verifier_ops": "kprobe_verifier_ops", "enabled": None},
    {"prog_type": "BPF_PROG_TYPE_LIRC_MODE2", "verifier_ops": "lirc_mode2_verifier_ops",
     "enabled": False},
]

FUNC_IDS = {"BPF_FUNC_map_lookup_elem": 1, "BPF_FUNC_trace_printk": 6, "BPF_FUNC_ktime_get_ns": 5,
            "BPF_FUNC_skb_store_bytes": 9, "BPF_FUNC_skb_load_bytes": 26}


def test_helper_ids():
    ids = bpf.helper_ids(FACTS, FUNC_IDS)
    assert ids["bpf_map_lookup_elem_proto"] == ["BPF_FUNC_map_lookup_elem"]
    assert ids["bpf_skb_store_bytes_proto"] == ["BPF_FUNC_skb_load_bytes", "BPF_FUNC_skb_store_bytes"]
    assert ids["sk_reuseport_load_bytes_proto@net/core/filter.c"] == ["BPF_FUNC_skb_load_bytes"]
    # through bpf_get_trace_printk_proto(): by the naming convention
    assert ids["bpf_trace_printk_proto@kernel/trace/bpf_trace.c"] == ["BPF_FUNC_trace_printk"]
    # in no switch at all: by its name, since the uapi enum has BPF_FUNC_ktime_get_ns
    assert ids["bpf_ktime_get_ns_proto"] == ["BPF_FUNC_ktime_get_ns"]
    assert "bpf_gone_proto" not in ids  # no switch, no enum entry: no id invented
    assert "bpf_ktime_get_ns_proto" not in bpf.helper_ids(FACTS)  # no enum: no name guessing


def test_prog_types_follow_fallbacks():
    types = bpf.proto_prog_types(FACTS, TYPES)
    # tc_cls_act -> bpf_sk_base_func_proto -> bpf_base_func_proto
    assert types["bpf_map_lookup_elem_proto"] == [
        "BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_SCHED_ACT", "BPF_PROG_TYPE_SCHED_CLS",
        "BPF_PROG_TYPE_SK_REUSEPORT"]
    # sk_reuseport overrides skb_load_bytes: base's proto for that id is not offered there
    assert types["bpf_skb_store_bytes_proto"] == [
        "BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_SCHED_ACT", "BPF_PROG_TYPE_SCHED_CLS"]
    assert types["sk_reuseport_load_bytes_proto@net/core/filter.c"] == [
        "BPF_PROG_TYPE_SK_REUSEPORT"]
    assert types["bpf_trace_printk_proto@kernel/trace/bpf_trace.c"] == ["BPF_PROG_TYPE_KPROBE"]
    # lirc_mode2 is disabled by the .config: it adds nothing
    assert all("BPF_PROG_TYPE_LIRC_MODE2" not in v for v in types.values())


def _graph_nodes(*ids: str, kfunc: tuple[str, ...] = ()) -> dict[str, dict]:
    return {i: {"id": i, "name": i.split("@", 1)[0], "bpf_kfunc": i in kfunc} for i in ids}


def test_find_roots_6_1():
    nodes = _graph_nodes(
        "bpf_map_lookup_elem", "____bpf_map_lookup_elem@kernel/bpf/helpers.c", "bpf_skb_store_bytes",
        "sk_reuseport_load_bytes@net/core/filter.c", "bpf_trace_printk@kernel/trace/bpf_trace.c",
        "bpf_ktime_get_ns", "crash_kexec", "bpf_task_acquire", "vfs_truncate", "my_extra@x.c",
        "dup@a.c", "dup@b.c")
    succ = {"bpf_map_lookup_elem": ["____bpf_map_lookup_elem@kernel/bpf/helpers.c"]}
    roots, problems = bpf.find_roots(
        FACTS, nodes, succ, extra=["my_extra", "dup", "nope"], bpf_types=TYPES, func_ids=FUNC_IDS,
        kfunc_macros=bpf.KFUNC_SET_MACROS_OLD)
    by = {r["id"]: r for r in roots}
    helpers = sorted(r["id"] for r in roots if r["kind"] == "helper")
    assert helpers == ["bpf_ktime_get_ns", "bpf_map_lookup_elem", "bpf_skb_store_bytes",
                       "bpf_trace_printk@kernel/trace/bpf_trace.c",
                       "sk_reuseport_load_bytes@net/core/filter.c"]
    m = by["bpf_map_lookup_elem"]
    assert m["body"] == "____bpf_map_lookup_elem@kernel/bpf/helpers.c"
    assert m["protos"] == ["bpf_map_lookup_elem_proto"]
    assert m["helper_ids"] == ["BPF_FUNC_map_lookup_elem"]
    assert "BPF_PROG_TYPE_SCHED_CLS" in m["prog_types"]
    # 6.1: BTF_SET8 sets are kfunc sets; the BTF_KFUNCS_START one is not of this era; an id list
    # (BTF_SET_START) never is
    assert by["crash_kexec"]["kind"] == "kfunc"
    assert by["crash_kexec"]["kfunc_flags"] == ["KF_DESTRUCTIVE"]
    assert by["crash_kexec"]["kfunc_sets"] == ["tracing_btf_ids"]
    assert "bpf_task_acquire" not in by and "vfs_truncate" not in by
    assert by["my_extra@x.c"]["kind"] == "extra"
    assert by["dup@a.c"]["kind"] == by["dup@b.c"]["kind"] == "extra"
    what = {(p["what"], p["root_kind"], p["ref"]) for p in problems}
    assert what == {("not_in_graph", "helper", "bpf_gone"),
                    ("not_in_graph", "kfunc", "bpf_obj_new_impl"),
                    ("ambiguous", "extra", "dup"), ("not_found", "extra", "nope")}


def test_find_roots_6_12_kfuncs():
    """v6.9+: BTF_KFUNCS_START sets and __bpf_kfunc definitions; BTF_SET8 sets are plain id sets."""
    nodes = _graph_nodes("crash_kexec", "bpf_task_acquire", "bpf_iter_num_new",
                         kfunc=("bpf_iter_num_new",))
    roots, problems = bpf.find_roots(FACTS, nodes, {}, helpers=False,
                                     kfunc_macros=bpf.kfunc_set_macros(None, FACTS["kfunc_sets"]))
    by = {r["id"]: r for r in roots}
    assert sorted(by) == ["bpf_iter_num_new", "bpf_task_acquire"]
    assert by["bpf_task_acquire"]["kfunc_flags"] == ["KF_ACQUIRE"]
    assert by["bpf_iter_num_new"]["kfunc_sets"] == []
    assert problems == []


def test_kfunc_of_a_static_resolves_to_its_own_file():
    facts = {"kfunc_sets": [{"name": "s", "macro": "BTF_SET8_START", "file": "b.c", "line": 1,
                             "kfuncs": [{"name": "f", "flags": []}]}]}
    nodes = _graph_nodes("f@a.c", "f@b.c")
    roots, problems = bpf.find_roots(facts, nodes, {}, helpers=False)
    assert [r["id"] for r in roots] == ["f@b.c"] and problems == []


def test_root_kinds_precedence_and_reach():
    facts = {"protos": [{"id": "p", "name": "p", "func": "h", "file": "a.c", "line": 1}]}
    nodes = _graph_nodes("h", "g", "k")
    roots, _ = bpf.find_roots(facts, nodes, {"h": ["g"]}, extra=["h"])
    assert roots[0]["kind"] == "helper" and roots[0]["kinds"] == ["helper", "extra"]
    assert bpf.reachable(["h"], {"h": ["g"], "g": ["h"]}) == {"h", "g"}
