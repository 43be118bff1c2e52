"""The facts schema shared by the parse stage (which writes it) and the link stage (which reads it).

One JSON document per translation unit (TU), plus one per function defined in a header (a
``static inline`` in ``include/linux/*.h`` is one function, extracted once per run, not once per
TU that includes it).  Documents live in a content-addressed store (:mod:`pipeline.store`).

Identity
--------
Every function and global object is named by an **id**, the same id the callgraph uses:

- ``name`` for external linkage (one symbol per kernel image);
- ``name@path`` for internal linkage (``static``), where ``path`` is the file that defines it,
  relative to the source root (or to the build directory for generated files); a header
  ``static inline`` is ``name@include/linux/foo.h``.

Records are named by their C spelling (``struct bpf_map_ops``, ``union bpf_attr``).  An anonymous
record is named from where it sits, the same in every TU: ``struct sk_buff::<field>`` for a named
member, and the enclosing record's name itself for an unnamed (transparent) member, whose fields
C lets you use as if they were the parent's.  A layer is a ``[record, field]`` pair.

Values (what flows into a function-pointer slot)
------------------------------------------------
``{"kind": "function", "id": ID}``, ``{"kind": "object", "id": ID}`` (the address of, or a copy
of, a global object, e.g. ``.ops = &array_map_ops``), ``{"kind": "null"}``, or
``{"kind": "nonconst", "what": "param"|"local"|"call"|"field"|"global"|"other", "text": SRC}``.
A value read through a conversion to another type (``(struct x_ops *)p->priv``, a ``void *``
parameter) is ``other``: its source may hold values of any type.  A function pointer read at
an offset into a record, ``*(cb_t *)((void *)ops + off)``, is ``{"kind": "nonconst", "what":
"offset-read", "record": R, "offset": "F#argI"}`` when ``off`` is parameter I of the function
F it is read in (whatever the parameter's type), and a field read (``what: "field"``) when
``off`` is ``offsetof(R, f)`` itself.

Locals, parameters and returns as variables
-------------------------------------------
Values of *tracked* type (function pointers, pointers to records that hold function pointers,
or to records incomplete in the TU) are followed through three kinds of pseudo-variable, which a
``nonconst`` value names with ``id`` (and a call's ``base`` too):

- ``F#argI``, parameter I of F: every direct call of F stores its argument I there (a Store
  with target ``{var, param: true}``); so do assignments to the parameter inside F;
- ``F#local:NAME:LINE:COL``, a local of F: its initializer and every assignment; ``&local``
  stores ``other`` (it may be written through the pointer);
- ``F#ret``: every ``return`` of F (a value ``{"what": "call", "id": "F#ret"}`` is a direct call
  of F; calls through pointers have no id).

Document shapes (``FACTS_SCHEMA`` bumps whenever any of these change)
--------------------------------------------------------------------
TU document::

  {schema, kind: "tu", file, status: "ok"|"failed", error, diagnostics: {error, warning,
   fatal, first: [str]}, stripped_args: [str], includes: [path], functions: [Function],
   header_functions: [key], objects: [Object], stores: [Store], copies: [Copy], casts: [Cast],
   address_taken: [AddressTaken], layouts: {record: Layout|None}, bpf: Bpf}

Header-function document: ``{schema, kind: "header_function", key, function: Function,
header_functions: [key], stores, copies, casts, address_taken}`` (the same lists, for its body).

Function::

  {id, name, linkage: "external"|"internal"|"weak", file, line, col, type, attrs: [str],
   section: str|None, bpf_kfunc: bool, calls: [Call]}

  ``attrs`` holds what the AST and the kernel's macros say: ``inline``, ``noinline``,
  ``notrace``, ``used``, ``weak``, ``init``, ``cold``, ... and ``asm_entry`` (declared
  ``asmlinkage`` or ``__visible``: called from assembly).

Call (``line``/``col`` of the call's expansion site; ``expr`` is the callee expression's text)::

  direct:   {kind: "direct", callee: ID, name, file, line, col, expr,
             offsetof_args?: {"I": {record: R, layer: [record, field]}}}
  indirect: {kind: "indirect", fn_type, layers: [[record, field]...] (innermost first),
             base: {kind: "global"|"static"|"local"|"param"|"field"|"array"|"call"|"other",
                    id?: ID, name?: str},
             subscript: bool, slot_fnptr?: true, fn_typedef?: name, file, line, col, expr}

  ``offsetof_args``: the arguments that are ``offsetof(R, a.f)`` (R the record it is taken in,
  the layer its last member's), for offset reads of the callee's parameter.

  ``fn_typedef``: the typedef the callee's pointer type is spelled with (``bpf_callback_t``:
  the call is a BPF program's callback, see :mod:`pipeline.resolve`).

  ``slot_fnptr``: the innermost layer is a struct field declared as a function pointer (or an
  array of them), so every write to it is in the facts.

  ``static_call(x)(...)`` (include/linux/static_call.h) is an indirect call with
  ``base: {kind: "static_call", id: "__SCK__x", name: "x"}`` and no layers: its targets are the
  ``func`` of the object ``__SCK__x`` (DEFINE_STATIC_CALL) and every store into it.

  For a call through a local variable with one simple definition in the same function
  (``ops = dev->netdev_ops; ops->ndo_start_xmit(...)``), the definition's layers are appended
  to ``layers`` and ``base`` is that definition's base (``via_local: true``).

  For a call through a path every way to the call has just stored into
  (``replace_fops(filp, fops); filp->f_op->open(...)``, :mod:`pipeline.definite`), the layers
  of that path are replaced by the stored value's and ``base`` is its base (``via_store``: the
  line of the value).

Object (a global/static variable of a record type that holds function pointers — with or
without an initializer: a definition without one holds NULL in every slot — or any variable
whose initializer holds functions/objects/NULL)::

  {id, name, linkage, type, file, line, entries: [{path: [[record, field] | ["[]", index]...]
   (outermost first), value: Value}]}

Store (an assignment into a function-pointer or record-pointer slot at run time)::

  {target: {layers: [[record, field]...]} | {var: ID, param|local|ret?: true}
           | {escaped: true, record: R | fn_type: T}, value: Value, function: ID, file, line}
  (``escaped``: a slot no (record, field) or variable names, ``*pp = n`` or an inline asm
  operand such as cmpxchg's; ``record``/``fn_type``: what the stored pointer points to)
  (``static_call_update(x, f)`` is a store with target ``{var: "__SCK__x", static_call: true}``)

Copy (a whole record copied: ``*a = *b``, ``a->s = b->s``, ``local = *p``, ``struct x l = *p;``,
``memcpy(a, b, n)``/``memmove`` of a record holding function pointers)::

  {dst_type: record, src_type: record|None, src: Value, dst: {layers}|{var}|{local}|{other},
   function: ID, file, line}
  (``src_type`` None: the bytes come from no record, ``memcpy(ops, buf, n)``)

Cast (between a record pointer and another record pointer / void* / an integer)::

  {from: type, to: type, from_record: record|None, to_record: record|None, function: ID|None,
   file, line}

Layout (of both records of every record-to-record cast; ``{incomplete: true}`` when the TU
has no definition of the record, ``None`` when it has no fixed layout; and of every struct the
main file defines that embeds a record holding slots first, ``struct bpf_arena { struct
bpf_map map; ...}``, for the TUs that cast it incomplete)::

  {leaves: [[offset_bits, size_bits, record|None, field|None, tracked: bool, kind]...]}
  Embedded records are opened: a leaf is named by the layer a write to it is recorded under.
  ``tracked``: a slot calls resolve through.  An array of records is one leaf with no field,
  named by its element record.  ``kind``: ``fn`` (a function pointer) or ``rec`` (a pointer
  to a record holding them), both tracked; ``records`` (an array of records); ``word``
  (``void *`` or a pointer-sized integer), ``ptr`` (a data pointer), ``int``.
  ``layouts`` also holds ``overlay:<union>`` entries: the leaves of every member of a union
  the TU names whose members lay a slot under a leaf named otherwise (an anonymous union is
  ``overlay:<record around it>::(anonymous union at file:line:col)``).

Store targets that are neither a layer nor a variable are ``{other: type, lvalue:
"var"|"field"|"other"}``: ``var``/``field`` when a variable or struct field declared with the
stored type is written (a function's address kept as an integer), ``other`` for a write through
a dereference or into a union member, which may land in any slot.

AddressTaken (every use of a function other than calling it)::

  {id, type (its canonical function type, also for functions defined in assembly),
   context: "init"|"store"|"arg"|"return"|"cast"|"other", where: {...}, file, line}
    init:  where = {object: ID, path: [...]};   store: where = {target: ...}
    arg:   where = {callee: ID|None, index: int}; return: where = {function: ID}
    cast:  where = {to: type}

Bpf (see :mod:`pipeline.bpf` for the kernel idioms)::

  {protos: [{id, name, func: ID|None, file, line}],
   proto_switches: [{function: ID, cases: [{ids: [BPF_FUNC_x...], protos: [ID], calls: [ID]}],
                     fallbacks: [ID], unlabeled: [ID] (protos returned outside any case)}],
   verifier_ops: [{id, name, get_func_proto: ID|None}],
   kfunc_sets: [{name, macro, file, line, kfuncs: [{name, flags: [KF_x...]}]}],
   id_lists: [{name, macro, file, line, names: [str]}]}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FACTS_SCHEMA = 5  # 2: pseudo-variables for locals, parameters and returns; 3: layouts;
# 4: leaf kinds, union overlays, copies into any destination and by memcpy; 5: incomplete
# layouts, layouts of main-file records that embed another first


class PathMap:
    """Maps compiler-visible paths to the stable relative paths used in ids.

    Files under the source root become relative to it; generated files under an out-of-tree
    build directory become relative to that (kbuild mirrors the source layout there); anything
    else (system headers) stays absolute.
    """

    def __init__(self, source_root: Path | str, build_root: Path | str | None = None):
        self.source_root = os.path.realpath(source_root)
        self.build_root = os.path.realpath(build_root) if build_root else None
        self._memo: dict[str, str] = {}

    def rel(self, path: str, cwd: str | None = None) -> str:
        key = path if cwd is None else f"{cwd}\0{path}"
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        p = path if os.path.isabs(path) or cwd is None else os.path.join(cwd, path)
        p = os.path.normpath(p)
        out = p
        for root in (self.build_root, self.source_root):
            if root and (p == root or p.startswith(root + os.sep)):
                out = os.path.relpath(p, root)
                break
        self._memo[key] = out
        return out


def function_id(name: str, linkage: str, rel_file: str) -> str:
    """The graph id of a function: ``name`` if external (or weak), else ``name@file``."""
    return name if linkage in ("external", "weak") else f"{name}@{rel_file}"


def is_header(rel_file: str) -> bool:
    return rel_file.endswith(".h")


def empty_tu(file: str) -> dict[str, Any]:
    """A TU document with every list present, so readers never need ``.get``."""
    return {
        "schema": FACTS_SCHEMA, "kind": "tu", "file": file, "status": "ok", "error": None,
        "diagnostics": {"error": 0, "warning": 0, "fatal": 0, "first": []},
        "stripped_args": [], "includes": [], "functions": [], "header_functions": [],
        "objects": [], "stores": [], "copies": [], "casts": [], "address_taken": [],
        "layouts": {},
        "bpf": {"protos": [], "proto_switches": [], "verifier_ops": [], "kfunc_sets": [],
                "id_lists": []},
    }


def failed_tu(file: str, reason: str) -> dict[str, Any]:
    doc = empty_tu(file)
    doc["status"] = "failed"
    doc["error"] = reason
    return doc
