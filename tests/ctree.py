"""Compile a fixture C tree with real gcc (-O2 -fstack-usage), as kbuild would, for the tests.

Writes objects and ``.su`` files under ``build`` and a compile database with kbuild-style
``command`` strings (including ``-D__KERNEL__`` and the GCC-only flags the parse stage strips).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

# Flags kbuild passes that libclang rejects: the parse stage must strip them.
GCC_ONLY = ["-fconserve-stack", "-fno-allow-store-data-races", "-mrecord-mcount",
            "-Wp,-MMD,/dev/null", "-Werror"]


def compile_tree(src: Path, build: Path, *, include: str = "include",
                 extra: list[str] | None = None, included: tuple[str, ...] = ()) -> Path:
    """Compile every ``*.c`` under ``src`` but the ``included`` ones (paths relative to
    ``src``: ``.c`` files another one ``#include``s, as kernel/sched/build_policy.c does);
    returns the compile_commands.json path."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to compile fixtures (apt-get install gcc)"
    build.mkdir(parents=True, exist_ok=True)
    entries = []
    for c in sorted(src.rglob("*.c")):
        rel = c.relative_to(src)
        if str(rel) in included:
            continue
        obj = build / rel.with_suffix(".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        args = [gcc, "-O2", "-fstack-usage", "-D__KERNEL__", "-std=gnu11", "-nostdinc",
                f"-I{src / include}", *GCC_ONLY, *(extra or []), "-c", "-o", str(obj), str(c)]
        # -Wp,-MMD,/dev/null is fine for gcc; the others are real gcc flags too.
        subprocess.run(args, check=True, cwd=build, capture_output=True, text=True)
        entries.append({"directory": str(build), "file": str(c), "command": shlex.join(args)})
    cc = build / "compile_commands.json"
    cc.write_text(json.dumps(entries, indent=1))
    return cc
