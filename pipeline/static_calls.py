"""Static calls updated through a key the facts cannot name.

Models the users of ``__static_call_update()`` (include/linux/static_call.h) that pass the key
through a struct field instead of ``&STATIC_CALL_KEY(x)``, so that no store fact names the
key they re-point:

- ``tracepoint_update_call()`` (kernel/tracepoint.c, 6.1 and 6.12): ``tp->static_call_key``,
  covered by :mod:`pipeline.tracepoints`;
- ``bpf_dispatcher_update()`` (kernel/bpf/dispatcher.c, 6.1 and 6.12): ``d->sc_key`` of a
  ``struct bpf_dispatcher`` (``DEFINE_BPF_DISPATCHER(xdp)``) is pointed at the dispatcher
  image the BPF JIT writes, which calls the attached programs' ``bpf_func`` directly: the key
  ``__SCK__bpf_dispatcher_<name>_call`` reaches JITed BPF code besides
  ``bpf_dispatcher_nop_func``;
- ``lsm_static_call_init()`` (security/security.c, since Linux 6.12, which made LSM hooks
  static calls; 6.1 walks ``security_hook_heads`` lists instead): each LSM hook has ``MAX_LSM_COUNT``
  keys ``__SCK__lsm_static_call_<hook>_<n>``, defined NULL; ``security_add_hooks()`` points
  the first free one at ``hl->hook.lsm_func_addr`` of each ``struct security_hook_list``
  the LSM registers, whose ``LSM_HOOK_INIT(<hook>, f)`` (include/linux/lsm_hooks.h) sets
  both ``.scalls = static_calls_table.<hook>`` and ``.hook.<hook> = f``.  So the keys of
  ``<hook>`` hold the functions that ``security_hook_list`` initializers put in the
  ``<hook>`` member of ``union security_list_options``, and nothing else.

Any other caller of ``__static_call_update`` whose update no store fact records
(:func:`unknown_updaters`) may re-point any key: then no static call is confined.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

UPDATE_FUNCTION = "__static_call_update"
# Updaters whose keys the models here (and pipeline.tracepoints) account for.
KNOWN_UPDATERS = frozenset({
    "tracepoint_update_call",  # kernel/tracepoint.c
    "bpf_dispatcher_update",   # kernel/bpf/dispatcher.c
    "lsm_static_call_init",    # security/security.c, 6.12
})

# include/linux/bpf.h: DEFINE_BPF_DISPATCHER(name) -> DEFINE_STATIC_CALL(bpf_dispatcher_<name>_call,
# bpf_dispatcher_nop_func).
DISPATCHER_KEY_RE = re.compile(r"__SCK__bpf_dispatcher_\w+_call$")
# security/security.c (6.12): LSM_STATIC_CALL(HOOK, IDX) lsm_static_call_##HOOK##_##IDX
LSM_KEY_RE = re.compile(r"__SCK__lsm_static_call_(\w+)_(\d+)$")
LSM_HOOK_LIST = "struct security_hook_list"
LSM_HOOK_UNION = "union security_list_options"


def _name(fid: str) -> str:
    return fid.split("@", 1)[0]


def unknown_updaters(direct_edges: Iterable[Mapping[str, Any]],
                     recorded: Iterable[str]) -> list[str]:
    """Callers of ``__static_call_update`` that neither a store fact (``recorded``: the
    functions whose update names its key) nor a model here covers (sorted)."""
    known = set(recorded)
    return sorted({e["src"] for e in direct_edges
                   if e["dst"] == UPDATE_FUNCTION and e["src"] not in known
                   and _name(e["src"]) not in KNOWN_UPDATERS})


def lsm_hook_functions(objects: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """LSM hook name -> the functions ``security_hook_list`` initializers put in that member
    of ``union security_list_options`` (``LSM_HOOK_INIT(file_open, selinux_file_open)``)."""
    out: dict[str, set[str]] = defaultdict(set)
    for obj in objects:
        for entry in obj.get("entries") or ():
            path = entry.get("path") or ()
            value = entry.get("value") or {}
            if len(path) >= 2 and list(path[-2]) == [LSM_HOOK_LIST, "hook"] and \
                    path[-1][0] == LSM_HOOK_UNION and value.get("kind") == "function":
                out[path[-1][1]].add(value["id"])
    return dict(out)
