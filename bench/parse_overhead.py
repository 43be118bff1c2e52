"""Parse overhead: bare libclang parse vs parse + facts extraction, on the same TUs, one process.

    python bench/parse_overhead.py OUTPUT_DIR [--limit N] [--profile]

OUTPUT_DIR is a kcg output directory whose build stage has run (compile_commands.json,
source.json, build.json).  Each TU is parsed twice, alternating, so machine load affects both
sides alike; the ratio (parse+extract)/parse is what we track (target: <= 1.25).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from pathlib import Path

from clang import cindex as ci

from pipeline.build import load_compile_commands
from pipeline.extract import BTF_TEXT_RE, Extractor
from pipeline.facts import PathMap
from pipeline.fsutil import read_json
from pipeline.parse import FileHashes, make_tasks


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    src = read_json(a.out / "source.json")["path"]
    build = read_json(a.out / "build.json")
    paths = PathMap(src, build.get("build_dir"))
    tasks, _ = make_tasks(load_compile_commands(a.out / "compile_commands.json"), paths)
    random.Random(a.seed).shuffle(tasks)
    tasks = tasks[: a.limit]
    index = ci.Index.create()
    hashes = FileHashes()
    bare = full = extract_only = 0.0
    prof = cProfile.Profile() if a.profile else None
    # Like a parse worker: a header function is extracted once per process, not once per TU.
    seen_headers: set[str] = set()
    for t in tasks:
        text = Path(t["file"]).read_bytes()
        opts = ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD if BTF_TEXT_RE.search(text) else 0
        t0 = time.perf_counter()
        tu = index.parse(t["file"], args=t["args"], options=opts)
        bare += time.perf_counter() - t0
        del tu
        t0 = time.perf_counter()
        tu = index.parse(t["file"], args=t["args"], options=opts)
        t1 = time.perf_counter()
        if prof:
            prof.enable()
        Extractor(tu, t["file"], paths, file_hash=lambda rel: hashes(os.path.join(src, rel)),
                  seen_headers=seen_headers).run()
        if prof:
            prof.disable()
        t2 = time.perf_counter()
        full += t2 - t0
        extract_only += t2 - t1
        del tu
    n = len(tasks)
    print(f"TUs: {n}")
    print(f"bare parse:        {bare / n:.3f} s/TU")
    print(f"parse + extract:   {full / n:.3f} s/TU")
    print(f"extract alone:     {extract_only / n:.3f} s/TU")
    print(f"overhead ratio:    {full / bare:.3f}  (target <= 1.25)")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
