"""The parse stage: exact facts from fixture C trees, caching, crash-proofing, bad input;
and the real 6.1 kernel/bpf/helpers.c."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.compdb import clang_args
from pipeline.fsutil import read_json
from pipeline.store import FactsStore
from tests.ctree import compile_tree

FIXTURE = Path(__file__).parent / "fixtures" / "parse"


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict[str, Any]:
    """The fixture tree compiled by gcc and run through the parse stage in direct-tree mode."""
    root = tmp_path_factory.mktemp("parse")
    src = root / "src"
    shutil.copytree(FIXTURE, src)
    cc = compile_tree(src, root / "build")
    out, store = root / "out", root / "store"
    from tests.conftest import run_kcg

    r = run_kcg("run", "--source", src, "--compile-commands", cc, "--output", out, "--to",
                "parse", "--facts-store", store, "--no-progress")
    assert r.returncode == 0, r.stderr
    index = read_json(out / "parse.json")
    st = FactsStore(store)
    tus = {t["file"]: st.get(t["key"]) for t in index["tus"]}
    headers = [st.get(k) for k in index["header_functions"]]
    return {"root": root, "src": src, "cc": cc, "out": out, "store": store, "index": index,
            "tus": tus, "headers": headers, "stdout": r.stdout, "stderr": r.stderr}


def fn(parsed: dict[str, Any], tu: str, name: str) -> dict[str, Any]:
    matches = [f for f in parsed["tus"][tu]["functions"] if f["name"] == name]
    assert len(matches) == 1, (name, [f["name"] for f in parsed["tus"][tu]["functions"]])
    return matches[0]


def test_every_tu_parsed_without_errors(parsed):
    idx = parsed["index"]
    assert sorted(t["file"] for t in idx["tus"]) == ["helpers.c", "maps.c", "other.c"]
    assert all(t["status"] == "ok" and t["errors"] == 0 for t in idx["tus"]), idx["tus"]
    assert "3 TUs ok" in parsed["stdout"]


def test_bpf_call_wrapper_is_a_direct_call_at_the_macro_use(parsed):
    wrapper = fn(parsed, "helpers.c", "bpf_map_lookup_elem")
    body = fn(parsed, "helpers.c", "____bpf_map_lookup_elem")
    assert (wrapper["linkage"], wrapper["file"], wrapper["line"]) == ("external", "helpers.c", 3)
    assert body["id"] == "____bpf_map_lookup_elem@helpers.c" and body["linkage"] == "internal"
    assert body["line"] == 3  # the macro's use, not its definition in the header
    assert [c["callee"] for c in wrapper["calls"]] == ["____bpf_map_lookup_elem@helpers.c"]
    assert wrapper["calls"][0]["kind"] == "direct"
    assert body["type"] == "unsigned long long (struct bpf_map *, void *)"


def test_ops_call_has_its_layers(parsed):
    body = fn(parsed, "helpers.c", "____bpf_map_lookup_elem")
    (site,) = [c for c in body["calls"] if c["kind"] == "indirect"]
    assert site["layers"] == [["struct bpf_map_ops", "map_lookup_elem"], ["struct bpf_map", "ops"]]
    assert site["base"] == {"kind": "param", "name": "map"}
    assert site["fn_type"] == "void *(struct bpf_map *, void *)"
    assert (site["line"], site["expr"]) == (5, "map->ops->map_lookup_elem")


def test_protos_and_switches(parsed):
    bpf = parsed["tus"]["helpers.c"]["bpf"]
    protos = {p["id"]: p["func"] for p in bpf["protos"]}
    assert protos == {"bpf_map_lookup_elem_proto": "bpf_map_lookup_elem",
                      "bpf_tail_call_proto": None,  # NULL .func is not a helper
                      "bpf_ktime_get_ns_proto": "ktime@helpers.c"}  # positional initializer
    sw = {s["function"]: s for s in bpf["proto_switches"]}
    base = sw["bpf_base_func_proto"]
    assert base["cases"] == [
        {"ids": ["BPF_FUNC_map_lookup_elem", "BPF_FUNC_map_update_elem"],
         "protos": ["bpf_map_lookup_elem_proto"], "calls": []},
        {"ids": ["BPF_FUNC_ktime_get_ns"], "protos": ["bpf_ktime_get_ns_proto"], "calls": []},
        {"ids": ["BPF_FUNC_trace_printk"], "protos": [], "calls": ["bpf_trace_printk_proto_get"]},
    ]
    tc = sw["tc_func_proto@helpers.c"]
    assert tc["fallbacks"] == ["bpf_base_func_proto"]
    assert bpf["verifier_ops"] == [{"id": "tc_cls_act_verifier_ops",
                                    "name": "tc_cls_act_verifier_ops",
                                    "get_func_proto": "tc_func_proto@helpers.c"}]


def test_kfunc_sets_from_macros(parsed):
    bpf = parsed["tus"]["helpers.c"]["bpf"]
    (kset,) = bpf["kfunc_sets"]
    assert (kset["name"], kset["macro"], kset["line"]) == ("generic_btf_ids", "BTF_SET8_START", 71)
    # The #ifdef'd entry is in a block the preprocessor skipped: not a kfunc.
    assert kset["kfuncs"] == [{"name": "bpf_obj_new_impl", "flags": ["KF_ACQUIRE", "KF_RET_NULL"]},
                              {"name": "bpf_old_kfunc", "flags": []}]
    assert bpf["id_lists"] == [{"name": "deny_list", "macro": "BTF_SET_START",
                                "file": "helpers.c", "line": 79, "names": ["bpf_old_kfunc"]}]
    assert fn(parsed, "helpers.c", "bpf_obj_new_impl")["bpf_kfunc"] is True
    assert fn(parsed, "helpers.c", "bpf_old_kfunc")["bpf_kfunc"] is False


def test_attributes_linkage_and_sections(parsed):
    weak = fn(parsed, "helpers.c", "arch_hook")
    assert weak["linkage"] == "weak" and "weak" in weak["attrs"]
    assert fn(parsed, "other.c", "arch_hook")["linkage"] == "external"
    entry = fn(parsed, "helpers.c", "entry_fn")
    assert entry["section"] == ".noinstr.text"
    assert {"noinline", "notrace", "noinstr"} <= set(entry["attrs"])
    kf = fn(parsed, "helpers.c", "bpf_obj_new_impl")
    assert {"used", "noinline", "bpf_kfunc"} <= set(kf["attrs"])


def test_initializers_designated_positional_nested(parsed):
    objs = {o["id"]: o for o in parsed["tus"]["maps.c"]["objects"]}
    assert objs["array_map_ops"]["entries"] == [
        {"path": [["struct bpf_map_ops", "map_lookup_elem"]],
         "value": {"kind": "function", "id": "array_map_lookup_elem@maps.c"}},
        {"path": [["struct bpf_map_ops", "map_update_elem"]],
         "value": {"kind": "function", "id": "array_map_update_elem@maps.c"}},
    ]
    assert [e["path"] for e in objs["array_seq_ops"]["entries"]] == [
        [["struct seq_operations", "start"]], [["struct seq_operations", "stop"]]]
    # A named member of anonymous type gets its name from the parent record and field.
    assert objs["the_table@maps.c"]["entries"] == [
        {"path": [["struct table", "handlers"], ["struct table::handlers", "cb"]],
         "value": {"kind": "function", "id": "cb_one@maps.c"}}]
    assert objs["hook@maps.c"]["entries"] == [
        {"path": [], "value": {"kind": "function", "id": "cb_one@maps.c"}}]
    assert [e["path"] for e in objs["cb_array@maps.c"]["entries"]] == [[["[]", 0]], [["[]", 1]]]
    # Fields of a transparent anonymous member read as the parent's.
    protos = {o["id"]: o for o in parsed["tus"]["helpers.c"]["objects"]}
    paths = [e["path"] for e in protos["bpf_map_lookup_elem_proto"]["entries"]]
    assert [["struct bpf_func_proto", "func"]] in paths


def test_stores_setters_casts_and_object_stores(parsed):
    doc = parsed["tus"]["maps.c"]
    stores = [(s["target"], s["value"]["kind"], s["value"].get("what")) for s in doc["stores"]]
    assert ({"layers": [["struct notifier_block", "notifier_call"]]}, "nonconst", "param") in stores
    assert ({"layers": [["struct bpf_map", "ops"]]}, "object", None) in stores
    casts = [(c["from_record"], c["to_record"]) for c in doc["casts"]]
    assert ("struct bpf_map", "struct other") in casts


def test_calls_through_vars_arrays_and_locals(parsed):
    use = fn(parsed, "maps.c", "use")
    ind = {c["expr"]: c for c in use["calls"] if c["kind"] == "indirect"}
    assert ind["ops->map_lookup_elem"]["layers"] == [
        ["struct bpf_map_ops", "map_lookup_elem"], ["struct bpf_map", "ops"]]
    assert ind["ops->map_lookup_elem"]["base"]["via_local"] is True
    assert ind["hook"]["base"] == {"kind": "static", "id": "hook@maps.c", "name": "hook"}
    assert ind["cb_array[i]"]["base"]["kind"] == "array"
    assert ind["the_table.handlers.cb"]["layers"] == [
        ["struct table::handlers", "cb"], ["struct table", "handlers"]]
    assert ind["the_table.handlers.cb"]["base"]["id"] == "the_table@maps.c"


def test_statics_with_one_name_and_header_inline(parsed):
    a = fn(parsed, "maps.c", "call_same")["calls"][0]["callee"]
    b = fn(parsed, "other.c", "call_other")["calls"]
    assert a == "same_name@maps.c"
    assert b[0]["callee"] == "same_name@other.c"
    assert "map_id@include/kbpf.h" in [c["callee"] for c in b]
    # The header inline is one function, extracted once for all TUs that use it.
    heads = [h for h in parsed["headers"] if h["function"]["id"] == "map_id@include/kbpf.h"]
    assert len(heads) == 1 and heads[0]["function"]["file"] == "include/kbpf.h"
    users = [f for f, d in parsed["tus"].items() if heads[0]["key"] in d["header_functions"]]
    assert sorted(users) == ["helpers.c", "maps.c", "other.c"]


def test_address_taken_contexts(parsed):
    at = parsed["tus"]["maps.c"]["address_taken"]
    ctx = {(a["id"], a["context"]) for a in at}
    assert ("array_map_lookup_elem@maps.c", "init") in ctx
    assert ("cb_one@maps.c", "init") in ctx
    types = {a["id"]: a["type"] for a in at}
    assert types["cb_one@maps.c"] == "int (int)"
    assert types["array_map_lookup_elem@maps.c"] == "void *(struct bpf_map *, void *)"


def test_rerun_parses_nothing_and_touching_a_header_reparses_its_users(parsed, tmp_path):
    from tests.conftest import run_kcg

    args = ["run", "--source", parsed["src"], "--compile-commands", parsed["cc"], "--output",
            parsed["out"], "--to", "parse", "--facts-store", parsed["store"], "--no-progress"]
    r = run_kcg(*args)
    assert r.returncode == 0 and "(3 cached, 0 parsed)" in r.stdout, r.stdout
    other = parsed["src"] / "other.c"
    other.write_text(other.read_text() + "\n/* touched */\n")
    r = run_kcg(*args)
    assert "(2 cached, 1 parsed)" in r.stdout, r.stdout
    hdr = parsed["src"] / "include" / "kbpf.h"
    hdr.write_text(hdr.read_text() + "\n/* touched */\n")
    r = run_kcg(*args)
    assert "(0 cached, 3 parsed)" in r.stdout, r.stdout


def test_corrupted_cache_entry_is_reparsed(parsed):
    from tests.conftest import run_kcg

    idx = read_json(parsed["out"] / "parse.json")
    key = next(t["key"] for t in idx["tus"] if t["file"] == "maps.c")
    FactsStore(parsed["store"]).path(key).write_bytes(b"\x1f\x8bgarbage")
    r = run_kcg("run", "--source", parsed["src"], "--compile-commands", parsed["cc"], "--output",
                parsed["out"], "--to", "parse", "--facts-store", parsed["store"], "--no-progress")
    assert r.returncode == 0
    assert "(2 cached, 1 parsed)" in r.stdout and "corrupted" in r.stdout, r.stdout


def test_bad_entries_are_recorded_failures_not_tracebacks(tmp_path):
    from tests.conftest import run_kcg

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.c").write_text("int ok(void) { return 0; }\n")
    (src / "crash.c").write_text("int crash(void) { return 1; }\n")
    cc = tmp_path / "cc.json"
    cc.write_text(json.dumps([
        {"directory": str(src), "file": str(src / "ok.c"), "command": "gcc -D__KERNEL__ -c ok.c"},
        {"directory": str(src), "file": str(src / "gone.c"),
         "command": "gcc -D__KERNEL__ -c gone.c"},
        {"directory": str(src), "file": str(src / "nocmd.c"), "arguments": []},
        {"directory": str(src), "file": str(src / "crash.c"),
         "command": "gcc -D__KERNEL__ -c crash.c"},
    ]))
    # KCG_TEST_CRASH makes the worker kill itself on that TU, as a libclang segfault would.
    r = run_kcg("run", "--source", src, "--compile-commands", cc, "--output", tmp_path / "out",
                "--to", "parse", "--facts-store", tmp_path / "store", "--no-progress",
                env={"KCG_TEST_CRASH": "crash.c"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    idx = read_json(tmp_path / "out" / "parse.json")
    status = {t["file"]: (t["status"], t["error"]) for t in idx["tus"]}
    assert status["ok.c"] == ("ok", None)
    assert status["gone.c"][0] == "failed" and "missing" in status["gone.c"][1]
    assert "crash.c" in status and status["crash.c"][0] == "failed"
    assert "signal" in status["crash.c"][1]


def test_not_json_compile_database(tmp_path):
    from tests.conftest import run_kcg

    cc = tmp_path / "cc.json"
    cc.write_text("this is not json")
    r = run_kcg("run", "--source", tmp_path, "--compile-commands", cc, "--output",
                tmp_path / "out", "--to", "parse", "--no-progress")
    assert r.returncode == 2
    assert "not a JSON compile database" in r.stderr and "Traceback" not in r.stderr


def test_gcc_flags_are_sanitised():
    argv = ["gcc", "-Wp,-MMD,kernel/.x.o.d", "-nostdinc", "-I./include", "-include",
            "./include/linux/kconfig.h", "-D__KERNEL__", "-std=gnu11", "-Werror",
            "-mrecord-mcount", "-fconserve-stack", "-mindirect-branch=thunk-extern",
            "-mpreferred-stack-boundary=3", "-falign-jumps=1", "-fzero-call-used-regs=used-gpr",
            "-c", "-o", "kernel/x.o", "kernel/x.c"]
    out = clang_args(argv, "kernel/x.c", "/b")
    assert out[:7] == ["-nostdinc", "-I/b/include", "-include", "/b/include/linux/kconfig.h",
                       "-D__KERNEL__", "-std=gnu11", "-Wno-unknown-warning-option"]
    rejected = ("-Werror", "-Wp,", "-mrecord-mcount", "-fconserve-stack", "-mindirect-branch",
                "-mpreferred-stack-boundary", "-falign-jumps", "-fzero-call-used-regs", "-o", "-c")
    assert not any(a.startswith(rejected) for a in out), out


@pytest.mark.kernel
def test_real_kernel_helpers_c(bpf_core_build, tmp_path):
    """Linux 6.1 kernel/bpf/helpers.c, parsed from the real bpf-core build."""
    from pipeline.build import load_compile_commands
    from pipeline.facts import PathMap
    from pipeline.parse import make_tasks, parse_one

    src = read_json(bpf_core_build / "source.json")["path"]
    build = read_json(bpf_core_build / "build.json")["build_dir"]
    paths = PathMap(src, build)
    tasks, bad = make_tasks(load_compile_commands(bpf_core_build / "compile_commands.json"), paths)
    assert not bad
    (task,) = [t for t in tasks if t["rel"] == "kernel/bpf/helpers.c"]
    doc = parse_one(task, None, os.path.realpath(src), os.path.realpath(build))["doc"]
    assert doc["status"] == "ok" and doc["diagnostics"]["error"] == 0, doc["diagnostics"]
    protos = {p["id"]: p["func"] for p in doc["bpf"]["protos"]}
    assert protos["bpf_map_lookup_elem_proto"] == "bpf_map_lookup_elem"
    fns = {f["id"]: f for f in doc["functions"]}
    assert "____bpf_map_lookup_elem@kernel/bpf/helpers.c" in [
        c["callee"] for c in fns["bpf_map_lookup_elem"]["calls"] if c["kind"] == "direct"]
    body = fns["____bpf_map_lookup_elem@kernel/bpf/helpers.c"]
    layers = [c["layers"] for c in body["calls"] if c["kind"] == "indirect"]
    assert [["struct bpf_map_ops", "map_lookup_elem"], ["struct bpf_map", "ops"]] in layers
    sw = {s["function"]: s for s in doc["bpf"]["proto_switches"]}
    ids = {i for c in sw["bpf_base_func_proto"]["cases"] for i in c["ids"]}
    assert {"BPF_FUNC_map_lookup_elem", "BPF_FUNC_ktime_get_ns"} <= ids


def test_dask_executor_gives_byte_identical_facts(tmp_path):
    """A LocalCluster on loopback runs the same parse; the stored facts are byte-identical."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    from tests.conftest import run_kcg

    src = tmp_path / "src"
    shutil.copytree(FIXTURE, src)
    cc = compile_tree(src, tmp_path / "build")
    stores = {}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        for executor in ("local", "dask"):
            extra = ["--executor", "dask", "--scheduler", cluster.scheduler_address] \
                if executor == "dask" else []
            r = run_kcg("run", "--source", src, "--compile-commands", cc, "--output",
                        tmp_path / f"out-{executor}", "--to", "parse", "--facts-store",
                        tmp_path / f"store-{executor}", "--no-progress", *extra)
            assert r.returncode == 0, r.stderr
            stores[executor] = tmp_path / f"store-{executor}"
    local_idx = read_json(tmp_path / "out-local" / "parse.json")
    dask_idx = read_json(tmp_path / "out-dask" / "parse.json")
    assert [t["key"] for t in local_idx["tus"]] == [t["key"] for t in dask_idx["tus"]]
    assert local_idx["header_functions"] == dask_idx["header_functions"]
    for key in [t["key"] for t in local_idx["tus"]] + local_idx["header_functions"]:
        a = FactsStore(stores["local"]).path(key).read_bytes()
        b = FactsStore(stores["dask"]).path(key).read_bytes()
        assert a == b, key


def test_nested_switch_keeps_its_label_and_default_protos_are_kept(parsed):
    sw = {s["function"]: s for s in parsed["tus"]["helpers.c"]["bpf"]["proto_switches"]}
    cg = sw["cg_func_proto@helpers.c"]
    assert cg["cases"] == [{"ids": ["BPF_FUNC_ktime_get_ns"], "protos": ["bpf_ktime_get_ns_proto"],
                            "calls": []}]
    assert cg["unlabeled"] == ["bpf_map_lookup_elem_proto"]


def test_functions_a_header_makes_the_tu_define(parsed):
    """lsm_hook_defs.h-style: definitions expanded in a header are the TU's functions."""
    hooks = [f for f in parsed["tus"]["helpers.c"]["functions"] if f["name"].startswith("hook_")]
    assert [(f["id"], f["file"], f["line"]) for f in hooks] == [
        ("hook_alpha", "include/hooks.h", 3), ("hook_beta", "include/hooks.h", 4)]
    assert [c["callee"] for c in hooks[0]["calls"]] == ["cg_func_proto@helpers.c"]


def _tiny_tree(tmp_path: Path, files: dict[str, str], included: tuple[str, ...] = ()
               ) -> dict[str, dict[str, Any]]:
    """Compile a few files and extract each TU on its own (no facts store: every TU
    extracts the header functions it uses); {TU file: parse_one's result}."""
    from pipeline.build import load_compile_commands
    from pipeline.facts import PathMap
    from pipeline.parse import make_tasks, parse_one

    src, build = tmp_path / "src", tmp_path / "build"
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    cc = compile_tree(src, build, included=included)
    tasks, bad = make_tasks(load_compile_commands(cc), PathMap(str(src), str(build)))
    assert not bad
    out = {}
    for task in tasks:
        r = parse_one(task, None, os.path.realpath(src), os.path.realpath(build),
                      skip_known_headers=False)
        assert r["doc"]["status"] == "ok", r["doc"]["diagnostics"]
        out[task["rel"]] = r
    return out


def test_top_level_is_the_main_file_and_the_c_files_it_includes(tmp_path):
    """What a TU walks: its own definitions and variables, those of a ``.c`` file it
    includes (kernel/sched/build_policy.c), a function a macro defines there (a macro
    location) — not a header's prototypes, extern variables and inline functions."""
    tus = _tiny_tree(tmp_path, {
        "include/hdr.h":
            "extern int hdr_decl(int);\n"
            "extern void (*hdr_hook)(void);\n"
            "static inline int hdr_inline(int x) { return hdr_decl(x) - 1; }\n"
            "#define DEFINE_CB(name) void name(void) { }\n",
        "part.c":
            "DEFINE_CB(part_cb)\n"
            "static void (*part_hook)(void) = part_cb;\n"
            "static inline int part_inline(int x) { return x * 3; }\n"
            "int part_fn(int x) { part_hook(); return part_inline(x); }\n",
        "unit.c":
            '#include "hdr.h"\n'
            "void (*main_hook)(void);\n"
            '#include "part.c"\n'
            "static inline int main_inline(int x) { return x + 1; }\n"
            "int use(int x) { return main_inline(x) + hdr_inline(x) + part_fn(x); }\n",
    }, included=("part.c",))
    r = tus["unit.c"]
    assert sorted(f["id"] for f in r["doc"]["functions"]) == [
        "main_inline@unit.c", "part_cb", "part_fn", "part_inline@part.c", "use"]
    assert sorted(o["id"] for o in r["doc"]["objects"]) == ["main_hook", "part_hook@part.c"]
    assert [h["function"]["id"] for h in r["headers"]] == ["hdr_inline@include/hdr.h"]


# include/linux/compiler.h and compiler_types.h, reduced.
COUNTER_H = """
#define ___PASTE(a, b) a##b
#define __PASTE(a, b) ___PASTE(a, b)
#define __UNIQUE_ID(prefix) __PASTE(__PASTE(__UNIQUE_ID_, prefix), __COUNTER__)
#define __compiletime_assert(cond, msg, prefix, suffix) do { \\
        extern void prefix ## suffix(void) __attribute__((__error__(msg))); \\
        if (!(cond)) prefix ## suffix(); } while (0)
#define _compiletime_assert(cond, msg, prefix, suffix) \\
        __compiletime_assert(cond, msg, prefix, suffix)
#define BUILD_BUG_ON(cond) _compiletime_assert(!(cond), "bad", __compiletime_assert_, __COUNTER__)
#define __deref(p, local) ({ struct ops *local = (p); local; })
#define deref(p) __deref(p, __UNIQUE_ID(rcu))
struct ops { int (*fn)(int); };
int twice(int x);
static inline int call_ops(struct ops *o, int x)
{
        static int (*__UNIQUE_ID(hook))(int) __attribute__((used)) = twice;
        BUILD_BUG_ON(sizeof(x) != 4);
        return deref(o)->fn(x);
}
#define __cmp_once(x, y, ux, uy) ({ int ux = (x); int uy = (y); ux < uy ? ux : uy; })
#define min(x, y) __cmp_once(x, y, __UNIQUE_ID(x_), __UNIQUE_ID(y_))
struct kv { int (*fn)(int); int len; };
static inline int with_kv(int n)
{
        struct kv kv = { .fn = twice, .len = min(n, 4) };
        struct kv __UNIQUE_ID(tmp) = { .fn = twice, .len = n };  /* seqlock.h's local, reduced */
        return kv.fn(kv.len);
}
"""


def test_header_function_facts_do_not_depend_on_the_tu_that_extracts_them(tmp_path):
    """__COUNTER__ (rcu_dereference's __UNIQUE_ID local, __ADDRESSABLE's static local,
    compiletime_assert's function) has another value in each TU that expands a header's
    inline function; whichever TU extracts it first, its facts are the same, and
    compiletime_assert's call (never in a built kernel) is not a call."""
    tus = _tiny_tree(tmp_path, {
        "include/uniq.h": COUNTER_H,
        "a.c": '#include "uniq.h"\nint twice(int x) { return 2 * x; }\n'
               "int a(struct ops *o) { return call_ops(o, 1) + with_kv(2); }\n",
        "b.c": "static int c0 = __COUNTER__, c1 = __COUNTER__, c2 = __COUNTER__;\n"
               '#include "uniq.h"\n'
               "int b(struct ops *o) { return call_ops(o, c0 + c1 + c2) + with_kv(c0); }\n",
    })
    by_id = {name: {h["function"]["id"]: h for h in tus[name]["headers"]} for name in tus}
    assert sorted(by_id["a.c"]) == ["call_ops@include/uniq.h", "with_kv@include/uniq.h"]
    assert by_id["a.c"] == by_id["b.c"]
    text = re.sub(r":\d+:\d+", "", json.dumps(by_id["a.c"]))  # places are stable
    assert "__UNIQUE_ID_tmp" in text and not re.search(r"__UNIQUE_ID_\w*?\d", text)
    ha = by_id["a.c"]["call_ops@include/uniq.h"]
    fn = ha["function"]
    assert fn["id"] == "call_ops@include/uniq.h"
    assert [c["kind"] for c in fn["calls"]] == ["indirect"]
    (obj,) = ha["objects"]
    assert obj["id"] == "call_ops.__UNIQUE_ID_hook:17:22@include/uniq.h"
    text = json.dumps(ha)
    assert "__UNIQUE_ID_rcu" in text and "__compiletime_assert" not in text


def test_two_trees_sharing_a_store_keep_their_own_facts(tmp_path):
    """6.1 after 6.12 (or a patched copy of a tree) with one facts store: the same file and
    arguments, a byte-identical header whose inline function calls into a header that
    differs.  Neither the TU cache (keyed by file and arguments) nor the header function's
    document (keyed by its own file) may hand the first tree's facts to the second."""
    import gzip

    from tests.conftest import run_kcg

    common = {
        "include/ref.h": '#include "atomic.h"\nstruct ref { int v; };\n'
                         "static inline int ref_get(struct ref *r) { return inc_ret(&r->v); }\n",
        "user.c": '#include "ref.h"\nint use(struct ref *r) { return ref_get(r); }\n',
    }
    trees = {
        "old": {"include/atomic.h": "static inline int inc_ret(int *v) { return ++*v; }\n"},
        "new": {"include/atomic.h": "static inline int raw_inc(int *v) { return ++*v; }\n"
                                    "static inline int inc_ret(int *v) { return raw_inc(v); }\n"},
    }
    store = tmp_path / "store"
    graphs = {}
    for name, files in trees.items():
        src = tmp_path / name / "src"
        for rel, text in {**common, **files}.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        cc = compile_tree(src, tmp_path / name / "build")
        out = tmp_path / name / "out"
        r = run_kcg("run", "--source", src, "--compile-commands", cc, "--output", out, "--to",
                    "link", "--facts-store", store, "--no-progress")
        assert r.returncode == 0, r.stderr
        linked = json.loads(gzip.decompress((out / "linked.json.gz").read_bytes()))
        graphs[name] = ({n["id"]: n.get("line") for n in linked["nodes"]},
                        sorted((e["src"], e["dst"]) for e in linked["direct_edges"]))
    nodes, edges = graphs["new"]
    assert nodes["inc_ret@include/atomic.h"] == 2
    assert ("inc_ret@include/atomic.h", "raw_inc@include/atomic.h") in edges
    assert ("ref_get@include/ref.h", "inc_ret@include/atomic.h") in edges
    old_nodes, old_edges = graphs["old"]
    assert old_nodes["inc_ret@include/atomic.h"] == 1 and "raw_inc@include/atomic.h" not in old_nodes


def test_attributes_inside_macros_come_from_the_ast(parsed):
    stub = fn(parsed, "helpers.c", "__x64_sys_bpf")
    assert stub["linkage"] == "weak" and "weak" in stub["attrs"]
    body = fn(parsed, "helpers.c", "____bpf_map_lookup_elem")  # BPF_CALL_2's __always_inline
    assert {"always_inline", "inline"} <= set(body["attrs"])
    assert "inline" not in fn(parsed, "helpers.c", "bpf_map_lookup_elem")["attrs"]


def test_evicted_header_function_is_extracted_again(parsed):
    from tests.conftest import run_kcg

    idx = read_json(parsed["out"] / "parse.json")
    store = FactsStore(parsed["store"])
    key = next(k for k in idx["header_functions"]
               if store.get(k)["function"]["id"] == "map_id@include/kbpf.h")
    store.path(key).unlink()
    r = run_kcg("run", "--source", parsed["src"], "--compile-commands", parsed["cc"], "--output",
                parsed["out"], "--to", "parse", "--facts-store", parsed["store"], "--no-progress")
    assert r.returncode == 0 and "could not be extracted" not in r.stdout, r.stdout
    # Extracted again, under the key of this run's context (pipeline.parse.header_context:
    # the key it had if that run parsed the same TUs in the same state, else a new one).
    keys = read_json(parsed["out"] / "parse.json")["header_functions"]
    assert all(store.has(k) for k in keys)
    # TUs parsed in different runs may name different documents of one header function:
    # extracted from the same files, they say the same.
    docs = [store.get(k)["function"] for k in keys]
    mine = [d for d in docs if d["id"] == "map_id@include/kbpf.h"]
    assert mine and all(d == mine[0] for d in mine)
