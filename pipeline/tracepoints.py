"""Tracepoint probes: which functions a tracepoint's static call can reach.

Models ``include/linux/tracepoint.h`` and ``kernel/tracepoint.c`` (Linux 6.1; the same in 6.12),
``include/trace/trace_events.h``, ``include/trace/perf.h`` and ``include/trace/bpf_probe.h``.

``trace_X(...)`` calls ``static_call(tp_func_X)(data, args)``.  The key ``__SCK__tp_func_X`` is
defined with ``__traceiter_X`` (which loops over the registered probes) and
``tracepoint_update_call()`` points it at the only registered probe when there is one.  A probe
reaches ``tracepoint_probe_register*()`` through a ``void *`` parameter, so no field or type fact
follows it; the registration paths are few and each names its tracepoint:

- ``register_trace_X(probe, data)`` / ``register_trace_prio_X(...)``, header inlines made by
  ``DECLARE_TRACE``: the probes are what their callers pass (the pseudo-variable
  ``register_trace_X#arg0``);
- a trace event (``trace_event_reg()``, ``perf_trace_event_reg()``) registers
  ``call->class->probe`` / ``->perf_probe`` of its ``struct trace_event_call`` ``event_X``, whose
  initializer holds ``.tp = &__tracepoint_X`` and ``.class = &event_class_T``;
- a BPF raw tracepoint (``bpf_probe_register()``) registers ``btp->bpf_func`` of the
  ``struct bpf_raw_event_map`` ``__bpf_trace_tp_map_X`` (``.tp = &__tracepoint_X``).

The same probes are what ``__traceiter_X`` (``DEFINE_TRACE_FN``) calls in its loop over
``__tracepoint_X.funcs``.

So the probes of X are the functions in the initializers of the objects that point to
``__tracepoint_X``, and in the objects those point to (one level: the event class), plus what
``register_trace_X`` is called with.  That holds only while these are the only callers of the
registration functions: :func:`unknown_registrars` lists any other, and then the resolver keeps
its sound fallback (every function with the call's parameter list).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

TRACEPOINT_PREFIX = "__tracepoint_"
# DEFINE_TRACE_FN: ``int __traceiter_X(void *__data, proto)`` calls each registered probe
# through ``it_func`` (a ``void *`` read from ``__tracepoint_X.funcs``).
TRACEITER_RE = re.compile(r"__traceiter_(\w+)$")
KEY_PREFIX = "__SCK__tp_func_"

# kernel/tracepoint.c: the functions that add a probe to a tracepoint.
REGISTER_FUNCTIONS = frozenset({
    "tracepoint_probe_register", "tracepoint_probe_register_prio",
    "tracepoint_probe_register_prio_may_exist", "tracepoint_probe_register_may_exist",
})
# Their in-tree callers whose probes the model above covers.  The registration functions
# call each other (kernel/tracepoint.c), which adds no probe.
KNOWN_REGISTRARS = frozenset({
    "trace_event_reg",            # kernel/trace/trace_events.c: class->probe
    "perf_trace_event_reg",       # kernel/trace/trace_event_perf.c: class->perf_probe
    "__bpf_probe_register",       # kernel/trace/bpf_trace.c: btp->bpf_func
    "bpf_probe_register",
}) | REGISTER_FUNCTIONS
REGISTER_TRACE_PREFIXES = ("register_trace_prio_", "register_trace_")


def _name(fid: str) -> str:
    return fid.split("@", 1)[0]


def unknown_registrars(direct_edges: Iterable[Mapping[str, Any]]) -> list[str]:
    """Callers of the registration functions that the model does not cover (sorted)."""
    out = set()
    for e in direct_edges:
        if _name(e["dst"]) in REGISTER_FUNCTIONS:
            caller = _name(e["src"])
            if caller not in KNOWN_REGISTRARS and not caller.startswith(REGISTER_TRACE_PREFIXES):
                out.add(e["src"])
    return sorted(out)


def _entry_values(obj: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for entry in obj.get("entries") or ():
        yield entry.get("value") or {}


def object_probes(objects: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Tracepoint name -> functions in the objects that point to ``__tracepoint_<name>``
    (``event_X``, ``__bpf_trace_tp_map_X``) and in the objects they point to (``event_class_T``).
    """
    referrers: dict[str, set[str]] = defaultdict(set)
    for oid, obj in objects.items():
        for v in _entry_values(obj):
            if v.get("kind") == "object" and str(v.get("id", "")).startswith(TRACEPOINT_PREFIX):
                referrers[v["id"][len(TRACEPOINT_PREFIX):]].add(oid)
    probes: dict[str, set[str]] = {}
    for name, owners in referrers.items():
        funcs: set[str] = set()
        for oid in owners:
            for v in _entry_values(objects[oid]):
                if v.get("kind") == "function":
                    funcs.add(v["id"])
                elif v.get("kind") == "object" and v.get("id") in objects and \
                        not str(v["id"]).startswith(TRACEPOINT_PREFIX):
                    funcs.update(w["id"] for w in _entry_values(objects[v["id"]])
                                 if w.get("kind") == "function")
        probes[name] = funcs
    return probes


def register_trace_params(variables: Iterable[str]) -> dict[str, list[str]]:
    """Tracepoint name -> the pseudo-variables ``register_trace[_prio]_X@header#arg0`` among
    ``variables``: the probes ``register_trace_X`` is called with."""
    out: dict[str, list[str]] = defaultdict(list)
    for var in variables:
        fn, sep, arg = var.rpartition("#")
        if not sep or arg != "arg0":
            continue
        name = fn.split("@", 1)[0]
        for prefix in REGISTER_TRACE_PREFIXES:
            if name.startswith(prefix):
                out[name[len(prefix):]].append(var)
                break
    return dict(out)
