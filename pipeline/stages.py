"""The stage registry: each stage's input fingerprint and run function, in pipeline order."""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.runner import STAGE_ORDER, Context, NotBuiltError, Stage, StageResult


def _not_built(name: str, why: str) -> Stage:
    def run(ctx: Context) -> StageResult:
        raise NotBuiltError(f"the '{name}' stage is not built yet ({why})")

    def inputs(ctx: Context) -> dict[str, Any]:
        return {}

    return Stage(name, inputs, run)


def _load_stage(name: str) -> Stage:
    """``pipeline/<name>.py``'s ``STAGE``, or a stage that says plainly it is not built yet.

    Only a missing *pipeline* module counts as "not built": any other import error (a missing
    third-party package, a bad name imported from a module that exists) is a bug and is raised.
    """
    module = f"pipeline.{name}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            return _not_built(name, f"pipeline/{name}.py does not exist")
        if e.name and e.name.startswith("pipeline."):
            return _not_built(name, f"pipeline/{name}.py needs {e.name}, which does not exist")
        raise
    stage = getattr(mod, "STAGE", None)
    if not isinstance(stage, Stage):
        return _not_built(name, f"pipeline/{name}.py defines no STAGE")
    return stage


def get_stages() -> dict[str, Stage]:
    from pipeline import build, source

    stages: dict[str, Stage] = {
        "source": Stage("source", source.source_inputs, source.run_source),
        "build": Stage("build", build.build_inputs, build.run_build, build.build_always_run),
    }
    for name in STAGE_ORDER[2:]:
        stages[name] = _load_stage(name)
    assert tuple(stages) == STAGE_ORDER
    return stages
