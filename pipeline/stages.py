"""The stage registry: each stage's input fingerprint and run function, in pipeline order."""

from __future__ import annotations

from typing import Any

from pipeline.runner import STAGE_ORDER, Context, NotBuiltError, Stage, StageResult


def _not_built(name: str, issue: str):
    def run(ctx: Context) -> StageResult:
        raise NotBuiltError(f"the '{name}' stage is not built yet ({issue})")

    def inputs(ctx: Context) -> dict[str, Any]:
        return {}

    return Stage(name, inputs, run)


def get_stages() -> dict[str, Stage]:
    from pipeline import build, source

    stages: dict[str, Stage] = {
        "source": Stage("source", source.source_inputs, source.run_source),
        "build": Stage("build", build.build_inputs, build.run_build, build.build_always_run),
    }
    later = {
        "parse": "parse.py", "link": "link.py", "resolve": "resolve.py", "roots": "roots.py",
        "annotate": "annotate.py", "emit": "emit.py",
    }
    for name, module in later.items():
        try:
            mod = __import__(f"pipeline.{module[:-3]}", fromlist=["STAGE"])
            stages[name] = mod.STAGE
        except ImportError:
            stages[name] = _not_built(name, f"pipeline/{module} does not exist")
    assert tuple(stages) == STAGE_ORDER
    return stages
