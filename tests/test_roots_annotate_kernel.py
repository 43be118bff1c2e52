"""End to end on the real 6.1 bpf-core build: source -> ... -> roots -> annotate via the CLI.

Checked against facts computed here independently of the pipeline: the ``struct bpf_func_proto``
objects with a non-NULL ``.func`` found by a regex over the compiled ``.c`` files (honouring their
``#if CONFIG_...`` blocks with the build's .config), and the ``.su`` rows read by plain splitting.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from pipeline.bpf import eval_condition
from pipeline.build import read_kconfig
from pipeline.facts import PathMap
from pipeline.fsutil import read_json
from pipeline.stackusage import fold_name

REPO = Path(__file__).resolve().parent.parent
PROTO = re.compile(r"^(?:static\s+)?const\s+struct\s+bpf_func_proto\s+(\w+)\s*=\s*\{(.*?)^\};",
                   re.M | re.S)
DIRECTIVE = re.compile(r"#\s*(ifdef|ifndef|if|elif|else|endif)\b\s*(.*)")


def active_text(text: str, kconfig: dict[str, str]) -> str:
    """The lines the preprocessor keeps, as far as CONFIG_ options decide (anything else: kept)."""
    out: list[str] = []
    stack: list[list[bool]] = []  # [this branch active, some branch of the chain taken]
    for line in text.splitlines():
        m = DIRECTIVE.match(line.strip())
        if m:
            kind, rest = m.group(1), re.sub(r"/\*.*?\*/|//.*", "", m.group(2)).strip()
            if kind in ("ifdef", "ifndef", "if", "elif"):
                cond = f"defined({rest})" if kind in ("ifdef", "ifndef") else rest
                v = eval_condition(cond, kconfig)
                v = True if v is None else (not v if kind == "ifndef" else v)
                if kind == "elif":
                    stack[-1] = [v and not stack[-1][1], stack[-1][1] or v]
                else:
                    stack.append([v, v])
            elif kind == "else":
                stack[-1] = [not stack[-1][1], True]
            elif stack:
                stack.pop()
            out.append("")
            continue
        out.append(line if all(a for a, _ in stack) else "")
    return "\n".join(out)


def protos_in_tree(out: Path) -> list[tuple[str, str]]:
    """(proto name, .func name) of every proto with a non-NULL .func in the compiled TUs."""
    kconfig = read_kconfig(Path(read_json(out / "build.json")["build_dir"]) / ".config")
    found = []
    for e in read_json(out / "compile_commands.json"):
        f = e["file"] if os.path.isabs(e["file"]) else os.path.join(e["directory"], e["file"])
        text = active_text(Path(f).read_text(errors="replace"), kconfig)
        for m in PROTO.finditer(text):
            fm = re.search(r"\.func\s*=\s*(\w+)", m.group(2))
            if fm and fm.group(1) != "NULL":
                found.append((m.group(1), fm.group(1)))
    return found


@pytest.fixture(scope="module", params=[
    pytest.param("bpf-core", marks=pytest.mark.kernel),
    pytest.param("default", marks=pytest.mark.slow)])
def annotated(request) -> Path:
    """bpf-core (every CI run) or the full default config (``make test-slow``)."""
    if request.param == "default":
        return request.getfixturevalue("default_pipeline")
    bpf_core_build = request.getfixturevalue("bpf_core_build")
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(REPO / "configs/bpf-core.yaml"),
           "--to", "annotate", "--output", str(bpf_core_build), "--no-progress"]
    r = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True, timeout=3600)
    if r.returncode != 0:
        pytest.fail(f"kcg run --to annotate failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}",
                    pytrace=False)
    print(r.stdout[-6000:])
    return bpf_core_build


@pytest.mark.kernel
def test_helper_roots_are_the_protos_with_a_func(annotated):
    protos = protos_in_tree(annotated)
    bpf_roots = read_json(annotated / "bpf_roots.json")
    helpers = [r for r in bpf_roots["roots"] if r["kind"] == "helper"]
    assert bpf_roots["counts"]["protos_with_func"] == len(protos)
    # one root per function: a function two protos name (bpf_skb_event_output for
    # bpf_skb_event_output_proto and bpf_skb_output_proto) is one root holding both protos
    assert sum(len(r["protos"]) for r in helpers) == len(protos)
    assert len(helpers) == len({func for _, func in protos})
    assert all(r["body"] for r in helpers)  # every 6.1 helper here is a BPF_CALL_n
    roots = {r["id"]: r for r in read_json(annotated / "roots.json")}
    assert len(roots) == len(bpf_roots["roots"])
    m = roots["bpf_map_lookup_elem"]
    assert m["helper_ids"] == ["BPF_FUNC_map_lookup_elem"]
    assert {"BPF_PROG_TYPE_XDP", "BPF_PROG_TYPE_KPROBE", "BPF_PROG_TYPE_SOCKET_FILTER",
            "BPF_PROG_TYPE_TRACING"} <= set(m["prog_types"])
    assert m["path"][:2] == ["bpf_map_lookup_elem", "____bpf_map_lookup_elem@kernel/bpf/helpers.c"]
    assert m["reachable"] > 2 and m["max_stack"] > 0


@pytest.mark.kernel
def test_frames_in_bpf_map_lookup_elem_reach_are_the_su_frames(annotated):
    build = read_json(annotated / "build.json")
    pm = PathMap(build["source"], build["build_dir"])
    # A function's frame is its largest row, plus its largest .part clone's (the .part is
    # called from the rest of the function: gcc's partial inlining).
    whole: dict[tuple[str, str], int] = {}
    part: dict[tuple[str, str], int] = {}
    for f in read_json(annotated / "stack_usage.json")["files"]:
        for line in Path(f).read_text().splitlines():
            loc, size, _q = line.split("\t")
            path, _l, _c, name = loc.rsplit(":", 3)
            key = (pm.rel(path, build["build_dir"]), fold_name(name))
            bucket = part if ".part" in name else whole
            bucket[key] = max(bucket.get(key, 0), int(size))
    su = {k: whole.get(k, 0) + part.get(k, 0) for k in whole.keys() | part.keys()}
    g = nx.node_link_graph(read_json(annotated / "graph.json.gz"), edges="edges")
    frames = read_json(annotated / "frames.json")["nodes"]
    body = "____bpf_map_lookup_elem@kernel/bpf/helpers.c"
    reach = nx.descendants(g, body) | {body}
    checked = 0
    for n in sorted(reach):
        a = g.nodes[n]
        key = (a.get("file"), a.get("name"))
        if key in su:
            assert frames[n]["frame"] == su[key], n
            checked += 1
    assert frames[body]["frame"] == 0 and frames[body]["inlined"]
    assert checked > 5


@pytest.mark.kernel
def test_callgraph_contract(annotated):
    cg = read_json(annotated / "callgraph.json")
    g = nx.node_link_graph(cg, edges="edges")
    assert g.is_directed() and not g.is_multigraph()
    keys = {"id", "name", "file", "line", "linkage", "defined", "inlined", "frame",
            "frame_qualifier", "root", "helper_id", "max_stack", "max_stack_bounded",
            "max_stack_path"}
    assert all(set(n) == keys for n in cg["nodes"])
    assert {e["kind"] for e in cg["edges"]} <= {"direct", "indirect"}
    assert g.nodes["bpf_map_lookup_elem"]["root"] == "helper"
    assert g.nodes["bpf_map_lookup_elem"]["helper_id"] == "BPF_FUNC_map_lookup_elem"
    reach = set(read_json(annotated / "bpf_roots.json")["reachable"])
    assert set(g) == reach
