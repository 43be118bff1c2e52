"""kcg: a kernel callgraph pipeline.

Turns a kernel version into the callgraph rooted at every BPF helper and kfunc, with each
function's stack frame and the worst-case stack depth below each root.  The stages (source,
build, parse, link, resolve, roots, annotate, emit) hand off only through files in the output
directory; see :mod:`pipeline.runner`.
"""

__version__ = "0.1.0"
