"""Reading ``-fstack-usage`` output (``.su`` files) into frames keyed like the graph's ids.

Formats (one function per line)::

    GCC:   path:line:col:name<TAB>bytes<TAB>qualifier
    clang: path:line:name<TAB>bytes<TAB>qualifier

Qualifiers: ``static`` (fixed frame), ``dynamic,bounded`` (the frame varies, the printed size is
its upper bound: still a bounded frame) and plain ``dynamic`` (alloca / VLA: the printed size is
only a lower bound, the frame is unbounded).  clang never prints ``bounded``.

GCC names clones ``name.isra.0``, ``name.constprop.0``, ``name.part.0``, ``name.cold`` and
combinations (``name.constprop.0.isra.0``); GCC 12 as the kernel runs it even drops the numbers
(``btf_show_obj_safe.constprop``).  A clone runs in place of its function, so clones fold into
the function, taking the largest frame; a ``.part`` clone is called *from* the function's
remaining body, so its frame is added to that body's.

Paths are as the compiler saw them: relative to the compile directory (an in-tree kbuild:
relative to the source root; headers as ``./include/...``), or absolute (``O=`` builds: sources
absolute in the source tree, generated files in the build tree).  :class:`pipeline.facts.PathMap`
turns them into the relative paths the facts ids use.

A line that does not parse is counted and reported (``file:lineno: text``); it never stops the
run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.facts import PathMap

STATIC, DYNAMIC, BOUNDED = "static", "dynamic", "dynamic,bounded"
QUALIFIERS = (STATIC, BOUNDED, DYNAMIC)  # in order of badness: the worst wins when folding

# GCC's clone and split-part suffixes (gcc/ipa-*.cc, "cold" from hot/cold partitioning, lto_priv
# from LTO).  Each may carry a number; they can be chained.
_CLONE_SUFFIX = re.compile(
    r"^(?P<base>[^.]+)(?P<suffix>(?:\.(?:isra|constprop|part|cold|lto_priv|localalias|"
    r"specialized)(?:\.\d+)?)+)$")


def fold_name(name: str) -> str:
    """``foo.constprop.0.isra.0`` -> ``foo``; a name with no known clone suffix is unchanged."""
    m = _CLONE_SUFFIX.match(name)
    return m.group("base") if m else name


@dataclass(frozen=True)
class SuRow:
    """One parsed ``.su`` line."""

    path: str  # as written by the compiler
    line: int
    col: int | None  # None for clang's format
    name: str  # as written, clone suffix included
    size: int
    qualifier: str
    su_file: str
    lineno: int

    @property
    def base(self) -> str:
        return fold_name(self.name)


def parse_line(text: str, su_file: str = "", lineno: int = 0) -> SuRow:
    """Parse one ``.su`` line; ``ValueError`` (with the reason) when it is malformed."""
    parts = text.rstrip("\r\n").split("\t")
    if len(parts) != 3:
        raise ValueError(f"expected 3 tab-separated fields, got {len(parts)}")
    loc, size_s, qual = parts[0], parts[1].strip(), parts[2].strip()
    if qual not in QUALIFIERS:
        raise ValueError(f"unknown qualifier {qual!r}")
    if not size_s.isdigit():
        raise ValueError(f"size {size_s!r} is not a number")
    # Split from the right: a path may hold ':', a C name never does.
    p4 = loc.rsplit(":", 3)
    if len(p4) == 4 and p4[1].isdigit() and p4[2].isdigit() and p4[0] and p4[3]:
        path, line, col, name = p4[0], int(p4[1]), int(p4[2]), p4[3]
    else:
        p3 = loc.rsplit(":", 2)
        if len(p3) == 3 and p3[1].isdigit() and p3[0] and p3[2]:
            path, line, col, name = p3[0], int(p3[1]), None, p3[2]
        else:
            raise ValueError("location is neither file:line:col:name nor file:line:name")
    if not re.fullmatch(r"[A-Za-z_$][\w$.]*", name):
        raise ValueError(f"function name {name!r} is not a C name")
    return SuRow(path, line, col, name, int(size_s), qual, su_file, lineno)


def parse_file(path: Path | str) -> tuple[list[SuRow], list[str]]:
    """All rows of one ``.su`` file and its malformed lines (``file:lineno: reason: text``)."""
    rows: list[SuRow] = []
    errors: list[str] = []
    sp = str(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                rows.append(parse_line(text, sp, n))
            except ValueError as e:
                errors.append(f"{sp}:{n}: {e}: {text.rstrip()[:200]}")
    return rows, errors


def worst_qualifier(quals: Iterable[str]) -> str:
    """The qualifier of folded rows: one unbounded clone makes the function unbounded."""
    return max(quals, key=QUALIFIERS.index, default=STATIC)


@dataclass
class Frame:
    """A function's frame from its folded ``.su`` rows."""

    size: int
    qualifier: str
    rows: list[SuRow] = field(default_factory=list)

    @property
    def bounded(self) -> bool:
        return self.qualifier != DYNAMIC

    def __post_init__(self) -> None:
        if self.rows:
            self._recompute()

    def add(self, row: SuRow) -> None:
        self.rows.append(row)
        self._recompute()

    def _recompute(self) -> None:
        # A ``.part.N`` clone is the split-off rest of the function, *called* by what is left
        # of it (gcc's partial inlining): its frame stacks on top of the caller part's.  Every
        # other clone runs instead of the function (isra, constprop) or in its frame (cold).
        whole = max((r.size for r in self.rows if ".part" not in r.name), default=0)
        part = max((r.size for r in self.rows if ".part" in r.name), default=0)
        self.size = whole + part
        self.qualifier = worst_qualifier(r.qualifier for r in self.rows)


class Normaliser:
    """Compiler paths -> id paths, with symlinked roots resolved (memoised per distinct path)."""

    def __init__(self, pathmap: PathMap):
        self.pm = pathmap
        self._memo: dict[tuple[str, str | None], str] = {}

    def __call__(self, path: str, cwd: str | None) -> str:
        key = (path, cwd)
        hit = self._memo.get(key)
        if hit is None:
            hit = self.pm.rel(path, cwd)
            if os.path.isabs(hit):
                # The compiler may have seen the tree through a symlink: try its real path.
                real = self.pm.rel(os.path.realpath(hit))
                hit = real if not os.path.isabs(real) else hit
            self._memo[key] = hit
        return hit


@dataclass
class StackUsage:
    """Every ``.su`` row of a build, folded per (id path, function name)."""

    frames: dict[tuple[str, str], dict[int, Frame]] = field(default_factory=dict)
    by_name: dict[str, set[str]] = field(default_factory=dict)  # name -> id paths it appears in
    files_seen: set[str] = field(default_factory=set)  # id paths named by any row
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {
        "su_files": 0, "rows": 0, "malformed": 0, "clone_rows": 0, "unreadable_files": 0})

    def add(self, row: SuRow, rel: str) -> None:
        base = row.base
        if base != row.name:
            self.counts["clone_rows"] += 1
        # Keyed by line too: two rows of one (file, name) on different lines are different
        # functions (e.g. one static per #ifdef branch of a header); the matcher decides.
        per_line = self.frames.setdefault((rel, base), {})
        fr = per_line.get(row.line)
        if fr is None:
            per_line[row.line] = Frame(row.size, row.qualifier, [row])
        else:
            fr.add(row)
        self.by_name.setdefault(base, set()).add(rel)
        self.files_seen.add(rel)
        self.counts["rows"] += 1

    def lookup(self, rel: str, name: str, line: int | None = None) -> Frame | None:
        """The folded frame of ``name`` in ``rel``; ``line`` picks among same-name rows."""
        per_line = self.frames.get((rel, name))
        if not per_line:
            return None
        if len(per_line) > 1 and line is not None and line in per_line:
            return per_line[line]
        merged: Frame | None = None
        for fr in per_line.values():
            if merged is None:
                merged = Frame(fr.size, fr.qualifier, list(fr.rows))
            else:
                for r in fr.rows:
                    merged.add(r)
        return merged


def load(files: Iterable[Path | str], pathmap: PathMap,
         cwd_of: Callable[[str], str | None] | None = None) -> StackUsage:
    """Read every ``.su`` file; ``cwd_of(su_file)`` gives the compile directory for its
    relative paths (kbuild: the build directory; None: relative paths stay relative)."""
    su = StackUsage()
    norm = Normaliser(pathmap)
    for f in files:
        fs = str(f)
        su.counts["su_files"] += 1
        try:
            rows, errors = parse_file(fs)
        except OSError as e:
            su.counts["unreadable_files"] += 1
            su.errors.append(f"{fs}: unreadable: {e}")
            continue
        su.counts["malformed"] += len(errors)
        su.errors.extend(errors)
        cwd = cwd_of(fs) if cwd_of else None
        for row in rows:
            su.add(row, norm(row.path, cwd))
    return su


def summary_counts(su: StackUsage) -> dict[str, Any]:
    """Counts for a manifest: files, rows, folded functions, malformed lines."""
    return {**su.counts, "functions": sum(len(v) for v in su.frames.values())}
