"""End-to-end timings per stage, cold and warm, and the cost of small source changes.

    python bench/end_to_end.py [--config configs/bpf-core.yaml] [--work DIR] [--skip-cold]

Steps, each a real ``kcg run`` into one output directory with its own facts store:

1. cold: nothing built, empty facts store;
2. rerun with nothing changed (target: <= 3% of cold);
3. one ``.c`` file changed (its content, not just its mtime): one TU re-parsed;
4. one widely included header changed: every TU that includes it re-parsed.

The kernel tree is a hard-linked copy of the configured source (``cp -al``: instant, no extra
space), so changing a file (write a new file, rename over) never touches the shared cache.
Prints a table and writes ``bench/results/<config>-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def kcg(*args: str) -> float:
    global _last_start
    time.sleep(1.1)  # manifests stamp seconds: keep this run's apart from the last one's
    _last_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pipeline", *args, "--no-progress"], cwd=REPO,
                       text=True, capture_output=True)
    if r.returncode != 0:
        sys.exit(f"kcg {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return time.monotonic() - t0


_last_start = ""


def stage_times(out: Path) -> dict[str, float | str]:
    """Seconds per stage in the last run; 'skipped' for stages it found up to date."""
    times: dict[str, float | str] = {}
    for m in sorted((out / "manifests").glob("*.json")):
        man = json.loads(m.read_text())
        ran = man["finished_at"] >= _last_start  # an untouched manifest is from an older run
        times[man["stage"]] = man["timings"]["seconds"] if ran else "skipped"
    return times


def parse_counts(out: Path) -> dict[str, int]:
    """TUs parsed in the last run (by parse-ahead during make, or by the parse stage) and TUs
    found in the store from earlier runs."""
    c = json.loads((out / "manifests" / "parse.json").read_text())["counts"]
    build = json.loads((out / "manifests" / "build.json").read_text())
    ahead = 0
    if build["finished_at"] >= _last_start:
        ahead = (build["counts"].get("parse_ahead") or {}).get("kept", 0)
    return {"parsed": c["parsed"] + ahead, "parsed_during_build": ahead,
            "cached": c["cached"] - ahead}


def rewrite(path: Path, extra: str) -> None:
    """Change a file's content through a new inode (the tree is hard-linked to a cache)."""
    text = path.read_text()
    tmp = path.with_name(path.name + ".kcg-bench")
    tmp.write_text(text + extra)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/bpf-core.yaml")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--c-file", default="kernel/bpf/helpers.c")
    ap.add_argument("--header", default="include/linux/bpf.h")
    ap.add_argument("--jobs", default=str(os.cpu_count() or 1))
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="kcg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((REPO / a.config).read_text())
    name = cfg["name"]

    # Resolve the configured source once (fills the cache), then hard-link a private copy.
    prep = work / "prep"
    kcg("source", "--config", a.config, "--output", str(prep))
    src = Path(json.loads((prep / "source.json").read_text())["path"])
    tree = work / "tree"
    if not tree.exists():
        subprocess.run(["cp", "-al", str(src), str(tree)], check=True)
    cfg["source"] = {"path": str(tree)}
    cfg["kconfig"]["fragments"] = [str((REPO / a.config).parent / f)
                                   for f in cfg["kconfig"].get("fragments", [])]
    cfg_file = work / f"{name}.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out, store = work / "out", work / "facts"
    base = ["run", "--config", str(cfg_file), "--output", str(out), "--facts-store", str(store),
            "--jobs", a.jobs]

    results: dict[str, object] = {
        "config": a.config, "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                                        "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d")}
    if out.exists():
        shutil.rmtree(out)
    if store.exists():
        shutil.rmtree(store)
    cold = kcg(*base)
    results["cold"] = {"wall": round(cold, 1), "stages": stage_times(out), **parse_counts(out)}
    warm = kcg(*base)
    results["rerun"] = {"wall": round(warm, 1), "ratio": round(warm / cold, 4),
                        "stages": stage_times(out), **parse_counts(out)}
    rewrite(tree / a.c_file, "\n/* kcg bench: one changed .c file */\n")
    one = kcg(*base)
    results["one_c_file"] = {"file": a.c_file, "wall": round(one, 1), "stages": stage_times(out),
                             **parse_counts(out)}
    rewrite(tree / a.header, "\n/* kcg bench: one changed header */\n")
    hdr = kcg(*base)
    results["one_header"] = {"file": a.header, "wall": round(hdr, 1), "stages": stage_times(out),
                             **parse_counts(out)}

    res_dir = REPO / "bench" / "results"
    res_dir.mkdir(exist_ok=True)
    dest = res_dir / f"{name}-{results['date']}.json"
    dest.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    print(f"\nwritten to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
