"""libclang AST → facts (:mod:`pipeline.facts`) for one translation unit.

Runs inside parse workers.  Cost is what matters here: a kernel TU has ~15k top-level cursors
(mostly from headers) and ~10k cursors in its main file, and every libclang property read is a
ctypes call.  So we visit only the main file's top-level declarations (plus any ``.c`` file it
includes, as ``kernel/sched/build_policy.c`` does), read each property once, and extract a header
function only when code we walk refers to it — once per worker process, not once per TU.

Kernel idioms handled here (see ``../shared/notes/libclang-ast.md``):

- ``BPF_CALL_x`` (include/linux/filter.h): the wrapper calls ``((btf_x)____x)(...)``, a
  ``CALL_EXPR`` with no referenced decl; stripping parens and casts reaches ``____x``, whose
  parameters get the arguments.
- x86 ``cmpxchg()``/``xchg()`` (arch/x86/include/asm/cmpxchg.h) store in inline asm: the asm
  statement's operands are read as stores (:meth:`FunctionWalker.asm`).
- ``replace_fops(filp, fops); filp->f_op->open(...)`` (chrdev_open and the other char-device
  open dispatchers): a call through a path that every way to it has just stored into is read
  through the stored value (:mod:`pipeline.definite`, a must-analysis run only on functions
  with such a store).
- Unions whose members lay a slot under another name (``struct key``'s ``index_key``) are
  recorded as ``overlay:`` layouts; compound literals (``&(const struct x){...}``) are objects.
- Anonymous records: named from the enclosing record (``struct a::field`` for a named member,
  the parent's own name for a transparent member), never from the absolute path clang prints.
- ``BTF_ID_FLAGS`` and friends (include/linux/btf_ids.h) expand to file-scope asm or to nothing,
  so kfunc sets are read from macro instantiations (only in TUs whose text mentions them).
"""

from __future__ import annotations

import ctypes
import hashlib
import re
from collections.abc import Callable
from typing import Any

from clang import cindex as ci

from pipeline.facts import FACTS_SCHEMA, PathMap, empty_tu, function_id, is_header

EXTRACTOR_VERSION = 35

K = ci.CursorKind
TK = ci.TypeKind
_lib = ci.conf.lib
_lib.clang_getCursorBinaryOperatorKind.argtypes = [ci.Cursor]
_lib.clang_getCursorBinaryOperatorKind.restype = ctypes.c_int
_lib.clang_getCursorUnaryOperatorKind.argtypes = [ci.Cursor]
_lib.clang_getCursorUnaryOperatorKind.restype = ctypes.c_int
_lib.clang_Location_isFromMainFile.argtypes = [ci.SourceLocation]
_lib.clang_Location_isFromMainFile.restype = ctypes.c_int
# Raw entry points with our own signatures (pointer compares without building File objects).
_raw = ctypes.CDLL(_lib._name)
_raw.clang_getFile.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_raw.clang_getFile.restype = ctypes.c_void_p
_raw.clang_getInstantiationLocation.argtypes = [ci.SourceLocation, ctypes.POINTER(ctypes.c_void_p),
                                                ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_raw.clang_getInstantiationLocation.restype = None
_raw.clang_getFileName.argtypes = [ctypes.c_void_p]
_raw.clang_getFileName.restype = ci._CXString
_raw.clang_getCString.argtypes = [ci._CXString]
_raw.clang_getCString.restype = ctypes.c_char_p


class _RangeList(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint), ("ranges", ctypes.POINTER(ci.SourceRange))]


_raw.clang_getSkippedRanges.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_raw.clang_getSkippedRanges.restype = ctypes.POINTER(_RangeList)
_raw.clang_disposeSourceRangeList.argtypes = [ctypes.POINTER(_RangeList)]
_raw.clang_disposeSourceRangeList.restype = None
_raw.clang_getCursorPrintingPolicy.argtypes = [ci.Cursor]
_raw.clang_getCursorPrintingPolicy.restype = ctypes.c_void_p
_raw.clang_PrintingPolicy_setProperty.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint]
_raw.clang_PrintingPolicy_dispose.argtypes = [ctypes.c_void_p]
_raw.clang_getCursorPrettyPrinted.argtypes = [ci.Cursor, ctypes.c_void_p]
_raw.clang_getCursorPrettyPrinted.restype = ci._CXString
_POLICY_TERSE_OUTPUT = 17  # CXPrintingPolicy_TerseOutput: the declaration, not the body
_raw.clang_getClangVersion.argtypes = []
_raw.clang_getClangVersion.restype = ci._CXString


def clang_version() -> str:
    """libclang's own version string ("clang version 18.1.1 ...")."""
    # The _CXString frees itself (cindex's __del__): no clang_disposeString here.
    return _raw.clang_getCString(_raw.clang_getClangVersion()).decode()


_VISITOR = ctypes.CFUNCTYPE(ctypes.c_int, ci.Cursor, ci.Cursor, ctypes.py_object)
_raw.clang_getLocationForOffset.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
_raw.clang_getLocationForOffset.restype = ci.SourceLocation
_raw.clang_visitChildren.argtypes = [ci.Cursor, _VISITOR, ctypes.py_object]
_raw.clang_visitChildren.restype = ctypes.c_uint


class _Kids(list):
    __slots__ = ("tu",)


def _collect(child: ci.Cursor, parent: ci.Cursor, out: _Kids) -> int:
    child._tu = out.tu  # cindex needs it on cursors derived from this one
    out.append(child)
    return 1  # CXChildVisit_Continue


_COLLECT = _VISITOR(_collect)


def children(c: ci.Cursor) -> list[ci.Cursor]:
    """A cursor's children: cindex's get_children, minus a cursor comparison per child."""
    out = _Kids()
    out.tu = c._tu
    _raw.clang_visitChildren(c, _COLLECT, out)
    return out


_NULL_CURSOR_KIND = ci.CursorKind.INVALID_FILE.value  # clang_getNullCursor()'s kind, data all 0


def _cursor_result(res: ci.Cursor, fn: Any, args: tuple) -> ci.Cursor | None:
    """cindex's Cursor.from_result without its clang_equalCursors call and its scan of the
    arguments for a translation unit: the walk asks ~10^4 referenced/semantic_parent/canonical
    cursors per TU.  Null is what clang_equalCursors(res, clang_getNullCursor()) tests."""
    if res._kind_id == _NULL_CURSOR_KIND and not any(res.data):
        return None
    res._tu = args[0]._tu
    return res


def _type_result(res: ci.Type, fn: Any, args: tuple) -> ci.Type:
    """cindex's Type.from_result without its hasattr scan of the arguments."""
    res._tu = args[0]._tu
    return res


# Installed on cindex's own function objects, so every cindex user in the process gets them.
# Only entry points whose first argument carries the TU (a Cursor or a Type); the TU cursor's
# (clang_getTranslationUnitCursor(tu)) keeps cindex's check.
for _name, *_sig in ci.functionList:
    if len(_sig) == 3 and _sig[0] and _sig[0][0] in (ci.Cursor, ci.Type):
        if _sig[2] in (ci.Cursor.from_result, ci.Cursor.from_cursor_result):
            getattr(_lib, _name).errcheck = _cursor_result
        elif _sig[2] is ci.Type.from_result:
            getattr(_lib, _name).errcheck = _type_result


def _argument_types(ft: ci.Type) -> list[ci.Type]:
    """A function prototype's parameter types: cindex's Type.argument_types() defines an
    iterator class (an ABC) on every call, which costs more than reading the types.  Stops
    at the first invalid one, as that iterator does."""
    out = []
    for i in range(_lib.clang_getNumArgTypes(ft)):
        t = _lib.clang_getArgType(ft, i)
        if t._kind_id == TK.INVALID.value:
            break
        out.append(t)
    return out


# include/linux/compiler.h: __UNIQUE_ID(prefix) pastes __COUNTER__ onto the prefix.
_COUNTER_NAME_RE = re.compile(r"(__UNIQUE_ID_\w*?)\d+")
# include/linux/compiler_types.h: compiletime_assert() declares and calls
# __compiletime_assert_<__COUNTER__>, an error-attribute function; a call that survives
# optimisation fails the build, so no built kernel has one.
_COMPILETIME_ASSERT_RE = re.compile(r"__compiletime_assert_\d+")


def stable_name(name: str) -> str:
    """A declaration's name without its ``__COUNTER__`` suffix (``__UNIQUE_ID_rcu669`` ->
    ``__UNIQUE_ID_rcu``, rcu_dereference's local).  The counter's value in a header's inline
    function depends on what the TU expanded before, and a header function is extracted from
    whichever TU reaches it first: with the counter, ids would depend on scheduling."""
    m = _COUNTER_NAME_RE.fullmatch(name)
    return m.group(1) if m else name


class _TopLevel(list):
    """The top-level cursors :meth:`Extractor.run` walks, chosen inside the visitor.

    A TU's top level is ~10^4 cursors, all but ~1% from headers (prototypes and static
    inlines); choosing in the callback, with the cheapest test first, costs less than half of
    listing them and filtering after, which saves ~5% of the bare parse's time
    (bench/parse_overhead.py).  ``lo``..``hi``
    are the raw encodings of the main file's first and last offsets: a file location (not a
    macro one) is in the main file iff its raw encoding is in that range, since clang gives
    each file entry one contiguous range of the source manager's offsets.  Macro locations
    (``BPF_CALL_x``) and TUs that ``#include`` a ``.c`` file ask for the expansion file.
    """

    __slots__ = ("tu", "lo", "hi", "wanted", "other_files", "fptr")


_MACRO_LOCATION = 1 << 31  # clang::SourceLocation::MacroIDBit


def _in_wanted_file(c: ci.Cursor, out: _TopLevel) -> bool:
    loc = _lib.clang_getCursorLocation(c)
    raw = loc.int_data
    if not raw & _MACRO_LOCATION:
        if out.lo <= raw <= out.hi:
            return True
        if not out.other_files:
            return False
    _raw.clang_getInstantiationLocation(loc, ctypes.byref(out.fptr), None, None, None)
    return out.fptr.value in out.wanted


def _collect_top(c: ci.Cursor, parent: ci.Cursor, out: _TopLevel) -> int:
    """Keep the function definitions and the variables of the main file (and of the ``.c``
    files it includes), and the definitions a header makes this TU emit.

    ``#include <linux/lsm_hook_defs.h>`` under a LSM_HOOK() that defines functions
    (kernel/bpf/bpf_lsm.c), CREATE_TRACE_POINTS + include/trace/events/*.h: out-of-line
    functions and initialised objects whose expansion site is the header are walked like the
    main file's.  A header's inline functions are not: they are extracted once per run when
    something uses them.
    """
    kind = c._kind_id
    if kind == _FUNCTION_DECL:
        if not _raw.clang_isCursorDefinition(c):
            return 1
        if _raw.clang_Cursor_isFunctionInlined(c) and not _in_wanted_file(c, out):
            return 1
    elif kind == _VAR_DECL:
        if not _in_wanted_file(c, out) and _raw.clang_Cursor_isNull(
                _raw.clang_Cursor_getVarDeclInitializer(c)):
            return 1
    elif kind == _STRUCT_DECL:
        # A struct the main file defines (Extractor.main_record decides if it matters).
        if not _raw.clang_isCursorDefinition(c) or not _in_wanted_file(c, out):
            return 1
    else:
        return 1  # typedefs, records, enums: most of a TU's top level, all headers'
    c._tu = out.tu
    out.append(c)
    return 1


_COLLECT_TOP = _VISITOR(_collect_top)


# cindex's Cursor.kind looks the kind up through a checked classmethod on every read; the walk
# reads it ~10^5 times per TU.  Same result, one list index.
_KINDS = ci.CursorKind._kinds
_FUNCTION_DECL, _VAR_DECL = ci.CursorKind.FUNCTION_DECL.value, ci.CursorKind.VAR_DECL.value
_STRUCT_DECL = ci.CursorKind.STRUCT_DECL.value
ci.Cursor.kind = property(lambda self: _KINDS[self._kind_id])  # type: ignore[assignment]

_raw.clang_Cursor_isFunctionInlined.argtypes = [ci.Cursor]
_raw.clang_Cursor_isFunctionInlined.restype = ctypes.c_uint
_raw.clang_isCursorDefinition.argtypes = [ci.Cursor]
_raw.clang_isCursorDefinition.restype = ctypes.c_uint
_raw.clang_Cursor_getVarDeclInitializer.argtypes = [ci.Cursor]
_raw.clang_Cursor_getVarDeclInitializer.restype = ci.Cursor
_raw.clang_Cursor_isNull.argtypes = [ci.Cursor]
_raw.clang_Cursor_isNull.restype = ctypes.c_int
_raw.clang_Cursor_Evaluate.argtypes = [ci.Cursor]
_raw.clang_Cursor_Evaluate.restype = ctypes.c_void_p
_raw.clang_EvalResult_getKind.argtypes = [ctypes.c_void_p]
_raw.clang_EvalResult_getKind.restype = ctypes.c_int
_raw.clang_EvalResult_getAsLongLong.argtypes = [ctypes.c_void_p]
_raw.clang_EvalResult_getAsLongLong.restype = ctypes.c_longlong
_raw.clang_EvalResult_dispose.argtypes = [ctypes.c_void_p]
_CXEVAL_INT = 1  # CXEvalResultKind
BO_ADD, BO_SUB, BO_ASSIGN = 6, 7, 22  # CXBinaryOperatorKind
UO_ADDROF, UO_DEREF = 5, 6  # CXUnaryOperatorKind

# Expression wrappers that do not change which object or function an expression names.
_TRANSPARENT = {K.UNEXPOSED_EXPR, K.PAREN_EXPR, K.CSTYLE_CAST_EXPR}
_RECORD_DECLS = {K.STRUCT_DECL, K.UNION_DECL}
_FN_TYPES = {TK.FUNCTIONPROTO, TK.FUNCTIONNOPROTO}

# Kernel attribute macros and the facts they stand for (include/linux/compiler_types.h,
# include/linux/init.h).  Read from the text before a definition's name.
_ATTR_TOKENS = {
    "inline": "inline", "__inline": "inline", "__inline__": "inline",
    "__always_inline": "always_inline", "noinline": "noinline", "__noinline": "noinline",
    "notrace": "notrace", "__used": "used", "__weak": "weak", "__bpf_kfunc": "bpf_kfunc",
    "__kprobes": "kprobes", "noinstr": "noinstr", "__init": "init", "__exit": "exit",
    "__cold": "cold", "__noreturn": "noreturn", "__naked": "naked",
    # Called from assembly (include/linux/linkage.h, compiler_types.h): entry code, context
    # switch, ret_from_fork.  Its parameters hold what no C call passes.
    "asmlinkage": "asm_entry", "__visible": "asm_entry",
}
_SECTION_OF = {
    "noinstr": ".noinstr.text", "__init": ".init.text", "__exit": ".exit.text",
    "__kprobes": ".kprobes.text", "__sched": ".sched.text", "__cpuidle": ".cpuidle.text",
    "__irq_entry": ".irqentry.text", "__softirq_entry": ".softirqentry.text",
}
_WORD_RE = re.compile(rb"[A-Za-z_]\w*")
# Attributes as clang prints a declaration (``__attribute__((weak))``) -> our names.  This sees
# attributes that kernel macros put on macro-made definitions (COND_SYSCALL's __weak,
# BPF_CALL_x's __always_inline), which the text at the definition does not show.
_CLANG_ATTRS = {"weak": "weak", "always_inline": "always_inline", "noinline": "noinline",
                "no_instrument_function": "notrace", "used": "used", "cold": "cold",
                "naked": "naked", "noreturn": "noreturn"}
_PRINTED_ATTR_RE = re.compile(r"__attribute__\(\((\w+)(?:\(\"([^\"]*)\"\))?")
_SECTION_RE = re.compile(rb"__section\(\s*\"([^\"]+)\"\s*\)|__section__\s*\(\s*\"([^\"]+)\"")

# btf_ids.h macros that open and close a set (6.1: BTF_SET8_*; 6.8+: BTF_KFUNCS_*).
_SET_START = {"BTF_SET8_START", "BTF_KFUNCS_START", "BTF_SET_START", "BTF_ID_LIST",
              "BTF_ID_LIST_GLOBAL", "BTF_ID_LIST_SINGLE", "BTF_SET_START_GLOBAL"}
_SET_END = {"BTF_SET8_END", "BTF_KFUNCS_END", "BTF_SET_END"}
_BTF_MACRO_RE = re.compile(
    rb"\b(BTF_SET8_START|BTF_SET8_END|BTF_KFUNCS_START|BTF_KFUNCS_END|BTF_SET_START|"
    rb"BTF_SET_START_GLOBAL|BTF_SET_END|BTF_ID_LIST|BTF_ID_LIST_GLOBAL|BTF_ID_LIST_SINGLE|"
    rb"BTF_ID_FLAGS|BTF_ID)\s*\(([^()]*)\)")
_COMMENT_RE = re.compile(rb"/\*.*?\*/|//[^\n]*", re.S)
BTF_TEXT_RE = re.compile(rb"\bBTF_(?:SET8_START|KFUNCS_START|SET_START|ID_FLAGS|ID_LIST)\b")

PROTO_TYPE = "const struct bpf_func_proto *"
PROTO_RECORD = "struct bpf_func_proto"
VERIFIER_OPS_RECORD = "struct bpf_verifier_ops"


def _canon(t: ci.Type) -> str:
    return t.get_canonical().spelling


# Functions that copy bytes from their second argument to the memory their first points to
# (include/linux/string.h, arch/x86/include/asm/string_64.h; fortified or not).
_MEM_COPIES = frozenset({"memcpy", "memmove", "__memcpy", "__memmove", "__builtin_memcpy",
                         "__builtin_memmove", "__builtin___memcpy_chk", "__builtin___memmove_chk"})


def _plain_local(e: ci.Cursor) -> bool:
    """A local variable or parameter named as such (an asm operand that is no memory)."""
    ref = e.referenced if e.kind == K.DECL_REF_EXPR else None
    return ref is not None and (ref.kind == K.PARM_DECL or (
        ref.kind == K.VAR_DECL and not Extractor._is_global(ref)))


def _leaf_kind(t: ci.Type, tracked: bool) -> str:
    """What a layout leaf holds: a slot, ``fn`` (a function pointer) or ``rec`` (a pointer to a
    record holding them); else ``word`` (a pointer-sized integer or ``void *``, which code
    may fill with any address), ``ptr`` (a pointer to data) or ``int``."""
    if tracked:
        return "fn" if _fn_type_of_pointer(t) is not None else "rec"
    if t.kind == TK.POINTER:
        return "word" if t.get_pointee().get_canonical().kind == TK.VOID else "ptr"
    if t.kind in (TK.LONG, TK.ULONG, TK.LONGLONG, TK.ULONGLONG):
        return "word"
    return "int"


def _leaf_order(leaf: list[Any]) -> tuple[int, int, str, str]:
    """Layout leaves sorted by place, then name (an array of records has no field)."""
    return leaf[0], leaf[1], leaf[2] or "", leaf[3] or ""


def _overlaid_slots(leaves: list[list[Any]]) -> bool:
    """Whether some tracked leaf is overlapped by a leaf named otherwise (a pun)."""
    spans = sorted(leaves, key=lambda x: x[0])
    for i, (start, bits, rec, fld, tracked, _kind) in enumerate(spans):
        for ostart, _obits, orec, ofld, otracked, _ in spans[i + 1:]:
            if ostart >= start + bits:
                break
            if (rec, fld) != (orec, ofld) and (tracked or otracked):
                return True
    return False


def _fn_type_of_pointer(t: ci.Type) -> ci.Type | None:
    """The function type a function-pointer type points to (through typedefs/qualifiers)."""
    c = t.get_canonical()
    if c.kind == TK.POINTER:
        p = c.get_pointee()
        if p.kind in _FN_TYPES:
            return p
    if c.kind in _FN_TYPES:
        return c
    return None


def stripped_away(c: ci.Cursor) -> list[ci.Cursor]:
    """What :func:`strip` steps over without reading: the statements of a statement expression
    before its value (``({ typeof(*p) *__p = READ_ONCE(p); ...; __p; })``).  Calls and
    definitions in them happen all the same."""
    skipped: list[ci.Cursor] = []
    _strip(c, skipped)
    return skipped


_CONSTANT_LEAVES = {K.INTEGER_LITERAL, K.CHARACTER_LITERAL}
# kernel/sched/build_policy.c and friends: '#include "fair.c"'.
_INCLUDES_C_RE = re.compile(rb'^\s*#\s*include\s*[<"][^>"\n]*\.c[>"]', re.MULTILINE)


def _integer_constant(e: ci.Cursor, depth: int = 0) -> bool:
    """An integer constant expression of literals and enum constants (``~0L``, ``1 << 3``)."""
    if depth > 8:
        return False
    k = e.kind
    if k in _CONSTANT_LEAVES:
        return True
    if k == K.DECL_REF_EXPR:
        ref = e.referenced
        return ref is not None and ref.kind == K.ENUM_CONSTANT_DECL
    if k in (K.UNARY_OPERATOR, K.BINARY_OPERATOR, K.PAREN_EXPR, K.CSTYLE_CAST_EXPR,
             K.UNEXPOSED_EXPR):
        if k == K.UNARY_OPERATOR and _lib.clang_getCursorUnaryOperatorKind(e) in (
                UO_ADDROF, UO_DEREF):
            return False
        kids = [ch for ch in children(e) if ch.kind != K.TYPE_REF]
        return bool(kids) and all(_integer_constant(ch, depth + 1) for ch in kids)
    return False


def integer_value(e: ci.Cursor) -> int | None:
    """The value of an integer constant expression (``while (0)``), or None."""
    res = _raw.clang_Cursor_Evaluate(e)
    if not res:
        return None
    try:
        if _raw.clang_EvalResult_getKind(res) != _CXEVAL_INT:
            return None
        return int(_raw.clang_EvalResult_getAsLongLong(res))
    finally:
        _raw.clang_EvalResult_dispose(res)


def distinct_children(kids: list[ci.Cursor]) -> list[ci.Cursor]:
    """Children without repeats: GNU ``a ?: b`` lists ``a`` three times, as one cursor
    (``[a, a, a, b]``)."""
    seen: set[int] = set()
    return [ch for ch in kids if not (ch.hash in seen or seen.add(ch.hash))]


def var_initializer(c: ci.Cursor) -> ci.Cursor | None:
    """A variable's initializer, or None.  Not "its last child": a function-pointer variable's
    children include the PARM_DECLs of its type, an array's its size expression."""
    if _raw.clang_Cursor_isNull(_raw.clang_Cursor_getVarDeclInitializer(c)):
        return None
    init = None
    for ch in children(c):
        if ch.kind.is_expression():
            init = ch
    return init


def _unparen(c: ci.Cursor) -> ci.Cursor:
    """The expression inside any parentheses (and nothing else: casts stay)."""
    while c.kind == K.PAREN_EXPR and (kids := children(c)):
        c = kids[0]
    return c


def strip(c: ci.Cursor) -> ci.Cursor:
    """Skip parens, casts, implicit conversions and GNU statement expressions.

    ``({ ...; x; })`` has the value of its last statement: the kernel wraps pointers in them
    (static_call(), container_of(), READ_ONCE() on some configs).

    An unexposed expression with several operands is not a wrapper: ``a ?: b`` (children
    ``[a, a, a, b]``), ``__builtin_choose_expr(c, x, y)``, ``_Generic``.  Its value may be any
    operand's, which :meth:`Extractor.values` unites; stepping to the last one alone would drop
    ``a`` from ``h->ops = ops ?: &default_ops``.
    """
    return _strip(c, None)


# 'const volatile T', 'T *const volatile': qualifiers of the type itself, not of a pointee.
_TOP_QUALS_RE = re.compile(r"^(?:(?:const|volatile)\s+)+|(?:\s*\b(?:const|volatile))+$")


_IDENT_RE = re.compile(r"[A-Za-z_]\w*")


def _typedef_name(t: ci.Type) -> str | None:
    """The typedef a callee's pointer type is spelled with (``bpf_callback_t``), if any."""
    name = t.spelling
    if t.kind not in (TK.TYPEDEF, TK.ELABORATED) or not _IDENT_RE.fullmatch(name):
        return None
    return name


def symbol_get_name(call: ci.Cursor) -> str | None:
    """``symbol_get(x)`` (include/linux/module.h, CONFIG_MODULES) is
    ``(typeof(&x))__symbol_get("x")``: the exported symbol of that name, or NULL."""
    kids = children(call)
    if len(kids) != 2:
        return None
    arg = strip(kids[1])
    if arg.kind != K.STRING_LITERAL:
        return None
    name = arg.spelling.strip('"')
    return name if _IDENT_RE.fullmatch(name) else None


def generic_selected(c: ci.Cursor) -> list[ci.Cursor]:
    """The functions a ``_Generic`` selection in callee position can stand for.

    ``_Generic(x, T1: f1, T2: f2)(x)`` calls one function picked at compile time by x's
    type: a direct call.  The selection has the type of the association it picked, so the
    candidates are the associated functions of exactly that type (one, unless two share it;
    the controlling expression, the first child, is not evaluated).  Linux 6.12 uses it in
    dev_fwnode() (include/linux/property.h), interface_to_usbdev() (include/linux/usb.h)
    and i915's *_PARAMS_FOR_EACH debugfs helpers; 6.1 has none of those in callee position.
    Empty when the selection is not a function designator (``_Generic(x, ...: fp)``).
    """
    if c.kind != K.GENERIC_SELECTION_EXPR:
        return []
    want = c.type.get_canonical().spelling
    out = []
    for assoc in children(c)[1:]:
        a = strip(assoc)
        if a.kind == K.DECL_REF_EXPR and a.referenced is not None and \
                a.referenced.kind == K.FUNCTION_DECL and \
                a.referenced.type.get_canonical().spelling == want:
            out.append(a.referenced)
    return out


def _unqualified(t: ci.Type) -> str:
    """A canonical type's spelling without top-level const/volatile."""
    return _TOP_QUALS_RE.sub("", t.get_canonical().spelling).strip()


def _strip(c: ci.Cursor, skipped: list[ci.Cursor] | None) -> ci.Cursor:
    while True:
        k = c.kind
        if k in _TRANSPARENT:
            kids = children(c)
            if not kids or (k == K.UNEXPOSED_EXPR and len(kids) > 1):
                return c
            c = kids[-1]  # a C cast's children are [TYPE_REF..., expr]
        elif k == K.StmtExpr:
            body = children(c)
            stmts = children(body[0]) if body else []
            if not stmts:
                return c
            if skipped is not None:
                skipped.extend(stmts[:-1])
            c = stmts[-1]
        else:
            return c


class Extractor:
    """Walks one parsed TU and builds its facts document (plus header-function documents)."""

    def __init__(self, tu: ci.TranslationUnit, main_file: str, paths: PathMap, *,
                 file_hash: Any, seen_headers: set[str], store_has: Any = None,
                 header_context: str = ""):
        self.tu = tu
        self.main_file = main_file
        self.paths = paths
        self.file_hash = file_hash  # rel path -> content hash (memoised by the caller)
        self.seen_headers = seen_headers  # header-function keys already extracted (per process)
        self.store_has = store_has or (lambda key: False)
        # What else a header function's facts depend on (see pipeline.parse.header_context):
        # part of its key, beside its own file's content.
        self.header_context = header_context
        self.doc = empty_tu(paths.rel(main_file))
        self._record_names: dict[int, str] = {}
        self._literals: dict[int, str] = {}  # compound literal cursor -> object id
        self._has_tracked: dict[int, bool] = {}
        self._literal_ids: set[str] = set()
        self._fn_ids: dict[int, tuple[str, str, str]] = {}
        self._has_fnptr: dict[int, bool] = {}
        # (declaration, id) of the function whose body is being walked: locals and
        # parameters are named relative to it.
        self.current: tuple[ci.Cursor, str] | None = None
        self._size_params: dict[int, list[int]] = {}
        self._param_index: dict[int, int] = {}
        self._tracked: dict[tuple[int, int, int], bool] = {}
        self._tracked_params: dict[int, list[int]] = {}
        self._layouts: dict[int, dict[str, Any] | None] = {}
        self._texts: dict[str, bytes] = {}
        self._file_names: dict[int | None, str] = {}
        self.fn_types: dict[str, str] = {}
        self._header_queue: list[tuple[str, ci.Cursor]] = []
        self.header_docs: list[dict[str, Any]] = []
        # The document that facts go to: the TU's, or a header function's while we walk it.
        self.sink: dict[str, Any] = self.doc

    # ---- names ---------------------------------------------------------------------------

    def rel(self, f: ci.File | str | None) -> str:
        if f is None:
            return "<unknown>"
        return self.paths.rel(f if isinstance(f, str) else f.name)

    def expansion_line(self, c: ci.Cursor) -> bytes:
        """The source line a cursor's outermost macro expansion starts on."""
        fptr, line = ctypes.c_void_p(), ctypes.c_uint()
        _raw.clang_getInstantiationLocation(_lib.clang_getCursorLocation(c), ctypes.byref(fptr),
                                            ctypes.byref(line), None, None)
        if not fptr.value:
            return b""
        name = _raw.clang_getCString(_raw.clang_getFileName(fptr.value)).decode()
        lines = self.text_of(name).split(b"\n", line.value)
        return lines[line.value - 1] if len(lines) >= line.value else b""

    def text_of(self, path: str) -> bytes:
        t = self._texts.get(path)
        if t is None:
            try:
                with open(path, "rb") as fh:
                    t = fh.read()
            except OSError:
                t = b""
            self._texts[path] = t
        return t

    def record_name(self, decl: ci.Cursor) -> str:
        """A stable name for a record declaration, identical in every TU."""
        decl = decl.canonical
        h = decl.hash
        name = self._record_names.get(h)
        if name is not None:
            return name
        kind = "union" if decl.kind == K.UNION_DECL else "struct"
        if not decl.is_anonymous():
            name = f"{kind} {decl.spelling}" if " " not in decl.spelling else decl.spelling
        else:
            parent = decl.semantic_parent
            name = None
            if parent is not None and parent.kind in _RECORD_DECLS:
                pname = self.record_name(parent)
                name = pname  # transparent member: its fields read as the parent's
                for f in children(parent):
                    if f.kind == K.FIELD_DECL and f.spelling:
                        td = f.type.get_canonical().get_declaration()
                        if td is not None and td.kind in _RECORD_DECLS and td.canonical == decl:
                            name = f"{pname}::{f.spelling}"
                            break
            if name is None:
                loc = decl.location
                name = f"{kind} (anonymous at {self.rel(loc.file)}:{loc.line}:{loc.column})"
        self._record_names[h] = name
        if kind == "union":
            self.note_overlay(decl)  # after the name is cached: its leaves name it
        return name

    def record_of_type(self, t: ci.Type) -> str | None:
        c = t.get_canonical()
        if c.kind == TK.RECORD:
            d = c.get_declaration()
            return self.record_name(d) if d.kind in _RECORD_DECLS else None
        if c.kind == TK.ELABORATED:
            return self.record_of_type(c.get_named_type())
        return None

    def pointee_record(self, t: ci.Type) -> str | None:
        c = t.get_canonical()
        return self.record_of_type(c.get_pointee()) if c.kind == TK.POINTER else None

    def _record_holds(self, t: ci.Type, depth: int, cache: dict[int, bool],
                      holds: Callable[[ci.Type, int], bool]) -> bool:
        """Whether record ``t`` has a field ``holds`` accepts (given its canonical type and
        ``depth``), memoized per declaration in ``cache``.  A record incomplete here
        (``struct net_device_ops;``) may hold anything: another TU may see such fields, and
        stores and arguments of pointers to it must be recorded, or a layer would look
        complete without them."""
        c = t.get_canonical()
        if c.kind != TK.RECORD or depth > 3:
            return False
        d = c.get_declaration()
        h = d.hash
        hit = cache.get(h)
        if hit is not None:
            return hit
        definition = d.get_definition()
        if definition is None:
            cache[h] = True
            return True
        cache[h] = False  # cycle guard
        found = any(f.kind == K.FIELD_DECL and holds(f.type.get_canonical(), depth)
                    for f in children(definition))
        cache[h] = found
        return found

    def has_tracked_fields(self, t: ci.Type, depth: int = 0) -> bool:
        """Whether a record (or embedded records in it) holds slots calls resolve through:
        function pointers or pointers to records holding them (``struct pipe_buffer``'s
        ``ops``).  A copy of such a record moves what those slots hold."""
        return self._record_holds(t, depth, self._has_tracked, self._tracked_field)

    def _tracked_field(self, ft: ci.Type, depth: int) -> bool:
        while ft.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
            ft = ft.element_type.get_canonical()
        return self.tracked_type(ft) or self.has_tracked_fields(ft, depth + 1)

    def has_fnptr_fields(self, t: ci.Type, depth: int = 0) -> bool:
        """Whether a record (or embedded records in it) holds function pointers."""
        return self._record_holds(t, depth, self._has_fnptr, self._fnptr_field)

    def _fnptr_field(self, ft: ci.Type, depth: int) -> bool:
        return _fn_type_of_pointer(ft) is not None or (
            ft.kind == TK.CONSTANTARRAY and _fn_type_of_pointer(ft.element_type) is not None
        ) or self.has_fnptr_fields(ft, depth + 1)

    def tracked_type(self, t: ci.Type) -> bool:
        """Types whose values the facts follow through locals and parameters: function
        pointers and pointers to records that hold them (or may: incomplete ones)."""
        key = (t._kind_id, t.data[0], t.data[1])  # the QualType: stable within the TU
        hit = self._tracked.get(key)
        if hit is None:
            c = t.get_canonical()
            if _fn_type_of_pointer(c) is not None:
                hit = True
            elif c.kind != TK.POINTER:
                hit = False
            else:
                p = c.get_pointee().get_canonical()
                hit = p.kind == TK.RECORD and self.has_fnptr_fields(p)
            self._tracked[key] = hit
        return hit

    def tracked_params(self, callee: ci.Cursor) -> list[int]:
        """Indices of a function's parameters of tracked type."""
        return self._param_indices(callee, self._tracked_params, self.tracked_type)

    def size_params(self, callee: ci.Cursor) -> list[int]:
        """Indices of a function's ``unsigned long`` (``size_t`` on x86_64 and arm64)
        parameters: the ``offsetof`` arguments recorded are those (looking into every argument
        of every call costs the parse measurably).  An offsetof passed as another integer type
        is not recorded, which leaves that parameter's offset reads unconfined (link counts it
        as a call without offsetof)."""
        return self._param_indices(callee, self._size_params,
                                   lambda pt: pt.get_canonical().kind == TK.ULONG)

    @staticmethod
    def _param_indices(callee: ci.Cursor, memo: dict[int, list[int]],
                       keep: Callable[[ci.Type], bool]) -> list[int]:
        """Indices of the parameters of a function's type that ``keep`` accepts, memoized per
        declaration (calls of one callee are many)."""
        hit = memo.get(callee.hash)
        if hit is None:
            ft = callee.type.get_canonical()
            hit = [i for i, pt in enumerate(_argument_types(ft)) if keep(pt)] \
                if ft.kind == TK.FUNCTIONPROTO else []
            memo[callee.hash] = hit
        return hit

    def param_var(self, ref: ci.Cursor) -> str | None:
        """``F#argI``: the pseudo-variable of parameter I of the function being walked, when
        its type is tracked.  Every direct call of F stores its argument I there."""
        if self.current is None or not self.tracked_type(ref.type):
            return None
        return self.param_name(ref)

    def param_name(self, ref: ci.Cursor) -> str | None:
        """``F#argI`` for a parameter of the function being walked, whatever its type."""
        if self.current is None:
            return None
        fn_decl, fid = self.current
        parent = ref.semantic_parent
        if parent is None or parent.hash != fn_decl.hash:
            return None
        idx = self._param_index.get(ref.hash)
        if idx is None:
            for i, a in enumerate(fn_decl.get_arguments()):
                self._param_index[a.hash] = i
            idx = self._param_index.get(ref.hash)
        return f"{fid}#arg{idx}" if idx is not None else None

    def fnptr_struct_field(self, e: ci.Cursor) -> bool:
        """Whether an lvalue (``x->fn``, ``x->tbl[i]``) reads a field declared as a function
        pointer (or an array of them) in a struct.

        Every write to such a field is in the facts: an assignment, an initializer, or a copy
        of a record that holds it (and a function stored through any other lvalue is wild).
        A ``void *`` field cast at the call is not, nor is a union member, which another
        member's write may fill.
        """
        e = strip(e)
        while e.kind == K.ARRAY_SUBSCRIPT_EXPR:
            kids = children(e)
            if not kids:
                return False
            e = strip(kids[0])
        if e.kind != K.MEMBER_REF_EXPR:
            return False
        f = e.referenced
        if f is None or f.kind != K.FIELD_DECL:
            return False
        parent = f.semantic_parent
        if parent is None or parent.kind != K.STRUCT_DECL:
            return False
        t = f.type.get_canonical()
        if t.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
            t = t.element_type.get_canonical()
        return _fn_type_of_pointer(t) is not None

    def layout(self, t: ci.Type) -> dict[str, Any] | None:
        """A record's storage as flat leaves, for judging what a cast to another record can
        overwrite: ``{"leaves": [[offset_bits, size_bits, record, field, tracked]...]}``.

        Embedded records (and anonymous members) are opened, so a leaf is named by the
        (record, field) layer a write to it is recorded under.  ``tracked``: the leaf is a
        slot calls are resolved through (a function pointer, a pointer to a record holding
        them, or an array of those).  An array of records holding function pointers is one
        leaf without a name (its elements' slots are not told apart).  None: the record is
        incomplete here or has no fixed layout.
        """
        c = t.get_canonical()
        if c.kind != TK.RECORD:
            return None
        decl = c.get_declaration()
        hit = self._layouts.get(decl.hash, False)
        if hit is not False:
            return hit
        leaves: list[list[Any]] = []
        ok = self._flatten(c, 0, leaves, 0)
        out = {"leaves": sorted(leaves, key=_leaf_order)} if ok else None
        self._layouts[decl.hash] = out
        return out

    def _flatten(self, t: ci.Type, base: int, leaves: list[list[Any]], depth: int) -> bool:
        if depth > 12 or t.get_declaration().get_definition() is None:
            return False
        for f in t.get_fields():
            off = f.get_field_offsetof()
            if off < 0:
                return False
            ft = f.type.get_canonical()
            if ft.kind == TK.RECORD:
                # Every embedded record is opened (not only those has_fnptr_fields finds
                # within its depth limit): a slot deep inside must not hide in a plain leaf.
                if not self._flatten(ft, base + off, leaves, depth + 1):
                    return False
                continue
            size = ft.get_size()
            bits = f.get_bitfield_width() if f.is_bitfield() else (
                size * 8 if size >= 0 else 1 << 40)  # a flexible array: to the end
            elem = ft
            while elem.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
                elem = elem.element_type.get_canonical()
            if elem.kind == TK.RECORD:
                # An array of records: one leaf without a field, named by the element record
                # (its elements' slots are not told apart; a pun over it taints that record).
                inner = self.layout(elem)
                leaves.append([base + off, bits, self.record_name(elem.get_declaration()),
                               None, inner is None or any(leaf[4] for leaf in inner["leaves"]),
                               "records"])
                continue
            parent = f.semantic_parent
            tracked = self.tracked_type(elem)
            leaves.append([base + off, bits, self.record_name(parent) if parent else None,
                           f.spelling, tracked, _leaf_kind(elem, tracked)])
        return True

    def note_overlay(self, decl: ci.Cursor) -> None:
        """A union: record its members' leaves when one member's slot lies under another
        member's leaf of another name (``struct key``'s ``index_key.type`` over its anonymous
        struct's ``type``), so resolve knows a write under one name reaches the other.

        Kept in ``layouts`` under ``overlay:<name>``; an anonymous union is named by where it
        sits (its fields are named by the record around it, see :meth:`record_name`).
        """
        t = decl.type.get_canonical()
        if t.kind != TK.RECORD or decl.get_definition() is None:
            return
        if decl.is_anonymous():
            loc = decl.location
            key = f"overlay:{self.record_name(decl)}::(anonymous union at " \
                  f"{self.rel(loc.file)}:{loc.line}:{loc.column})"
        else:
            key = f"overlay:union {decl.spelling}"
        layouts = self.sink["layouts"]
        if key in layouts:
            return
        leaves: list[list[Any]] = []
        if not self._flatten(t, 0, leaves, 0):
            return  # a member without a fixed layout (a flexible array): not judged
        if _overlaid_slots(leaves):
            layouts[key] = {"leaves": sorted(leaves, key=_leaf_order)}

    def lvalue_kind(self, e: ci.Cursor, t: ci.Type) -> str:
        """What an assignment of type ``t`` writes: ``var`` (a variable) or ``field`` (a struct
        field) declared with that very type, else ``other``.

        A function's address stored into an ``unsigned long`` or ``void *`` declared as such
        (``ip = (unsigned long)ftrace_caller``) comes back into a function-pointer slot only
        as a value the facts cannot follow, which leaves that slot unconfined anyway.  A write
        through a dereference (``*(unsigned long *)&ops->fn = ...``, ``*fnp = f``) or into a
        union member may land in a function-pointer slot unrecorded: ``other``.
        ``WRITE_ONCE(x, v)`` (``*(volatile typeof(x) *)&(x) = v``) writes x itself.
        """
        e = strip(e)
        if e.kind == K.UNARY_OPERATOR and _lib.clang_getCursorUnaryOperatorKind(e) == UO_DEREF:
            kids = children(e)
            inner = strip(kids[0]) if kids else e
            if inner.kind == K.UNARY_OPERATOR and \
                    _lib.clang_getCursorUnaryOperatorKind(inner) == UO_ADDROF and \
                    (addressed := children(inner)):
                e = strip(addressed[0])
        ref = e.referenced if e.kind in (K.DECL_REF_EXPR, K.MEMBER_REF_EXPR) else None
        if ref is None:
            return "other"
        if ref.kind in (K.VAR_DECL, K.PARM_DECL) and e.kind == K.DECL_REF_EXPR:
            kind = "var"
        elif ref.kind == K.FIELD_DECL and ref.semantic_parent is not None and \
                ref.semantic_parent.kind == K.STRUCT_DECL:
            kind = "field"
        else:
            return "other"
        return kind if _unqualified(ref.type) == _unqualified(t) else "other"

    def return_var(self, call: ci.Cursor) -> str | None:
        """``F#ret``: what a direct call of F returns, when of tracked type (``ops =
        find_ops(type)``); F's return statements store into it."""
        ref = call.referenced
        if ref is None or ref.kind != K.FUNCTION_DECL or ref.spelling.startswith("__builtin_"):
            return None
        kids = children(call)
        callee = strip(kids[0]) if kids else None
        if callee is None or callee.kind != K.DECL_REF_EXPR:
            return None  # a call through a pointer: no single F
        if not self.tracked_type(ref.result_type):
            return None
        return f"{self.fn_ident(ref)[0]}#ret"

    def local_var_id(self, ref: ci.Cursor) -> str | None:
        """``F#local:NAME:LINE:COL``: the pseudo-variable of a local of tracked type, which
        receives every definition of the local (its initializer and assignments).

        ``rcu_assign_pointer(p, v)`` (include/linux/rcupdate.h) passes ``v`` through the
        ``uintptr_t`` local ``_r_a_p__v``: followed too, or every RCU-published ops pointer
        would be a non-constant store.
        """
        if self.current is None or not (self.tracked_type(ref.type)
                                         or ref.spelling == "_r_a_p__v"):
            return None
        _, line, col = self.where(ref)
        return f"{self.current[1]}#local:{stable_name(ref.spelling)}:{line}:{col}"

    def fn_ident(self, decl: ci.Cursor) -> tuple[str, str, str]:
        """(id, linkage, rel file of the definition or declaration) of a function decl.

        A function defined in a header is queued for extraction (once per process) and noted as
        a reference of whatever is being extracted now, so link can follow the closure.
        """
        key = decl.canonical.hash
        hit = self._fn_ids.get(key)
        if hit is None:
            d = decl.get_definition() or decl
            name = d.spelling
            linkage = "internal" if d.linkage == ci.LinkageKind.INTERNAL else "external"
            f = self.rel(d.location.file)
            hkey = None
            # Only inline header functions are shared documents; an out-of-line one is
            # emitted (and walked) by each TU that defines it, see _collect_top().
            if d.is_definition() and is_header(f) and _raw.clang_Cursor_isFunctionInlined(d):
                loc = d.location
                hkey = self.header_key(f, loc.line, loc.column, name)
                if hkey not in self.seen_headers and not self.store_has(hkey):
                    self.seen_headers.add(hkey)
                    self._header_queue.append((hkey, d))
            hit = (function_id(name, linkage, f), linkage, f, hkey)
            self._fn_ids[key] = hit
            # The declared type: a function defined in assembly has no definition to read it
            # from, and type-based resolution needs it for every address-taken function.
            self.fn_types[hit[0]] = _canon(d.type)
        if hit[3] is not None:
            self.sink["header_functions"].append(hit[3])
        return hit[0], hit[1], hit[2]

    @staticmethod
    def decl_name(d: ci.Cursor) -> str:
        """A variable's name in an object id: its spelling, but ``__UNIQUE_ID_x<counter>``
        (``__ADDRESSABLE``'s static locals, ``read_seqbegin_or_lock``'s local) is
        :func:`stable_name` plus its line:col, which keeps apart what the counter did."""
        name = d.spelling
        if (stable := stable_name(name)) != name:
            loc = d.location
            return f"{stable}:{loc.line}:{loc.column}"
        return name

    def var_ident(self, decl: ci.Cursor) -> str:
        d = decl.get_definition() or decl
        internal = d.linkage == ci.LinkageKind.INTERNAL or d.linkage == ci.LinkageKind.NO_LINKAGE
        f = self.rel(d.location.file)
        name = self.decl_name(d)
        if d.semantic_parent is not None and d.semantic_parent.kind == K.FUNCTION_DECL:
            return f"{d.semantic_parent.spelling}.{name}@{f}"  # a function's static local
        return f"{name}@{f}" if internal else name

    # ---- header functions ----------------------------------------------------------------

    def header_key(self, rel_file: str, line: int, col: int, name: str) -> str:
        h = hashlib.sha256(
            f"{FACTS_SCHEMA}|{EXTRACTOR_VERSION}|{rel_file}|{line}|{col}|{name}|"
            f"{self.file_hash(rel_file)}|{self.header_context}".encode()
        ).hexdigest()
        return "h" + h[:40]

    # ---- top level -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        main_text = self.text_of(self.main_file)
        # Compare CXFile pointers of expansion locations: a function made by a macro
        # (BPF_CALL_x) is *spelled* in filter.h but *expanded* in the main file.
        main_ptr = self._file_ptr(self.main_file)
        top = _TopLevel()
        top.tu, top.fptr = self.tu, ctypes.c_void_p()
        top.wanted = {main_ptr}
        if _INCLUDES_C_RE.search(main_text):  # walking every inclusion costs ~7 ms per TU
            top.wanted |= {self._file_ptr(f) for f in self._included_c_files()}
        top.wanted.discard(None)
        top.other_files = len(top.wanted) > 1
        top.lo = top.hi = 0
        if main_ptr is not None and main_text:
            top.lo = _raw.clang_getLocationForOffset(self.tu.obj, main_ptr, 0).int_data
            top.hi = _raw.clang_getLocationForOffset(self.tu.obj, main_ptr, len(main_text)).int_data
        if not top.lo or top.hi <= top.lo:  # no range: every location asks for its file
            top.lo, top.hi, top.other_files = 1, 0, True
        _raw.clang_visitChildren(self.tu.cursor, _COLLECT_TOP, top)
        for c in top:
            if c._kind_id == _FUNCTION_DECL:
                self.sink["functions"].append(self.function(c))
            elif c._kind_id == _STRUCT_DECL:
                self.main_record(c)
            else:
                self.global_var(c)
        if BTF_TEXT_RE.search(main_text):
            self.btf_sets()
        self._drain_headers()
        self._finish_bpf()
        for d in [self.doc, *self.header_docs]:
            for at in d["address_taken"]:
                at["type"] = self.fn_types.get(at["id"])
        self.doc["header_functions"] = sorted(set(self.doc["header_functions"]))
        return self.doc

    def main_record(self, c: ci.Cursor) -> None:
        """A struct defined here that embeds a record holding slots as its first member
        (``struct bpf_arena { struct bpf_map map; ...}``, kernel/bpf/arena.c): its layout.

        Such a record is often private to its file, so the TU that casts it to the record
        it embeds sees it incomplete (6.12's ``do_misc_fixups``:
        ``(struct bpf_map *)env->prog->aux->arena``); with the layout from here the cast is
        judged like any first-member embedding instead of untrusting both records."""
        t = c.type.get_canonical()
        first = next(iter(t.get_fields()), None)
        if first is None or first.get_field_offsetof() != 0:
            return
        ft = first.type.get_canonical()
        if ft.kind != TK.RECORD or not self.has_tracked_fields(ft):
            return
        name = self.record_of_type(t)
        layouts = self.sink["layouts"]
        if name and not (layouts.get(name) or {}).get("leaves"):
            layouts[name] = self.layout(t)

    def _file_ptr(self, name: str) -> int | None:
        return _raw.clang_getFile(self.tu.obj, name.encode()) or None

    def _included_c_files(self) -> set[str]:
        # kernel/sched/build_policy.c and friends #include whole .c files.
        out = set()
        for inc in self.tu.get_includes():
            n = inc.include.name
            if n.endswith(".c"):
                out.add(n)
        return out

    def _drain_headers(self) -> None:
        while self._header_queue:
            key, d = self._header_queue.pop()
            hdoc: dict[str, Any] = {
                "schema": FACTS_SCHEMA, "kind": "header_function", "key": key,
                "header_functions": [], "objects": [], "stores": [], "copies": [], "casts": [],
                "address_taken": [], "functions": [], "layouts": {},
            }
            saved, self.sink = self.sink, hdoc
            try:
                hdoc["function"] = self.function(d)
            finally:
                self.sink = saved
            del hdoc["functions"]
            hdoc["header_functions"] = sorted(set(hdoc["header_functions"]) - {key})
            self.header_docs.append(hdoc)

    # ---- functions -----------------------------------------------------------------------

    def function(self, c: ci.Cursor) -> dict[str, Any]:
        fid, linkage, f = self.fn_ident(c)
        loc = c.location
        attrs, section = self.attributes(c)
        if "weak" in attrs and linkage == "external":
            linkage = "weak"
        fn: dict[str, Any] = {
            "id": fid, "name": c.spelling, "linkage": linkage, "file": f, "line": loc.line,
            "col": loc.column, "type": _canon(c.type), "attrs": attrs, "section": section,
            "bpf_kfunc": "bpf_kfunc" in attrs, "calls": [],
        }
        body = None
        for ch in children(c):
            if ch.kind == K.COMPOUND_STMT:
                body = ch
        if body is not None:
            saved, self.current = self.current, (c, fid)
            try:
                FunctionWalker(self, fn, c).walk(body)
            finally:
                self.current = saved
        return fn

    def attributes(self, c: ci.Cursor) -> tuple[list[str], str | None]:
        """Attributes from the AST, plus kernel macro names read from the text before the
        declaration's name (``noinstr``, ``__bpf_kfunc``, ``__init``: the AST shows only what
        they expand to)."""
        text = self._text_before_name(c)
        first = c.canonical
        if first != c:
            # 'asmlinkage __visible' may be on the prototype only (a header).
            text = self._text_before_name(first) + b" " + text
        attrs, section = set(), None
        for w in _WORD_RE.findall(text):
            word = w.decode()
            if word in _ATTR_TOKENS:
                attrs.add(_ATTR_TOKENS[word])
            if word in _SECTION_OF:
                section = _SECTION_OF[word]
        if m := _SECTION_RE.search(text):
            section = (m.group(1) or m.group(2)).decode()
        for name, arg in self._printed_attributes(c):
            if name in _CLANG_ATTRS:
                attrs.add(_CLANG_ATTRS[name])
            elif name == "section" and arg and section is None:
                section = arg
        if "always_inline" in attrs or _raw.clang_Cursor_isFunctionInlined(c):
            attrs.add("inline")
        # What the kernel's attribute macros stand for (include/linux/compiler_types.h;
        # __bpf_kfunc since 6.4: include/linux/btf.h).
        if "noinstr" in attrs:
            attrs |= {"noinline", "notrace"}
        if "bpf_kfunc" in attrs:
            attrs |= {"used", "noinline"}
        if section:
            attrs.add("section")
        return sorted(attrs), section

    def _text_before_name(self, c: ci.Cursor) -> bytes:
        """The declaration's text up to its name, from the start of its first line: clang
        leaves an attribute it does not know out of the extent (``__visible`` is GCC's
        ``externally_visible``), so ``__visible noinstr void do_syscall_64(`` starts at
        ``noinstr``."""
        start, name_loc = c.extent.start, c.location
        if start.file is not None and name_loc.file is not None and \
                start.file.name == name_loc.file.name:
            text = self.text_of(start.file.name)
            line_start = text.rfind(b"\n", 0, start.offset) + 1
            return text[line_start:name_loc.offset]
        return b""

    @staticmethod
    def _printed_attributes(c: ci.Cursor) -> list[tuple[str, str | None]]:
        """(name, string argument) of the attributes clang attached to a declaration."""
        if not any(ch.kind.is_attribute() for ch in children(c)):
            return []
        policy = _raw.clang_getCursorPrintingPolicy(c)
        try:
            _raw.clang_PrintingPolicy_setProperty(policy, _POLICY_TERSE_OUTPUT, 1)
            printed = _raw.clang_getCursorPrettyPrinted(c, policy)
            text = _raw.clang_getCString(printed).decode(errors="replace")
        finally:
            _raw.clang_PrintingPolicy_dispose(policy)
        head = text.split("{", 1)[0]
        return [(m.group(1).strip("_"), m.group(2)) for m in _PRINTED_ATTR_RE.finditer(head)]

    # ---- globals and initializers ---------------------------------------------------------

    def global_var(self, c: ci.Cursor) -> None:
        init = var_initializer(c)
        if init is None:
            self._zero_object(c)
            return
        if "__addressable_" in c.spelling and b"EXPORT_" in self.expansion_line(c) and any(
                name == "section" and (arg or "").startswith(".discard")
                for name, arg in self._printed_attributes(c)):
            # EXPORT_SYMBOL*(sym) (include/linux/export.h) makes __ADDRESSABLE(sym)
            # (include/linux/compiler.h): a pointer in .discard.addressable, dropped by the
            # linker, beside the asm __ksymtab entry the module loader reads.  The function
            # is not address-taken at run time; counting it would put every exported function
            # in its type's class.  Other __ADDRESSABLE users stay: initcalls and PCI fixups
            # (include/linux/init.h, pci.h) make the same pointer beside an asm table that is
            # called through (do_one_initcall, pci_do_fixups).
            return
        vid = self.var_ident(c)
        entries: list[dict[str, Any]] = []
        self.initializer(init, c.type, [], entries, vid)
        if not entries and not self._record_with_fnptrs(c.type):
            return
        # An initializer that sets no function-pointer slot (``= { .name = "x" }``, ``= {}``)
        # still defines the object: its slots hold NULL until a store writes them.
        self._object(c, vid, entries)

    def _object(self, c: ci.Cursor, vid: str, entries: list[dict[str, Any]]) -> None:
        loc = c.location
        self.sink["objects"].append({
            "id": vid, "name": stable_name(c.spelling),
            "linkage": "internal" if "@" in vid else "external",
            "type": self.record_of_type(c.type) or _canon(c.type), "file": self.rel(loc.file),
            "line": loc.line, "entries": entries,
        })

    def _record_with_fnptrs(self, t: ci.Type) -> bool:
        """A record (or an array of records) holding function pointers."""
        c = t.get_canonical()
        while c.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
            c = c.element_type.get_canonical()
        return c.kind == TK.RECORD and c.get_declaration().get_definition() is not None and \
            self.has_fnptr_fields(c)

    def _zero_object(self, c: ci.Cursor) -> None:
        """A definition without initializer (``static const struct ethtool_ops
        default_ethtool_ops;``, ``void (*pm_power_off)(void);``): an object whose slots are
        all NULL (a function-pointer variable: NULL itself) but for run-time stores.

        Without it, a slot holding the object's address would hold an object without facts
        (``opaque-object``) and its layer could not confine calls.  kbuild compiles with
        ``-fno-common`` (the top Makefile's KBUILD_CFLAGS in 6.1 and 6.12; every entry of a
        6.1 compile database has it), so a tentative definition defines the object in this
        TU; an ``extern`` declaration does not (its object may be assembly).
        """
        if c.storage_class == ci.StorageClass.EXTERN:
            return
        t = c.type.get_canonical()
        fnptr_array = t.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY) and \
            _fn_type_of_pointer(t.element_type) is not None  # void (*handlers[N])(void);
        if fnptr_array or self._record_with_fnptrs(t) or self.tracked_type(t):
            self._object(c, self.var_ident(c), [])

    def literal_object(self, e: ci.Cursor) -> dict[str, Any]:
        """A compound literal as an object of its own, with its initializer's entries.

        ``.default_domain_ops = &(const struct iommu_domain_ops) { .attach_dev = ... }``
        (drivers/iommu/amd/iommu.c, 6.1) holds the ops every AMD domain gets; ``*p = (struct
        x){ .fn = f }`` copies one.  Named by where it is written (a second one from the same
        macro expansion gets a suffix, in the order the TU is walked).
        """
        oid = self._literals.get(e.hash)
        if oid is not None:
            return {"kind": "object", "id": oid}
        elem = e.type.get_canonical()
        while elem.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
            elem = elem.element_type.get_canonical()
        if not (self.tracked_type(elem) or self.has_tracked_fields(elem)):
            # '(spinlock_t) __SPIN_LOCK_UNLOCKED(x)': nothing a call resolves through.
            return {"kind": "nonconst", "what": "other", "text": "(literal)"}
        f, line, col = self.where(e)
        oid = base = f"(literal at {f}:{line}:{col})"
        n = 1
        while oid in self._literal_ids:
            n += 1
            oid = f"{base}#{n}"
        self._literals[e.hash] = oid
        self._literal_ids.add(oid)
        kids = children(e)
        entries: list[dict[str, Any]] = []
        if kids and kids[-1].kind == K.INIT_LIST_EXPR:
            self.initializer(kids[-1], e.type, [], entries, oid)
        self.sink["objects"].append({
            "id": oid, "name": "(literal)", "linkage": "local",
            "type": self.record_of_type(e.type) or _canon(e.type), "file": f, "line": line,
            "entries": entries})
        return {"kind": "object", "id": oid}

    def initializer(self, e: ci.Cursor, t: ci.Type, path: list[list[Any]],
                    entries: list[dict[str, Any]], obj: str) -> None:
        """Walk an initializer of type ``t``; positional elements are mapped to fields."""
        e = strip(e) if e.kind != K.INIT_LIST_EXPR else e
        tc = t.get_canonical()
        if e.kind == K.INIT_LIST_EXPR:
            if tc.kind == TK.RECORD:
                self._record_init(e, tc, path, entries, obj)
            elif tc.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
                self._array_init(e, tc.element_type, path, entries, obj)
            return
        for value in self.values(e):
            if value["kind"] == "nonconst" and value["what"] == "other" and \
                    not self.tracked_type(tc):
                # A value nothing follows (a string, a number) in a slot no call reads
                # through.  In a function-pointer slot it is kept: the slot is not confined.
                continue
            if value["kind"] == "null" and _fn_type_of_pointer(tc) is None:
                continue
            entries.append({"path": path, "value": value})
            if value["kind"] == "function":
                self.sink["address_taken"].append({
                    "id": value["id"], "context": "init", "where": {"object": obj, "path": path},
                    **self._loc(e)})

    def _record_init(self, e: ci.Cursor, t: ci.Type, path: list[list[Any]],
                     entries: list[dict[str, Any]], obj: str) -> None:
        decl = t.get_declaration()
        rname = self.record_name(decl)
        fields = [f for f in children(decl) if f.kind == K.FIELD_DECL]
        pos = 0
        for el in children(e):
            kids = children(el) if el.kind == K.UNEXPOSED_EXPR else []
            if kids and kids[0].kind == K.MEMBER_REF:
                # Designated: [MEMBER_REF...(implicit '' ones for anonymous members), value].
                designators = [k for k in kids[:-1] if k.kind == K.MEMBER_REF]
                named = [k for k in designators if k.spelling]
                value = kids[-1]
                if not named:
                    continue
                fdecl = named[-1].referenced
                # The first designator tells the position positional elements continue from.
                first = designators[0].referenced
                for i, f in enumerate(fields):
                    if f == first:
                        pos = i + 1
                        break
                if fdecl is None:
                    continue
                owner = self.record_name(fdecl.semantic_parent)
                sub = path + [[owner, named[-1].spelling]]
                self.initializer(value, fdecl.type, sub, entries, obj)
            else:
                if pos >= len(fields):
                    continue
                f = fields[pos]
                pos += 1
                if f.spelling:
                    self.initializer(el, f.type, path + [[rname, f.spelling]], entries, obj)
                else:  # positional init of an anonymous member: its own braces
                    self.initializer(el, f.type, path, entries, obj)

    def _array_init(self, e: ci.Cursor, et: ci.Type, path: list[list[Any]],
                    entries: list[dict[str, Any]], obj: str) -> None:
        for i, el in enumerate(children(e)):
            kids = children(el) if el.kind == K.UNEXPOSED_EXPR else []
            index: int = i
            if len(kids) == 2 and kids[0].kind in (K.INTEGER_LITERAL, K.DECL_REF_EXPR,
                                                   K.UNEXPOSED_EXPR, K.BINARY_OPERATOR):
                # Designated array element '[IDX] = value' (IDX often an enum constant).
                index = -1
                el = kids[1]
            self.initializer(el, et, path + [["[]", index]], entries, obj)

    # ---- values ----------------------------------------------------------------------------

    def values(self, e: ci.Cursor) -> list[dict[str, Any]]:
        """What an expression can evaluate to, for the facts' Value kinds.

        A value read from a source (field, variable, parameter, call) names it only when the
        source's own type is tracked (:meth:`tracked_type`), whatever it is converted to:
        only those sources have every write in the facts.  ``ops = (struct foo_ops *)
        p->priv`` reads a ``void *`` field and is ``other``; ``(void *)probe`` of a function
        pointer parameter still names the parameter.
        """
        return self._values(strip(e))

    def _values(self, e: ci.Cursor) -> list[dict[str, Any]]:
        k = e.kind
        if k == K.COMPOUND_LITERAL_EXPR:
            return [self.literal_object(e)]
        if k == K.UNEXPOSED_EXPR:  # several operands (see strip()): any of them
            out: list[dict[str, Any]] = []
            for ch in children(e):
                for v in self.values(ch):
                    if v not in out:
                        out.append(v)
            return out or [{"kind": "nonconst", "what": "other", "text": ""}]
        if k in (K.UNARY_OPERATOR, K.BINARY_OPERATOR) and _integer_constant(e):
            # A poison constant such as rcu_head_init's (rcu_callback_t)~0L: never a function.
            return [{"kind": "null"}]
        if k == K.DECL_REF_EXPR:
            ref = e.referenced
            if ref is None:
                return [{"kind": "nonconst", "what": "other", "text": stable_name(e.spelling)}]
            rk = ref.kind
            if rk == K.FUNCTION_DECL:
                return [{"kind": "function", "id": self.fn_ident(ref)[0]}]
            if rk == K.PARM_DECL:
                v = {"kind": "nonconst", "what": "param", "text": stable_name(ref.spelling)}
                if pid := self.param_var(ref):
                    v["id"] = pid
                return [v]
            if rk == K.VAR_DECL:
                if self._is_global(ref):
                    rt = ref.type.get_canonical()
                    if rt.kind in (TK.RECORD, TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
                        return [{"kind": "object", "id": self.var_ident(ref)}]
                    if not self.tracked_type(ref.type):
                        return [{"kind": "nonconst", "what": "other", "text": stable_name(ref.spelling)}]
                    return [{"kind": "nonconst", "what": "global", "id": self.var_ident(ref),
                             "text": stable_name(ref.spelling)}]
                v = {"kind": "nonconst", "what": "local", "text": stable_name(ref.spelling)}
                if lid := self.local_var_id(ref):
                    v["id"] = lid
                return [v]
            if rk == K.ENUM_CONSTANT_DECL:
                return [{"kind": "nonconst", "what": "other", "text": stable_name(ref.spelling)}]
            return [{"kind": "nonconst", "what": "other", "text": stable_name(ref.spelling)}]
        if k == K.UNARY_OPERATOR:
            op = _lib.clang_getCursorUnaryOperatorKind(e)
            kids = children(e)
            if op == UO_DEREF and kids:
                # '*(volatile T *)&x' (READ_ONCE, include/asm-generic/rwonce.h) reads x.
                inner = strip(kids[0])
                if inner.kind == K.UNARY_OPERATOR and \
                        _lib.clang_getCursorUnaryOperatorKind(inner) == UO_ADDROF:
                    ik = children(inner)
                    if ik:
                        return self.values(ik[0])
                if (v := self.offset_read(e, inner)) is not None:
                    return [v]
                if inner.type.get_canonical().kind == TK.POINTER and \
                        inner.type.get_canonical().get_pointee().get_canonical().kind in (
                            TK.FUNCTIONPROTO, TK.FUNCTIONNOPROTO):
                    # '*fp' of a function pointer is the function it points to, which
                    # decays back to fp: 6.12's update_static_calls() does
                    # 'static_call_update(apic_call_eoi, *apic->eoi)'
                    # (arch/x86/kernel/apic/init.c).
                    return self.values(inner)
            if op == UO_ADDROF and kids:
                inner = strip(kids[0])
                if inner.kind == K.COMPOUND_LITERAL_EXPR:
                    return [self.literal_object(inner)]
                if inner.kind == K.DECL_REF_EXPR and inner.referenced is not None:
                    ref = inner.referenced
                    if ref.kind == K.FUNCTION_DECL:
                        return [{"kind": "function", "id": self.fn_ident(ref)[0]}]
                    if ref.kind == K.VAR_DECL and self._is_global(ref):
                        return [{"kind": "object", "id": self.var_ident(ref)}]
                if inner.kind == K.ARRAY_SUBSCRIPT_EXPR:
                    base = strip(children(inner)[0])
                    if base.kind == K.DECL_REF_EXPR and base.referenced is not None and \
                            base.referenced.kind == K.VAR_DECL and self._is_global(base.referenced):
                        return [{"kind": "object", "id": self.var_ident(base.referenced)}]
            return [{"kind": "nonconst", "what": "other", "text": ""}]
        if k in (K.INTEGER_LITERAL, K.GNU_NULL_EXPR, K.CXX_NULL_PTR_LITERAL_EXPR):
            return [{"kind": "null"}]
        if k == K.BINARY_OPERATOR and _lib.clang_getCursorBinaryOperatorKind(e) == BO_ASSIGN:
            kids = children(e)  # 'a->lock = a->unlock = f': the value is the right side's
            return self.values(kids[1]) if len(kids) == 2 else \
                [{"kind": "nonconst", "what": "other", "text": ""}]
        if k == K.CONDITIONAL_OPERATOR:
            kids = children(e)
            out: list[dict[str, Any]] = []
            for branch in kids[1:]:
                out += self.values(branch)
            return out
        if k == K.CALL_EXPR:
            if e.spelling == "__symbol_get" and (sym := symbol_get_name(e)):
                return [{"kind": "function", "id": sym}]
            v = {"kind": "nonconst", "what": "call", "text": e.spelling}
            if rid := self.return_var(e):
                v["id"] = rid
            return [v]
        if k in (K.MEMBER_REF_EXPR, K.ARRAY_SUBSCRIPT_EXPR) and not self.tracked_type(e.type):
            # A void * (or integer) slot: its writes are not recorded.
            return [{"kind": "nonconst", "what": "other", "text": stable_name(e.spelling)}]
        if k == K.MEMBER_REF_EXPR:
            layers, base = self.chain(e)
            return [{"kind": "nonconst", "what": "field", "layers": layers, "text": stable_name(e.spelling)}]
        if k == K.ARRAY_SUBSCRIPT_EXPR:
            layers, base = self.chain(e)
            return [{"kind": "nonconst", "what": "field" if layers else base.get("kind", "other"),
                     "layers": layers, "text": "",
                     "base": {k: v for k, v in base.items() if k != "hash"}}]  # run-specific
        return [{"kind": "nonconst", "what": "other", "text": ""}]

    def offsetof_layer(self, e: ci.Cursor) -> dict[str, Any] | None:
        """``offsetof(R, a.f)`` (include/linux/stddef.h: ``__builtin_offsetof``): the record it
        is taken in and the layer of its last member.  libclang shows an OffsetOfExpr as an
        unexposed expression with a type reference and one member reference per component
        (an array index would add an expression: not taken)."""
        e = strip(e)
        if e.kind != K.UNEXPOSED_EXPR:
            return None
        kids = children(e)
        if len(kids) < 2 or kids[0].kind != K.TYPE_REF or \
                any(k.kind != K.MEMBER_REF for k in kids[1:]):
            return None
        outer = self.record_of_type(kids[0].type)
        fld = kids[-1].referenced
        if outer is None or fld is None or fld.kind != K.FIELD_DECL or \
                fld.semantic_parent is None:
            return None
        return {"record": outer, "layer": [self.record_name(fld.semantic_parent), fld.spelling]}

    def offset_read(self, deref: ci.Cursor, address: ci.Cursor) -> dict[str, Any] | None:
        """``*(pm_callback_t *)((void *)ops + cb_offset)``: a function pointer read from a
        record at an offset the caller chose (drivers/base/power/runtime.c
        ``__rpm_get_callback``, 6.1 and 6.12; its callers pass ``offsetof(struct dev_pm_ops,
        runtime_idle)``).  With ``offsetof`` in place it is a field read; with a parameter it
        names the parameter (``offset: F#argI``, whatever its type), whose ``offsetof``
        arguments the direct calls record (Call ``offsetof_args``)."""
        if _fn_type_of_pointer(deref.type.get_canonical()) is None:
            return None
        if address.kind != K.BINARY_OPERATOR or \
                _lib.clang_getCursorBinaryOperatorKind(address) != BO_ADD:
            return None
        kids = children(address)
        if len(kids) != 2:
            return None
        record = self.pointee_record(strip(kids[0]).type)
        if record is None:
            return None
        if (off := self.offsetof_layer(kids[1])) is not None:
            if off["record"] != record:
                return None
            return {"kind": "nonconst", "what": "field", "layers": [off["layer"]],
                    "text": "offsetof"}
        ref = strip(kids[1]).referenced
        if ref is None or ref.kind != K.PARM_DECL or (param := self.param_name(ref)) is None:
            return None
        return {"kind": "nonconst", "what": "offset-read", "record": record, "offset": param,
                "text": ""}

    @staticmethod
    def _is_global(ref: ci.Cursor) -> bool:
        sp = ref.semantic_parent
        if sp is None or sp.kind == K.TRANSLATION_UNIT:
            return True
        return ref.storage_class == ci.StorageClass.STATIC or \
            ref.storage_class == ci.StorageClass.EXTERN

    def chain(self, e: ci.Cursor) -> tuple[list[list[str]], dict[str, Any]]:
        """The (record, field) layers of an lvalue, innermost first, and its base."""
        layers: list[list[str]] = []
        e = strip(e)
        subscript = False
        while True:
            k = e.kind
            if k == K.MEMBER_REF_EXPR:
                f = e.referenced
                kids = children(e)
                if f is not None and f.spelling:
                    layers.append([self.record_name(f.semantic_parent), f.spelling])
                if not kids:
                    return layers, {"kind": "other"}
                e = strip(kids[0])
            elif k == K.ARRAY_SUBSCRIPT_EXPR:
                subscript = True
                e = strip(children(e)[0])
            elif k == K.UNARY_OPERATOR and _lib.clang_getCursorUnaryOperatorKind(e) in (
                    UO_DEREF, UO_ADDROF):
                # '*p' reads what p points to; '*(T *)&x' (READ_ONCE) reads x itself.
                e = strip(children(e)[0])
            elif k == K.DECL_REF_EXPR:
                ref = e.referenced
                if ref is None:
                    return layers, {"kind": "other", "subscript": subscript}
                rk = ref.kind
                if rk == K.PARM_DECL:
                    base = {"kind": "param", "name": stable_name(ref.spelling),
                            "subscript": subscript}
                    if not subscript and (pid := self.param_var(ref)):
                        base["id"] = pid
                    return layers, base
                if rk == K.VAR_DECL:
                    if self._is_global(ref):
                        vid = self.var_ident(ref)
                        is_arr = ref.type.get_canonical().kind in (TK.CONSTANTARRAY,
                                                                   TK.INCOMPLETEARRAY)
                        kind = "array" if (subscript and is_arr and not layers) else (
                            "static" if "@" in vid else "global")
                        return layers, {"kind": kind, "id": vid,
                                        "name": stable_name(ref.spelling),
                                        "subscript": subscript}
                    base = {"kind": "local", "name": stable_name(ref.spelling),
                            "hash": ref.hash, "subscript": subscript}
                    if not subscript and (lid := self.local_var_id(ref)):
                        base["id"] = lid
                    return layers, base
                if rk == K.FUNCTION_DECL:
                    return layers, {"kind": "function", "id": self.fn_ident(ref)[0]}
                return layers, {"kind": "other", "subscript": subscript}
            elif k == K.CALL_EXPR:
                base = {"kind": "call", "text": e.spelling, "subscript": subscript}
                if not subscript and (rid := self.return_var(e)):
                    base["id"] = rid
                return layers, base
            else:
                return layers, {"kind": "other", "subscript": subscript}

    def _loc(self, c: ci.Cursor) -> dict[str, Any]:
        f, line, col = self.where(c)
        return {"file": f, "line": line}

    def where(self, c: ci.Cursor) -> tuple[str, int, int]:
        """(rel file, line, col) of a cursor's expansion location, with a file-name cache."""
        fptr, line, col = ctypes.c_void_p(), ctypes.c_uint(), ctypes.c_uint()
        _raw.clang_getInstantiationLocation(_lib.clang_getCursorLocation(c), ctypes.byref(fptr),
                                            ctypes.byref(line), ctypes.byref(col), None)
        name = self._file_names.get(fptr.value)
        if name is None:
            if fptr.value:
                cx = _raw.clang_getFileName(fptr.value)
                name = self.rel(_raw.clang_getCString(cx).decode())  # cx frees itself
            else:
                name = "<unknown>"
            self._file_names[fptr.value] = name
        return name, line.value, col.value

    # ---- BPF -------------------------------------------------------------------------------

    def btf_sets(self) -> None:
        """Kfunc sets and BTF id lists, read from the main file's text.

        The macros expand to file-scope asm or to nothing (include/linux/btf_ids.h), so the AST
        has no trace of them.  We read the text, minus comments and minus the blocks the
        preprocessor skipped (``#ifdef CONFIG_X`` around a BTF_ID_FLAGS line is honoured; the
        skipped ranges need PARSE_DETAILED_PROCESSING_RECORD, which the parse stage sets for
        TUs whose text mentions these macros).
        """
        text = bytearray(_blank_comments(self.text_of(self.main_file)))
        for start, end in self._skipped_ranges():
            for i in range(start, min(end, len(text))):
                if text[i] != 0x0A:
                    text[i] = 0x20
        current: dict[str, Any] | None = None
        for m in _BTF_MACRO_RE.finditer(bytes(text)):
            name = m.group(1).decode()
            args = [a.strip() for a in m.group(2).decode().split(",")]
            line = text.count(b"\n", 0, m.start()) + 1
            if name in _SET_START:
                current = {"name": args[0] if args else "", "macro": name,
                           "file": self.doc["file"], "line": line, "members": []}
                kfunc = name in ("BTF_SET8_START", "BTF_KFUNCS_START")
                (self.doc["bpf"]["kfunc_sets"] if kfunc else self.doc["bpf"]["id_lists"]).append(
                    current)
                if name == "BTF_ID_LIST_SINGLE" and len(args) >= 3:
                    current["members"].append({"name": args[2], "kind": args[1], "flags": []})
                    current = None
            elif name in _SET_END:
                current = None
            elif current is not None and len(args) >= 2:
                flags = [f.strip() for a in args[2:] for f in a.split("|") if f.strip()]
                current["members"].append({"name": args[1], "kind": args[0], "flags": flags})
        for s in self.doc["bpf"]["kfunc_sets"]:
            s["kfuncs"] = [{"name": m["name"], "flags": m["flags"]} for m in s.pop("members")
                           if m["kind"] == "func"]
        for s in self.doc["bpf"]["id_lists"]:
            s["names"] = [m["name"] for m in s.pop("members")]

    def _skipped_ranges(self) -> list[tuple[int, int]]:
        f = self._file_ptr(self.main_file)
        if not f:
            return []
        lst = _raw.clang_getSkippedRanges(self.tu.obj, f)
        if not lst:
            return []
        out = []
        try:
            for i in range(lst.contents.count):
                r = lst.contents.ranges[i]
                out.append((r.start.offset, r.end.offset))
        finally:
            _raw.clang_disposeSourceRangeList(lst)
        return out

    def _finish_bpf(self) -> None:
        bpf = self.doc["bpf"]
        for obj in self.doc["objects"]:
            if obj["type"] == PROTO_RECORD:
                func = None
                for ent in obj["entries"]:
                    if ent["path"] == [[PROTO_RECORD, "func"]] and ent["value"]["kind"] == "function":
                        func = ent["value"]["id"]
                bpf["protos"].append({"id": obj["id"], "name": obj["name"], "func": func,
                                      "file": obj["file"], "line": obj["line"]})
            elif obj["type"] == VERIFIER_OPS_RECORD:
                gfp = None
                for ent in obj["entries"]:
                    if ent["path"] == [[VERIFIER_OPS_RECORD, "get_func_proto"]] and \
                            ent["value"]["kind"] == "function":
                        gfp = ent["value"]["id"]
                bpf["verifier_ops"].append({"id": obj["id"], "name": obj["name"],
                                            "get_func_proto": gfp})


def _blank_comments(text: bytes) -> bytes:
    """Replace C comments by spaces, keeping offsets and newlines."""
    def blank(m: re.Match[bytes]) -> bytes:
        return bytes(0x0A if ch == 0x0A else 0x20 for ch in m.group(0))
    return _COMMENT_RE.sub(blank, text)


class FunctionWalker:
    """One pass over a function body: calls, address-taken uses, stores, copies, casts."""

    def __init__(self, ex: Extractor, fn: dict[str, Any], decl: ci.Cursor):
        self.ex = ex
        self.fn = fn
        self.sink = ex.sink
        self.fid = fn["id"]
        self.local_defs: dict[int, list[ci.Cursor]] = {}
        self.escaped: set[int] = set()  # locals whose address is taken
        self.local_calls: list[tuple[dict[str, Any], int]] = []
        # indirect calls through two or more layers (fact, call, callee): definite stores
        # may shorten them
        self.path_calls: list[tuple[dict[str, Any], ci.Cursor, ci.Cursor]] = []
        self._stores_from = len(ex.sink["stores"])
        self.offset_casts: set[int] = set()  # casts whose result pointer arithmetic moves
        self.is_proto_fn = _canon(decl.result_type) == PROTO_TYPE
        self.returns_tracked = ex.tracked_type(decl.result_type)
        self.cases: list[dict[str, Any]] = []
        self.fallbacks: set[str] = set()
        self._labels: list[str] | None = None
        self._switch_on_id: list[bool] = []
        self.unlabeled: list[str] = []
        self._label_open = False

    def walk(self, body: ci.Cursor) -> None:
        self.visit(body, None)
        self._apply_definite_stores(body)
        self._apply_local_defs()
        if self.is_proto_fn:
            cases = [c for c in self.cases if c["protos"] or c["calls"]]
            self.ex.doc["bpf"]["proto_switches"].append({
                "function": self.fid, "cases": cases, "fallbacks": sorted(self.fallbacks),
                "unlabeled": self.unlabeled})

    def visit(self, c: ci.Cursor, parent: ci.Cursor | None) -> None:
        k = c.kind
        if k == K.CALL_EXPR:
            self.call(c)
            kids = children(c)
            chosen: list[ci.Cursor] = []
            if kids:
                callee = strip(kids[0])
                while callee.kind == K.UNARY_OPERATOR:
                    inner = children(callee)
                    if not inner:
                        break
                    callee = strip(inner[0])
                chosen = generic_selected(callee)
                # The callee of a direct call is not an address-taken use of it, nor are a
                # _Generic's associations (one is called, the others are not used at all).
                if not (callee.kind == K.DECL_REF_EXPR and callee.referenced is not None and
                        callee.referenced.kind == K.FUNCTION_DECL) and not chosen:
                    self.visit(kids[0], c)
            for other in chosen[1:]:
                # Two associations of the selected type: each may be the one called.
                self.args(other, self.ex.fn_ident(other)[0], kids[1:])
            ref = chosen[0] if chosen else c.referenced
            if (ref is None or ref.kind != K.FUNCTION_DECL) and kids and \
                    callee.kind == K.DECL_REF_EXPR and callee.referenced is not None and \
                    callee.referenced.kind == K.FUNCTION_DECL:
                # '((btf_x)____x)(...)' (BPF_CALL_x, include/linux/filter.h) names no decl,
                # as call() sees: ____x is called directly, and its parameters get these
                # arguments (bpf_find_vma's callback_fn held nothing without them).
                ref = callee.referenced
            if c.spelling == "__symbol_get" and (sym := symbol_get_name(c)):
                # The named function's address is taken here, by name (EXPORT_SYMBOL's
                # __ADDRESSABLE does not count as taking it).
                self.sink["address_taken"].append({
                    "id": sym, "context": "other", "where": {"symbol_get": True},
                    **self.ex._loc(c)})
            callee_id = self.ex.fn_ident(ref)[0] if ref is not None and \
                ref.kind == K.FUNCTION_DECL else None
            if callee_id is not None and not ref.spelling.startswith("__builtin_"):
                self.args(ref, callee_id, kids[1:])
            if ref is not None and ref.spelling in _MEM_COPIES and len(kids) >= 3:
                self.mem_copy(c, kids[1:])
            for i, a in enumerate(kids[1:]):
                self.flow(a, c, "arg", {"callee": callee_id, "index": i})
            return
        if k == K.DECL_REF_EXPR:
            ref = c.referenced
            if ref is not None and ref.kind == K.FUNCTION_DECL:
                self.other_use(c, ref, parent)
            return
        if k == K.BINARY_OPERATOR:
            bo = _lib.clang_getCursorBinaryOperatorKind(c)
            if bo == BO_ASSIGN:
                kids = children(c)
                if len(kids) == 2:
                    target = self.assign(kids[0], kids[1], c)
                    self.visit(kids[0], c)
                    self.flow(kids[1], c, "store", {"target": target})
                    return
            elif bo in (BO_ADD, BO_SUB) and c.type.get_canonical().kind == TK.POINTER:
                # '(struct request *)pdu - 1': the cast's result is moved off the object it
                # was cast from (see cast()).
                for kid in children(c):
                    kid = _unparen(kid)
                    if kid.kind == K.CSTYLE_CAST_EXPR:
                        self.offset_casts.add(kid.hash)
        elif k == K.VAR_DECL:
            self.local_var(c)
            return
        elif k == K.CSTYLE_CAST_EXPR:
            self.cast(c)
        elif k == K.ASM_STMT:
            self.asm(c)
        elif k == K.RETURN_STMT:
            for ch in children(c):
                if self.returns_tracked:
                    self.var_store(f"{self.fid}#ret", "ret", ch, c)
                self.flow(ch, c, "return", {"function": self.fid})
            return
        elif k == K.SWITCH_STMT and self.is_proto_fn:
            # Only a switch on the helper id opens cases; a nested switch on, say,
            # prog->expected_attach_type keeps the BPF_FUNC_ label it sits under
            # (kernel/bpf/cgroup.c: case BPF_FUNC_get_retval: switch (...) { default: ... }).
            kids = children(c)
            on_id = bool(kids) and _canon(strip(kids[0]).type) == "enum bpf_func_id"
            self._switch_on_id.append(on_id)
            for ch in kids:
                self.visit(ch, c)
            self._switch_on_id.pop()
            return
        elif k == K.CASE_STMT and self.is_proto_fn and self._in_id_switch():
            self.case(c)
            return
        elif k == K.DEFAULT_STMT and self.is_proto_fn and self._in_id_switch():
            saved = self._labels
            self._labels = None
            for ch in children(c):
                self.visit(ch, c)
            self._labels = saved
            return
        if k == K.UNARY_OPERATOR and _lib.clang_getCursorUnaryOperatorKind(c) == UO_ADDROF:
            kids = children(c)
            inner = strip(kids[0]) if kids else None
            if inner is not None and inner.kind == K.DECL_REF_EXPR:
                self.escape(inner)
        kids = children(c)
        if k == K.UNEXPOSED_EXPR and len(kids) > 1:
            kids = distinct_children(kids)  # a call in 'a ?: b''s a is one site, not three
        for ch in kids:
            self.visit(ch, c)

    def asm(self, c: ci.Cursor) -> None:
        """An inline asm statement's memory operands of tracked type may be written with its
        other operands of that type: x86's cmpxchg() and xchg() store through asm
        (arch/x86/include/asm/cmpxchg.h: ``"+m" (*__ptr)`` gets ``__new``; 6.1 and 6.12).
        ``rpcauth_register`` puts an ops pointer into ``auth_flavors[]`` that way.

        libclang gives the operands, not their constraints: every memory operand (not a
        plain local or parameter) of tracked type is a target, every other operand of the
        same type a value that may be stored there.
        """
        operands = children(c)
        memory = [k for k in operands if not _plain_local(strip(k))]
        tracked = [k for k in operands if self.ex.tracked_type(k.type)]
        for target in memory:
            if not self.ex.tracked_type(target.type):
                continue
            ttype = _canon(target.type)
            for value in tracked:
                if value is not target and _canon(value.type) == ttype:
                    self.assign(target, value, c)
        if any(not self.ex.tracked_type(m.type) for m in memory):
            # 6.1's 64-bit cmpxchg writes '*(volatile u64 *)ptr': a slot of no tracked type
            # by its name.  Every tracked value operand may land in some unnamed slot.
            loc = self.ex._loc(c)
            for value in tracked:
                if value in memory:
                    continue
                target = self._escaped_target(value.type)
                for v in self.ex.values(value):
                    self.sink["stores"].append({"target": target, "value": v,
                                                "function": self.fid, **loc})

    # ---- locals and parameters as variables -------------------------------------------------

    def var_store(self, var: str, kind: str, rhs: ci.Cursor, at: ci.Cursor) -> None:
        """Every value of ``rhs`` flows into a local's or parameter's pseudo-variable."""
        loc = self.ex._loc(at)
        for v in self.ex.values(rhs):
            v.pop("text", None)
            self.sink["stores"].append({"target": {"var": var, kind: True}, "value": v,
                                        "function": self.fid, **loc})

    def args(self, callee: ci.Cursor, callee_id: str, args: list[ci.Cursor]) -> None:
        """A direct call's arguments of tracked type go into ``callee#argI``: the values a
        setter's parameter may carry into the slot it stores it in (``register_x(&ops)`` →
        ``obj->ops = ops``), or a callback parameter may be called with."""
        for i in self.ex.tracked_params(callee):
            if i < len(args):
                self.var_store(f"{callee_id}#arg{i}", "param", args[i], args[i])

    def escape(self, ref_expr: ci.Cursor) -> None:
        """``&x`` of a local or parameter: it may be written through the pointer, so its
        pseudo-variable gets an unknown value (and a call through it is not confined by its
        single definition)."""
        ref = ref_expr.referenced
        if ref is None:
            return
        var, kind = None, "local"
        if ref.kind == K.VAR_DECL and not Extractor._is_global(ref):
            self.escaped.add(ref.hash)
            var = self.ex.local_var_id(ref)
        elif ref.kind == K.PARM_DECL:
            var, kind = self.ex.param_var(ref), "param"
        if var:
            self.sink["stores"].append({
                "target": {"var": var, kind: True},
                "value": {"kind": "nonconst", "what": "other", "text": "&" + ref.spelling},
                "function": self.fid, **self.ex._loc(ref_expr)})

    # ---- values in context -------------------------------------------------------------------

    def flow(self, e: ci.Cursor, parent: ci.Cursor, context: str, where: dict[str, Any]) -> None:
        """Visit an expression whose value flows into a slot (a store, an argument, a return).

        A function named here is address-taken in that context; a conditional's branches each
        flow; anything else is visited as an ordinary expression.
        """
        w = e
        while w.kind in _TRANSPARENT:  # strip() below would hide casts from cast()
            if w.kind == K.CSTYLE_CAST_EXPR:
                self.cast(w)
            inner = children(w)
            if not inner:
                break
            w = inner[-1]
        s = strip(e)
        k = s.kind
        if k == K.DECL_REF_EXPR or (k == K.UNARY_OPERATOR and
                                    _lib.clang_getCursorUnaryOperatorKind(s) == UO_ADDROF):
            handled = False
            for v in self.ex.values(s):
                if v["kind"] == "function":
                    self.sink["address_taken"].append({
                        "id": v["id"], "context": context, "where": where, **self.ex._loc(s)})
                    handled = True
                elif v["kind"] == "object" and context == "return" and self.is_proto_fn:
                    self._proto_value(v["id"])
            if handled or k == K.DECL_REF_EXPR:
                self._visit_stripped(e)
                return
        elif k == K.CONDITIONAL_OPERATOR:
            self._visit_stripped(e)
            kids = children(s)
            if kids:
                self.visit(kids[0], s)
            for b in kids[1:]:
                self.flow(b, s, context, where)
            return
        elif k == K.CALL_EXPR and context == "return" and self.is_proto_fn:
            self._proto_call(s)
        self.visit(e, parent)

    def _visit_stripped(self, e: ci.Cursor) -> None:
        """Visit what strip() stepped over when only the stripped value was read: the
        statements before a statement expression's value still run (calls, definitions)."""
        for pre in stripped_away(e):
            self.visit(pre, None)

    def other_use(self, c: ci.Cursor, ref: ci.Cursor, parent: ci.Cursor | None) -> None:
        fid = self.ex.fn_ident(ref)[0]
        ctx, where = "other", {}
        if parent is not None and parent.kind == K.CSTYLE_CAST_EXPR:
            ctx, where = "cast", {"to": _canon(parent.type)}
        self.sink["address_taken"].append({"id": fid, "context": ctx, "where": where,
                                           **self.ex._loc(c)})

    # ---- calls ---------------------------------------------------------------------------------

    def call(self, c: ci.Cursor) -> None:
        kids = children(c)
        if not kids:
            return
        f, line, col = self.ex.where(c)
        callee_expr = kids[0]
        target = strip(callee_expr)
        # Also see through '*fp' and '&f' in the callee position: (*fp)(x) calls fp.
        while target.kind == K.UNARY_OPERATOR:
            inner = children(target)
            if not inner:
                break
            target = strip(inner[0])
        site = {"file": f, "line": line, "col": col, "expr": _expr_text(self.ex, callee_expr)}
        if target.kind == K.DECL_REF_EXPR and target.referenced is not None and \
                target.referenced.kind == K.FUNCTION_DECL:
            self._direct_call(target.referenced, kids, site)
            return
        if chosen := generic_selected(target):
            for ref in chosen:
                self._direct_call(ref, kids, site)
            return
        fn_t = _fn_type_of_pointer(callee_expr.type) or _fn_type_of_pointer(target.type)
        layers, base = self.ex.chain(target)
        call = {"kind": "indirect", "fn_type": fn_t.spelling if fn_t is not None else "?",
                "layers": layers, "base": {k: v for k, v in base.items()
                                           if k not in ("hash", "subscript")},
                "subscript": bool(base.get("subscript")), **site}
        if (named := _typedef_name(callee_expr.type)) is not None:
            call["fn_typedef"] = named  # 'bpf_callback_t': see pipeline.resolve
        if layers and self.ex.fnptr_struct_field(target):
            call["slot_fnptr"] = True
        self.fn["calls"].append(call)
        if base.get("kind") == "local" and "hash" in base:
            self.local_calls.append((call, base["hash"]))
        if len(layers) >= 2 and base.get("kind") in ("local", "param"):
            self.path_calls.append((call, c, target))

    def _direct_call(self, ref: ci.Cursor, kids: list[ci.Cursor], site: dict[str, Any]) -> None:
        """A call of the function ``ref`` (a static call's trampoline is an indirect call)."""
        name = ref.spelling
        if name.startswith(("__builtin_", "__sync_", "__atomic_")) or \
                _COMPILETIME_ASSERT_RE.fullmatch(name):
            return
        if name.startswith("__SCT__"):
            # static_call(x)(...) calls the trampoline __SCT__x, which jumps to whatever
            # __SCK__x.func holds: DEFINE_STATIC_CALL's initial function, then each
            # static_call_update(x, f) (include/linux/static_call.h, since 5.10).
            fn_t = _fn_type_of_pointer(ref.type)
            self.fn["calls"].append({
                "kind": "indirect", "fn_type": fn_t.spelling if fn_t is not None else "?",
                "layers": [], "base": {"kind": "static_call", "id": "__SCK__" + name[7:],
                                       "name": name[7:]},
                "subscript": False, **site})
            return
        if name == "__static_call_update":
            self._static_call_update(kids)
        fid = self.ex.fn_ident(ref)[0]
        direct = {"kind": "direct", "callee": fid, "name": name, **site}
        args = kids[1:]
        offsets = {str(i): off for i in self.ex.size_params(ref) if i < len(args)
                   and (off := self.ex.offsetof_layer(args[i])) is not None}
        if offsets:
            direct["offsetof_args"] = offsets
        self.fn["calls"].append(direct)
        if self.is_proto_fn and _canon(ref.result_type) == PROTO_TYPE:
            self._proto_call_id(fid)

    def _static_call_update(self, kids: list[ci.Cursor]) -> None:
        """``__static_call_update(&__SCK__x, tramp, f)``: f now flows into the key's func."""
        if len(kids) < 4:
            return
        keys = [v for v in self.ex.values(kids[1]) if v["kind"] == "object"]
        for key in keys:
            for v in self.ex.values(kids[3]):
                self.sink["stores"].append({
                    "target": {"var": key["id"], "static_call": True}, "value": v,
                    "function": self.fid, **self.ex._loc(kids[0])})

    # ---- stores, copies, casts -------------------------------------------------------------------

    def assign(self, lhs: ci.Cursor, rhs: ci.Cursor, op: ci.Cursor) -> dict[str, Any]:
        """Record a store/copy; returns the target description for address-taken facts."""
        lt = lhs.type.get_canonical()
        s = strip(lhs)
        opaque = {"other": lt.spelling, "lvalue": self.ex.lvalue_kind(s, lt)}
        if lt.kind == TK.RECORD:
            return self.record_assign(lt, s, rhs, op, opaque)
        if s.kind == K.DECL_REF_EXPR and s.referenced is not None and \
                s.referenced.kind == K.VAR_DECL and not Extractor._is_global(s.referenced):
            self.local_defs.setdefault(s.referenced.hash, []).append(rhs)
            if lid := self.ex.local_var_id(s.referenced):
                self.var_store(lid, "local", rhs, op)
                return {"var": lid, "local": True}
        elif s.kind == K.DECL_REF_EXPR and s.referenced is not None and \
                s.referenced.kind == K.PARM_DECL and (pid := self.ex.param_var(s.referenced)):
            # 'if (!ops) ops = &default_ops;': the parameter holds that too.
            self.var_store(pid, "param", rhs, op)
            return {"var": pid, "param": True}
        is_fnptr = _fn_type_of_pointer(lt) is not None
        rec_ptr = lt.kind == TK.POINTER and self.ex.pointee_record(lt) is not None and \
            self.ex.has_fnptr_fields(lt.get_pointee())
        if not (is_fnptr or rec_ptr):
            return opaque
        target = self._target(s)
        if target is None or "local" in target:
            if target is not None and not self._through_pointer(s):
                return target  # an element of a local array: local storage
            # '*pp = n' (notifier_chain_register's rcu_assign_pointer(*nl, n)), '*fnp = f',
            # 'param[i] = ops': a slot no (record, field) or variable names.
            target = self._escaped_target(lt)
        loc = self.ex._loc(op)
        for v in self.ex.values(rhs):
            self.sink["stores"].append({"target": target, "value": v, "function": self.fid, **loc})
        return target

    def _escaped_target(self, t: ci.Type) -> dict[str, Any]:
        """The target of a store of a tracked pointer of type ``t`` into a slot no fact
        names: by the function type or the record it points to."""
        fn_t = _fn_type_of_pointer(t.get_canonical())
        if fn_t is not None:
            return {"escaped": True, "fn_type": _canon(fn_t)}
        return {"escaped": True, "record": self.ex.pointee_record(t)}

    @staticmethod
    def _through_pointer(s: ci.Cursor) -> bool:
        """Whether lvalue ``s`` is reached through a pointer (``*p``, ``p[i]`` of a pointer),
        not a local array's own element."""
        if s.kind == K.ARRAY_SUBSCRIPT_EXPR:
            kids = children(s)
            return not kids or strip(kids[0]).type.get_canonical().kind not in (
                TK.CONSTANTARRAY, TK.INCOMPLETEARRAY)
        return True

    def _target(self, s: ci.Cursor) -> dict[str, Any] | None:
        """What a store to lvalue ``s`` writes, as facts name it (None: facts cannot)."""
        layers, base = self.ex.chain(s)
        if layers:
            return {"layers": layers}
        if base.get("kind") in ("global", "static", "array"):
            return {"var": base["id"]}
        if base.get("kind") == "local":
            return {"local": base.get("name")}
        return None

    def record_assign(self, lt: ci.Type, s: ci.Cursor, rhs: ci.Cursor, op: ci.Cursor,
                      opaque: dict[str, Any]) -> dict[str, Any]:
        """``*a = *b``, ``a->s = b->s``, ``local = *p``: a whole record copied.

        Recorded whatever the destination is: ``*drv = xhci_hc_driver`` (xhci_init_driver)
        fills an object through a parameter.  Resolve stores a known source object's slots
        at their layers, reads a record copied from an unknown one of its own type
        layer-wide, and does not confine one copied from another type.
        """
        target = self._target(s) or opaque
        if s.kind == K.DECL_REF_EXPR and s.referenced is not None and \
                s.referenced.kind == K.VAR_DECL and not Extractor._is_global(s.referenced):
            self.local_defs.setdefault(s.referenced.hash, []).append(rhs)
        if self.ex.has_tracked_fields(lt):
            self.copy(lt, strip(rhs).type, self.ex.values(rhs), target, op)
        return target

    def copy(self, dst_t: ci.Type, src_t: ci.Type | None, src_vals: list[dict[str, Any]],
             target: dict[str, Any], at: ci.Cursor) -> None:
        self.sink["copies"].append({
            "dst_type": self.ex.record_of_type(dst_t),
            "src_type": self.ex.record_of_type(src_t) if src_t is not None else None,
            "src": src_vals[0] if src_vals else {"kind": "nonconst", "what": "other"},
            "dst": target, "function": self.fid, **self.ex._loc(at)})

    def mem_copy(self, call: ci.Cursor, args: list[ci.Cursor]) -> None:
        """``memcpy(dst, src, n)`` (and memmove): a copy of what ``dst`` points to.

        A record holding slots (function pointers, ops pointers) is copied as by ``*dst =
        *src`` (the source's record as the argument had it before the conversion to ``void
        *``; a buffer is no record, and anything may land).  A named function-pointer slot
        filled this way gets a value the facts cannot follow: a non-constant store.  (One
        reached through a plain pointer, ``memcpy(fnp, ...)``, is not recorded.)
        """
        dst, src = strip(args[0]), strip(args[1])
        dt = dst.type.get_canonical()
        if dt.kind != TK.POINTER:
            return
        pointee = dt.get_pointee().get_canonical()
        while pointee.kind in (TK.CONSTANTARRAY, TK.INCOMPLETEARRAY):
            pointee = pointee.element_type.get_canonical()
        if pointee.kind == TK.RECORD:
            if not self.ex.has_tracked_fields(pointee):
                return
            st = src.type.get_canonical()
            src_rec = st.get_pointee() if st.kind == TK.POINTER else None
            vals = self.ex.values(src) if src_rec is not None else []
            self.copy(pointee, src_rec, vals, self._target(dst) or {"other": dt.spelling},
                      call)
        elif _fn_type_of_pointer(pointee) is not None and (target := self._target(dst)) and \
                "local" not in target:
            self.sink["stores"].append({"target": target, "value": {
                "kind": "nonconst", "what": "other", "text": "memcpy"},
                "function": self.fid, **self.ex._loc(call)})

    def local_var(self, c: ci.Cursor) -> None:
        if c.storage_class == ci.StorageClass.STATIC:
            self.ex.global_var(c)  # with or without initializer: an object
            return
        init = var_initializer(c)
        if init is None:
            return
        self.local_defs.setdefault(c.hash, []).append(init)
        if lid := self.ex.local_var_id(c):
            self.var_store(lid, "local", init, c)
        t = c.type.get_canonical()
        if init.kind == K.INIT_LIST_EXPR and t.kind in (TK.RECORD, TK.CONSTANTARRAY):
            # A local ops table: its functions are confined like a global's.
            entries: list[dict[str, Any]] = []
            oid = f"{self.fid}.{self.ex.decl_name(c)}"
            self.ex.initializer(init, c.type, [], entries, oid)
            if entries:
                self.sink["objects"].append({
                    "id": oid, "name": stable_name(c.spelling), "linkage": "local",
                    "type": self.ex.record_of_type(c.type) or _canon(c.type), **self.ex._loc(c),
                    "entries": entries})
            return
        if t.kind == TK.RECORD and init.kind != K.INIT_LIST_EXPR and \
                self.ex.has_tracked_fields(t):
            # 'struct foo_ops ops = *tmpl;': a copy, as by assignment.
            self.copy(t, strip(init).type, self.ex.values(init),
                      {"local": stable_name(c.spelling)}, c)
        self.flow(init, c, "store", {"target": {"local": stable_name(c.spelling)}})

    def cast(self, c: ci.Cursor) -> None:
        kids = children(c)
        if not kids:
            return
        to_t = c.type.get_canonical()
        from_t = kids[-1].type.get_canonical()
        if to_t.kind == TK.VOID:  # '(void)x' discards a value: no type is reinterpreted
            return
        to_rec = self.ex.pointee_record(to_t)
        from_rec = self.ex.pointee_record(from_t)
        if to_rec is None and from_rec is None:
            return
        if to_rec == from_rec:
            return
        operand = _unparen(kids[-1])
        fact = {"from": from_t.spelling, "to": to_t.spelling, "from_record": from_rec,
                "to_record": to_rec, "function": self.fid, **self.ex._loc(c)}
        if c.hash in self.offset_casts or (
                operand.kind == K.BINARY_OPERATOR and
                _lib.clang_getCursorBinaryOperatorKind(operand) in (BO_ADD, BO_SUB)):
            # '(struct scsi_cmnd *)(rq + 1)' (scsi_ioctl_reset), '(struct request *)pdu - 1':
            # a header and its payload allocated together.  The pointer cast from does not
            # point at an object of its record, or the result does not: no object is read
            # as two records.  Kept as a fact, flagged.
            fact["offset"] = True
        elif to_rec is not None and from_rec is not None:
            layouts = self.sink["layouts"]
            for name, t in ((from_rec, from_t), (to_rec, to_t)):
                if name not in layouts:
                    rec = t.get_pointee()
                    lay = self.ex.layout(rec)
                    if lay is None and \
                            rec.get_canonical().get_declaration().get_definition() is None:
                        lay = {"incomplete": True}  # another TU may know it (main_record)
                    layouts[name] = lay
        self.sink["casts"].append(fact)

    def _apply_definite_stores(self, body: ci.Cursor) -> None:
        """``replace_fops(filp, fops); filp->f_op->open(...)``: read the call through the value
        every path stored into ``filp->f_op`` just before (see :mod:`pipeline.definite`)."""
        if not self.path_calls:
            return
        stored = {tuple(tuple(lay) for lay in st["target"]["layers"])
                  for st in self.sink["stores"][self._stores_from:]
                  if st.get("function") == self.fid and (st.get("target") or {}).get("layers")}
        calls = [(call, c, target) for call, c, target in self.path_calls
                 if any(tuple(tuple(lay) for lay in call["layers"][k:]) in stored
                        for k in range(1, len(call["layers"])))]
        if not calls:
            return
        from pipeline.definite import DefiniteStores  # it imports this module
        found = DefiniteStores(self.ex, body, [(c, target) for _, c, target in calls]).run()
        for call, c, _ in calls:
            hit = found.get(c.hash)
            if hit is None:
                continue
            k, value = hit
            layers, base = self.ex.chain(value)
            if base.get("kind") not in ("local", "param", "global", "static", "call") or \
                    base.get("subscript"):
                continue
            self.local_calls = [(lc, h) for lc, h in self.local_calls if lc is not call]
            call["layers"] = call["layers"][:k] + layers
            call["base"] = {key: v for key, v in base.items() if key not in ("hash", "subscript")}
            call["base"]["via_store"] = self.ex.where(value)[1]
            if base.get("kind") == "local" and "hash" in base:
                self.local_calls.append((call, base["hash"]))

    def _apply_local_defs(self) -> None:
        """``ops = dev->netdev_ops; ops->ndo_start_xmit(...)``: extend the call's layers."""
        for call, h in self.local_calls:
            defs = self.local_defs.get(h, [])
            if len(defs) != 1 or h in self.escaped:
                call["base"]["defs"] = len(defs)
                continue
            d = strip(defs[0])
            if d.kind not in (K.MEMBER_REF_EXPR, K.ARRAY_SUBSCRIPT_EXPR, K.DECL_REF_EXPR):
                call["base"]["defs"] = 1
                continue
            layers, base = self.ex.chain(d)
            if not call["layers"] and layers and self.ex.fnptr_struct_field(d):
                call["slot_fnptr"] = True
            call["layers"] = call["layers"] + layers
            via_store = call["base"].get("via_store")
            call["base"] = {k: v for k, v in base.items() if k not in ("hash", "subscript")}
            call["base"]["via_local"] = True
            if via_store is not None:
                call["base"]["via_store"] = via_store

    # ---- bpf_func_proto switches ----------------------------------------------------------------

    def case(self, c: ci.Cursor) -> None:
        kids = children(c)
        if not kids:
            return
        label = strip(kids[0])
        name = label.spelling if label.kind == K.DECL_REF_EXPR else None
        if self._labels is None or not self._label_open:
            self._labels = []
            self.cases.append({"ids": self._labels, "protos": [], "calls": []})
        if name and name.startswith("BPF_FUNC_"):
            self._labels.append(name)
        self._label_open = True
        for ch in kids[1:]:
            if ch.kind == K.CASE_STMT:
                self.case(ch)
            else:
                self._label_open = False
                self.visit(ch, c)

    def _in_id_switch(self) -> bool:
        return bool(self._switch_on_id) and self._switch_on_id[-1]

    def _current_case(self) -> dict[str, Any] | None:
        return self.cases[-1] if self._labels is not None and self.cases else None

    def _proto_value(self, obj_id: str) -> None:
        cur = self._current_case()
        if cur is not None:
            if obj_id not in cur["protos"]:
                cur["protos"].append(obj_id)
        elif obj_id not in self.unlabeled:
            # Returned outside a 'case BPF_FUNC_x:' (under default:, or after an
            # 'if (func_id == BPF_FUNC_x)'): kept, with no id attached.
            self.unlabeled.append(obj_id)

    def _proto_call(self, call: ci.Cursor) -> None:
        ref = call.referenced
        if ref is not None and ref.kind == K.FUNCTION_DECL:
            self._proto_call_id(self.ex.fn_ident(ref)[0])

    def _proto_call_id(self, fid: str) -> None:
        cur = self._current_case()
        if cur is not None:
            if fid not in cur["calls"]:
                cur["calls"].append(fid)
        else:
            self.fallbacks.add(fid)


def _expr_text(ex: Extractor, e: ci.Cursor) -> str:
    """The callee expression as written (from the file, at its expansion site)."""
    ext = e.extent
    s, t = ext.start, ext.end
    if s.file is None or t.file is None or s.file.name != t.file.name or t.offset <= s.offset:
        return stable_name(e.spelling)
    text = ex.text_of(s.file.name)[s.offset:t.offset]
    if len(text) > 200:
        return stable_name(e.spelling)
    return " ".join(text.decode(errors="replace").split())
