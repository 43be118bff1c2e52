"""The parse stage: libclang facts for every translation unit — parallel, cached, crash-proof.

Input: ``compile_commands.json`` (kernel TUs), ``source.json``, ``build.json``.
Output: ``parse.json`` (per TU: facts key, status, cached or not; all header-function keys) and
documents in the facts store (:mod:`pipeline.store`).

Each TU is parsed in a worker process.  A worker that crashes (libclang segfaults on a few
inputs) or hangs past ``--tu-timeout`` is replaced and the TU is recorded as failed with the
reason; the run goes on.  A TU whose inputs (arguments, and the content of every file its last
parse read) are unchanged is not parsed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.build import load_compile_commands
from pipeline.compdb import clang_args, command_args, unknown_argument
from pipeline.facts import FACTS_SCHEMA, PathMap, failed_tu
from pipeline.fsutil import KcgError, read_json, sha256_json, write_json
from pipeline.runner import Context, Stage, StageResult, stage_input_hash
from pipeline.store import DEFAULT_MAX_BYTES, FactsStore

# Tests make a worker die on one TU to check that a crash costs that TU only.
_CRASH_FOR_TESTS = os.environ.get("KCG_TEST_CRASH")
TU_TIMEOUT = float(os.environ.get("KCG_TU_TIMEOUT", "600"))
MAX_ARG_RETRIES = 8


def _extractor_version() -> int:
    from pipeline.extract import EXTRACTOR_VERSION

    return EXTRACTOR_VERSION


# ---- tasks ------------------------------------------------------------------------------------


def make_tasks(entries: list[dict[str, Any]], paths: PathMap) -> tuple[list[dict[str, Any]],
                                                                      list[dict[str, Any]]]:
    """Compile-database entries → parse tasks; entries that cannot be parsed → failed records."""
    tasks, bad = [], []
    seen: set[str] = set()
    for i, e in enumerate(entries):
        file = e.get("file") if isinstance(e, dict) else None
        if not isinstance(file, str) or not file:
            bad.append({"file": f"<entry {i}>", "error": "entry has no 'file'"})
            continue
        directory = str(e.get("directory") or ".")
        path = file if os.path.isabs(file) else os.path.normpath(os.path.join(directory, file))
        rel = paths.rel(path)
        if rel in seen:  # kbuild compiles a few files twice (e.g. for two objects): once is enough
            continue
        seen.add(rel)
        try:
            args = clang_args(command_args(e), file, directory)
        except ValueError as err:
            bad.append({"file": rel, "error": str(err)})
            continue
        if not os.path.isfile(path):
            bad.append({"file": rel, "error": f"source file missing: {path}"})
            continue
        tasks.append({"file": path, "rel": rel, "directory": directory, "args": args})
    return tasks, bad


def _portable(s: str, paths: PathMap) -> str:
    """Replace the tree roots by placeholders so keys match across output directories."""
    if paths.build_root:
        s = s.replace(paths.build_root, "@BUILD@")
    return s.replace(paths.source_root, "@SRC@")


def _local(s: str, paths: PathMap) -> str | None:
    """A :func:`_portable` path in this run's trees (None: it names a build tree this run
    does not have)."""
    if s.startswith("@BUILD@"):
        return paths.build_root + s[len("@BUILD@"):] if paths.build_root else None
    if s.startswith("@SRC@"):
        return paths.source_root + s[len("@SRC@"):]
    return s


def manifest_key(task: dict[str, Any], paths: PathMap) -> str:
    h = sha256_json([FACTS_SCHEMA, _extractor_version(), _portable(task["file"], paths),
                     [_portable(a, paths) for a in task["args"]]])
    return "m" + h[:40]


def result_key(task: dict[str, Any], includes: list[list[str]], paths: PathMap) -> str:
    h = sha256_json([FACTS_SCHEMA, _extractor_version(), _portable(task["file"], paths),
                     [_portable(a, paths) for a in task["args"]],
                     [[_portable(p, paths), d] for p, d in includes]])
    return "t" + h[:40]


class FileHashes:
    """Content hashes of source files, computed once per run."""

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        h = self._memo.get(path)
        if h is None:
            try:
                with open(path, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                h = "missing"
            self._memo[path] = h
        return h


# ---- the worker -----------------------------------------------------------------------------

_INDEX = None
_SEEN_HEADERS: set[str] = set()
_HASHES = FileHashes()


def parse_one(task: dict[str, Any], store_root: str | None, source_root: str,
              build_root: str | None, skip_known_headers: bool = True) -> dict[str, Any]:
    """Parse one TU and extract its facts.  Runs in a worker (local process or Dask)."""
    global _INDEX
    from clang import cindex as ci

    from pipeline.extract import BTF_TEXT_RE, Extractor

    if _INDEX is None:
        _INDEX = ci.Index.create()
    paths = PathMap(source_root, build_root)
    store = FactsStore(store_root) if store_root and skip_known_headers else None
    try:
        with open(task["file"], "rb") as f:
            main_text = f.read()
    except OSError as e:
        return {"doc": failed_tu(task["rel"], f"cannot read source: {e}"), "headers": [],
                "includes": []}
    options = ci.TranslationUnit.PARSE_DETAILED_PROCESSING_RECORD if BTF_TEXT_RE.search(
        main_text) else 0
    args = list(task["args"])
    stripped: list[str] = []
    t0 = time.monotonic()
    for _ in range(MAX_ARG_RETRIES):
        try:
            tu = _INDEX.parse(task["file"], args=args, options=options)
        except ci.TranslationUnitLoadError as e:
            return {"doc": failed_tu(task["rel"], f"libclang could not parse: {e}"),
                    "headers": [], "includes": []}
        bad = None
        for d in tu.diagnostics:
            if d.severity >= ci.Diagnostic.Error and (a := unknown_argument(d.spelling)):
                bad = a
                break
        if bad is None or bad not in args:
            break
        args.remove(bad)
        stripped.append(bad)
    parse_s = time.monotonic() - t0

    def rel_hash(rel: str) -> str:
        p = rel if os.path.isabs(rel) else (
            os.path.join(build_root, rel) if build_root and os.path.exists(
                os.path.join(build_root, rel)) else os.path.join(source_root, rel))
        return _HASHES(p)

    ex = Extractor(tu, task["file"], paths, file_hash=rel_hash,
                   seen_headers=_SEEN_HEADERS if skip_known_headers else set(),
                   store_has=store.has if store else None,
                   header_context=task.get("header_context", ""))
    doc = ex.run()
    diags = {"error": 0, "warning": 0, "fatal": 0, "first": []}
    for d in tu.diagnostics:
        sev = {ci.Diagnostic.Warning: "warning", ci.Diagnostic.Error: "error",
               ci.Diagnostic.Fatal: "fatal"}.get(d.severity)
        if sev is None:
            continue
        diags[sev] += 1
        if sev != "warning" and len(diags["first"]) < 5:
            loc = d.location
            where = f"{paths.rel(loc.file.name)}:{loc.line}:{loc.column}" if loc.file else "?"
            diags["first"].append(f"{where}: {d.spelling}")
    includes = []
    for inc in sorted({os.path.normpath(i.include.name) for i in tu.get_includes()}
                      | {os.path.normpath(task["file"])}):
        includes.append([inc, _HASHES(inc)])
    doc["diagnostics"] = diags
    doc["stripped_args"] = stripped
    doc["includes"] = [paths.rel(p) for p, _ in includes]
    # Timings stay out of the document: facts must be byte-identical from run to run.
    timing = {"parse": round(parse_s, 3), "extract": round(time.monotonic() - t0 - parse_s, 3)}
    del tu
    return {"doc": doc, "headers": ex.header_docs, "includes": includes, "timing": timing}


def _worker_main(conn: Any, store_root: str | None, source_root: str, build_root: str | None,
                 idle: bool = False) -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool and kills its
    # workers; a worker's own KeyboardInterrupt would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if idle:
        _idle_priority()
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        task, skip_known = msg
        if _CRASH_FOR_TESTS and task["rel"].endswith(_CRASH_FOR_TESTS):
            os.kill(os.getpid(), signal.SIGSEGV)  # what a libclang crash looks like to us
        try:
            result = parse_one(task, store_root, source_root, build_root, skip_known)
        except Exception as e:  # an extractor bug must cost one TU, not the run
            import traceback

            result = {"doc": failed_tu(task["rel"], f"extractor error: {e!r}: "
                                       + traceback.format_exc(limit=3)[-800:]),
                      "headers": [], "includes": []}
        conn.send(result)


def _idle_priority() -> None:
    """Run only on otherwise idle CPU time: SCHED_IDLE on Linux, else the lowest nice."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


class WorkerPool:
    """Worker processes that survive libclang crashes and hangs (one TU each at a time)."""

    def __init__(self, jobs: int, store_root: str | None, source_root: str,
                 build_root: str | None, timeout: float = TU_TIMEOUT, *,
                 start_method: str = "fork", idle: bool = False):
        # "spawn" when the pool runs beside other threads (parse-ahead): a forked child would
        # inherit whatever locks those threads hold.
        self.ctx = mp.get_context(start_method)
        self.jobs, self.timeout = jobs, timeout
        self.args = (store_root, source_root, build_root, idle)
        self.workers: list[dict[str, Any]] = []

    def _spawn(self) -> dict[str, Any]:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(child, *self.args), daemon=True)
        p.start()
        child.close()
        return {"proc": p, "conn": parent, "task": None, "started": 0.0}

    def run(self, tasks: list[tuple[dict[str, Any], bool]], on_result: Any,
            stop: threading.Event | None = None) -> None:
        """Parse ``tasks``, calling ``on_result(task, result)`` for each; ``stop`` ends the run
        early (the TUs in flight are abandoned, their workers killed)."""
        pending = list(reversed(tasks))
        self.workers = [self._spawn() for _ in range(min(self.jobs, len(tasks)))]
        try:
            while pending or any(w["task"] for w in self.workers):
                if stop is not None and stop.is_set():
                    for w in self.workers:
                        if w["task"] is not None:
                            w["proc"].kill()
                    break
                for i, w in enumerate(self.workers):
                    if w["task"] is None and pending:
                        item = pending.pop()
                        try:
                            w["conn"].send(item)
                        except (BrokenPipeError, OSError):
                            pending.append(item)
                            self._replace(i)
                            continue
                        w["task"], w["started"] = item, time.monotonic()
                busy = [w for w in self.workers if w["task"] is not None]
                ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy],
                             timeout=5.0 if stop is None else 1.0)
                now = time.monotonic()
                for i, w in enumerate(self.workers):
                    if w["task"] is None:
                        continue
                    task = w["task"][0]
                    if w["conn"] in ready:
                        try:
                            result = w["conn"].recv()
                        except (EOFError, OSError):
                            result = None
                        if result is not None:
                            w["task"] = None
                            on_result(task, result)
                            continue
                    if w["proc"].sentinel in ready or not w["proc"].is_alive():
                        w["proc"].join(timeout=5)  # reap it, so exitcode is set
                        code = w["proc"].exitcode
                        why = f"libclang worker died (signal {-code})" if code and code < 0 else \
                            f"libclang worker exited ({code})"
                        on_result(task, {"doc": failed_tu(task["rel"], why), "headers": [],
                                         "includes": []})
                        self._replace(i)
                    elif now - w["started"] > self.timeout:
                        on_result(task, {"doc": failed_tu(
                            task["rel"], f"timeout: no result after {self.timeout:.0f}s"),
                            "headers": [], "includes": []})
                        self._replace(i)
        finally:
            for w in self.workers:
                with contextlib.suppress(BrokenPipeError, OSError):
                    w["conn"].send(None)
            for w in self.workers:
                w["proc"].join(timeout=5)
                if w["proc"].is_alive():
                    w["proc"].kill()

    def _replace(self, i: int) -> None:
        w = self.workers[i]
        if w["proc"].is_alive():
            w["proc"].kill()
        w["proc"].join(timeout=5)
        self.workers[i] = self._spawn()


# ---- the stage -------------------------------------------------------------------------------


def parse_inputs(ctx: Context) -> dict[str, Any]:
    return {"build": stage_input_hash(ctx, "build"), "schema": FACTS_SCHEMA,
            "extractor": _extractor_version(), "store": str(store_root(ctx))}


def parse_always_run(ctx: Context) -> bool:
    # Sources can change without the compile database changing; the per-TU cache makes a
    # rerun with nothing changed cheap, so always look.
    return True


def store_root(ctx: Context) -> Path:
    from pipeline.store import default_store_root

    return (ctx.facts_store or default_store_root()).resolve()


def run_parse(ctx: Context) -> StageResult:
    src = read_json(ctx.need("source.json", "source"))
    build = read_json(ctx.need("build.json", "build"))
    entries = load_compile_commands(ctx.need("compile_commands.json", "build"))
    source_root = os.path.realpath(src["path"])
    build_root = os.path.realpath(build["build_dir"]) if build.get("build_dir") else None
    paths = PathMap(source_root, build_root)
    store = FactsStore(store_root(ctx))
    # Eviction runs before lookups, never during a run: what this run reads stays put.
    evicted = store.evict(int(os.environ.get("KCG_FACTS_MAX_BYTES", DEFAULT_MAX_BYTES)))
    tasks, bad = make_tasks(entries, paths)
    t0 = time.monotonic()
    work = {"parse_s": 0.0, "extract_s": 0.0}
    hashes = FileHashes()

    records: dict[str, dict[str, Any]] = {}
    for b in bad:
        records[b["file"]] = {"file": b["file"], "key": None, "status": "failed",
                              "error": b["error"], "cached": False}
    # Cache lookups: the TU's manifest lists what its last parse read; unchanged → reuse.
    todo: list[dict[str, Any]] = []
    docs: dict[str, dict[str, Any]] = {}
    manifests = Manifests(store, paths)
    for task in tasks:
        hit = cached_result(manifests, task, hashes)
        if hit is not None:
            docs[task["rel"]] = hit[1]
            records[task["rel"]] = _record(task["rel"], hit[0], hit[1], cached=True)
        else:
            todo.append(task)

    def on_result(task: dict[str, Any], result: dict[str, Any]) -> None:
        doc = result["doc"]
        for k, v in result.get("timing", {}).items():
            work[f"{k}_s"] += v
        key = store_result(store, task, result, paths)
        docs[task["rel"]] = doc
        records[task["rel"]] = _record(task["rel"], key, doc, cached=False)
        bar.update(1)
        if doc["status"] != "ok":
            bar.write(f"parse: {task['rel']}: FAILED: {doc['error'][:200]}")

    with tqdm(total=len(todo), unit="TU", desc="parse", disable=not ctx.progress,
              file=sys.stderr) as bar:
        if todo:
            todo = with_header_context(manifests, todo, hashes)
            run_tasks(ctx, [(t, True) for t in todo], on_result, store, source_root, build_root)
        # Header functions are extracted once per worker; a cached TU may name one whose entry
        # was evicted.  Re-extract those through a TU that uses them.
        closure, stale, header_fns = _header_closure(docs, store)
        if stale:
            redo = with_header_context(manifests, [
                t for t in tasks if set(docs[t["rel"]].get("header_functions", [])) & stale],
                hashes)
            bar.total = (bar.total or 0) + len(redo)
            run_tasks(ctx, [(t, False) for t in redo], on_result, store, source_root,
                      build_root)
            closure, stale, header_fns = _header_closure(docs, store)
    elapsed = time.monotonic() - t0
    missing = {k for k in closure if not store.has(k)}

    all_headers = sorted(closure)
    tus = [records[k] for k in sorted(records)]
    ok = [r for r in tus if r["status"] == "ok"]
    failed = [r for r in tus if r["status"] != "ok"]
    counts = {
        "tus": len(tus), "ok": len(ok), "failed": len(failed),
        "cached": sum(r["cached"] for r in tus), "parsed": len(todo),
        "with_errors": sum(1 for r in ok if r["errors"]),
        "functions": sum(r["functions"] for r in ok) + len(header_fns),
        "header_functions": len(header_fns), "header_documents": len(all_headers),
        "call_sites": sum(r["calls"] for r in ok),
        "indirect_sites": sum(r["indirect"] for r in ok),
        "address_taken": sum(r["address_taken"] for r in ok),
        "corrupted_entries": len(store.corrupted), "missing_headers": len(missing),
        "evicted_entries": evicted, "seconds": round(elapsed, 1),
        # Worker time summed over TUs parsed in this run: libclang's parse vs our extraction.
        "worker_parse_s": round(work["parse_s"], 1),
        "worker_extract_s": round(work["extract_s"], 1),
    }
    # parse.json holds only what the facts are, not how this run got them (cache hits,
    # timings: those go to the manifest), so an unchanged rerun leaves it byte-identical and
    # the later stages stay skipped.
    write_json(ctx.path("parse.json"), {
        "schema": FACTS_SCHEMA, "store": str(store.root), "source_root": source_root,
        "build_root": build_root, "tus": [{k: v for k, v in r.items() if k != "cached"}
                                          for r in tus],
        "header_functions": all_headers})
    summary = [
        f"parse: {counts['ok']} TUs ok ({counts['cached']} cached, {counts['parsed']} parsed), "
        f"{counts['failed']} failed, {counts['with_errors']} with clang errors, {elapsed:.1f}s",
        f"  {counts['functions']} functions ({counts['header_functions']} in headers), "
        f"{counts['call_sites']} call sites, {counts['indirect_sites']} indirect, "
        f"{counts['address_taken']} address-taken uses",
    ]
    for r in failed[:10]:
        summary.append(f"  FAILED {r['file']}: {r['error'][:150]}")
    if work["parse_s"]:
        summary.append(f"  worker time: libclang parse {work['parse_s']:.0f}s, extraction "
                       f"{work['extract_s']:.0f}s (+{100 * work['extract_s'] / work['parse_s']:.0f}%)")
    if store.corrupted:
        summary.append(f"  {len(set(store.corrupted))} corrupted cache entries re-parsed")
    if missing:
        summary.append(f"  {len(missing)} header functions could not be extracted")
    return StageResult(outputs=["parse.json"], counts=counts, summary=summary,
                       tools={"libclang": _libclang_version()})


def store_result(store: FactsStore, task: dict[str, Any], result: dict[str, Any],
                 paths: PathMap) -> str | None:
    """Put a parsed TU (its document, header functions and cache manifest) in the store."""
    for h in result["headers"]:
        store.put(h["key"], h)
    doc = result["doc"]
    if doc["status"] != "ok":
        return None
    key = result_key(task, result["includes"], paths)
    store.put(key, doc)
    # Portable paths: the manifest's key is (the same file and arguments in any tree), so
    # another tree (6.12 after 6.1, a patched copy) must check *its own* files against it.
    store.put(manifest_key(task, paths), {
        "schema": FACTS_SCHEMA, "kind": "manifest", "result": key,
        "includes": [[_portable(p, paths), d] for p, d in result["includes"]]})
    return key


class Manifests:
    """The TUs' cache manifests, each read from the store once per run: the cache check and
    :func:`header_context` both need them."""

    def __init__(self, store: FactsStore, paths: PathMap) -> None:
        self.store, self.paths = store, paths
        self._memo: dict[str, dict[str, Any] | None] = {}

    def __call__(self, task: dict[str, Any]) -> dict[str, Any] | None:
        key = manifest_key(task, self.paths)
        if key not in self._memo:
            self._memo[key] = self.store.get(key)
        return self._memo[key]


def header_context(manifests: Manifests, tasks: list[dict[str, Any]],
                   hashes: FileHashes) -> str:
    """The context the header functions extracted for ``tasks`` are keyed under.

    A header function's facts depend on more than its own file: the callees it names (their
    keys carry *their* files' place and content), the records and macros of other headers.
    Keyed by its own file alone, a store shared by two trees (6.1 and 6.12, whose
    percpu-refcount.h is byte-identical while atomic-instrumented.h is not) or one tree
    before and after a header edit hands one tree's facts to the other.  So the key also
    carries this digest: the current content of every file the TUs to parse read at their
    last parse (their manifests), and of their main files.  TUs found in the cache keep the
    header functions their documents name, extracted when their files were what they are.
    Cost: header functions are re-extracted once per worker in each run that parses something
    in a new state, which a cold run does anyway.
    """
    paths = manifests.paths
    files: dict[str, str] = {}
    for task in tasks:
        files[_portable(task["file"], paths)] = hashes(task["file"])
        for p, _ in (manifests(task) or {}).get("includes", ()):
            if (local := _local(p, paths)) is not None:
                files[p] = hashes(local)
    return sha256_json(sorted(files.items()))[:20]


def with_header_context(manifests: Manifests, tasks: list[dict[str, Any]],
                        hashes: FileHashes) -> list[dict[str, Any]]:
    """``tasks``, each carrying the :func:`header_context` of them all."""
    ctx = header_context(manifests, tasks, hashes)
    return [{**t, "header_context": ctx} for t in tasks]


def cached_result(manifests: Manifests, task: dict[str, Any],
                  hashes: FileHashes) -> tuple[str, dict[str, Any]] | None:
    """(key, document) of a TU whose last parse read files that are all unchanged."""
    man = manifests(task)
    if man is None:
        return None
    for p, h in man["includes"]:
        local = _local(p, manifests.paths)
        if local is None or hashes(local) != h:
            return None
    doc = manifests.store.get(man["result"])
    return (man["result"], doc) if doc is not None else None


class ParseAhead:
    """Parse the TUs a build is about to compile while it compiles them.

    The build stage knows its compile commands before compiling anything (``make -n``, see
    :func:`pipeline.build.dry_run_compile_commands`), and once ``make prepare`` has generated
    the common headers almost every TU parses.  Workers run as SCHED_IDLE (``idle=True``), so
    the build's own jobs come first and parsing only fills the cores the build leaves idle
    (objtool, the serial link, BTF and modpost steps).  Measured on 2 cores (6.1 defconfig):
    at nice 10 the workers parsed 36% of the TUs during make but slowed make by 25%, which
    made the end-to-end time no better.  Results go to the facts store exactly as the
    parse stage would put them, so the parse stage that follows finds them as cache hits; its
    usual check (the content of every file the parse read) decides whether each one still
    holds.  A TU that parsed with errors, typically a header the build generates later, is not
    kept: the parse stage parses it again.  ``stop()`` ends it when make is done; what is left
    is the parse stage's work.
    """

    def __init__(self, entries: list[dict[str, Any]], source_root: str, build_root: str,
                 store: FactsStore, jobs: int,
                 idle: bool = os.environ.get("KCG_PARSE_AHEAD_IDLE", "1") != "0"):
        self.paths = PathMap(os.path.realpath(source_root), os.path.realpath(build_root))
        self.store, self.jobs, self.idle = store, jobs, idle
        tasks, _ = make_tasks(entries, self.paths)  # generated .c files do not exist yet
        hashes = FileHashes()
        manifests = Manifests(store, self.paths)
        self.tasks = with_header_context(
            manifests, [t for t in tasks if cached_result(manifests, t, hashes) is None],
            hashes)
        self.counts = {"planned": len(entries), "already_cached": len(tasks) - len(self.tasks),
                       "parsed": 0, "kept": 0, "deferred": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kcg-parse-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pool = WorkerPool(self.jobs, str(self.store.root), self.paths.source_root,
                          self.paths.build_root, start_method="spawn", idle=self.idle)
        try:
            pool.run([(t, True) for t in self.tasks], self._on_result, stop=self._stop)
        except Exception as e:  # parse-ahead only saves time: its failure must not fail a build
            self.error = repr(e)

    def _on_result(self, task: dict[str, Any], result: dict[str, Any]) -> None:
        self.counts["parsed"] += 1
        diags = result["doc"].get("diagnostics", {})
        if result["doc"]["status"] != "ok" or diags.get("error", 0) or diags.get("fatal", 0):
            self.counts["deferred"] += 1
            return
        store_result(self.store, task, result, self.paths)
        self.counts["kept"] += 1

    def stop(self) -> dict[str, Any]:
        """End parsing (TUs in flight are dropped) and return the counts."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return {**self.counts, "left": len(self.tasks) - self.counts["parsed"],
                **({"error": self.error} if self.error else {})}


def run_tasks(ctx: Context, items: list[tuple[dict[str, Any], bool]], on_result: Any,
              store: FactsStore, source_root: str, build_root: str | None) -> None:
    if ctx.executor == "dask":
        from pipeline.dask_executor import run_dask

        run_dask(ctx.scheduler, items, on_result, str(store.root), source_root, build_root)
        return
    WorkerPool(ctx.jobs, str(store.root), source_root, build_root).run(items, on_result)


def _record(rel: str, key: str | None, doc: dict[str, Any], *, cached: bool) -> dict[str, Any]:
    calls = [c for f in doc.get("functions", []) for c in f["calls"]]
    d = doc.get("diagnostics", {})
    return {"file": rel, "key": key, "status": doc["status"], "error": doc.get("error"),
            "cached": cached, "errors": d.get("error", 0) + d.get("fatal", 0),
            "first_errors": d.get("first", [])[:3], "stripped_args": doc.get("stripped_args", []),
            "functions": len(doc.get("functions", [])), "calls": len(calls),
            "indirect": sum(1 for c in calls if c["kind"] == "indirect"),
            "address_taken": len(doc.get("address_taken", []))}


def _header_closure(docs: dict[str, dict[str, Any]], store: FactsStore
                    ) -> tuple[set[str], set[str], set[str]]:
    """Every header-function document the TUs reach, those of them that cannot be read, and
    the functions they hold (TUs parsed in different runs may name two documents of one
    function: see :func:`header_context`).

    A missing key is widened to every header function that (transitively) refers to it, so a
    re-extraction through a TU that names any of them brings the missing one back.
    """
    seen: set[str] = set()
    parents: dict[str, set[str]] = {}
    missing: set[str] = set()
    functions: set[str] = set()
    stack = [k for d in docs.values() for k in d.get("header_functions", [])]
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        h = store.get(k)
        if h is None:
            missing.add(k)
            continue
        functions.add(h["function"]["id"])
        for child in h.get("header_functions", []):
            parents.setdefault(child, set()).add(k)
            stack.append(child)
    stale, todo = set(missing), list(missing)
    while todo:
        for p in parents.get(todo.pop(), ()):
            if p not in stale:
                stale.add(p)
                todo.append(p)
    return seen, stale, functions


def _libclang_version() -> str:
    from pipeline.extract import clang_version

    return clang_version()


def load_documents(ctx: Context) -> tuple[dict[str, Any], list[dict[str, Any]],
                                          list[dict[str, Any]]]:
    """For the link stage: (parse.json, TU documents, header-function documents)."""
    index = read_json(ctx.need("parse.json", "parse"))
    store = FactsStore(index["store"])
    tus, headers = [], []
    for r in index["tus"]:
        if r["status"] != "ok" or not r["key"]:
            continue
        doc = store.get(r["key"])
        if doc is None:
            raise KcgError(f"facts for {r['file']} are missing from {store.root}; "
                           "rerun 'kcg parse' (the entry was evicted or corrupted)")
        tus.append(doc)
    for k in index["header_functions"]:
        doc = store.get(k)
        if doc is not None:
            headers.append(doc)
    return index, tus, headers


STAGE = Stage("parse", parse_inputs, run_parse, parse_always_run)
