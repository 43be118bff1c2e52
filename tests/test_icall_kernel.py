"""Link and resolve on the real Linux 6.1 tree (bpf-core scope, see tests/conftest.py).

The expected targets are computed from the compiled source files, not typed in: the site in
``____bpf_map_lookup_elem`` (``map->ops->map_lookup_elem``) must reach every function assigned to
``.map_lookup_elem`` in a compiled TU, and none of the seq_operations functions of those files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.fsutil import read_json

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", params=[
    pytest.param("bpf-core", marks=pytest.mark.kernel),
    pytest.param("default", marks=pytest.mark.slow)])
def resolved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """parse → link → resolve on a copy of the bpf-core build outputs (the shared dir stays
    as the build stage left it), or the full default config (``make test-slow``)."""
    if request.param == "default":
        return request.getfixturevalue("default_pipeline")
    bpf_core_build = request.getfixturevalue("bpf_core_build")
    out = tmp_path_factory.mktemp("bpf-core-resolve")
    for name in ("source.json", "build.json", "compile_commands.json", "stack_usage.json"):
        shutil.copy(bpf_core_build / name, out / name)
    (out / "manifests").mkdir()
    for name in ("source.json", "build.json"):
        shutil.copy(bpf_core_build / "manifests" / name, out / "manifests" / name)
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(REPO / "configs" /
           "bpf-core.yaml"), "--output", str(out), "--from", "parse", "--to", "resolve",
           "--no-progress"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    return out


def _compiled_sources(out: Path) -> list[Path]:
    files = []
    for e in read_json(out / "compile_commands.json"):
        f = e["file"] if os.path.isabs(e["file"]) else os.path.join(e["directory"], e["file"])
        files.append(Path(f))
    return files


@pytest.mark.kernel
def test_map_lookup_elem_site_reaches_every_implementation(resolved: Path):
    assigned: set[str] = set()
    seq_fns: set[str] = set()
    for f in _compiled_sources(resolved):
        text = f.read_text(errors="replace")
        assigned.update(re.findall(r"\.map_lookup_elem\s*=\s*(\w+)", text))
        seq_fns.update(re.findall(r"\.(?:start|next|stop|show)\s*=\s*(\w+)", text))
    assert len(assigned) >= 20
    sites = [s for s in read_json(resolved / "icalls.json")
             if s["caller"].startswith("____bpf_map_lookup_elem@")]
    assert len(sites) == 1
    (site,) = sites
    assert site["layers"] == [["struct bpf_map_ops", "map_lookup_elem"], ["struct bpf_map", "ops"]]
    names = {t.split("@")[0] for t in site["targets"]}
    assert names == assigned
    assert not names & seq_fns
    assert site["type_layer_count"] > len(names)


# drivers/base/power/runtime.c and include/linux/pm.h (6.1): where runtime PM callbacks are set.
RUNTIME_SLOT_RE = re.compile(r"(?:\.|->)runtime_(?:idle|suspend|resume)\s*=\s*(\w+)")
PM_OPS_MACRO_RE = re.compile(r"\b(?:SET_RUNTIME_PM_OPS|RUNTIME_PM_OPS|UNIVERSAL_DEV_PM_OPS|"
                             r"DEFINE_RUNTIME_DEV_PM_OPS|DEFINE_UNIVERSAL_DEV_PM_OPS|"
                             r"_DEFINE_DEV_PM_OPS)\s*\(([^;]*?)\)")


@pytest.mark.slow
def test_runtime_pm_callbacks_reach_the_runtime_slots(default_pipeline: Path):
    """``callback = RPM_GET_CALLBACK(dev, runtime_idle)`` reads a ``dev_pm_ops`` slot at an
    ``offsetof``: its targets are the runtime slots' functions, not the whole
    ``int (struct device *)`` class."""
    assigned: set[str] = set()
    in_macros: set[str] = set()
    for f in _compiled_sources(default_pipeline):
        text = f.read_text(errors="replace")
        assigned.update(RUNTIME_SLOT_RE.findall(text))
        for args in PM_OPS_MACRO_RE.findall(text):
            in_macros.update(re.findall(r"\b[a-z_]\w*\b", args))
    # Text under a disabled #ifdef is in the files too (acpi_lpss.c without
    # CONFIG_X86_INTEL_LPSS): only functions the build compiled count.
    compiled = {n["name"] for n in read_json(default_pipeline / "graph.json.gz")["nodes"]
                if n.get("defined")}
    assigned &= compiled
    assert len(assigned) >= 10
    sites = {s["caller"].split("@")[0]: s for s in read_json(default_pipeline / "icalls.json")
             if s["file"] == "drivers/base/power/runtime.c" and s["expr"] == "callback"}
    site = sites["rpm_idle"]
    names = {t.split("@")[0] for t in site["targets"]}
    assert site["resolution"] == "var"
    assert assigned <= names  # every designated runtime slot (sound)
    assert names <= assigned | in_macros  # nothing but runtime slots (narrow)
    assert len(names) * 3 < site["type_layer_count"]


@pytest.mark.kernel
def test_metrics_and_graph_are_consistent(resolved: Path):
    metrics = read_json(resolved / "metrics.json")
    icalls = read_json(resolved / "icalls.json")
    assert metrics["sites"] == len(icalls) > 100
    assert metrics["tus_failed"] == 0
    assert metrics["targets"]["mean"] < metrics["type_layer"]["mean"]
    graph = read_json(resolved / "graph.json.gz")
    ids = {n["id"] for n in graph["nodes"]}
    for e in graph["edges"]:
        assert e["source"] in ids and e["target"] in ids
    n_indirect = sum(1 for e in graph["edges"] if e["kind"] == "indirect")
    assert n_indirect == metrics["graph"]["indirect_edges"]
