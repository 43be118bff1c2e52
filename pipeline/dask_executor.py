"""Run the parse stage's TU tasks on a Dask distributed cluster (``--executor dask``).

Each task is :func:`pipeline.parse.parse_one`, the same function the local process pool runs, so
results are identical.  Workers must see the kernel tree, the build directory and the facts store
at the same paths as the client (one machine, or a shared filesystem such as NFS mounted at the
same place); they need kcg installed in their Python environment.

Differences from the local pool, said plainly: a worker that crashes is retried by the scheduler
(``distributed.scheduler.allowed-failures``) and then reported as ``KilledWorker``, which we
record as a failed TU; Dask cannot interrupt a running task, so there is no per-TU timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pipeline.facts import failed_tu
from pipeline.fsutil import KcgError


def run_dask(scheduler: str | None, items: list[tuple[dict[str, Any], bool]],
             on_result: Callable[[dict[str, Any], dict[str, Any]], None], store_root: str,
             source_root: str, build_root: str | None) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise KcgError("--executor dask needs the 'distributed' package: "
                       "pip install 'kcg[dask]'") from None
    from pipeline.parse import parse_one

    try:
        client = Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as e:
        raise KcgError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    run = uuid.uuid4().hex[:8]
    try:
        futures = {}
        for task, skip_known in items:
            fut = client.submit(parse_one, task, store_root, source_root, build_root, skip_known,
                                key=f"kcg-parse-{run}-{task['rel']}", pure=False)
            futures[fut] = task
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                result = fut.result()
            except Exception as e:  # KilledWorker, a worker's import error, ...
                result = {"doc": failed_tu(task["rel"], f"dask task failed: {e!r}"[:500]),
                          "headers": [], "includes": []}
            on_result(task, result)
    finally:
        client.close()
