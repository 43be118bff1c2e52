"""The build stage: configure and build the kernel out of tree with ``-fstack-usage``.

``make O=<output>/build`` keeps the source pristine (it may be a read-only cache).  Steps:
``make defconfig``, ``scripts/kconfig/merge_config.sh`` with the config's fragments,
``make olddefconfig``, a check that every fragment option really took effect, then
``make -k -jN KCFLAGS=-fstack-usage <targets>`` and ``scripts/clang-tools/gen_compile_commands.py``.

Writes ``compile_commands.json`` (kernel TUs only: host tools under ``scripts/`` and
``arch/*/tools`` are compiled without ``-D__KERNEL__`` and are dropped), ``stack_usage.json`` (the
``.su`` files) and ``build.json`` (kconfig check, failed objects; timings go to the manifest so
an unchanged rebuild leaves every output byte-identical and later stages skipped).

Direct-tree mode imports a compile database someone else produced instead of building.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from pipeline.config import ARCHES, Config
from pipeline.fsutil import KcgError, read_json, sha256_file, write_json
from pipeline.runner import Context, StageResult, file_fingerprint, stage_input_hash
from pipeline.source import load_source

if TYPE_CHECKING:  # parse imports build: only for the annotation
    from pipeline.parse import ParseAhead

# Host tools the kernel build runs, and the Debian packages that provide them.
HOST_TOOLS = {
    "make": "make", "flex": "flex", "bison": "bison", "bc": "bc", "perl": "perl",
    "python3": "python3",
}
HOST_HEADERS = {  # header -> Debian package (objtool needs libelf, certs need openssl)
    "gelf.h": "libelf-dev",
    "openssl/opensslv.h": "libssl-dev",
}
FAILED_TARGET_RE = re.compile(r"\*\*\* \[(?:[^\]]*?:\s*\d+:\s*)?([^\]\s]+)\] Error")
# A target that does not exist (a typo in build.targets): make -k goes on with the others.
NO_RULE_RE = re.compile(r"\*\*\* No rule to make target '([^']+)'(?:, needed by '([^']+)')?")


def check_host_tools(config: Config, fragments_text: str) -> None:
    missing: list[tuple[str, str]] = []
    tools = dict(HOST_TOOLS)
    tools[config.compiler] = "clang" if config.compiler == "clang" else "gcc"
    if "CONFIG_DEBUG_INFO_BTF=y" in fragments_text:
        tools["pahole"] = "dwarves"
    for tool, pkg in sorted(tools.items()):
        if shutil.which(tool) is None:
            missing.append((tool, pkg))
    for header, pkg in sorted(HOST_HEADERS.items()):
        if not any(Path(d, header).exists() for d in ("/usr/include", "/usr/local/include")):
            missing.append((header, pkg))
    if missing:
        names = ", ".join(t for t, _ in missing)
        pkgs = " ".join(sorted({p for _, p in missing}))
        raise KcgError(f"the kernel build needs {names}: install them with "
                       f"'apt-get install {pkgs}' (or run 'make setup')")


def read_kconfig(path: Path) -> dict[str, str]:
    """A .config as {CONFIG_X: value}; '# CONFIG_X is not set' reads as 'n'."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if m := re.match(r"# (CONFIG_\w+) is not set$", line):
            values[m.group(1)] = "n"
        elif m := re.match(r"(CONFIG_\w+)=(.*)$", line):
            values[m.group(1)] = m.group(2)
    return values


def kconfig_mismatches(fragments: list[Path], dotconfig: Path) -> list[dict[str, str]]:
    """Fragment options whose final value differs from what the fragment asked for."""
    final = read_kconfig(dotconfig)
    wanted: dict[str, str] = {}
    for frag in fragments:
        wanted.update(read_kconfig(frag))
    out = []
    for key, want in sorted(wanted.items()):
        have = final.get(key, "n")
        if have != want:
            out.append({"option": key, "wanted": want, "got": have})
    return out


def make_base(src: Path, bdir: Path, config: Config) -> list[str]:
    cmd = ["make", "-C", str(src), f"O={bdir}", f"ARCH={ARCHES[config.arch]}"]
    if config.compiler == "clang":
        cmd += ["CC=clang", "HOSTCC=clang"]
    return cmd


def _run_logged(cmd: list[str], log: Path, *, what: str) -> None:
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise KcgError(f"{what} failed (exit {r.returncode}); last lines of {log}:\n  "
                       + "\n  ".join(tail))


def run_make_build(cmd: list[str], log: Path, *, progress: bool, expected: int | None) -> tuple[int, list[str]]:
    """``make -k``: stream its output to the log, count compiled objects, collect failures."""
    failed: set[str] = set()
    with open(log, "a") as f, tqdm(total=expected, unit="obj", desc="build", disable=not progress,
                                   file=sys.stderr) as bar:
        f.write(f"$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if line.startswith("  CC "):
                bar.update(1)
            elif m := FAILED_TARGET_RE.search(line):
                target = m.group(1)
                if target.endswith(".o"):
                    failed.add(target)
            elif m := NO_RULE_RE.search(line):
                failed.add(m.group(2) or m.group(1))
        rc = proc.wait()
    return rc, sorted(failed)


# Shell operators that separate the commands of a kbuild recipe.
_SHELL_OPERATORS = {";", "&&", "||", "|", "&"}


def compile_commands_in_recipe(recipe: str, directory: str) -> list[dict[str, Any]]:
    """Compile-database entries for the C compiles in one shell recipe printed by ``make -n``.

    kbuild's ``rule_cc_o_c`` is one line: ``set -e; echo '  CC ...'; trap ...; gcc ... -c -o
    X.o X.c ; objtool ...; fixdep ... 'gcc ...' > .X.o.cmd``.  Split like the shell would, the
    compile is the command with ``-c``, ``-o`` and a ``.c`` operand; the copy quoted for the
    ``.cmd`` file is one word, so it is not counted twice.
    """
    # The quoted copy for the .cmd file is half the line; lexing it is wasted time.
    recipe = recipe.split(" scripts/basic/fixdep ", 1)[0]
    lexer = shlex.shlex(recipe, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: not a recipe we can read
        return []
    entries, command = [], []
    for w in [*words, ";"]:
        if w not in _SHELL_OPERATORS:
            command.append(w)
            continue
        if "-c" in command and "-o" in command and command[-1].endswith(".c") \
                and not command[0].startswith("-"):
            file = command[-1]
            entries.append({"directory": directory, "arguments": command,
                            "file": file if os.path.isabs(file)
                            else os.path.normpath(os.path.join(directory, file))})
        command = []
    return entries


def dry_run_compile_commands(make_cmd: list[str], directory: Path, log: Path
                             ) -> list[dict[str, Any]]:
    """The kernel TUs ``make -n`` says a build would compile, before it compiles anything.

    Run after ``make prepare`` so the configuration and generated makefiles exist (make
    remakes included makefiles even with ``-n``).  The commands are the ones ``make`` will
    run, so the parse keys computed from them match those of the compile database written
    after the build.  Takes ~8 s on 6.1 defconfig.
    """
    cmd = [*make_cmd, "-n", "-k"]
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}  (output not logged: the commands are parsed)\n")
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    entries: dict[str, dict[str, Any]] = {}
    for line in r.stdout.splitlines():
        if "-c" not in line or ".c" not in line:
            continue
        for e in compile_commands_in_recipe(line, str(directory)):
            if is_kernel_tu(e):
                entries.setdefault(e["file"], e)
    return [entries[k] for k in sorted(entries)]


def object_of(entry: dict[str, Any]) -> str | None:
    """The object file a compile-database entry writes (``-o`` in the command)."""
    args = entry.get("arguments") or shlex.split(entry.get("command", ""))
    for i, a in enumerate(args):
        if a == "-o" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("-o") and len(a) > 2:
            return a[2:]
    return entry.get("output")


# Objects compiled with -D__KERNEL__ that are linked into separate images, not into vmlinux or
# a module: the boot decompressor, real-mode trampoline, vDSO, EFI stub, kexec purgatory.  They
# define their own memcpy, puts, error, ... which must not stand for the kernel's.
SEPARATE_IMAGES = re.compile(
    r"(^|/)(arch/[^/]+/boot/|arch/x86/realmode/|arch/[^/]+/entry/vdso/|arch/x86/um/vdso/|"
    r"drivers/firmware/efi/libstub/|arch/[^/]+/purgatory/)")


def is_kernel_tu(entry: dict[str, Any]) -> bool:
    """A TU of vmlinux or a module: -D__KERNEL__ (host tools lack it), not a separate image."""
    args = entry.get("arguments") or shlex.split(entry.get("command", ""))
    if "-D__KERNEL__" not in args or not str(entry.get("file", "")).endswith(".c"):
        return False
    obj = object_of(entry) or ""
    return not SEPARATE_IMAGES.search(obj)


def load_compile_commands(path: Path) -> list[dict[str, Any]]:
    """Read a compile database with a clear error for each way it can be wrong."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KcgError(f"{path}: no such compile database") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KcgError(f"{path}: not a JSON compile database ({e})") from None
    if not isinstance(data, list):
        raise KcgError(f"{path}: a compile database is a JSON list of entries")
    return data


def su_path_for(entry: dict[str, Any]) -> Path | None:
    obj = object_of(entry)
    if not obj:
        return None
    p = Path(entry.get("directory", ".")) / obj
    return p.with_suffix(".su")


def write_compile_db_outputs(ctx: Context, entries: list[dict[str, Any]], su_root: Path | None
                             ) -> dict[str, Any]:
    """Filter to kernel TUs, write compile_commands.json and stack_usage.json; return counts."""
    kernel = [e for e in entries if isinstance(e, dict) and is_kernel_tu(e)]
    kernel.sort(key=lambda e: (str(e.get("file")), str(object_of(e))))
    write_json(ctx.path("compile_commands.json"), kernel)
    su_files: set[str] = set()
    without_su = []
    for e in kernel:
        su = su_path_for(e)
        if su is not None and su_root is not None:
            # --stack-usage DIR: the .su tree mirrors the object tree under another root.
            obj = object_of(e) or ""
            alt = su_root / Path(obj).with_suffix(".su")
            su = alt if alt.exists() else su
        if su is not None and su.exists():
            su_files.add(str(su.resolve()))
        else:
            without_su.append(e.get("file"))
    if su_root is not None:
        # .su files not tied to a compile-db entry (e.g. another layout): take them all.
        su_files.update(str(p.resolve()) for p in su_root.rglob("*.su"))
    write_json(ctx.path("stack_usage.json"), {"files": sorted(su_files),
                                              "tus_without_su": sorted(map(str, without_su))})
    return {"tus": len(kernel), "dropped_non_kernel": len(entries) - len(kernel),
            "su_files": len(su_files), "tus_without_su": len(without_su)}


def build_inputs(ctx: Context) -> dict[str, Any]:
    if ctx.direct:
        cc = ctx.direct.compile_commands
        return {"direct": str(cc.resolve()), "compile_commands": sha256_file(cc) if cc.exists() else "missing",
                "stack_usage": str(ctx.direct.stack_usage) if ctx.direct.stack_usage else None}
    assert ctx.config is not None
    inputs = {
        "source": stage_input_hash(ctx, "source"),
        "build": ctx.config.fingerprint("build"),
        "fragments": [sha256_file(p) for p in ctx.config.kconfig_fragments],
        "compiler": compiler_version(ctx.config.compiler),
    }
    if "/" in ctx.config.kconfig_base:  # a .config file: its content, not only its name
        inputs["base_sha256"] = file_fingerprint(Path(ctx.config.kconfig_base))
    return inputs


def build_always_run(ctx: Context) -> bool | str:
    """Rerun a build whose manifest holds when what it cannot hash has changed."""
    if ctx.direct:
        return False
    if ctx.config and ctx.config.source.kind == "path":
        # A user's own tree can change under us without any input we hash: let make decide.
        return "the source is a user's tree (source.path): make decides what is stale"
    # The build tree is too big to hash, but its .su files are the stage's real output.
    su = ctx.path("stack_usage.json")
    if su.exists():
        missing = [f for f in read_json(su).get("files", []) if not Path(f).exists()]
        if missing:
            return f"{len(missing)} .su files gone from the build tree (e.g. {missing[0]})"
    return False


def compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (FileNotFoundError, IndexError):
        return "missing"


def run_build(ctx: Context) -> StageResult:
    if ctx.direct:
        return import_direct_tree(ctx)
    config = ctx.config
    assert config is not None
    src = Path(load_source(ctx)["path"])
    bdir = ctx.path("build")
    bdir.mkdir(parents=True, exist_ok=True)
    logs = ctx.path("logs")
    logs.mkdir(exist_ok=True)
    log = logs / "build.log"
    log.write_text("")
    fragments_text = "".join(p.read_text() for p in config.kconfig_fragments)
    check_host_tools(config, fragments_text)
    timings: dict[str, float] = {}
    base = make_base(src, bdir, config)

    t0 = time.monotonic()
    if "/" not in config.kconfig_base:  # a make target; config.py made file paths absolute
        _run_logged(base + [config.kconfig_base], log, what=f"make {config.kconfig_base}")
    else:
        shutil.copyfile(config.kconfig_base, bdir / ".config")
    if config.kconfig_fragments:
        merge = src / "scripts/kconfig/merge_config.sh"
        env_cmd = ["env", f"ARCH={ARCHES[config.arch]}", "sh", str(merge), "-m", "-O", str(bdir),
                   str(bdir / ".config"), *map(str, config.kconfig_fragments)]
        _run_logged(env_cmd, log, what="merge_config.sh")
    _run_logged(base + ["olddefconfig"], log, what="make olddefconfig")
    mismatches = kconfig_mismatches(list(config.kconfig_fragments), bdir / ".config")
    timings["configure"] = time.monotonic() - t0

    t0 = time.monotonic()
    prev = ctx.path("compile_commands.json")
    expected = len(read_json(prev)) if prev.exists() else None
    targets = list(config.targets) if config.targets else []
    cmd = base + ["-k", f"-j{ctx.jobs}", "KCFLAGS=-fstack-usage", *targets]
    ahead: ParseAhead | None = None
    try:  # an interrupt while parse-ahead runs must stop its workers too
        if ctx.extra.get("parse_ahead"):
            ahead = start_parse_ahead(ctx, base, src, bdir, targets, log)
        rc, failed = run_make_build(cmd, log, progress=ctx.progress, expected=expected)
    finally:
        parse_ahead = ahead.stop() if ahead is not None else None
    timings["make"] = time.monotonic() - t0
    if rc != 0 and not failed:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise KcgError(f"make failed (exit {rc}) with no failed object named; see {log}:\n  "
                       + "\n  ".join(tail))

    t0 = time.monotonic()
    gen = src / "scripts/clang-tools/gen_compile_commands.py"
    raw_db = bdir / "compile_commands.json"
    _run_logged([sys.executable, str(gen), "-d", str(bdir), "-o", str(raw_db)], log,
                what="gen_compile_commands.py")
    counts = write_compile_db_outputs(ctx, load_compile_commands(raw_db), None)
    timings["compile_commands"] = time.monotonic() - t0

    info = {"build_dir": str(bdir), "source": str(src), "compiler": config.compiler,
            "compiler_version": compiler_version(config.compiler), "targets": targets or "all",
            "kconfig_mismatches": mismatches, "failed_objects": failed, "make_exit": rc}
    write_json(ctx.path("build.json"), info)
    summary = [f"build: {counts['tus']} kernel TUs, {counts['su_files']} .su files, "
               f"{len(failed)} failed objects ({timings['configure']:.0f}s configure, "
               f"{timings['make']:.0f}s make)"]
    if failed:
        summary.append("  failed: " + ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else ""))
    if mismatches:
        summary.append("  kconfig options not as asked: " + ", ".join(
            f"{m['option']}={m['got']} (wanted {m['wanted']})" for m in mismatches))
    else:
        summary.append("  kconfig: every fragment option took effect")
    if parse_ahead is not None:
        summary.append(
            f"  parse-ahead: {parse_ahead['kept']} of {parse_ahead['planned']} TUs parsed during "
            f"make ({parse_ahead['deferred']} deferred to the parse stage: errors, e.g. a header "
            f"not generated yet; {parse_ahead['already_cached']} were cached)"
            + (f"; stopped by an error: {parse_ahead['error']}" if "error" in parse_ahead else ""))
    return StageResult(
        outputs=["compile_commands.json", "stack_usage.json", "build.json"],
        counts={**counts, "failed_objects": len(failed), "kconfig_mismatches": len(mismatches),
                "seconds": {k: round(v, 1) for k, v in timings.items()},
                **({"parse_ahead": parse_ahead} if parse_ahead is not None else {})},
        tools={"compiler": info["compiler_version"]}, summary=summary)


def start_parse_ahead(ctx: Context, base: list[str], src: Path, bdir: Path, targets: list[str],
                      log: Path) -> ParseAhead:
    """``make prepare``, the dry-run compile database, then parsing in the background."""
    from pipeline.parse import ParseAhead, store_root
    from pipeline.store import FactsStore

    _run_logged(base + [f"-j{ctx.jobs}", "prepare"], log, what="make prepare")
    planned = dry_run_compile_commands(base + ["KCFLAGS=-fstack-usage", *targets], bdir, log)
    ahead = ParseAhead(planned, str(src), str(bdir), FactsStore(store_root(ctx)), ctx.jobs)
    ahead.start()
    return ahead


def import_direct_tree(ctx: Context) -> StageResult:
    assert ctx.direct is not None
    entries = load_compile_commands(ctx.direct.compile_commands)
    su_root = ctx.direct.stack_usage.resolve() if ctx.direct.stack_usage else None
    if su_root is not None and not su_root.is_dir():
        raise KcgError(f"--stack-usage {su_root}: no such directory")
    counts = write_compile_db_outputs(ctx, entries, su_root)
    dirs = {str(e.get("directory")) for e in read_json(ctx.path("compile_commands.json"))}
    write_json(ctx.path("build.json"), {
        "build_dir": sorted(dirs)[0] if len(dirs) == 1 else None,
        "source": str(ctx.direct.source.resolve()), "direct": True,
        "compile_commands": str(ctx.direct.compile_commands.resolve()),
        "stack_usage": str(su_root) if su_root else None, "failed_objects": [],
        "kconfig_mismatches": []})
    if counts["tus"] == 0:
        raise KcgError(f"{ctx.direct.compile_commands}: no kernel translation units "
                       "(entries compiled with -D__KERNEL__)")
    return StageResult(outputs=["compile_commands.json", "stack_usage.json", "build.json"],
                       counts=counts,
                       summary=[f"direct tree: {counts['tus']} TUs, {counts['su_files']} .su files"])


