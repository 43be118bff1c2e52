"""The stage runner: ordering, manifests, skipping unchanged stages, and the output-dir lock.

Each stage reads its inputs from, and writes its outputs to, the output directory.  After a stage
finishes it writes ``manifests/<stage>.json`` holding the hash of its inputs, the hashes of its
outputs, tool versions, counts and timings.  A later run skips a stage whose input hash is the
same and whose outputs are still on disk unchanged; a stage interrupted half-way has no manifest,
so a rerun starts it again (stages that do long work, such as parse and build, resume from their
own caches).
"""

from __future__ import annotations

import fcntl
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.config import Config
from pipeline.fsutil import KcgError, read_json, sha256_file, sha256_json, write_json

STAGE_ORDER = ("source", "build", "parse", "link", "resolve", "roots", "annotate", "emit")
MANIFEST_VERSION = 1


class NotBuiltError(KcgError):
    """A stage that a later issue will fill: said plainly, never faked."""


@dataclass
class DirectTree:
    """Direct-tree mode: a tree someone already built, used from the parse stage on."""

    source: Path
    compile_commands: Path
    stack_usage: Path | None = None


@dataclass
class Context:
    out: Path
    config: Config | None
    jobs: int
    force: bool = False
    direct: DirectTree | None = None
    executor: str = "local"
    scheduler: str | None = None
    facts_store: Path | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def need(self, name: str, producer: str) -> Path:
        """An input file another stage writes; a clear error when it is not there yet."""
        p = self.path(name)
        if not p.exists():
            raise KcgError(
                f"{p} is missing: run the '{producer}' stage first "
                f"(kcg run --to {producer} ...)"
            )
        return p


@dataclass
class StageResult:
    outputs: list[str]  # paths relative to the output dir, hashed into the manifest
    counts: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)  # lines for the end-of-run summary


@dataclass
class Stage:
    name: str
    inputs: Callable[[Context], dict[str, Any]]  # what the stage depends on (hashed)
    run: Callable[[Context], StageResult]
    # Checked when the manifest still holds: True (or a reason, as a string) reruns the stage
    # anyway, for inputs or outputs a manifest cannot hash (a user's tree, a build directory).
    always_run: Callable[[Context], bool | str] = lambda ctx: False


def file_fingerprint(path: Path) -> str:
    return sha256_file(path) if path.exists() else "missing"


def manifest_path(ctx: Context, stage: str) -> Path:
    return ctx.path("manifests", f"{stage}.json")


def is_fresh(ctx: Context, stage: Stage, input_hash: str) -> tuple[bool, str]:
    """Whether a stage's last manifest still holds; the reason when it does not."""
    mp = manifest_path(ctx, stage.name)
    if not mp.exists():
        return False, "never ran (or was interrupted)"
    try:
        man = read_json(mp)
    except KcgError:
        return False, "manifest unreadable"
    if man.get("manifest_version") != MANIFEST_VERSION or man.get("kcg_version") != __version__:
        return False, "made by another kcg version"
    if man.get("input_hash") != input_hash:
        return False, "inputs changed"
    for rel, digest in man.get("outputs", {}).items():
        p = ctx.path(rel)
        if not p.exists():
            return False, f"output {rel} missing"
        if file_fingerprint(p) != digest:
            return False, f"output {rel} changed since"
    again = stage.always_run(ctx)
    if again:
        return False, again if isinstance(again, str) else "inputs cannot be fingerprinted: rerun"
    return True, "up to date"


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the output directory; released by the kernel if we die."""
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".kcg.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise KcgError(
                f"{out} is in use by another kcg run ({holder}); wait for it to finish "
                f"or use another --output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def tool_versions() -> dict[str, str]:
    return {"kcg": __version__, "python": sys.version.split()[0]}


def run_stages(ctx: Context, stages: list[Stage], *, first_forced: str | None = None,
               log: Callable[[str], None] = print) -> list[tuple[str, str, StageResult | None]]:
    """Run ``stages`` in order, skipping fresh ones.  Returns (stage, status, result) rows."""
    rows: list[tuple[str, str, StageResult | None]] = []
    with output_lock(ctx.out):
        for stage in stages:
            inputs = stage.inputs(ctx)
            input_hash = sha256_json(inputs)
            fresh, why = is_fresh(ctx, stage, input_hash)
            if fresh and not ctx.force and stage.name != first_forced:
                log(f"[{stage.name}] up to date, skipped")
                rows.append((stage.name, "skipped", None))
                continue
            log(f"[{stage.name}] running ({'forced' if fresh else why})")
            # Drop the old manifest first: if we are interrupted the stage reads as unfinished.
            manifest_path(ctx, stage.name).unlink(missing_ok=True)
            t0 = time.monotonic()
            result = stage.run(ctx)
            elapsed = time.monotonic() - t0
            manifest = {
                "manifest_version": MANIFEST_VERSION,
                "kcg_version": __version__,
                "stage": stage.name,
                "inputs": inputs,
                "input_hash": input_hash,
                "outputs": {rel: file_fingerprint(ctx.path(rel)) for rel in sorted(result.outputs)},
                "tools": {**tool_versions(), **result.tools},
                "counts": result.counts,
                "timings": {"seconds": round(elapsed, 2)},
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            write_json(manifest_path(ctx, stage.name), manifest)
            log(f"[{stage.name}] done in {elapsed:.1f}s")
            rows.append((stage.name, f"{elapsed:.1f}s", result))
    return rows


def stage_input_hash(ctx: Context, name: str) -> str:
    """The output hash record of an upstream stage, used as a downstream input fingerprint."""
    mp = manifest_path(ctx, name)
    if not mp.exists():
        raise KcgError(f"{ctx.out}: the '{name}' stage has not run yet (kcg run --to {name})")
    return sha256_json(read_json(mp).get("outputs", {}))
