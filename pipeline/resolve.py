"""The resolve stage: indirect-call targets (FLTA + MLTA on source facts) and the full graph.

Input: ``linked.json.gz``.  Outputs:

- ``graph.json.gz``: the full callgraph, networkx node-link data (``edges`` key, a directed
  multigraph whose edge ``key`` is the edge kind): nodes ``{id, name, file, line, linkage,
  defined, type, attrs, section, bpf_kfunc}``, edges ``{source, target, key, kind:
  "direct"|"indirect", callsites: ["file:line:col"] (sorted)}``;
- ``icalls.json``: a list, one entry per indirect call site: ``{caller, file, line, column, expr,
  fn_type, layers, base, resolution: "field"|"var"|"array"|"type"|"bpf-callback"|"unresolved",
  rule, targets,
  type_layer_count, trusted_layers, fallbacks, base_untrusted?}`` (``rule`` is the rule that
  produced the targets, kept when ``resolution`` is ``unresolved`` because the set is empty;
  a fallback whose reason is a taint carries its ``origin``, the fact where the untrusted
  value entered, see :meth:`Resolver.taint_root`);
- ``metrics.json``: site counts, mean/median/max targets per site for the result and for the type
  layer alone, the share of sites per rule, and every fallback counted by reason.

The rules (MLTA, CCS'19, restated for source facts; see docs/notes on indirect calls)
-------------------------------------------------------------------------------------
*Type layer (FLTA).*  The candidates of a call are the address-taken functions whose canonical
function type equals the call's: the kernel's own kCFI classes.  Every result is a subset of it.

*Field layers.*  A call ``a->b.ops->fn(...)`` reaches the pointer through the layers
``(ops-record, fn), (b-record, ops), (a-record, b)`` (innermost first).  What can sit in a layer's
slot comes from three sources:

- initializers of global objects (designated, positional and nested): the entry path
  ``[(A, b), (B, ops)]`` of object ``x`` puts its value into slot ``(B, ops)`` of the sub-object
  ``x.b``, and ``x.b`` itself is the content of slot ``(A, b)`` — every enclosing (record, field)
  of an entry holds it (MLTA's nested confinement);
- run-time stores (``p->ops = &x``, ``p->fn = f``): the slot of *any* object of that record may be
  the one written, so a store's value is added at its layer wherever that layer is read;
- whole-record copies between records of the same type (MLTA's record-to-record propagation):
  a copy of a known object (``*drv = xhci_hc_driver``, ``memcpy(&c->ops, &tmpl, ...)``) is a
  store of each of its slots' values at that slot's layer; a copy from an unknown object moves
  values between objects of one record type, so the layers of that record are read as the
  union over all its objects instead of per object;
- value flows: a slot that receives what another slot or a global variable holds
  (``file->f_op = inode->i_fop``) gets everything that one may hold (fixpoint); MLTA's
  propagation between layers.

Resolution walks the layers from the outermost trusted one inwards: the content of the outer slot
(objects it points to, or the embedded sub-object) is followed through the next layer, so
``a->ops->fn`` gets exactly the ``fn`` entries of the objects ever stored into ``(A, ops)`` plus
the run-time stores into ``(OPS, fn)`` — a decoy table of the same slot type that is never stored
into ``(A, ops)`` does not appear.  The result is intersected with the type layer.

*Not trusted* (MLTA's escape rules; each fallback is recorded at the site and counted):

- a non-constant value the facts cannot follow (an address computed, an integer cast) is stored
  into the layer's slot (``nonconst-store``) or appears in an initializer (``nonconst-init``);
  a named one (a setter's parameter, a field read, a call's result), stored or in an
  initializer (``struct cpu_stop_work work = { .fn = fn }``), is a value flow (above);
- a cast between the layer's record and another lets the other write the slot under another
  name (``record-cast``): the two layouts (facts ``layouts``) are compared leaf by leaf, and a
  slot is safe where the other record has the very same layer at the same place (first-member
  embedding, the kernel's inheritance: ``tcp_sock`` starts with a ``sock``) or nothing at all
  (``inet_timewait_sock`` ends before ``sock``'s callbacks) — see :func:`cast_overlaps`;
  without layouts both records are tainted whole;
- the record is copied from a different or unknown type (``copy-other-type``; an assignment
  into any destination, ``*drv = tmpl``, or ``memcpy``/``memmove`` of a record pointer);
  records embedded in such a record (known from nested initializers) are affected the same
  way, since the foreign writes reach them;
- the record is cast to or from an array of pointer-sized words (``word-view``: ``void **``,
  ``unsigned long *``; ata_finalize_port_ops copies inherited slots that way): its slots are
  written without a name;
- a union lays the slot under a leaf of another name (``union-overlay``: ``struct key``'s
  anonymous struct ``type`` under ``index_key.type``; another slot, or a ``void *``/long that
  may carry an object's address), see :func:`overlaid_layers`;
- a value flows in from an untrusted slot or an unknown variable (``flow-from-untrusted``);
- the layer cannot be seen whole: its slot holds an object without facts (``opaque-object``:
  defined in assembly or a failed TU); no fact shows the slot is one whose writes the parser
  records (``unseen-slot``: a ``void *`` field cast at the call, say — the parser records stores
  only into function-pointer slots and pointers to records holding them; a struct field declared
  as a function pointer, ``slot_fnptr`` at the site, is always seen, and holds NULL when nothing
  writes it: such a call has no target but wild functions); or the outer slot
  holds objects of another record than the next layer's (``slot-type-mismatch``: the chain went
  through a ``void *`` such as ``seq = file->private_data``).
An untrusted layer and every layer outside it are dropped; the layers inside it still apply,
finally the type layer alone.

*Offset reads.*  ``*(pm_callback_t *)((void *)ops + cb_offset)`` (runtime PM's
``__rpm_get_callback``, whose callers pass ``offsetof(struct dev_pm_ops, runtime_idle)``) reads
the layers named by the ``offsetof`` that *every* direct call passes for that parameter (link's
``offsetof_params``), layer-wide as any field read through an unknown container; if some call
passes something else, or the function has callers no fact names, the value is not confined
(``unknown-offset``).

*Functions stored where the facts cannot say* (``*(unsigned long *)&p->fn = (unsigned long)f``,
a store through a pointer to a function pointer, into a union member): such a function may sit
in any slot of its type, so it is added to every field/variable result (then intersected with
the type layer).  One stored into a variable or struct field declared as an integer or
``void *`` (``ip = (unsigned long)ftrace_caller``) is not: it can reach a function-pointer slot
again only as a value the facts cannot follow, which leaves that slot unconfined anyway.
Address-taken functions whose type is unknown (defined nowhere the parser saw) are put into
every type class.  Both are counted in ``metrics.json`` (``wild_functions``,
``untyped_address_taken``).

*Stores into unnamed slots* (``*qp = qops`` in register_qdisc, ``rcu_assign_pointer(*nl, n)``
in notifier_chain_register, cmpxchg's inline asm in rpcauth_register; facts target
``escaped``): an object stored so may be read wherever an object of its record is (it joins
the containers of every walk step into that record), a function is wild; a value the facts
cannot follow leaves every layer holding that record unconfined (``escaped-<reason>``), or
every call of that function type (then the type layer).

*BPF struct_ops* (``struct bpf_struct_ops`` objects, :func:`struct_ops_records`): a call
through a slot of a record BPF programs can implement (``icsk->icsk_ca_ops->cong_avoid``)
also reaches ``bpf-program``: the kernel object a struct_ops map registers holds trampolines
into BPF programs, written through ``void *`` by bpf_struct_ops_map_update_elem.

*BPF programs run*: a call of struct bpf_prog's entry type (``bpf_func``, where the JIT
stores its image) also reaches ``bpf-program`` (:data:`BPF_PROG_ENTRY_TYPE`).

*Compound literals* are objects (``&(const struct iommu_domain_ops){...}``).

*Objects defined without initializer* hold NULL in every slot, but for run-time stores.

*Unions.*  A store through one member is a store to the others: every field of a record named
``union ...`` is one slot ``(union X, *)``.

*Variables and arrays.*  A call through a global/static function-pointer variable or array gets
what is assigned to it (its initializer entries and the stores into it) when all of it is constant
functions/objects; a non-constant store, or a variable with no facts at all, falls back to the
layers/type layer.  With layers (``tbl[i].fn()``, ``cur_ops->fn()``) the variable is the outermost
container of the walk.

*Static calls* (``static_call(x)(...)``, base kind ``static_call``) are patched direct jumps, not
kCFI-checked calls: their targets are the key's DEFINE_STATIC_CALL function and every
``static_call_update`` (rule ``var``), with no exact-type filter.  A tracepoint key adds the
probes that can be registered for that tracepoint (:mod:`pipeline.tracepoints`).  A
non-constant update, a key without facts, or a tracepoint whose probes cannot be known falls
back to the address-taken functions with the same parameter list.

*Locals, parameters and returns* (pseudo-variables ``F#local:...``, ``F#argI``, ``F#ret``; see
:mod:`pipeline.facts`) are variables like the others: a local holds its definitions, a
parameter what every direct call passes (and what F assigns to it), a call's result what the
callee returns.  So a setter (``register_x(&ops)`` → ``obj->ops = ops``, through any number of
wrappers) keeps its layer trusted, and a callback parameter resolves to the functions callers
pass (rule ``var``).  A parameter of a function whose address is taken has callers no fact
names (``param-of-address-taken-function``), as has a kfunc's (BPF programs call it) and an
assembly entry's (``asmlinkage``/``__visible``; :func:`outside_callers`), and any parameter
when a TU failed to parse; a local whose address is taken may be written through the
pointer.  Those taint what they flow into, as any non-constant store.  A call through a local
with one simple definition keeps that definition's layers (``ops = dev->netdev_ops;
ops->ndo_start_xmit(...)``).

*What the rules take for granted* (where a kernel could still call something not listed):

- a ``void *`` or ``char *`` cast to a record pointer points at an object of that record
  (container_of, private data, allocations): such casts are not judged as puns; a slot written
  byte by byte (not by memcpy/memmove, which are copies) is not seen;
- an inline asm statement writes its memory operands with its other operands (libclang gives
  no constraints); asm that computes a function address itself (paravirt patching, the
  alternatives) is outside C;
- code made at run time is one node, ``bpf-program`` (callbacks, struct_ops); what fentry,
  kprobe and tracepoint programs attached to a function add is not an edge here: it is the
  nesting a verifier adds on top of this graph;
- user memory never holds a function pointer the kernel calls.

Speed: every index (slot contents, per-layer stores, taints, type classes) is built once; a site
costs a walk over the few objects its layers hold; walks are memoized per (layers, root).
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline import static_calls, tracepoints
from pipeline.fsutil import atomic_write_text, write_json
from pipeline.link import LINK_VERSION, load_linked, no_gc, write_json_fast
from pipeline.runner import Context, Stage, StageResult, stage_input_hash

RESOLVE_VERSION = 17  # bump whenever a rule changes: reruns resolve on old outputs
GRAPH_FILE = "graph.json.gz"
ICALLS_FILE = "icalls.json"
METRICS_FILE = "metrics.json"

# Address-taken functions whose type the facts do not give (defined nowhere in C: assembly, a
# failed TU) could be the target of any call: soundness puts them into every type class.  They
# still drop out wherever a field layer confines the call.
UNTYPED_MATCH_ALL = True

STATIC_CALL_TRAMP_PREFIX = "__SCT__"  # include/linux/static_call_types.h: STATIC_CALL_TRAMP

# include/linux/bpf.h (6.1 and 6.12): 'typedef u64 (*bpf_callback_t)(u64, u64, u64, u64, u64)',
# the type the kernel calls BPF programs' callbacks through, and nothing else.
BPF_CALLBACK_TYPEDEF = "bpf_callback_t"
# The node a BPF callback call reaches: JITed BPF code, not a C function ('-' keeps it apart
# from every C identifier).
BPF_PROGRAM_NODE = "bpf-program"
# include/linux/bpf.h (6.1 and 6.12), struct bpf_prog's entry: 'unsigned int (*bpf_func)(const
# void *ctx, const struct bpf_insn *insn)'.  The JIT stores its image there ('prog->bpf_func =
# (void *)image', arch/x86/net/bpf_jit_comp.c), a value no C function stands for; a call of
# this type (bpf_dispatcher_nop_func's, under every bpf_prog_run()) runs a BPF program.
BPF_PROG_ENTRY_TYPE = "unsigned int (const void *, const struct bpf_insn *)"

NODE_KEYS = ("id", "name", "file", "line", "linkage", "defined", "type", "attrs", "section",
             "bpf_kfunc")
VAR_BASES = ("global", "static", "array")
# Locals and parameters of tracked type are pseudo-variables (``F#local:...``, ``F#argI``):
# their definitions, and for parameters every direct call's argument, are stores into them.
PSEUDO_VAR_BASES = ("param", "local", "call")
PARAM_VAR_RE = re.compile(r"(.+)#arg(\d+)$")

Layer = tuple[str, str]
Path_ = tuple[Layer, ...]
Loc = tuple[str, Path_]  # (object id, path of a sub-object inside it)


def norm_layer(record: str, fld: str) -> Layer:
    """A layer as the resolver keys it: every member of a union is one slot."""
    if record.startswith("union "):
        return (record, "*")
    return (record, fld)


def norm_path(path: Iterable[Any]) -> Path_:
    """An initializer path without array subscripts (any element of an array may be read)."""
    out = []
    for rec, fld in path:
        if rec == "[]":
            continue
        out.append((rec, "*") if rec.startswith("union ") else (rec, fld))
    return tuple(out)


def strip_quals(t: str | None) -> str | None:
    """A record type without cv-qualifiers (``const struct x`` -> ``struct x``)."""
    if not t:
        return t
    words = [w for w in t.split() if w not in ("const", "volatile")]
    return " ".join(words)


def record_type(t: str | None) -> str | None:
    """The record a declared object type names: ``const struct x[4]`` -> ``struct x``."""
    t = strip_quals(t)
    if not t:
        return None
    t = re.sub(r"(\s*\[[^\]]*\])+$", "", t)
    if t.endswith("*") or not t.startswith(("struct ", "union ")):
        return None
    return t


def param_list(t: str) -> str:
    """The parameter list of a canonical function type: ``int (void *, int)`` -> ``(void *, int)``.
    """
    depth = 0
    for i in range(len(t) - 1, -1, -1):
        c = t[i]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
            if depth == 0:
                return t[i:]
    return t


def canon_type(t: str | None) -> str | None:
    """The canonical function type, spacing-insensitive."""
    return " ".join(t.split()) if t else t


def bpf_program_node() -> dict[str, Any]:
    """The graph node for a BPF program called back from a helper (not C; no frame here:
    its stack is the verifier's to bound)."""
    return {"id": BPF_PROGRAM_NODE, "name": BPF_PROGRAM_NODE, "file": None, "line": None,
            "linkage": "bpf", "defined": False, "type": "unsigned long long (unsigned long long, "
            "unsigned long long, unsigned long long, unsigned long long, unsigned long long)",
            "attrs": ["bpf_program"], "section": None, "bpf_kfunc": False}


def outside_callers(linked: dict[str, Any]) -> dict[str, str]:
    """Functions called from code the facts do not see, and why: their parameters hold more
    than what C calls pass.

    - kfuncs (listed in a BTF kfunc id set, or ``__bpf_kfunc`` since v6.4): BPF programs call
      them with whatever the verifier allows;
    - functions the parse stage saw declared ``asmlinkage`` or ``__visible``
      (``attrs: ["asm_entry"]``): entry code and other assembly calls them (``schedule_tail``
      from ``ret_from_fork``, ``__switch_to`` from ``__switch_to_asm``);
    - ``__used`` functions: kept because something outside C (inline asm) refers to them.
    """
    kfunc_names = {k["name"] for ks in (linked.get("bpf") or {}).get("kfunc_sets") or ()
                   for k in ks.get("kfuncs") or ()}
    out: dict[str, str] = {}
    for n in linked["nodes"]:
        if n.get("bpf_kfunc") or (n.get("name") in kfunc_names and n.get("linkage") != "internal"):
            out[n["id"]] = "param-of-kfunc"
        elif "asm_entry" in (n.get("attrs") or ()):
            out[n["id"]] = "param-of-asm-entry"
        elif "used" in (n.get("attrs") or ()):
            out[n["id"]] = "param-of-used-function"
    return out


def cast_overlaps(a: dict[str, Any] | None, b: dict[str, Any] | None) -> set[Layer] | None:
    """The slots a cast between two records lets one write as something else.

    Overlaps inside one record (a union's members; an anonymous union's members are named by
    their own records, ``struct callback_head`` beside ``struct list_head``) are not the cast's
    doing and are not judged here (:func:`overlaid_layers` judges them).

    A cast makes one object's bytes readable and writable as the other record.  A slot
    (``tracked`` leaf) of either is safe when every leaf of the other record over its bytes
    is the very same layer at the same place (the first-member embedding the kernel uses
    for inheritance: ``struct tcp_sock`` starts with a ``struct sock``, so a ``tcp_sock *``
    writes ``sk_data_ready`` as the sock's own layer), or when nothing of the other record
    lies there (``inet_timewait_sock`` shares only ``sock_common`` with ``sock``; the slots
    past it are out of its reach).  Any other overlap (a function pointer over a ``long``,
    or over another record's function pointer) is a write the facts record under another
    name: that slot is not confined.  None: a layout is unknown, or an overlapping slot has
    no name (an array of records), so both records are tainted whole.
    """
    if a is None or b is None:
        return None
    out: set[Layer] = set()
    la = [(o, o + n, _leaf_layer(r, f), t) for o, n, r, f, t, *_ in a["leaves"]]
    lb = [(o, o + n, _leaf_layer(r, f), t) for o, n, r, f, t, *_ in b["leaves"]]
    places = ({(s, e, layer) for s, e, layer, _ in la if layer is not None},
              {(s, e, layer) for s, e, layer, _ in lb if layer is not None})
    for (mine, other), (own, others) in (((la, lb), places), ((lb, la), places[::-1])):
        for start, end, layer, tracked in mine:
            if not tracked or (start, end, layer) in others:
                # The other record has this very slot here: whatever overlaps it there
                # overlaps it inside that record already (a union: struct folio's overlay
                # fields over its struct page), not because of the cast.
                continue
            for ostart, oend, olayer, _ in other:
                # A leaf this record has too, at the same place, is nothing new either.
                if ostart >= end or oend <= start or (ostart, oend, olayer) in own:
                    continue
                if layer is None:
                    return None
                out.add(layer)
    return out


_POINTER_TO_POINTER = re.compile(r"\*\s*(?:volatile\s*)?\*|\(\*\*\)")
# 'void **', 'struct page **', 'void (**)(void)', 'unsigned long *': a record read as an array
# of pointer-sized words, whose slots the code then writes without naming them (a view of
# const words, 'const unsigned long *', 'void *const *', writes nothing).
_WORD_VIEW_RE = re.compile(_POINTER_TO_POINTER.pattern + r"|^(?:volatile\s+)?(?:unsigned\s+)?"
                           r"long(?:\s+long)?(?:\s+int)?\s*\*$")


def is_word_view(t: str | None) -> bool:
    """Whether a pointer type views memory as pointer-sized words (see _WORD_VIEW_RE)."""
    return bool(t) and _WORD_VIEW_RE.search(t) is not None


# What a union member's leaf can carry into the slot it overlays (layout leaf kinds, see
# pipeline.facts): a function-pointer slot gets a function from another function pointer, an
# array of records with slots, or a pointer-sized word; a record-pointer slot an object's
# address from another record pointer, such an array, or a word.  A data pointer or a
# narrower integer carries neither; nor does a record pointer into a function-pointer slot
# (struct inode's i_fop over free_inode) or the other way round: a call through the slot
# would reach no function there.
_CARRIERS = {"fn": {"fn", "records", "word"}, "rec": {"rec", "records", "word"},
             "records": {"fn", "rec", "records", "word"}}


# include/linux/bpf.h, struct bpf_struct_ops: one object per record BPF programs can implement.
STRUCT_OPS_RECORD = "struct bpf_struct_ops"


def struct_ops_records(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Records whose function slots BPF struct_ops programs fill, each with its
    ``struct bpf_struct_ops`` object.

    6.12 names the record by ``.cfi_stubs = &__bpf_ops_tcp_congestion_ops``, an object of it;
    6.1 has no cfi_stubs, and BPF_STRUCT_OPS_TYPE(name) names the object ``bpf_<name>``
    (kernel/bpf/bpf_struct_ops.c): ``bpf_tcp_congestion_ops`` implements
    ``struct tcp_congestion_ops``.
    """
    out: dict[str, str] = {}
    for oid, obj in sorted(objects.items()):
        if strip_quals(obj.get("type")) != STRUCT_OPS_RECORD:
            continue
        record = None
        for entry in obj.get("entries") or ():
            value = entry.get("value") or {}
            if (entry.get("path") or [None])[-1] == [STRUCT_OPS_RECORD, "cfi_stubs"] and \
                    value.get("kind") == "object" and value.get("id") in objects:
                record = record_type(objects[value["id"]].get("type"))
        name = oid.split("@")[0]
        if record is None and name.startswith("bpf_"):
            record = f"struct {name[len('bpf_'):]}"
        if record:
            out.setdefault(record, oid)
    return out


ESCAPED_PREFIX = "escaped:"


def escaped_var(target: dict[str, Any]) -> str:
    """The pseudo-variable of stores into unnamed slots (``*pp = n``, ``p[i] = ops``):
    ``escaped:record:<R>`` for pointers to record R, ``escaped:fn:<type>`` for function
    pointers."""
    if target.get("fn_type"):
        return f"{ESCAPED_PREFIX}fn:{canon_type(target['fn_type'])}"
    return escaped_record_var(strip_quals(target.get("record")) or "?")


def escaped_record_var(record: str) -> str:
    """:func:`escaped_var` of pointers to ``record``."""
    return f"{ESCAPED_PREFIX}record:{record}"


def overlaid_layers(layouts: dict[str, Any]) -> dict[Layer, str]:
    """Slots a union lets code write under another name (``overlay:`` layouts, one per union
    the parser met whose members overlap a slot with a leaf named otherwise).

    ``struct key``'s anonymous union lays its anonymous struct's ``type`` over
    ``index_key.type``: ``key_alloc`` writes the one, ``key->type->preparse`` reads the
    other.  A slot is overlaid when another member's leaf over its bytes can carry what the
    slot holds (:data:`_CARRIERS`); its layer is untrusted.  A record array's (unnamed) leaf
    is returned as ``(record, "*")``: the record is untrusted whole.
    """
    out: dict[Layer, str] = {}
    for key, lay in layouts.items():
        if not key.startswith("overlay:") or not lay:
            continue
        leaves = []
        for start, bits, rec, fld, tracked, *kind in lay["leaves"]:
            name = _leaf_layer(rec, fld) or ((rec, "*") if rec else None)
            what = kind[0] if kind else ("rec" if tracked else "int")
            if what == "records" and not tracked:
                what = "int"  # an array of records without slots: data
            leaves.append((start, start + bits, name, what))
        leaves.sort(key=lambda x: x[0])
        for i, (_start, end, name, kind) in enumerate(leaves):
            for ostart, _, oname, okind in leaves[i + 1:]:
                if ostart >= end:
                    break
                if name == oname:
                    continue
                for slot, slot_kind, other_kind in ((name, kind, okind), (oname, okind, kind)):
                    if slot is not None and other_kind in _CARRIERS.get(slot_kind, ()):
                        out.setdefault(slot, "union-overlay")
    return out


def _leaf_layer(record: str | None, fld: str | None) -> Layer | None:
    return norm_layer(strip_quals(record) or "", fld or "") if record and fld else None


# Fallback reasons about the shape of the facts, not a value that entered somewhere: no
# source line to point to.
STRUCTURAL_REASONS = frozenset({
    "unseen-slot", "slot-type-mismatch", "opaque-object", "no-fn-type"})


def origin(reason: str, fact: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Why a slot/variable/record is untrusted, with the source location of the fact."""
    out: dict[str, Any] = {"reason": reason}
    for k in ("file", "line", "function"):
        if fact.get(k) is not None:
            out[k] = fact[k]
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def describe_value(value: dict[str, Any]) -> str:
    """A non-constant value in a few words (``call``, ``other: &p``)."""
    what = value.get("what") or value.get("kind") or "?"
    text = value.get("text")
    return f"{what}: {text}" if text else what


@dataclass
class Vals:
    """What a slot may hold: functions, objects pointed to, and embedded sub-objects."""

    funcs: set[str] = field(default_factory=set)
    objs: set[str] = field(default_factory=set)
    subs: set[Loc] = field(default_factory=set)

    def update(self, other: Vals | None) -> None:
        if other is not None:
            self.funcs |= other.funcs
            self.objs |= other.objs
            self.subs |= other.subs


class Resolver:
    """Indexes the linked facts once; :meth:`resolve_site` answers one indirect call."""

    def __init__(self, linked: dict[str, Any]):
        self.node_type: dict[str, str | None] = {
            n["id"]: canon_type(n.get("type")) for n in linked["nodes"]}
        self._index_types(linked)
        self._index_objects(linked)
        self._index_records(linked)
        self._index_stores(linked)
        self.struct_ops = struct_ops_records(self.objects)
        self._memo: dict[tuple[Path_, str | None], frozenset[str]] = {}
        self._by_params: dict[str, frozenset[str]] | None = None
        self._direct_edges = linked["direct_edges"]
        self._lsm_hooks: dict[str, set[str]] | None = None
        # Some code re-points static calls through a key no fact names: none is confined.
        self.static_call_unknown = static_calls.unknown_updaters(
            self._direct_edges, self.static_call_updaters)
        self._tp_probes: dict[str, set[str]] | None = None
        self._tp_unknown: list[str] = []
        self._tp_register_vars: dict[str, list[str]] = {}
        self.counts: Counter[str] = Counter()

    # ---- type layer ------------------------------------------------------------------------

    def _index_types(self, linked: dict[str, Any]) -> None:
        by_type: dict[str, set[str]] = defaultdict(set)
        untyped: set[str] = set()
        for at in linked["address_taken"]:
            fid = at.get("id")
            if not fid:
                continue
            t = self.node_type.get(fid) or canon_type(at.get("type"))
            if fid.startswith(STATIC_CALL_TRAMP_PREFIX):
                # A static-call trampoline (assembly; typed when DECLARE_STATIC_CALL declared
                # it) has its address taken only to be patched (struct
                # tracepoint.static_call_tramp, the tramp argument of __static_call_update);
                # it is entered only by static_call() sites, which resolve to the key's
                # functions themselves.  Not a target of any other call.
                continue
            if t:
                by_type[t].add(fid)
            else:
                untyped.add(fid)
        self.untyped = frozenset(untyped)
        self.flta: dict[str, frozenset[str]] = {t: frozenset(s) for t, s in by_type.items()}

    def type_layer(self, fn_type: str | None) -> frozenset[str]:
        """FLTA: the address-taken functions of exactly this type (plus untyped ones)."""
        t = canon_type(fn_type) if fn_type != "?" else None
        base = self.flta.get(t, frozenset()) if t else frozenset()
        if UNTYPED_MATCH_ALL and self.untyped:
            return base | self.untyped
        return base

    # ---- slots of global objects -----------------------------------------------------------

    def _index_objects(self, linked: dict[str, Any]) -> None:
        self.objects = {o["id"]: o for o in linked["objects"]}
        self.slots: dict[tuple[str, Path_], Vals] = {}  # (object, path ending in a layer)
        self.layer_slots: dict[Layer, set[tuple[str, Path_]]] = defaultdict(set)
        self.root: dict[str, Vals] = defaultdict(Vals)  # values of a variable/array itself
        self.embedded: dict[str, set[str]] = defaultdict(set)  # record -> records embedded in it
        self.layer_taint: dict[Layer, str] = {}
        self.var_taint: dict[str, str] = {}
        # Where each taint comes from (see taint_root): the fact that started it, so a site
        # that falls back can say which source line made it wide.
        self.taint_origin: dict[tuple[str, Any], dict[str, Any]] = {}
        # Layers an initializer writes a function or NULL into: only function-pointer slots
        # get such entries, so these slots are of a kind whose writes the facts record.
        self.fnptr_init: set[Layer] = set()
        # layer -> records of the sub-objects nested initializers show inside its slot
        self.sub_records: dict[Layer, set[str]] = defaultdict(set)
        # (slot or variable, source) of initializer entries that copy a named value
        self.init_flows: list[tuple[tuple[str, Any], tuple[str, Any]]] = []
        for obj in linked["objects"]:
            oid = obj["id"]
            for entry in obj.get("entries") or ():
                path = norm_path(entry.get("path") or ())
                value = entry.get("value") or {}
                for m, layer in enumerate(path):
                    key = (oid, path[:m + 1])
                    vals = self.slots.get(key)
                    if vals is None:
                        vals = self.slots[key] = Vals()
                        self.layer_slots[layer].add(key)
                    if m + 1 < len(path):
                        # A nested initializer: the sub-object is the slot's content, and the
                        # inner record is embedded in this one.
                        vals.subs.add(key)
                        self.embedded[layer[0]].add(path[m + 1][0])
                        self.sub_records[layer].add(path[m + 1][0])
                target = self.slots[(oid, path)] if path else self.root[oid]
                kind = value.get("kind")
                if path and kind in ("function", "null"):
                    self.fnptr_init.add(path[-1])
                if kind == "function":
                    target.funcs.add(value["id"])
                elif kind == "object":
                    target.objs.add(value["id"])
                elif kind == "nonconst":
                    # '{ .fn = fn }' with 'fn' a parameter (stop_one_cpu's cpu_stop_work,
                    # devm_remove_action's action_devres): a store of what the parameter
                    # holds, as for '.fn = fn;' at run time.  A value the facts cannot
                    # follow leaves the slot unconfined.
                    key = ("layer", path[-1]) if path else ("var", oid)
                    src = self._source_of(value)
                    if src is not None:
                        self.init_flows.append((key, src))
                    else:
                        self._taint(key, "nonconst-init", origin(
                            "nonconst-init", obj, object=oid, value=describe_value(value)))

    # ---- run-time stores ---------------------------------------------------------------------

    def _index_stores(self, linked: dict[str, Any]) -> None:
        """Stores by the slot they write; non-constant values become flows or taints."""
        self.store_vals: dict[Layer, Vals] = defaultdict(Vals)
        self.var_stored: set[str] = set()
        # Slots some store writes (any value): the parser records stores only into
        # function-pointer slots, pointers to records holding them, and such records.
        self.stored_layers: set[Layer] = set()
        # (target, source): a slot that receives what another slot or variable holds
        # (``file->f_op = inode->i_fop``, ``a->cb = default_cb_ptr``): MLTA propagation.
        flows: list[tuple[tuple[str, Any], tuple[str, Any]]] = list(self.init_flows)
        # A parameter receives what every direct call passes, but a function whose address
        # is taken has callers no fact names; with a failed TU, any function may.
        self.called_indirectly = {at["id"] for at in linked["address_taken"] if at.get("id")}
        self.failed_tus = bool(linked.get("failed_tus"))
        self.called_from_outside = outside_callers(linked)
        self.offsetof_params: dict[str, dict[str, Any]] = linked.get("offsetof_params") or {}
        self.static_call_updaters: set[str] = set()  # functions whose updates name their key
        for st in linked["stores"]:
            target = st.get("target") or {}
            value = st.get("value") or {}
            kind = value.get("kind")
            if target.get("escaped"):
                # A slot no fact names (see escaped_var): a pseudo-variable per record /
                # function type, read wherever such a slot is.
                tkey = ("var", escaped_var(target))
                vals = self.root[tkey[1]]
            elif target.get("var"):
                tkey = ("var", target["var"])
                self.var_stored.add(target["var"])
                if target.get("static_call"):
                    self.static_call_updaters.add(st.get("function") or "")
                vals = self.root[target["var"]]
                if target.get("param") and (why := self.param_callers_unknown(target["var"])):
                    self._taint(tkey, why, {"reason": why, "var": target["var"]})
            else:
                layers = target.get("layers") or ()
                if not layers:
                    continue
                tkey = ("layer", norm_layer(*layers[0]))  # innermost: the slot written
                vals = self.store_vals[tkey[1]]
                self.stored_layers.add(tkey[1])
            if kind == "function":
                vals.funcs.add(value["id"])
            elif kind == "object":
                vals.objs.add(value["id"])
            elif kind == "nonconst":
                if value.get("what") == "offset-read":
                    layers_read = self.offset_layers(value)
                    if layers_read is None:
                        self._taint(tkey, "unknown-offset", origin("unknown-offset", st))
                    for layer in layers_read or ():
                        flows.append((tkey, ("layer", layer)))
                    continue
                src = self._source_of(value)
                if src is not None:
                    flows.append((tkey, src))
                else:
                    self._taint(tkey, "nonconst-store", origin(
                        "nonconst-store", st, value=describe_value(value)))
        # A copy of a known object puts its slots' values into the object copied to, which
        # may be any of its record: a store of each at its layer (nested ones included).
        for (oid, path), vals in self.slots.items():
            if oid in self.copied_objects:
                self.store_vals[path[-1]].funcs |= vals.funcs
                self.store_vals[path[-1]].objs |= vals.objs
        self._propagate(flows)
        # What escaped stores put somewhere unnamed: objects join every read of their record,
        # functions are wild (below); an unknown value leaves that record / type unconfined.
        self.escaped_objs: dict[str, frozenset[str]] = {}
        self.escaped_untrusted: dict[str, str] = {}
        escaped_funcs: set[str] = set()
        for var in [v for v in self.root if v.startswith(ESCAPED_PREFIX)]:
            kind, what = var[len(ESCAPED_PREFIX):].split(":", 1)
            why = self.var_taint.get(var)
            if why:
                self.escaped_untrusted[var] = why
            if kind == "record":
                self.escaped_objs[what] = frozenset(self.root[var].objs)
            escaped_funcs |= self.root[var].funcs
        # Functions stored into a slot the parser could not name (``*(T *)&x = f``): they
        # may sit in any slot of their type, so every field walk keeps them.
        # A function kept in a variable or struct field declared as an integer or void *
        # (``ip = (unsigned long)ftrace_caller``) is not: it gets back into a slot only as
        # a value the facts cannot follow, which leaves that slot unconfined (and the
        # function is in its type class, address-taken).
        wild = set()
        for at in linked["address_taken"]:
            if at.get("context") == "store":
                t = (at.get("where") or {}).get("target") or {}
                if not (t.get("layers") or t.get("var") or "local" in t) and \
                        t.get("lvalue") not in ("var", "field"):
                    wild.add(at["id"])
        self.wild = frozenset(wild | escaped_funcs)

    def offset_layers(self, value: dict[str, Any]) -> list[Layer] | None:
        """The layers an ``offset-read`` value (``*(T *)((void *)ops + off)``, ``off`` a
        parameter of F) may read: those of the ``offsetof(R, f)`` every direct call of F
        passes, when that is all that can reach the parameter (None: any slot, or bytes that
        are no slot at all).  The object read is any of its record (the layer read whole),
        as for a field read through an untrusted container."""
        var = value.get("offset") or ""
        info = self.offsetof_params.get(var)
        if info is None or info.get("passed") != info.get("calls") or \
                info.get("records") != [value.get("record")] or \
                self.param_callers_unknown(var):
            return None
        return [norm_layer(*layer) for layer in info.get("layers") or ()]

    @staticmethod
    def _source_of(value: dict[str, Any]) -> tuple[str, Any] | None:
        """The slot or variable a non-constant value is read from, when the facts name it."""
        what = value.get("what")
        if what == "field" and value.get("layers"):
            return ("layer", norm_layer(*value["layers"][0]))
        if what in VAR_BASES + PSEUDO_VAR_BASES and value.get("id"):
            return ("var", value["id"])
        base = value.get("base") or {}
        if not value.get("layers") and base.get("kind") in VAR_BASES and base.get("id"):
            return ("var", base["id"])  # tbl[i]
        return None

    def _taint(self, key: tuple[str, Any], reason: str,
               why: dict[str, Any] | None = None) -> bool:
        table: dict[Any, str] = self.layer_taint if key[0] == "layer" else self.var_taint
        if key[1] in table:
            return False
        table[key[1]] = reason
        root = dict(why or {"reason": reason})
        if not root.keys() & {"slot", "var", "record"}:
            root["slot" if key[0] == "layer" else "var"] = \
                list(key[1]) if key[0] == "layer" else key[1]
        self.taint_origin[key] = root
        return True

    def taint_root(self, key: tuple[str, Any]) -> dict[str, Any] | None:
        """The fact that made a slot or variable untrusted (None: it is trusted).

        A taint that flowed in (``flow-from-untrusted``) names where it started, not the
        step before: ``seq_file.op`` is untrusted because ``single_open`` stores a
        kmalloc'd table into it (fs/seq_file.c), several parameters away.
        """
        if (hit := self.taint_origin.get(key)) is not None:
            return hit
        if key[0] == "layer":
            if key[1][0] in self.rec_taint:
                return self.rec_origin.get(key[1][0]) or {
                    "reason": self.rec_taint[key[1][0]], "record": key[1][0]}
            return None
        why = self.var_unknown(key[1])
        return {"reason": why, "var": key[1]} if why else None

    def _source_reason(self, src: tuple[str, Any]) -> str | None:
        if src[0] == "layer":
            return self.layer_taint.get(src[1]) or self.rec_taint.get(src[1][0])
        var = src[1]
        return self.var_taint.get(var) or self.var_unknown(var)

    def _propagate(self, flows: list[tuple[tuple[str, Any], tuple[str, Any]]]) -> None:
        """Fixpoint of value flows between slots/variables; taint flows along too."""
        init: dict[Layer, Vals] = {}

        def full(key: tuple[str, Any]) -> Vals:
            if key[0] == "var":
                return self.root[key[1]]
            layer = key[1]
            if layer not in init:
                v = Vals()
                for slot in self.layer_slots.get(layer, ()):
                    v.funcs |= self.slots[slot].funcs
                    v.objs |= self.slots[slot].objs
                init[layer] = v
            out = Vals(set(init[layer].funcs), set(init[layer].objs))
            out.update(self.store_vals.get(layer))
            return out

        # A worklist: a flow is redone only when its source changed (values or taint).
        # Chains of wrappers passing a parameter on are long; sweeping every flow until
        # nothing changes would be quadratic in their length.
        by_source: dict[tuple[str, Any], list[int]] = defaultdict(list)
        for i, (_, src) in enumerate(flows):
            by_source[src].append(i)
        queue = deque(range(len(flows)))
        queued = [True] * len(flows)
        while queue:
            i = queue.popleft()
            queued[i] = False
            tgt, src = flows[i]
            if self._source_reason(src) is not None:
                changed = self._taint(tgt, "flow-from-untrusted", self.taint_root(src))
            else:
                sv = full(src)
                tv = self.root[tgt[1]] if tgt[0] == "var" else self.store_vals[tgt[1]]
                n = len(tv.funcs) + len(tv.objs)
                tv.funcs |= sv.funcs
                tv.objs |= sv.objs
                changed = len(tv.funcs) + len(tv.objs) != n
            if changed:
                for j in by_source.get(tgt, ()):
                    if not queued[j]:
                        queued[j] = True
                        queue.append(j)
        self.flows = len(flows)

    # ---- record-level facts: casts and copies --------------------------------------------------

    def _closure(self, records: dict[str, str],
                 via: dict[str, str] | None = None) -> dict[str, str]:
        """Records plus every record embedded in them (transitively), keeping the reason
        (and in ``via``, the record each embedded one was reached from)."""
        out = dict(records)
        todo = list(records)
        while todo:
            r = todo.pop()
            for inner in sorted(self.embedded.get(r, ())):
                if inner not in out:
                    out[inner] = out[r]
                    if via is not None:
                        via[inner] = r
                    todo.append(inner)
        return out

    def _index_records(self, linked: dict[str, Any]) -> None:
        tainted: dict[str, str] = {}
        # record -> the fact that tainted it (the first cast or copy, in facts order)
        self.rec_origin: dict[str, dict[str, Any]] = {}

        def taint_record(record: str, why: dict[str, Any]) -> None:
            if record not in tainted:
                tainted[record] = why["reason"]
                self.rec_origin[record] = {**why, "record": record}

        self.copied_objects: set[str] = set()
        layouts = linked.get("layouts") or {}
        pairs: dict[tuple[str, str], dict[str, Any]] = {}
        for c in linked["casts"]:
            a, b = strip_quals(c.get("from_record")), strip_quals(c.get("to_record"))
            if c.get("offset"):
                # An 'offset' cast ('(struct scsi_cmnd *)(rq + 1)') reads no object as two
                # records: the pointer is moved to the next object first.
                continue
            if a and b and a != b:
                pairs.setdefault((a, b) if a < b else (b, a), c)
            elif a and not b and is_word_view(c.get("to")):
                # ata_finalize_port_ops fills an ata_port_operations through 'void **'
                # (drivers/ata/libata-core.c, 6.1 and 6.12): slots written as words.
                taint_record(a, origin("word-view", c, cast=f"{c.get('from')} -> {c.get('to')}"))
            elif b and not a and _POINTER_TO_POINTER.search(c.get("from") or ""):
                # Pointers kept in a 'void **' array read as a record: the slots hold what
                # was stored as 'void *', which no store into the record names.  (Storage
                # declared 'unsigned long priv[]', struct usb_hcd's hcd_priv, struct
                # Scsi_Host's hostdata, is the record's own memory, zeroed, not filled.)
                taint_record(b, origin("word-view", c, cast=f"{c.get('from')} -> {c.get('to')}"))
        for layer, why in overlaid_layers(layouts).items():
            if layer[1] == "*" and not layer[0].startswith("union "):
                taint_record(layer[0], {"reason": why})  # an array of records under a pun
            else:
                self._taint(("layer", layer), why)
        for (a, b), c in sorted(pairs.items()):
            hit = cast_overlaps(layouts.get(a), layouts.get(b))
            why = origin("record-cast", c, cast=f"{c.get('from')} -> {c.get('to')}")
            if hit is None:
                taint_record(a, why)
                taint_record(b, why)
            else:
                for layer in hit:
                    self._taint(("layer", layer), "record-cast", why)
        copied: dict[str, str] = {}
        for c in linked["copies"]:
            dst, src = strip_quals(c.get("dst_type")), strip_quals(c.get("src_type"))
            if not dst:
                continue
            if src is None and (c.get("src") or {}).get("kind") == "object":
                obj = self.objects.get(c["src"].get("id") or "")
                src = strip_quals(obj.get("type")) if obj else None
            if src == dst and (c.get("src") or {}).get("kind") == "object" and \
                    c["src"].get("id") in self.objects:
                # From a known object ('*drv = xhci_hc_driver'): its slots' values may now sit
                # in any object of the record, as if stored there (see _index_stores).
                self.copied_objects.add(c["src"]["id"])
            elif src == dst:
                # Same record type: the values moved were already stored into this record's
                # layers somewhere; only which object holds them changes (read layer-wide).
                copied.setdefault(dst, "copy")
            else:
                # From another record type, a buffer or an unknown source: anything may land.
                taint_record(dst, origin("copy-other-type", c, source=src or describe_value(
                    c.get("src") or {})))
        embedded_in: dict[str, str] = {}
        self.rec_taint = self._closure(tainted, embedded_in)
        for inner, outer in embedded_in.items():
            while outer in embedded_in:
                outer = embedded_in[outer]
            self.rec_origin[inner] = {**self.rec_origin[outer], "record": outer,
                                      "embedded": inner}
        self.copied = set(self._closure(copied))
        self._layer_all: dict[Layer, Vals] = {}
        self._layer_reason: dict[Layer, str | None] = {}

    # ---- trust -------------------------------------------------------------------------------

    def layer_all(self, layer: Layer) -> Vals:
        """Everything any object's slot of this layer may hold (all objects + stores)."""
        v = self._layer_all.get(layer)
        if v is None:
            v = Vals()
            for key in self.layer_slots.get(layer, ()):
                v.update(self.slots[key])
            v.update(self.store_vals.get(layer))
            self._layer_all[layer] = v
        return v

    def layer_untrusted(self, layer: Layer) -> str | None:
        """Why a layer cannot confine a call (None: it can)."""
        if layer in self._layer_reason:
            return self._layer_reason[layer]
        reason = self.layer_taint.get(layer) or self.rec_taint.get(layer[0])
        if reason is None:
            for oid in self.layer_all(layer).objs:
                if oid not in self.objects:
                    reason = "opaque-object"
                    break
        self._layer_reason[layer] = reason
        return reason

    def object_record(self, oid: str) -> str | None:
        """The record an object is (or is an array of); None for pointers and scalars."""
        obj = self.objects.get(oid)
        return record_type(obj.get("type")) if obj else None

    def slot_unseen(self, layer: Layer, declared_fnptr: bool = False) -> str | None:
        """The innermost layer: is it a slot whose writes the facts record?

        A struct field declared as a function pointer is (the parser records every write to
        one; ``slot_fnptr`` at the site); so is a field some store writes or an initializer
        puts a function/NULL into.  Any other slot may be a ``void *`` (or integer) field cast
        to a function pointer, or a union member, whose writes are not all recorded: the layer
        cannot be seen whole.  A declared slot nothing ever writes holds NULL: the call never
        happens in this configuration (an empty result, plus wild functions).
        """
        if declared_fnptr or layer in self.stored_layers or layer in self.fnptr_init:
            return None
        return "unseen-slot"

    def link_unseen(self, layer: Layer, inner: str) -> str | None:
        """An outer layer: does its slot hold (point to or embed) the inner layer's record?

        Every object stored there must be of the inner record and every nested initializer
        must continue into it; an empty slot must at least be one the parser records stores
        into.  Otherwise the chain went through a ``void *`` or a cast (``seq =
        file->private_data; seq->op->...``) and the slot's writes are not all in the facts.
        """
        vals = self.layer_all(layer)
        if not vals.objs and not vals.subs:
            return None if layer in self.stored_layers else "unseen-slot"
        for oid in vals.objs:
            if self.object_record(oid) != inner:
                return "slot-type-mismatch"
        if vals.subs and self.sub_records.get(layer, set()) != {inner}:
            return "slot-type-mismatch"
        return None

    def var_unknown(self, var: str) -> str | None:
        """Why a variable with no facts at all cannot be read as empty (None: it can).

        A global with neither initializer nor store is defined elsewhere (assembly, a failed
        TU) or set in ways not seen: unknown.  A parameter no direct call passes anything to
        holds nothing when nothing else can call the function (its address is not taken, every
        TU parsed); a local nothing assigns holds nothing.  A function's return with no facts
        (defined nowhere in C) is unknown.
        """
        if var in self.objects or var in self.var_stored:
            return None
        if PARAM_VAR_RE.match(var):
            return self.param_callers_unknown(var)
        if "#local:" in var:
            return None
        return "opaque-var"

    def param_callers_unknown(self, var: str) -> str | None:
        """Why the direct calls of F may not be all that passes values to ``F#argI``."""
        if self.failed_tus:
            return "param-callers-unknown:failed-tu"
        m = PARAM_VAR_RE.match(var)
        if m and m.group(1) in self.called_indirectly:
            return "param-of-address-taken-function"
        if m and (why := self.called_from_outside.get(m.group(1))):
            return why
        return None

    def var_untrusted(self, var: str, outer: str | None = None) -> str | None:
        """Why a variable/array's assignments cannot confine a call (None: they can).

        ``outer`` is the record of the call's outermost layer (None when the call reads the
        variable's own function pointer): the variable must be that record or point to it.
        """
        reason = self.var_taint.get(var)
        if reason:
            return reason
        reason = self.var_unknown(var)
        if reason:
            return reason
        if outer is not None and (
                why := self.escaped_untrusted.get(escaped_record_var(outer))):
            return "escaped-" + why
        for oid in self.root[var].objs:
            if oid not in self.objects:
                return "opaque-object"
            if outer is not None and self.object_record(oid) != outer:
                return "slot-type-mismatch"
        if outer is not None and not self.root[var].objs and self.object_record(var) != outer:
            return "slot-type-mismatch"
        return None

    # ---- the walk ------------------------------------------------------------------------------

    def walk(self, layers: Path_, root: str | None) -> frozenset[str]:
        """Functions that can reach slot ``layers[0]`` through ``layers`` (innermost first).

        Without ``root`` the outermost layer is read over all its objects; with a variable
        ``root`` the walk starts at that variable's content.  Every layer must be trusted.
        """
        containers: set[Loc]
        if root is None:
            top = self.layer_all(layers[-1])
            if len(layers) == 1:
                return frozenset(top.funcs)
            containers = set(top.subs) | {(o, ()) for o in top.objs}
            inner = layers[:-1]
        else:
            rv = self.root.get(root) or Vals()
            if not layers:
                return frozenset(rv.funcs)
            containers = {(root, ())} | {(o, ()) for o in rv.objs}
            inner = layers
        for j in range(len(inner) - 1, -1, -1):
            layer = inner[j]
            # Objects of this record stored where no fact names may be the container too.
            containers |= {(o, ()) for o in self.escaped_objs.get(layer[0], ())}
            if layer[0] in self.copied:
                # Copies move values between objects of this record: read the whole layer.
                vals = self.layer_all(layer)
            else:
                vals = Vals()
                for oid, path in containers:
                    vals.update(self.slots.get((oid, (*path, layer))))
                vals.update(self.store_vals.get(layer))
            if j == 0:
                return frozenset(vals.funcs)
            containers = set(vals.subs) | {(o, ()) for o in vals.objs}
        raise AssertionError("unreachable")

    def _walk_memo(self, layers: Path_, root: str | None) -> frozenset[str]:
        # Sites share chains (hundreds of `sk->sk_prot->x`): walk each (layers, root) once.
        key = (layers, root)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self.walk(layers, root)
        return hit

    # ---- one site ----------------------------------------------------------------------------

    def resolve_site(self, site: dict[str, Any]) -> dict[str, Any]:
        """The targets of one indirect call site, with how they were found."""
        base = site.get("base") or {}
        if base.get("kind") == "static_call" and base.get("id"):
            return self.resolve_static_call(site)
        if (m := tracepoints.TRACEITER_RE.match(site.get("caller") or "")) and \
                base.get("kind") == "local" and not site.get("layers"):
            hit = self.resolve_traceiter(site, m.group(1))
            if hit is not None:
                return hit
        flta = self.type_layer(site.get("fn_type"))
        layers: Path_ = tuple(norm_layer(*lay) for lay in site.get("layers") or ())
        fallbacks: list[dict[str, Any]] = []

        trusted = 0
        for j, lay in enumerate(layers):
            why = self.layer_untrusted(lay)
            why_key: tuple[str, Any] = ("layer", lay)
            if why is None and j > 0:
                why_key = ("var", escaped_record_var(layers[j - 1][0]))
                why = self.escaped_untrusted.get(why_key[1])
                why = "escaped-" + why if why else None
            if why is None:
                why = self.slot_unseen(lay, bool(site.get("slot_fnptr"))) if j == 0 else \
                    self.link_unseen(lay, layers[j - 1][0])
            if why:
                fallbacks.append({"layer": list(lay), "reason": why,
                                  **self._origin_entry(why_key, why)})
                self.counts[f"fallback:{why}"] += 1
                break
            trusted += 1

        root = None
        base_untrusted: dict[str, Any] | None = None
        if base.get("kind") in PSEUDO_VAR_BASES and base.get("id"):
            # A local's or parameter's values narrow the walk when they can be trusted;
            # when not, the layers alone apply, as for any local or parameter.
            why = "layer-untrusted" if trusted < len(layers) else self.var_untrusted(
                base["id"], layers[-1][0] if layers else None)
            if why is None:
                root = base["id"]
            else:
                self.counts[f"pseudo-var-not-used:{why}"] += 1
                if why not in ("layer-untrusted", "slot-type-mismatch"):
                    # Not when a layer's fallback says why already, nor when the values are
                    # only of another record (a parameter nothing passes anything to).
                    why_key = ("var", escaped_record_var(layers[-1][0]) if
                               why.startswith("escaped-") else base["id"])
                    base_untrusted = {"reason": why, **self._origin_entry(why_key, why)}
        elif base.get("kind") in VAR_BASES and base.get("id"):
            if trusted < len(layers):
                fallbacks.append({"var": base["id"], "reason": "layer-untrusted"})
            else:
                why = self.var_untrusted(base["id"], layers[-1][0] if layers else None)
                if why:
                    why_key = ("var", escaped_record_var(layers[-1][0]) if
                               why.startswith("escaped-") else base["id"])
                    fallbacks.append({"var": base["id"], "reason": why,
                                      **self._origin_entry(why_key, why)})
                    self.counts[f"fallback:{why}"] += 1
                else:
                    root = base["id"]

        if root is not None:
            confined = self._walk_memo(layers, root)
            array = bool(site.get("subscript")) or base.get("kind") == "array"
            rule = "array" if array else "var"
        elif trusted:
            confined = self._walk_memo(layers[:trusted], None)
            rule = "field"
        else:
            confined = None
            rule = "type"
        escaped_fn = f"{ESCAPED_PREFIX}fn:{canon_type(site.get('fn_type'))}"
        if confined is not None and (why := self.escaped_untrusted.get(escaped_fn)):
            # Some unnamed slot of this type got a value nothing follows (a '*fnp = v').
            fallbacks.append({"reason": "escaped-" + why,
                              **self._origin_entry(("var", escaped_fn), "escaped-" + why)})
            self.counts[f"fallback:escaped-{why}"] += 1
            confined, rule = None, "type"
        if confined is not None and self.wild:
            confined = confined | self.wild
        if site.get("fn_type") in (None, "", "?"):
            # Without a type there is no class to intersect with: keep what the layers say.
            targets = set(confined) if confined is not None else set()
            if confined is None:
                fallbacks.append({"reason": "no-fn-type"})
                self.counts["fallback:no-fn-type"] += 1
        else:
            targets = set(flta) if confined is None else flta & confined
        if rule == "type" and not fallbacks:
            why = f"no-layers:{base.get('kind') or 'unknown'}"
            fallbacks.append({"reason": why})
            self.counts[f"fallback:{why}"] += 1
        if rule == "type" and site.get("fn_typedef") == BPF_CALLBACK_TYPEDEF:
            # A BPF program's callback (bpf_loop, bpf_for_each_map_elem, bpf_timer, ...):
            # the value the facts cannot follow is a pointer the BPF program passed as an
            # ARG_PTR_TO_FUNC argument, which the verifier only lets be one of its own
            # subprograms, and only JITed ("callbacks are not allowed in non-JITed programs",
            # kernel/bpf/verifier.c, 6.1 and 6.12).  Not a C function: one node stands for
            # it.  Functions stored where the facts cannot say stay (wild).
            targets = {BPF_PROGRAM_NODE} | (self.wild & flta)
            rule = "bpf-callback"
            self.counts["bpf-callback"] += 1
        if canon_type(site.get("fn_type")) == BPF_PROG_ENTRY_TYPE:
            targets = targets | {BPF_PROGRAM_NODE}  # a JITed program (see BPF_PROG_ENTRY_TYPE)
            self.counts["bpf-prog-entry"] += 1
        elif layers and layers[0][0] in self.struct_ops and BPF_PROGRAM_NODE not in targets:
            # A slot of a record BPF struct_ops programs implement (tcp_congestion_ops): a
            # struct_ops map's kernel object holds trampolines into the BPF programs there.
            targets = targets | {BPF_PROGRAM_NODE}
            self.counts["bpf-struct-ops"] += 1
        entry = self._entry(site, rule, targets, len(flta), trusted, fallbacks)
        if base_untrusted is not None:
            entry["base_untrusted"] = base_untrusted
        return entry

    def _origin_entry(self, key: tuple[str, Any], why: str) -> dict[str, Any]:
        """``{"origin": ...}`` for a fallback whose reason is a taint of ``key`` (a slot, a
        variable, or the pseudo-variable of escaped stores): the fact where the untrusted
        value entered, which may be far from the site.  Nothing for a reason about the shape
        of the facts, or when the origin would only repeat the fallback."""
        if why in STRUCTURAL_REASONS:
            return {}
        root = self.taint_root(key)
        own = {"reason": why.removeprefix("escaped-"),
               **({"var": key[1]} if key[0] == "var" else {"slot": list(key[1])})}
        return {} if root is None or root == own else {"origin": root}

    @staticmethod
    def _entry(site: dict[str, Any], rule: str, targets: set[str], type_count: int,
               trusted: int, fallbacks: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "caller": site["caller"], "file": site.get("file"), "line": site.get("line"),
            "column": site.get("col"), "expr": site.get("expr"), "fn_type": site.get("fn_type"),
            "layers": [list(lay) for lay in site.get("layers") or ()],
            "base": site.get("base") or {}, "subscript": bool(site.get("subscript")),
            "resolution": rule if targets else "unresolved", "rule": rule,
            "targets": sorted(targets), "type_layer_count": type_count,
            "trusted_layers": trusted, "fallbacks": fallbacks,
        }

    # ---- static calls --------------------------------------------------------------------------

    def params_layer(self, fn_type: str | None) -> frozenset[str]:
        """Address-taken functions with this parameter list, whatever they return.

        A static call is a patched direct jump, not a kCFI-checked indirect call, and its
        trampoline's declared type need not be the target's: 6.1 tracepoint trampolines return
        ``int`` (``__traceiter_x``) while the probes installed into them return ``void``.
        """
        if self._by_params is None:
            idx: dict[str, set[str]] = defaultdict(set)
            for t, fids in self.flta.items():
                idx[param_list(t)].update(fids)
            self._by_params = {k: frozenset(v) for k, v in idx.items()}
        t = canon_type(fn_type) if fn_type != "?" else None
        base = self._by_params.get(param_list(t), frozenset()) if t else frozenset()
        return base | self.untyped if UNTYPED_MATCH_ALL else base

    def static_call_funcs(self, key: str) -> frozenset[str]:
        """DEFINE_STATIC_CALL's function (the key's initializer) and every static_call_update."""
        out = set(self.root.get(key, Vals()).funcs)
        obj = self.objects.get(key)
        if obj is not None:
            for entry in obj.get("entries") or ():
                value = entry.get("value") or {}
                if value.get("kind") == "function":
                    out.add(value["id"])
        return frozenset(out)

    def tracepoint_probes(self, name: str) -> tuple[frozenset[str], str | None]:
        """The probes tracepoint ``name`` may call (see :mod:`pipeline.tracepoints`), or why
        they cannot be known."""
        if self._tp_probes is None:
            self._tp_unknown = tracepoints.unknown_registrars(self._direct_edges)
            self._tp_probes = tracepoints.object_probes(self.objects)
            self._tp_register_vars = tracepoints.register_trace_params(self.var_stored)
        if self._tp_unknown:
            return frozenset(), f"tracepoint-registrar:{self._tp_unknown[0]}"
        funcs = set(self._tp_probes.get(name, ()))
        for var in self._tp_register_vars.get(name, ()):
            why = self.var_untrusted(var)
            if why:
                return frozenset(), f"tracepoint-register-{why}"
            funcs |= self.root[var].funcs
        return frozenset(funcs), None

    def resolve_traceiter(self, site: dict[str, Any], name: str) -> dict[str, Any] | None:
        """The probe loop of ``__traceiter_X``: ``((void (*)(void *, proto))it_func)(...)``
        with ``it_func`` read from the tracepoint's ``funcs`` array (a ``void *``): the probes
        registrable for X, of the call's exact type.  None: the probes cannot be known."""
        probes, why = self.tracepoint_probes(name)
        if why is not None:
            self.counts[f"traceiter-not-modelled:{why}"] += 1
            return None
        flta = self.type_layer(site.get("fn_type"))
        return self._entry(site, "var", set((probes | self.wild) & flta), len(flta), 0, [])

    def resolve_static_call(self, site: dict[str, Any]) -> dict[str, Any]:
        """``static_call(x)(...)``: what the key ``__SCK__x`` is defined or updated with.

        Tracepoint keys (``__SCK__tp_func_X``) are updated by ``tracepoint_update_call``
        (kernel/tracepoint.c) with whatever probe was registered: their targets are the key's
        own function (``__traceiter_X``) and the probes :meth:`tracepoint_probes` finds (with
        the call's parameter list); when those cannot be known, every function with the
        call's parameter list.
        """
        key = site["base"]["id"]
        params = self.params_layer(site.get("fn_type"))
        why = self.var_taint.get(key)
        if why is None and self.static_call_unknown:
            why = "static-call-unknown-updater"
        probes: frozenset[str] = frozenset()
        lsm = static_calls.LSM_KEY_RE.match(key)
        if why is None and key.startswith(tracepoints.KEY_PREFIX):
            probes, why = self.tracepoint_probes(key[len(tracepoints.KEY_PREFIX):])
        elif why is None and lsm:
            probes, why = self.lsm_hook_probes(lsm.group(1))
        if why is None and not lsm and key not in self.objects and key not in self.var_stored:
            why = "opaque-var"
        if why:
            self.counts[f"fallback:{why}"] += 1
            # Only the key's own taint has an origin; a model's reason (tracepoint
            # registrar, LSM hook store, unknown updater) is said by the reason itself.
            own = self._origin_entry(("var", key), why) if why == self.var_taint.get(key) \
                else {}
            return self._entry(site, "type", set(params), len(params), 0,
                               [{"var": key, "reason": why, **own}])
        # The key's functions are the targets as they are: no type filter (see params_layer);
        # functions stored where the facts cannot say (wild) may be there too.
        targets = set(self.static_call_funcs(key)) | ((probes | self.wild) & params)
        if static_calls.DISPATCHER_KEY_RE.match(key):
            # bpf_dispatcher_update() points the key at the JITed dispatcher image, which
            # calls the attached programs (pipeline.static_calls).
            targets.add(BPF_PROGRAM_NODE)
            self.counts["bpf-dispatcher"] += 1
        return self._entry(site, "var", targets, len(params), 0, [])

    def lsm_hook_probes(self, hook: str) -> tuple[frozenset[str], str | None]:
        """The functions LSMs register for ``hook`` (Linux 6.12's static-call LSM hooks, see
        :mod:`pipeline.static_calls`), or why they cannot be known: the hook union or the
        hook list is written some other way than by ``LSM_HOOK_INIT`` initializers."""
        union_slot = (static_calls.LSM_HOOK_UNION, "*")
        list_slot = (static_calls.LSM_HOOK_LIST, "hook")
        for layer in (union_slot, list_slot):
            if why := self.layer_untrusted(layer):
                return frozenset(), why
        if self._lsm_hooks is None:
            self._lsm_hooks = static_calls.lsm_hook_functions(self.objects.values())
        # A run-time store into a hook (no member name kept: every member is one slot)
        # may be any hook's.
        stored = self.store_vals.get(union_slot) or Vals()
        whole = self.store_vals.get(list_slot) or Vals()  # a hook union stored whole
        if stored.objs or whole.funcs or whole.objs or whole.subs:
            return frozenset(), "lsm-hook-stored"
        return frozenset(self._lsm_hooks.get(hook, set()) | stored.funcs), None


# ---- explaining a site ------------------------------------------------------------------------

def origin_text(o: dict[str, Any]) -> str:
    """Where an untrusted value entered: 'fs/seq_file.c:575 in single_open: nonconst-store
    (call) into single_open#local:op:575:25'."""
    where = f"{o['file']}:{o['line']}" if o.get("file") else ""
    if o.get("function"):
        where += f" in {o['function']}" if where else f"in {o['function']}"
    what = o["reason"] + (f" ({o['value']})" if o.get("value") else "")
    what += f" [{o['cast']}]" if o.get("cast") else ""
    if o.get("slot") or o.get("var"):
        name = ".".join(o["slot"]) if o.get("slot") else o["var"]
        what += f" into {name}" if where else f" ({name})"
    elif o.get("record"):
        what += f" of {o['record']}"
        if o.get("embedded"):
            what += f", which embeds {o['embedded']}"
    return f"{where}: {what}" if where else what


def why_lines(why: dict[str, Any] | None) -> list[str]:
    """The resolver's fallbacks at a site (an icalls entry, or callgraph.sqlite's ``why``:
    its ``fallbacks`` and ``base_untrusted``), each with the fact that caused it: text for
    ``kcg query`` and the report."""
    if not why:
        return []
    lines = []

    def because(reason: str, o: dict[str, Any] | None) -> None:
        # An origin that only repeats the reason (a parameter of an address-taken function
        # is the base itself) says nothing more.
        if o and (o.get("file") or o.get("reason") != reason):
            lines.append(f"  because of {origin_text(o)}")

    for f in why.get("fallbacks") or ():
        what = (".".join(f["layer"]) if f.get("layer") else f.get("var"))
        lines.append(f"not narrowed by {what}: {f['reason']}" if what else
                     f"not narrowed: {f['reason']}")
        because(f["reason"], f.get("origin"))
    if b := why.get("base_untrusted"):
        lines.append(f"the base's values not used: {b['reason']}")
        because(b["reason"], b.get("origin"))
    return lines


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {"mean": round(statistics.fmean(values), 3),
            "median": float(statistics.median(values)), "max": max(values)}


def compute_metrics(sites: list[dict[str, Any]], resolver: Resolver,
                    linked: dict[str, Any]) -> dict[str, Any]:
    """Counts and target statistics over all indirect call sites."""
    n = len(sites)
    res = [len(s["targets"]) for s in sites]
    typ = [s["type_layer_count"] for s in sites]
    nonempty = [x for x in res if x]
    by_res = Counter(s["resolution"] for s in sites)
    by_rule = Counter(s["rule"] for s in sites)
    per_rule = {r: _stats([len(s["targets"]) for s in sites if s["rule"] == r])
                for r in sorted(by_rule)}
    share = {k: round(v / n, 4) if n else 0.0 for k, v in sorted(by_res.items())}
    return {
        "schema": RESOLVE_VERSION,
        "sites": n,
        "targets": _stats(res),
        "targets_nonempty_sites": _stats(nonempty),
        # The same without static_call() sites: in machine code those are patched direct
        # jumps, so IR-based tools (KallGraph's 4.41 on defconfig) do not count them.
        "targets_without_static_calls": _stats([
            len(s["targets"]) for s in sites if (s.get("base") or {}).get("kind") != "static_call"]),
        "static_call_sites": sum(1 for s in sites
                                 if (s.get("base") or {}).get("kind") == "static_call"),
        "type_layer": _stats(typ),
        "resolution_counts": dict(sorted(by_res.items())),
        "resolution_share": share,
        "rule_counts": dict(sorted(by_rule.items())),
        "targets_by_rule": per_rule,
        "fallbacks": dict(sorted(resolver.counts.items())),
        "untrusted_layers": dict(sorted(Counter(
            r for r in resolver._layer_reason.values() if r).items())),
        "untyped_address_taken": len(resolver.untyped),
        "wild_functions": len(resolver.wild),
        "value_flows": resolver.flows,
        "untyped_match_all": UNTYPED_MATCH_ALL,
        "indirect_edges": sum(res),
        "tus_failed": len(linked.get("failed_tus") or ()),
        "tus": (linked.get("counts") or {}).get("tus"),
    }


def resolve_linked(linked: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                    dict[str, Any]]:
    """(graph node-link data, icalls entries, metrics) for a linked document (pure)."""
    resolver = Resolver(linked)
    sites = [resolver.resolve_site(s) for s in linked["icall_sites"]]

    # Direct edges come sorted from link; indirect ones are grouped per (caller, target).
    indirect: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in sites:
        cs = f"{s['file']}:{s['line']}:{s['column']}"
        for t in s["targets"]:
            indirect[(s["caller"], t)].add(cs)
    edges = [{"source": e["src"], "target": e["dst"], "key": "direct", "kind": "direct",
              "callsites": e["callsites"]} for e in linked["direct_edges"]]
    edges += [{"source": src, "target": dst, "key": "indirect", "kind": "indirect",
               "callsites": sorted(cs)} for (src, dst), cs in sorted(indirect.items())]
    nodes = [{k: n.get(k) for k in NODE_KEYS} for n in linked["nodes"]]
    if any(BPF_PROGRAM_NODE in s["targets"] for s in sites):
        nodes.append(bpf_program_node())
        nodes.sort(key=lambda n: n["id"])
    graph = {
        "directed": True, "multigraph": True,
        "graph": {"name": "kcg full callgraph", "link_schema": LINK_VERSION,
                  "resolve_schema": RESOLVE_VERSION},
        "nodes": nodes,
        "edges": edges,
    }
    metrics = compute_metrics(sites, resolver, linked)
    metrics["graph"] = {"nodes": len(graph["nodes"]), "edges": len(graph["edges"]),
                        "direct_edges": len(linked["direct_edges"]),
                        "indirect_edges": len(indirect)}
    return graph, sites, metrics


def resolve_inputs(ctx: Context) -> dict[str, Any]:
    """What resolve depends on: link's output and the rule settings."""
    return {"link": stage_input_hash(ctx, "link"), "resolve_version": RESOLVE_VERSION,
            "untyped_match_all": UNTYPED_MATCH_ALL}


def run_resolve(ctx: Context) -> StageResult:
    """Resolve every indirect call site and write the graph, icalls and metrics."""
    with no_gc():
        linked = load_linked(ctx)
        graph, sites, metrics = resolve_linked(linked)
        write_json_fast(ctx.path(GRAPH_FILE), graph, compress=True)
        # One site per line: readable and diffable, and written by the C encoder (an indented
        # dump of ~10k sites goes through the pure-Python one).
        enc = json.JSONEncoder(sort_keys=True, separators=(",", ": ")).encode
        atomic_write_text(ctx.path(ICALLS_FILE),
                          "[\n" + ",\n".join(map(enc, sites)) + "\n]\n")
        write_json(ctx.path(METRICS_FILE), metrics)
    t, ty = metrics["targets"], metrics["type_layer"]
    summary = [
        f"{metrics['sites']} indirect sites: {t['mean']} targets/site mean "
        f"(median {t['median']}, max {t['max']}); type layer alone {ty['mean']} mean",
        "by rule: " + ", ".join(f"{k} {v}" for k, v in metrics["resolution_counts"].items()),
    ]
    counts = {"sites": metrics["sites"], "mean_targets": t["mean"],
              "type_layer_mean": ty["mean"], **metrics["resolution_counts"],
              "graph_nodes": metrics["graph"]["nodes"], "graph_edges": metrics["graph"]["edges"]}
    return StageResult(outputs=[GRAPH_FILE, ICALLS_FILE, METRICS_FILE], counts=counts,
                       summary=summary)


STAGE = Stage("resolve", resolve_inputs, run_resolve)
