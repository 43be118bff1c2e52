"""Time link + resolve on synthetic facts shaped like a full 6.1 defconfig kernel.

    python bench/link_resolve_synth.py [OUT_DIR] [--tus 2800] [--seed 1]

Writes a facts store, ``parse.json`` and a parse manifest under OUT_DIR (default: a temporary
directory), then runs the real link and resolve stages through the stage runner and prints
their wall times.  The shape (per TU: ~36 functions, ~110 direct calls, ~4.5 indirect sites,
~11 objects, ~15 stores, ~20 casts, ~45 address-taken uses; ~3,000 record types) follows the
counts of a 6.1 defconfig parse; the values are random, so only the times are meaningful.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.facts import FACTS_SCHEMA, empty_tu  # noqa: E402
from pipeline.runner import Context, run_stages  # noqa: E402


def make_docs(n_tus: int, rng: random.Random) -> list[dict]:
    n_records = 3000
    n_types = 4000
    records = [f"struct r{i}" for i in range(n_records)]
    fields = [f"f{i}" for i in range(12)]
    types = [f"int (struct t{i} *, int)" for i in range(n_types)]
    ext_names = [f"ext_fn_{i}" for i in range(n_tus * 20)]
    docs = []
    for t in range(n_tus):
        file = f"dir{t % 90}/file{t}.c"
        doc = empty_tu(file)
        fns = []
        for k in range(36):
            external = k < 20
            name = ext_names[t * 20 + k] if external else f"st_{k}"
            fid = name if external else f"{name}@{file}"
            calls = []
            for _ in range(110 // 36 + 1):
                callee = rng.choice(ext_names)
                calls.append({"kind": "direct", "callee": callee, "name": callee, "file": file,
                              "line": rng.randint(1, 5000), "col": 5, "expr": callee})
            if rng.random() < 4.5 / 36:
                depth = rng.choice((1, 2, 2, 3))
                layers = [[rng.choice(records), rng.choice(fields)] for _ in range(depth)]
                calls.append({"kind": "indirect", "fn_type": rng.choice(types), "layers": layers,
                              "base": {"kind": rng.choice(("param", "local", "global")),
                                       "name": "x"},
                              "subscript": False, "file": file, "line": rng.randint(1, 5000),
                              "col": 9, "expr": "x->y"})
            fns.append({"id": fid, "name": name, "linkage": "external" if external else
                        "internal", "file": file, "line": k * 10 + 1, "col": 5,
                        "type": rng.choice(types), "attrs": [], "section": None,
                        "bpf_kfunc": False, "calls": calls})
        doc["functions"] = fns
        for k in range(11):
            oid = f"obj{k}@{file}"
            rec = rng.choice(records)
            entries = []
            for _ in range(5):
                fn = rng.choice(fns)
                entries.append({"path": [[rec, rng.choice(fields)]],
                                "value": {"kind": "function", "id": fn["id"]}})
                doc["address_taken"].append({"id": fn["id"], "context": "init",
                                             "where": {"object": oid, "path": entries[-1]["path"]},
                                             "file": file, "line": k})
            if rng.random() < 0.3:
                entries.append({"path": [[rng.choice(records), rng.choice(fields)]],
                                "value": {"kind": "object", "id": f"obj{rng.randint(0, 10)}@{file}"}})
            doc["objects"].append({"id": oid, "name": f"obj{k}", "linkage": "internal",
                                   "type": rec, "file": file, "line": k, "entries": entries})
        for _ in range(15):
            r = rng.random()
            value = ({"kind": "function", "id": rng.choice(fns)["id"]} if r < 0.5 else
                     {"kind": "nonconst", "what": "param", "text": "p"} if r < 0.8 else
                     {"kind": "nonconst", "what": "field",
                      "layers": [[rng.choice(records), rng.choice(fields)]], "text": "y"})
            doc["stores"].append({"target": {"layers": [[rng.choice(records), rng.choice(fields)]]},
                                  "value": value, "function": fns[0]["id"], "file": file,
                                  "line": rng.randint(1, 5000)})
        for _ in range(20):
            a, b = rng.choice(records), rng.choice(records + [None] * 3000)
            doc["casts"].append({"from": a + " *", "to": (b or "void") + " *", "from_record": a,
                                 "to_record": b, "function": fns[1]["id"], "file": file,
                                 "line": rng.randint(1, 5000)})
        for _ in range(2):
            rec = rng.choice(records)
            doc["copies"].append({"dst_type": rec, "src_type": rec,
                                  "src": {"kind": "nonconst", "what": "param"},
                                  "function": fns[2]["id"], "file": file, "line": 3})
        docs.append(doc)
    return docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--tus", type=int, default=2800)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="kcg-synth-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    docs = make_docs(args.tus, random.Random(args.seed))
    store = out / "store"
    tus = []
    for i, d in enumerate(docs):
        key = f"t{i:039d}"
        p = store / key[:2] / f"{key}.json.gz"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(gzip.compress(json.dumps(d).encode(), compresslevel=5))
        tus.append({"file": d["file"], "key": key, "status": "ok", "error": None,
                    "cached": True})
    (out / "parse.json").write_text(json.dumps({
        "schema": FACTS_SCHEMA, "store": str(store), "source_root": str(out),
        "build_root": None, "tus": tus, "header_functions": [], "counts": {}}))
    (out / "manifests").mkdir(exist_ok=True)
    (out / "manifests" / "parse.json").write_text(json.dumps({"outputs": {"parse.json": "synth"}}))
    print(f"synthetic facts: {args.tus} TUs written in {time.monotonic() - t0:.1f}s to {out}")

    from pipeline import link, resolve

    ctx = Context(out=out, config=None, jobs=1, force=True, progress=False)
    rows = run_stages(ctx, [link.STAGE, resolve.STAGE], log=lambda s: None)
    for name, status, result in rows:
        print(f"{name:8} {status}  {result.summary if result else ''}")


if __name__ == "__main__":
    main()
