"""Definite stores: the value an access path must hold where a function calls through it.

``replace_fops(filp, fops); if (filp->f_op->open) ret = filp->f_op->open(inode, filp);``
(chrdev_open, fs/char_dev.c; misc_open, usb_open, snd_open and drm_stub_open do the same,
include/linux/fs.h's ``replace_fops``) calls what was stored into ``filp->f_op`` two lines up.
The layers alone read ``(struct file, f_op)`` over every file in the kernel; this pass finds,
for a call through ``b->x->...->fn``, a store into ``b->x`` that every path to the call runs,
with nothing in between that may write that slot again.  The parser then reads the call as one
through the stored value (``fops->open``), as it reads ``ops = dev->netdev_ops; ops->f()``.

A forward must-analysis over the function's AST, in evaluation order:

- *gen*: ``b->x = v``, ``b`` a parameter or a local, seen through plain pointer copies
  (``struct file *__file = (f);`` in ``replace_fops``) when neither is ever reassigned;
- *kill*: any call but builtins that write nothing, inline asm, ``__atomic_*``; a store into
  a field of another record (a cast view may lie over the slot: the kernel builds with
  ``-fno-strict-aliasing``) or into the same (record, field) through any base; a store into
  a union member (also through an anonymous struct), a whole record, or through an unnamed
  pointer; an assignment to ``b``; the end of a scope with ``__attribute__((cleanup))``
  locals (cleanup.h);
- *join*: an ``if``'s, ``&&``/``||``'s and ``?:``'s branches keep the facts both keep; a branch
  that does not complete (``return``, ``goto``, ``break``, ``continue``,
  ``__builtin_unreachable()`` as in ``BUG()``) does not count;
- operands C leaves unsequenced (a call's callee and arguments, ``+``, ``=``'s two sides) are
  each read from the facts none of them kills when two or more have side effects, and their
  stores are dropped; ``sizeof``, ``__builtin_constant_p`` and ``_Generic``'s operand are not
  evaluated;
- labels (a ``goto`` may enter, even into dead code) start with no facts; a loop or ``switch``
  body starts with the facts nothing in it kills, and leaves with those, whatever it stored;
  ``do { } while (0)`` runs once unless a ``break`` or ``continue`` leaves it.

The facts hold for one thread: a concurrent writer of the slot between the store and the call
would race with it on an ops pointer, which the kernel publishes under locks or RCU (calls,
hence kills).  Only functions with an indirect call through two or more layers and a recorded
store into a suffix of them are analysed, so the cost is a second walk of a few functions.
"""

from __future__ import annotations

import ctypes
from typing import Any

from clang import cindex as ci

from pipeline.extract import (
    BO_ASSIGN,
    TK,
    UO_ADDROF,
    Extractor,
    K,
    _lib,
    children,
    distinct_children,
    integer_value,
    strip,
    var_initializer,
)

BO_LAND, BO_LOR, BO_COMMA = 20, 21, 33  # CXBinaryOperatorKind
_UO_INC_DEC = (1, 2, 3, 4)  # PostInc, PostDec, PreInc, PreDec (CXUnaryOperatorKind)

# Builtins that write no memory ('__builtin_memcpy', '__builtin_add_overflow' and the _chk
# string builtins do: they are calls like any other).  '__builtin_unreachable()' and
# '__builtin_trap()' end the path (BUG(), arch/x86/include/asm/bug.h).
_NORETURN_BUILTINS = frozenset({"__builtin_unreachable", "__builtin_trap"})
_PURE_BUILTINS = _NORETURN_BUILTINS | frozenset({
    "__builtin_expect", "__builtin_expect_with_probability", "__builtin_constant_p",
    "__builtin_types_compatible_p", "__builtin_classify_type", "__builtin_object_size",
    "__builtin_dynamic_object_size", "__builtin_prefetch", "__builtin_assume_aligned",
    "__builtin_return_address", "__builtin_frame_address",
})
# Their operands are not evaluated: an assignment inside stores nothing.
_UNEVALUATED_BUILTINS = frozenset({
    "__builtin_constant_p", "__builtin_types_compatible_p", "__builtin_object_size",
    "__builtin_dynamic_object_size", "__builtin_classify_type",
})
_PURE_BUILTIN_PREFIXES = ("__builtin_clz", "__builtin_ctz", "__builtin_ffs",
                          "__builtin_popcount", "__builtin_parity", "__builtin_bswap")
_KILL_ALL = object()

Key = tuple[int, tuple[tuple[str, str], ...]]  # (base decl, layers innermost first)
State = dict[Key, ci.Cursor] | None  # None: no path gets here


def _meet(a: State, b: State) -> State:
    if a is None:
        return b
    if b is None:
        return a
    return {k: v for k, v in a.items() if k in b and b[k].hash == v.hash}


def _written_lvalue(c: ci.Cursor, address_taken: bool = False) -> ci.Cursor | None:
    """What ``=``, ``+=``, ``++``/``--`` (and with ``address_taken``, ``&``) write."""
    k = c.kind
    if k == K.BINARY_OPERATOR:
        hit = _lib.clang_getCursorBinaryOperatorKind(c) == BO_ASSIGN
    elif k == K.UNARY_OPERATOR:
        uo = _lib.clang_getCursorUnaryOperatorKind(c)
        hit = uo in _UO_INC_DEC or (address_taken and uo == UO_ADDROF)
    else:
        hit = k == K.COMPOUND_ASSIGNMENT_OPERATOR
    if not hit:
        return None
    kids = children(c)
    return kids[0] if kids else None


def _assigned_value(e: ci.Cursor) -> ci.Cursor:
    """``a = b = v`` stores v: the value under any chained assignments."""
    e = strip(e)
    while e.kind == K.BINARY_OPERATOR and _lib.clang_getCursorBinaryOperatorKind(e) == BO_ASSIGN:
        kids = children(e)
        if len(kids) != 2:
            break
        e = strip(kids[1])
    return e


class DefiniteStores:
    """The analysis of one function body; :meth:`run` maps each call to what it reads."""

    def __init__(self, ex: Extractor, body: ci.Cursor,
                 calls: list[tuple[ci.Cursor, ci.Cursor]]):
        """``calls``: (call, its callee with casts and ``*`` stripped) pairs."""
        self.ex = ex
        self.body = body
        self.calls = calls
        # call hash -> (base, layers) of the path it calls through
        self.paths: dict[int, tuple[int, list[tuple[str, str]]]] = {}
        self.alias: dict[int, int] = {}
        self.wanted: set[Key] = set()
        self.found: dict[int, tuple[int, ci.Cursor]] = {}
        self._switch_in: list[State] = []
        self._visits: dict[int, tuple[int, ci.Cursor] | None] = {}
        self._effect_memo: dict[int, bool] = {}

    # ---- paths -------------------------------------------------------------------------------

    def base_decl(self, e: ci.Cursor) -> tuple[int, list[tuple[str, str]]] | None:
        """(base parameter/local, layers) of a member path; None through '*', '[]' or calls."""
        layers, _ = self.ex.chain(e)
        e = strip(e)
        while e.kind == K.MEMBER_REF_EXPR:
            kids = children(e)
            if not kids:
                return None
            e = strip(kids[0])
        if e.kind != K.DECL_REF_EXPR or e.referenced is None:
            return None
        ref = e.referenced
        if ref.kind == K.VAR_DECL and Extractor._is_global(ref):
            return None
        if ref.kind not in (K.PARM_DECL, K.VAR_DECL):
            return None
        return self.alias.get(ref.hash, ref.hash), [(r, f) for r, f in layers]

    def _prepass(self) -> None:
        """Plain copies of a parameter/local never reassigned: one base."""
        assigned: set[int] = set()
        copies: dict[int, int] = {}
        todo = [self.body]
        while todo:
            c = todo.pop()
            lhs = _written_lvalue(c, address_taken=True)
            if c.kind == K.ASM_STMT:
                # An output operand writes its variable ('asm("" : "=r"(p))').
                for op in children(c):
                    s = strip(op)
                    if s.kind == K.DECL_REF_EXPR and s.referenced is not None:
                        assigned.add(s.referenced.hash)
            if c.kind == K.VAR_DECL and c.storage_class != ci.StorageClass.STATIC and \
                    c.type.get_canonical().kind == TK.POINTER:
                # Pointers only: 'struct file a = b;' is a copy, another object.
                init = var_initializer(c)
                if init is not None:
                    src = strip(init)
                    if src.kind == K.DECL_REF_EXPR and src.referenced is not None and \
                            src.referenced.kind in (K.PARM_DECL, K.VAR_DECL) and \
                            not Extractor._is_global(src.referenced):
                        copies[c.hash] = src.referenced.hash
            if lhs is not None:
                s = strip(lhs)
                if s.kind == K.DECL_REF_EXPR and s.referenced is not None:
                    assigned.add(s.referenced.hash)
            todo.extend(children(c))
        for v, u in copies.items():
            seen = {v}
            while u in copies and u not in seen:
                seen.add(u)
                u = copies[u]
            if not (seen | {u}) & assigned:
                self.alias[v] = u

    # ---- the analysis ------------------------------------------------------------------------

    def run(self) -> dict[int, tuple[int, ci.Cursor]]:
        """call hash -> (k, value): layers[k:] of the call's path hold ``value`` there."""
        self._prepass()
        for c, target in self.calls:
            path = self.base_decl(target)
            if path is None:
                continue
            self.paths[c.hash] = path
            base, layers = path
            for k in range(1, len(layers)):
                self.wanted.add((base, tuple(layers[k:])))
        if self.wanted:
            try:
                self.stmt(self.body, {})
            except (RecursionError, ctypes.ArgumentError) as e:
                # An expression nested deeper than Python's stack (inside a libclang call
                # ctypes reports it as an ArgumentError): no call is read through a store in
                # this function; its other facts stay, as without this pass.
                if isinstance(e, ctypes.ArgumentError) and "RecursionError" not in str(e):
                    raise
                self.found = {}
        return self.found

    def kill(self, lhs: ci.Cursor, state: State) -> State:
        """What a store into ``lhs`` leaves of ``state``."""
        if state is None or not state:
            return state
        why = self._written(lhs)
        if why is _KILL_ALL:
            return {}
        if why is None:
            return state
        if why[0] == "var":  # paths based on that variable
            return {k: v for k, v in state.items() if k[0] != self.alias.get(why[1], why[1])}
        # A field (Rw, g): it is apart from a slot (R, f) only when R is Rw and f is not g.
        # Any other record's field may lie over the slot (a cast view; the kernel builds with
        # -fno-strict-aliasing), and a store through another base into g may be this one.
        _, rec, fld = why
        return {k: v for k, v in state.items()
                if all(r == rec and f != fld for r, f in k[1])}

    def _written(self, lhs: ci.Cursor) -> Any:
        s = strip(lhs)
        if s.type.get_canonical().kind in (TK.RECORD, TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
            return _KILL_ALL  # a whole record: any slot of an object a pointer may reach
        if s.kind == K.DECL_REF_EXPR and s.referenced is not None:
            return ("var", s.referenced.hash)
        if s.kind == K.MEMBER_REF_EXPR:
            f = s.referenced
            parent = f.semantic_parent if f is not None else None
            record = parent
            # A member of an anonymous struct is named after the record around it; if a
            # union is around it, another member's name lies over the same bytes.
            while record is not None and record.kind != K.UNION_DECL and \
                    record.kind == K.STRUCT_DECL and record.is_anonymous():
                record = record.semantic_parent
            if parent is None or record is None or record.kind == K.UNION_DECL:
                return _KILL_ALL
            return ("slot", self.ex.record_name(parent), f.spelling)
        if s.kind == K.ARRAY_SUBSCRIPT_EXPR:
            kids = children(s)
            b = strip(kids[0]) if kids else None
            if b is not None and b.kind == K.DECL_REF_EXPR and b.referenced is not None and \
                    b.referenced.kind == K.VAR_DECL and \
                    not Extractor._is_global(b.referenced) and \
                    b.type.get_canonical().kind == TK.CONSTANTARRAY:
                return None  # a local array's scalar or pointer element: its own storage
        return _KILL_ALL

    def seq(self, kids: list[ci.Cursor], state: State) -> State:
        for ch in kids:
            state = self.stmt(ch, state)
        return state

    def kill_only(self, c: ci.Cursor, state: State) -> State:
        """``state`` less whatever ``c`` may kill, none of its stores kept (a loop body)."""
        if state is None or not state:
            return state
        todo = [c]
        while todo and state:
            n = todo.pop()
            k = n.kind
            if k == K.CALL_EXPR and not self._builtin(n) or k == K.ASM_STMT or \
                    self._opaque(n) or self._cleanup(n):
                return {}
            if (lhs := _written_lvalue(n)) is not None:
                state = self.kill(lhs, state)
            todo.extend(children(n))
        return state

    def kill_many(self, kids: list[ci.Cursor], state: State) -> State:
        for ch in kids:
            state = self.kill_only(ch, state)
        return state

    @staticmethod
    def _builtin(call: ci.Cursor) -> bool:
        """A builtin that writes no memory (not a kill)."""
        ref = call.referenced
        if ref is None or ref.kind != K.FUNCTION_DECL:
            return False
        name = ref.spelling
        return name in _PURE_BUILTINS or name.startswith(_PURE_BUILTIN_PREFIXES)

    def _opaque(self, c: ci.Cursor) -> bool:
        """An expression clang does not expose with several operands, but 'a ?: b':
        __atomic_* builtins (they store), __builtin_choose_expr, _Generic."""
        if c.kind == K.GENERIC_SELECTION_EXPR:
            return True
        if c.kind != K.UNEXPOSED_EXPR:
            return False
        kids = children(c)
        return len(kids) > 1 and not (len(kids) == 4 and len(distinct_children(kids)) == 2)

    @staticmethod
    def _cleanup(c: ci.Cursor) -> bool:
        """A local with an attribute: '__attribute__((cleanup(f)))' (cleanup.h's __free(),
        guard()) calls f when its scope ends.  Other attributes look the same here."""
        return c.kind == K.VAR_DECL and c.storage_class != ci.StorageClass.STATIC and \
            any(ch.kind == K.UNEXPOSED_ATTR for ch in children(c))

    def _effects(self, c: ci.Cursor) -> bool:
        """Whether evaluating ``c`` may store, call or jump (memoised)."""
        hit = self._effect_memo.get(c.hash)
        if hit is None:
            k = c.kind
            hit = k in (K.CALL_EXPR, K.ASM_STMT, K.COMPOUND_ASSIGNMENT_OPERATOR, K.StmtExpr) \
                or _written_lvalue(c) is not None or self._opaque(c) or \
                any(self._effects(ch) for ch in children(c))
            self._effect_memo[c.hash] = hit
        return hit

    def operands(self, kids: list[ci.Cursor], state: State) -> State:
        """Operands C leaves unsequenced (a call's, '+', '='): with side effects in two or
        more, each is read from the facts none of them kills, and none of their stores is
        kept."""
        if sum(1 for ch in kids if self._effects(ch)) <= 1:
            return self.seq(kids, state)
        pre = self.kill_many(kids, state)
        for ch in kids:
            self.stmt(ch, pre)
        return pre

    def _has_label(self, c: ci.Cursor) -> bool:
        todo = [c]
        while todo:
            n = todo.pop()
            if n.kind in (K.LABEL_STMT, K.CASE_STMT, K.DEFAULT_STMT):
                return True
            todo.extend(children(n))
        return False

    def stmt(self, c: ci.Cursor, state: State) -> State:  # noqa: C901 - one case per kind
        k = c.kind
        if state is None and k not in (K.LABEL_STMT, K.CASE_STMT, K.DEFAULT_STMT,
                                       K.COMPOUND_STMT):
            if not self._has_label(c):
                return None
            state = {}  # a goto or case label inside: entered with nothing known
        if k in (K.RETURN_STMT,):
            self.seq(children(c), state)
            return None
        if k in (K.GOTO_STMT, K.INDIRECT_GOTO_STMT, K.BREAK_STMT, K.CONTINUE_STMT):
            return None
        if k == K.LABEL_STMT:
            return self.seq(children(c), {})
        if k in (K.CASE_STMT, K.DEFAULT_STMT):
            entry = dict(self._switch_in[-1] or {}) if self._switch_in else {}
            kids = children(c)
            # 'case X:' has the constant first, then the statement it labels.
            return self.seq(kids[-1:], entry)
        if k == K.COMPOUND_STMT:
            kids = children(c)
            out = self.seq(kids, state)
            if out and any(self._cleanup(v) for d in kids if d.kind == K.DECL_STMT
                           for v in children(d)):
                return {}  # the scope's cleanup functions run here
            return out
        if k == K.IF_STMT:
            kids = children(c)
            if len(kids) < 2:
                return self.seq(kids, state)
            cond = self.stmt(kids[0], state)
            then = self.stmt(kids[1], cond)
            other = self.stmt(kids[2], cond) if len(kids) > 2 else cond
            return _meet(then, other)
        if k in (K.WHILE_STMT, K.FOR_STMT):
            entry = self.kill_only(c, state)
            for part in children(c):
                self.stmt(part, entry)  # calls inside are looked up; its stores do not last
            return entry
        if k == K.DO_STMT:
            kids = children(c)
            if len(kids) == 2 and integer_value(kids[1]) == 0:
                # 'do { ... } while (0)' (every statement-like macro): the body runs once.
                after = self.stmt(kids[0], state)
                if self._breaks(kids[0]):
                    return self.kill_only(kids[0], state)
                return after
            entry = self.kill_only(c, state)
            for part in kids:
                self.stmt(part, entry)
            return entry
        if k == K.SWITCH_STMT:
            kids = children(c)
            cond = self.stmt(kids[0], state) if kids else state
            entry = self.kill_only(c, cond)
            self._switch_in.append(entry)
            try:
                for part in kids[1:]:
                    self.stmt(part, {})  # a body reached only through its case labels
            finally:
                self._switch_in.pop()
            return entry
        if k == K.ASM_STMT:
            self.seq(children(c), state)
            return {}
        if k == K.CXX_UNARY_EXPR:
            return state  # sizeof / alignof: the operand is not evaluated
        if k == K.CALL_EXPR:
            return self.call(c, state)
        if k == K.BINARY_OPERATOR:
            bo = _lib.clang_getCursorBinaryOperatorKind(c)
            kids = children(c)
            if bo == BO_ASSIGN and len(kids) == 2:
                state = self.operands([kids[1], kids[0]], state)
                state = self.kill(kids[0], state)
                if state is not None and (path := self.base_decl(kids[0])) is not None:
                    key = (path[0], tuple(path[1]))
                    if key in self.wanted:
                        state = dict(state)
                        state[key] = _assigned_value(kids[1])
                return state
            if bo in (BO_LAND, BO_LOR) and len(kids) == 2:
                left = self.stmt(kids[0], state)
                return _meet(left, self.stmt(kids[1], left))
            if bo == BO_COMMA:
                return self.seq(kids, state)
            return self.operands(kids, state)
        if (lhs := _written_lvalue(c)) is not None:  # '+=', '++', '--'
            return self.kill(lhs, self.operands(children(c), state))
        if k == K.CONDITIONAL_OPERATOR:
            kids = children(c)
            if len(kids) == 3:
                cond = self.stmt(kids[0], state)
                return _meet(self.stmt(kids[1], cond), self.stmt(kids[2], cond))
            return self.seq(kids, state)
        if k in (K.UNEXPOSED_EXPR, K.GENERIC_SELECTION_EXPR) and len(kids := children(c)) > 1:
            if not self._opaque(c):  # 'a ?: b': a, then maybe b
                a, b = distinct_children(kids)
                first = self.stmt(a, state)
                return _meet(first, self.stmt(b, first))
            for ch in distinct_children(kids):
                self.stmt(ch, state)
            return {}
        if k == K.VAR_DECL and c.storage_class == ci.StorageClass.STATIC:
            return state
        if k.is_expression():
            return self.operands(children(c), state)
        return self.seq(children(c), state)

    def _breaks(self, body: ci.Cursor) -> bool:
        """A 'break' or 'continue' leaving this loop body: a 'continue' in a nested switch
        does too, a nested loop's own do not."""
        todo = [(body, False)]
        while todo:
            n, in_switch = todo.pop()
            if n.kind == K.CONTINUE_STMT or (n.kind == K.BREAK_STMT and not in_switch):
                return True
            if n.kind in (K.WHILE_STMT, K.FOR_STMT, K.DO_STMT):
                continue
            inner = in_switch or n.kind == K.SWITCH_STMT
            todo.extend((ch, inner) for ch in children(n))
        return False

    def call(self, c: ci.Cursor, state: State) -> State:
        kids = children(c)
        if self._builtin(c) and c.referenced.spelling in _UNEVALUATED_BUILTINS:
            return state
        if (path := self.paths.get(c.hash)) is not None:
            # The callee is loaded before, between or after the arguments: the fact must hold
            # before them all and survive each.
            at_call = self.kill_many(kids, state)
            hit = None
            if at_call:
                base, layers = path
                for k in range(1, len(layers)):
                    v = at_call.get((base, tuple(layers[k:])))
                    if v is not None:
                        hit = (k, v)
                        break
            seen = self._visits.setdefault(c.hash, hit)
            if hit is not None and (seen is None or seen[1].hash != hit[1].hash):
                hit = None  # visited twice with different answers: none holds
            if hit is None:
                self.found.pop(c.hash, None)
                self._visits[c.hash] = None
            else:
                self.found[c.hash] = hit
        after = self.operands(kids, state)
        if self._builtin(c):
            return None if c.referenced.spelling in _NORETURN_BUILTINS else after
        return {} if after is not None else None
