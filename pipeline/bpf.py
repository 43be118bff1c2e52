"""The kernel's BPF idioms: which functions are BPF roots, and what the kernel says about them.

Everything here works on plain data (the ``bpf`` part of the facts, see :mod:`pipeline.facts`,
graph nodes as dicts) plus, where the facts cannot say it, a few kernel headers read as text.
The headers modelled, and what is taken from each:

- ``include/linux/bpf.h``: ``struct bpf_func_proto`` (``.func`` is the helper; a NULL ``.func``,
  as in ``bpf_tail_call_proto``, is not a helper) and ``struct bpf_verifier_ops``
  (``.get_func_proto`` is how a program type chooses its helpers).
- ``include/linux/filter.h``: ``BPF_CALL_n(name, ...)`` defines an exported ``name`` whose body
  calls ``____name``, a ``static __always_inline`` function that holds the real body.  So the root
  is ``name`` and ``____name`` has no frame of its own.  (Since early 2024, and in Debian's 6.1.1xx
  backports, the macro goes through ``BPF_CALL_x(x, attr, name, ...)``; the shape is the same.)
- ``include/linux/btf_ids.h``: kfunc sets.  6.1: ``BTF_SET8_START(set)`` ...
  ``BTF_ID_FLAGS(func, name, KF_...)`` ... ``BTF_SET8_END(set)``.  v6.9 ("bpf: btf: Add
  BTF_KFUNCS_START/END macro pair" and "bpf: treewide: Annotate BPF kfuncs in BTF") moved every
  kfunc set to ``BTF_KFUNCS_START``, which sets ``BTF_SET8_KFUNCS`` in the set's flags, and
  registration refuses a kfunc set without that flag; from then on a ``BTF_SET8_START`` set is a
  plain id set (fmod_ret allow lists such as ``bpf_test_modify_return_ids``).  ``BTF_SET_START`` /
  ``BTF_ID`` lists are never kfunc sets (allow/deny lists such as ``btf_allowlist_d_path``).
  v6.4 ("bpf: Add __bpf_kfunc tag for marking kernel functions as kfuncs") added ``__bpf_kfunc``
  on definitions: the parse stage reports it as ``Function.bpf_kfunc``.
- ``include/linux/bpf_types.h``: ``BPF_PROG_TYPE(BPF_PROG_TYPE_X, name, ctx, kctx)`` ties program
  type ``X`` to ``name##_verifier_ops``, inside ``#ifdef CONFIG_...`` blocks.
- ``include/uapi/linux/bpf.h``: ``enum bpf_func_id`` from ``__BPF_FUNC_MAPPER``: ``FN(name)`` in
  6.1 (the id is the position), ``FN(name, id, ...)`` since v6.2 ("bpf: explicitly define
  BPF_FUNC_xxx integer values"), where the mapper is ``___BPF_FUNC_MAPPER``.

Helper ids come from ``case BPF_FUNC_x: return &x_proto;`` in functions returning
``const struct bpf_func_proto *`` (``proto_switches`` in the facts).  A case may instead return
another such function's result (``return bpf_get_trace_printk_proto();``): that function's own
answers are used, and when it has none the facts can show (it returns its proto outside any
switch), the proto is found by the kernel's naming convention ``BPF_FUNC_x`` -> ``bpf_x_proto``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

HELPER, KFUNC, EXTRA = "helper", "kfunc", "extra"
ROOT_KINDS = (HELPER, KFUNC, EXTRA)  # precedence when one function is a root several ways
BODY_PREFIX = "____"  # BPF_CALL_n's inline body: ____name

# Macros that open a kfunc set, by era (see the module docstring).
KFUNC_SET_MACROS_OLD = frozenset({"BTF_SET8_START"})  # up to v6.8
KFUNC_SET_MACROS_NEW = frozenset({"BTF_KFUNCS_START"})  # v6.9 on

_ANY = None  # table key: a proto returned whatever the helper id (outside any case label)


# ---- headers read as text -------------------------------------------------------------------


def parse_func_ids(text: str) -> dict[str, int]:
    """``enum bpf_func_id`` as {"BPF_FUNC_x": number} from include/uapi/linux/bpf.h's text."""
    m = re.search(r"#define\s+_{2,3}BPF_FUNC_MAPPER\s*\(\s*FN[^)]*\)((?:[^\n]*\\\n)*[^\n]*)", text)
    if not m:
        return {}
    ids: dict[str, int] = {}
    for i, fm in enumerate(re.finditer(r"\bFN\(\s*(\w+)\s*(?:,\s*(\d+))?", m.group(1))):
        # 6.1 numbers by position; v6.2+ spells the number out (and it must agree).
        ids[f"BPF_FUNC_{fm.group(1)}"] = int(fm.group(2)) if fm.group(2) else i
    return ids


def read_func_ids(source_root: Path | str | None) -> dict[str, int]:
    """The helper id enum of a source tree; {} when the tree or the header is not there."""
    if not source_root:
        return {}
    p = Path(source_root) / "include/uapi/linux/bpf.h"
    try:
        return parse_func_ids(p.read_text(errors="replace"))
    except OSError:
        return {}


_COND_TOKEN = re.compile(r"\s*(defined|IS_ENABLED|IS_BUILTIN|IS_MODULE|IS_REACHABLE|"
                         r"CONFIG_\w+|\d+|&&|\|\||!|\(|\))")


def eval_condition(expr: str, kconfig: Mapping[str, str] | None) -> bool | None:
    """Evaluate an ``#if`` expression over CONFIG_ options; None when it cannot be decided.

    Understands what bpf_types.h uses: ``defined(CONFIG_X)``, ``IS_ENABLED(CONFIG_X)`` and
    friends, bare ``CONFIG_X``, ``!``, ``&&``, ``||``, parentheses and integer literals.  A ``=m``
    option defines ``CONFIG_X_MODULE``, not ``CONFIG_X``: ``defined(CONFIG_X)`` is false for it.
    """
    if kconfig is None:
        return None
    toks: list[str] = []
    pos = 0
    expr = re.sub(r"/\*.*?\*/|//.*", "", expr).strip()
    while pos < len(expr):
        m = _COND_TOKEN.match(expr, pos)
        if not m:
            return None
        toks.append(m.group(1))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1

    def value(opt: str) -> str:
        return kconfig.get(opt, "n")

    i = 0

    def peek() -> str | None:
        return toks[i] if i < len(toks) else None

    def take() -> str:
        nonlocal i
        if i >= len(toks):
            raise ValueError("unexpected end")
        i += 1
        return toks[i - 1]

    def primary() -> bool:
        t = take()
        if t == "!":
            return not primary()
        if t == "(":
            v = disj()
            if take() != ")":
                raise ValueError("')' expected")
            return v
        if t in ("defined", "IS_ENABLED", "IS_BUILTIN", "IS_MODULE", "IS_REACHABLE"):
            paren = peek() == "("
            if paren:
                take()
            opt = take()
            if paren and take() != ")":
                raise ValueError("')' expected")
            v = value(opt)
            if t == "defined":
                return v not in ("n", "", "m")
            if t == "IS_BUILTIN":
                return v == "y"
            if t == "IS_MODULE":
                return v == "m"
            return v in ("y", "m")
        if t.isdigit():
            return int(t) != 0
        if t.startswith("CONFIG_"):
            v = value(t)  # =y expands to 1; =m leaves it undefined (0); numbers are themselves
            return v not in ("n", "", "m", "0")
        raise ValueError(f"unexpected {t}")

    def conj() -> bool:
        v = primary()
        while peek() == "&&":
            take()
            v = primary() and v
        return v

    def disj() -> bool:
        v = conj()
        while peek() == "||":
            take()
            v = conj() or v
        return v

    try:
        result = disj()
    except ValueError:
        return None
    return result if i == len(toks) else None


def _and(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued and (None = unknown)."""
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued or (None = unknown)."""
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def parse_bpf_types(text: str, kconfig: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The ``BPF_PROG_TYPE(...)`` lines of include/linux/bpf_types.h, with their conditions.

    Each entry: ``{prog_type, name, verifier_ops, condition, enabled, line}``.  ``condition`` is
    the enclosing ``#if``/``#ifdef`` chain as text; ``enabled`` is its value under ``kconfig`` (a
    .config as {CONFIG_X: value}), or None when there is no .config or the condition cannot be
    decided (callers then keep the entry: it is the safe side for "which program types offer").
    """
    # Join continuation lines but remember where each logical line started.
    lines: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = n
        if raw.endswith("\\"):
            buf += raw[:-1] + " "
            continue
        lines.append((start, buf + raw))
        buf = ""
    if buf:
        lines.append((start, buf))

    # One frame per open #if: [condition text of this branch, its value, was any branch of the
    # chain so far taken?] (values three-valued: None = undecidable).
    stack: list[list[Any]] = []
    out: list[dict[str, Any]] = []
    pending: tuple[int, str] | None = None  # a BPF_PROG_TYPE( whose ')' is on a later line

    def current() -> tuple[str, bool | None]:
        conds = [f[0] for f in stack]
        vals = [f[1] for f in stack]
        val: bool | None
        if any(v is False for v in vals):
            val = False
        elif any(v is None for v in vals):
            val = None
        else:
            val = True
        return " && ".join(f"({c})" if ("||" in c) else c for c in conds), val

    def negate(v: bool | None) -> bool | None:
        return None if v is None else not v

    for lineno, line in lines:
        s = line.strip()
        d = re.match(r"#\s*(ifdef|ifndef|if|elif|else|endif)\b\s*(.*)", s)
        if d:
            kind, rest = d.group(1), re.sub(r"/\*.*?\*/|//.*", "", d.group(2)).strip()
            if kind in ("ifdef", "ifndef"):
                cond = f"defined({rest})"
                v = eval_condition(cond, kconfig)
                if kind == "ifndef":
                    cond, v = f"!defined({rest})", negate(v)
                stack.append([cond, v, v])
            elif kind == "if":
                v = eval_condition(rest, kconfig)
                stack.append([rest, v, v])
            elif kind == "elif" and stack:
                before = stack[-1][2]  # was an earlier branch of this chain taken?
                v = eval_condition(rest, kconfig)
                here = _and(negate(before), v)
                stack[-1] = [f"!({stack[-1][0]}) && ({rest})", here, _or(before, v)]
            elif kind == "else" and stack:
                stack[-1] = [f"!({stack[-1][0]})", negate(stack[-1][2]), True]
            elif kind == "endif" and stack:
                stack.pop()
            continue
        if pending is not None:
            pending = (pending[0], pending[1] + " " + s)
        elif s.startswith("BPF_PROG_TYPE("):
            pending = (lineno, s)
        if pending is not None and ")" in pending[1]:
            m = re.match(r"BPF_PROG_TYPE\(\s*(BPF_PROG_TYPE_\w+)\s*,\s*(\w+)\s*,", pending[1])
            if m:
                cond, val = current()
                out.append({"prog_type": m.group(1), "name": m.group(2),
                            "verifier_ops": f"{m.group(2)}_verifier_ops", "condition": cond,
                            "enabled": val, "line": pending[0]})
            pending = None
    return out


def read_bpf_types(source_root: Path | str | None,
                   kconfig: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """:func:`parse_bpf_types` on a source tree; [] when the header is not there."""
    if not source_root:
        return []
    p = Path(source_root) / "include/linux/bpf_types.h"
    try:
        return parse_bpf_types(p.read_text(errors="replace"), kconfig)
    except OSError:
        return []


def kfunc_set_macros(source_root: Path | str | None = None,
                     kfunc_sets: Iterable[Mapping[str, Any]] = ()) -> frozenset[str]:
    """Which set-opening macros make kfunc sets in this tree (see the module docstring).

    Decided from include/linux/btf_ids.h when the tree is at hand (a v6.9+ header defines
    ``BTF_KFUNCS_START``), else from the facts: one ``BTF_KFUNCS_START`` set means the new era.
    """
    if source_root:
        try:
            text = (Path(source_root) / "include/linux/btf_ids.h").read_text(errors="replace")
        except OSError:
            text = None
        if text is not None:
            new = re.search(r"#define\s+BTF_KFUNCS_START\b", text) is not None
            return KFUNC_SET_MACROS_NEW if new else KFUNC_SET_MACROS_OLD
    if any(s.get("macro") in KFUNC_SET_MACROS_NEW for s in kfunc_sets):
        return KFUNC_SET_MACROS_NEW
    return KFUNC_SET_MACROS_OLD


# ---- helper ids and program types from the proto switches -------------------------------------


class ProtoTables:
    """What each ``get_func_proto``-like function returns, per helper id.

    ``table(f)`` maps ``"BPF_FUNC_x"`` (or None: returned whatever the id) to the proto ids ``f``
    may return, following the functions its cases call (restricted to the case's ids) and the
    functions it falls back to (for the ids its own cases do not handle, as a C ``switch`` with a
    ``default:`` does).  Memoised; a function that reaches itself contributes nothing the second
    time round (its answers are already being collected).
    """

    def __init__(self, bpf: Mapping[str, Any]):
        self.switches: dict[str, Mapping[str, Any]] = {}
        for sw in bpf.get("proto_switches", []):
            # The same header function can appear once per TU: merge, do not overwrite.
            prev = self.switches.get(sw["function"])
            if prev is None:
                self.switches[sw["function"]] = sw
            else:
                self.switches[sw["function"]] = {
                    "function": sw["function"],
                    "cases": list(prev.get("cases", [])) + list(sw.get("cases", [])),
                    "fallbacks": sorted(set(prev.get("fallbacks", [])) | set(sw.get("fallbacks", [])))}
        self.protos: dict[str, Mapping[str, Any]] = {p["id"]: p for p in bpf.get("protos", [])}
        self.by_name: dict[str, list[str]] = {}
        for p in self.protos.values():
            self.by_name.setdefault(p["name"], []).append(p["id"])
        self._memo: dict[str, dict[str | None, set[str]]] = {}
        self._busy: set[str] = set()
        self.by_convention: set[tuple[str, str]] = set()  # (id, proto) found by name only

    def convention(self, helper_id: str, near: str | None = None) -> list[str]:
        """Protos named ``bpf_x_proto`` for ``BPF_FUNC_x``; those in ``near``'s file first."""
        if not helper_id.startswith("BPF_FUNC_"):
            return []
        cands = self.by_name.get(f"bpf_{helper_id[len('BPF_FUNC_'):]}_proto", [])
        if len(cands) > 1 and near and "@" in near:
            same = [c for c in cands if c.endswith("@" + near.split("@", 1)[1])]
            if same:
                return same
        return list(cands)

    def table(self, fid: str) -> dict[str | None, set[str]]:
        hit = self._memo.get(fid)
        if hit is not None:
            return hit
        if fid in self._busy:
            return {}
        self._busy.add(fid)
        out: dict[str | None, set[str]] = {}
        sw = self.switches.get(fid)
        if sw is not None:
            explicit: set[str] = set()
            for case in sw.get("cases", []):
                ids = list(case.get("ids", []))
                explicit.update(ids)
                for p in case.get("protos", []):
                    for k in (ids or [_ANY]):
                        out.setdefault(k, set()).add(p)
                for g in case.get("calls", []):
                    sub = self.table(g)
                    if not ids:  # called outside any case label: everything it returns
                        for k, ps in sub.items():
                            out.setdefault(k, set()).update(ps)
                        continue
                    for k in ids:
                        got = set(sub.get(k, ())) | set(sub.get(_ANY, ()))
                        if not got:
                            # The callee returns its proto outside any switch, which the facts
                            # do not show: fall back on the kernel's naming convention.
                            got = set(self.convention(k, g))
                            self.by_convention.update((k, p) for p in got)
                        out.setdefault(k, set()).update(got)
            for g in sw.get("fallbacks", []):
                for k, ps in self.table(g).items():
                    if k is _ANY or k not in explicit:
                        out.setdefault(k, set()).update(ps)
        self._busy.discard(fid)
        self._memo[fid] = out
        return out


def helper_ids(bpf: Mapping[str, Any], func_ids: Mapping[str, int] | None = None
               ) -> dict[str, list[str]]:
    """{proto id: sorted ``BPF_FUNC_*`` ids} from every proto switch in the facts.

    A proto that no switch names gets its id from its name (``bpf_x_proto`` -> ``BPF_FUNC_x``)
    when the uapi enum (``func_ids``) has that id: protos returned outside a switch (the
    ``bpf_get_trace_printk_proto()`` kind) are otherwise invisible in the facts.
    """
    tables = ProtoTables(bpf)
    ids: dict[str, set[str]] = {}
    for fid in tables.switches:
        for k, ps in tables.table(fid).items():
            if k is _ANY:
                continue
            for p in ps:
                ids.setdefault(p, set()).add(k)
    if func_ids:
        for pid, p in tables.protos.items():
            if pid in ids:
                continue
            m = re.fullmatch(r"bpf_(\w+)_proto", p["name"])
            if m and f"BPF_FUNC_{m.group(1)}" in func_ids:
                ids[pid] = {f"BPF_FUNC_{m.group(1)}"}
    return {p: sorted(v) for p, v in ids.items()}


def proto_prog_types(bpf: Mapping[str, Any], bpf_types: Iterable[Mapping[str, Any]]
                     ) -> dict[str, list[str]]:
    """{proto id: sorted ``BPF_PROG_TYPE_*``} — the program types whose verifier ops offer it.

    ``bpf_types`` is :func:`parse_bpf_types` output; entries disabled by the .config are skipped.
    Several program types share one verifier ops (``tc_cls_act`` serves SCHED_CLS and SCHED_ACT).
    """
    by_ops: dict[str, list[str]] = {}
    for t in bpf_types:
        if t.get("enabled") is False:
            continue
        by_ops.setdefault(t["verifier_ops"], []).append(t["prog_type"])
    tables = ProtoTables(bpf)
    out: dict[str, set[str]] = {}
    for ops in bpf.get("verifier_ops", []):
        types = by_ops.get(ops["name"])
        gfp = ops.get("get_func_proto")
        if not types or not gfp:
            continue
        for ps in tables.table(gfp).values():
            for p in ps:
                out.setdefault(p, set()).update(types)
    return {p: sorted(v) for p, v in out.items()}


# ---- roots --------------------------------------------------------------------------------------


def resolve_function(ref: str, by_name: Mapping[str, list[str]], ids: Mapping[str, Any] | set[str],
                     near_file: str | None = None) -> list[str]:
    """Graph ids a name (or an id) stands for.

    An id is taken as is.  A name is its external function when there is one (one per kernel
    image); otherwise its internal functions — only the one in ``near_file`` when there is such
    (a kfunc set names the function of its own file) — possibly several: the caller reports that.
    """
    if ref in ids:
        return [ref]
    cands = sorted(by_name.get(ref, []))
    ext = [c for c in cands if "@" not in c]
    if ext:
        return ext
    if near_file:
        near = [c for c in cands if c.endswith("@" + near_file)]
        if near:
            return near
    return cands


def _new_root(fid: str, name: str, kind: str) -> dict[str, Any]:
    return {"id": fid, "name": name, "kind": kind, "kinds": [kind], "protos": [], "helper_ids": [],
            "prog_types": [], "kfunc_flags": [], "kfunc_sets": [], "body": None}


def find_roots(bpf: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]],
               succ: Mapping[str, Iterable[str]], *, helpers: bool = True, kfuncs: bool = True,
               extra: Iterable[str] = (), bpf_types: Iterable[Mapping[str, Any]] = (),
               func_ids: Mapping[str, int] | None = None,
               kfunc_macros: frozenset[str] | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All roots of a graph, and the problems met finding them.

    ``nodes`` maps graph id -> attributes (``name``, ``file``, ``bpf_kfunc``); ``succ`` maps id ->
    callee ids.  Returns (roots sorted by id, problems).  A root is one entry per function:
    ``{id, name, kind, kinds, protos, helper_ids, prog_types, kfunc_flags, kfunc_sets, body}``,
    ``kind`` being the first of helper, kfunc, extra that applies.  A problem is
    ``{what: "not_in_graph"|"not_found"|"ambiguous", root_kind, ref, detail}``: roots the facts
    name but the graph lacks are listed there, never dropped silently.
    """
    by_name: dict[str, list[str]] = {}
    for nid, attrs in nodes.items():
        by_name.setdefault(str(attrs.get("name", nid.split("@", 1)[0])), []).append(nid)
    roots: dict[str, dict[str, Any]] = {}
    problems: list[dict[str, Any]] = []

    def add(fid: str, kind: str) -> dict[str, Any]:
        r = roots.get(fid)
        name = str(nodes[fid].get("name", fid.split("@", 1)[0]))
        if r is None:
            r = roots[fid] = _new_root(fid, name, kind)
        elif kind not in r["kinds"]:
            r["kinds"].append(kind)
            r["kinds"].sort(key=ROOT_KINDS.index)
            r["kind"] = r["kinds"][0]
        return r

    if helpers:
        ids_of = helper_ids(bpf, func_ids)
        types_of = proto_prog_types(bpf, bpf_types)
        for p in bpf.get("protos", []):
            func = p.get("func")
            if not func:
                continue  # .func = NULL (tail calls): not a helper
            if func not in nodes:
                problems.append({"what": "not_in_graph", "root_kind": HELPER, "ref": func,
                                 "detail": f"proto {p['id']} ({p.get('file')}:{p.get('line')})"})
                continue
            r = add(func, HELPER)
            r["protos"].append(p["id"])
            r["helper_ids"].extend(ids_of.get(p["id"], []))
            r["prog_types"].extend(types_of.get(p["id"], []))
            body_name = BODY_PREFIX + r["name"]
            for s in succ.get(func, ()):
                if str(nodes.get(s, {}).get("name", "")) == body_name:
                    r["body"] = s
                    break

    if kfuncs:
        macros = kfunc_macros or kfunc_set_macros(None, bpf.get("kfunc_sets", []))
        for ks in bpf.get("kfunc_sets", []):
            if ks.get("macro") not in macros:
                continue  # a BTF_SET8 id set in a v6.9+ tree (e.g. fmod_ret allow list)
            for k in ks.get("kfuncs", []):
                fids = resolve_function(k["name"], by_name, nodes, ks.get("file"))
                if not fids:
                    problems.append({"what": "not_in_graph", "root_kind": KFUNC, "ref": k["name"],
                                     "detail": f"set {ks['name']} ({ks.get('file')}:{ks.get('line')})"})
                    continue
                if len(fids) > 1:
                    problems.append({"what": "ambiguous", "root_kind": KFUNC, "ref": k["name"],
                                     "detail": f"set {ks['name']}: {', '.join(fids)}"})
                for fid in fids:
                    r = add(fid, KFUNC)
                    r["kfunc_flags"].extend(k.get("flags", []))
                    r["kfunc_sets"].append(ks["name"])
        for nid, attrs in nodes.items():
            if attrs.get("bpf_kfunc"):
                add(nid, KFUNC)

    for ref in extra:
        fids = resolve_function(ref, by_name, nodes)
        if not fids:
            problems.append({"what": "not_found", "root_kind": EXTRA, "ref": ref,
                             "detail": "no function of that name or id in the graph"})
        elif len(fids) > 1:
            problems.append({"what": "ambiguous", "root_kind": EXTRA, "ref": ref,
                             "detail": f"all taken: {', '.join(fids)}"})
        for fid in fids:
            add(fid, EXTRA)

    for r in roots.values():
        for key in ("protos", "helper_ids", "prog_types", "kfunc_flags", "kfunc_sets"):
            r[key] = sorted(set(r[key]))
    return [roots[k] for k in sorted(roots)], problems


def reachable(roots: Iterable[str], succ: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node some root reaches (roots included): one traversal for all roots."""
    seen = set(roots)
    todo = list(seen)
    while todo:
        n = todo.pop()
        for s in succ.get(n, ()):
            if s not in seen:
                seen.add(s)
                todo.append(s)
    return seen


def helper_bodies(roots: Iterable[Mapping[str, Any]]) -> set[str]:
    """Ids of the ``____name`` bodies of helper roots (inline: no frame of their own)."""
    return {r["body"] for r in roots if r.get("body")}
