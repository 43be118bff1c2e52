"""Compile-database entries → libclang arguments.

kbuild compiles with GCC; libclang 18 rejects some GCC-only options (measured on 6.1 x86_64
defconfig).  We drop those, ``-Werror`` (a warning must not become a parse error), and
``-Wp,-MMD,...`` (libclang would rewrite kbuild's dependency files).  We keep what changes the
meaning of the code: ``-D``, ``-U``, ``-I``, ``-isystem``, ``-include``, ``-nostdinc``, ``-std=``,
target flags.  Anything still rejected at parse time is stripped and retried by the parse stage.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

# Options libclang 18 rejects (6.1 defconfig measured; 6.12 and other configs add some).
_REJECTED_EXACT = {
    "-mrecord-mcount", "-fconserve-stack", "-fno-allow-store-data-races",
    "-mindirect-branch-register", "-mindirect-branch-cs-prefix", "-fno-code-hoisting",
    "-mskip-rax-setup", "-fno-ipa-sra", "-fsanitize=bounds-strict", "-fmin-function-alignment",
    "-fno-var-tracking-assignments", "-fno-tree-loop-im", "-mno-fp-ret-in-387",
    "-fno-inline-functions-called-once", "-fno-partial-inlining", "-fno-shrink-wrap",
    "-Werror", "-pg", "-mfentry",
}
_REJECTED_PREFIX = (
    "-mindirect-branch=", "-mpreferred-stack-boundary=", "-falign-jumps=", "-falign-loops=",
    "-fzero-call-used-regs=", "-mfunction-return=", "-fpatchable-function-entry=",
    "-Wp,", "-fplugin", "-fstack-usage", "-fdump-", "-fconserve", "-mharden-sls=",
    "-fmacro-prefix-map=", "-ffile-prefix-map=", "-fdebug-prefix-map=", "-fmin-function-alignment",
    "-mstack-protector-guard", "-Werror=",
)
# Options whose value is the next argument; dropped together with it.
_DROP_WITH_VALUE = {"-o", "-MF", "-MT", "-MQ"}
_DROP_FLAGS = {"-c", "-MD", "-MMD", "-MP", "-g", "-S", "-E"}


def command_args(entry: dict[str, Any]) -> list[str]:
    """The argv of a compile-database entry (``arguments`` array or ``command`` string)."""
    if isinstance(entry.get("arguments"), list):
        return [str(a) for a in entry["arguments"]]
    cmd = entry.get("command")
    if not isinstance(cmd, str) or not cmd.strip():
        raise ValueError("entry has neither 'arguments' nor 'command'")
    return shlex.split(cmd)


# Options taking a path, joined or separate; relative paths are relative to the entry's
# directory, and libclang resolves them against the process's cwd, so we make them absolute.
_PATH_OPTS = ("-I", "-isystem", "-include", "-iquote", "-idirafter", "-imacros")


def _abs(path: str, directory: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(directory, path))


def _absolutize(a: str, nxt: str | None, directory: str) -> list[str]:
    """``-I dir`` / ``-Idir`` / ``-include file`` with the path made absolute."""
    if a in _PATH_OPTS and nxt is not None:
        return [a, _abs(nxt, directory)]
    if a.startswith("-I") and len(a) > 2:
        return ["-I" + _abs(a[2:], directory)]
    return [a]


def clang_args(argv: list[str], main_file: str, directory: str = ".") -> list[str]:
    """Sanitised libclang arguments (without the compiler and the main file)."""
    out: list[str] = []
    args = argv[1:]  # argv[0] is the compiler
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a in _PATH_OPTS and i < len(args):
            out += _absolutize(a, args[i], directory)
            i += 1
            continue
        if a in _DROP_WITH_VALUE:
            i += 1
            continue
        if a in _DROP_FLAGS or a in _REJECTED_EXACT or a.startswith(_REJECTED_PREFIX):
            continue
        if a.startswith("-g") and not a.startswith("-gno"):  # debug info: irrelevant, slow
            continue
        if a == main_file or (not a.startswith("-") and a.endswith((".c", ".S"))):
            continue
        out += _absolutize(a, None, directory)
    # GCC-only warning names are harmless once we say so; every error must be reported.
    out += ["-Wno-unknown-warning-option", "-Wno-unused-command-line-argument",
            "-ferror-limit=0"]
    return out


UNKNOWN_ARG_RE = re.compile(r"unknown argument:? '([^']+)'|unsupported option '([^']+)'")


def unknown_argument(message: str) -> str | None:
    """The argument named by a libclang 'unknown argument' diagnostic, if it is one."""
    m = UNKNOWN_ARG_RE.search(message)
    return (m.group(1) or m.group(2)) if m else None
