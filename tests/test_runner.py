"""The stage runner: manifests, skipping fresh stages, --force, the output lock, interruptions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import pipeline
from pipeline import stages as stages_mod
from pipeline.fsutil import KcgError, read_json, sha256_file, sha256_json, write_json
from pipeline.runner import (
    Context,
    NotBuiltError,
    Stage,
    StageResult,
    manifest_path,
    output_lock,
    run_stages,
    stage_input_hash,
)


class Toy:
    """A stage that writes ``<name>.json`` from a value; counts how often it really ran."""

    def __init__(self, name: str, value: object = 1, upstream: str | None = None,
                 fail_with: BaseException | None = None):
        self.name, self.value, self.upstream, self.fail_with = name, value, upstream, fail_with
        self.runs = 0
        self.again: bool | str = False

    def inputs(self, ctx: Context) -> dict:
        d = {"value": self.value}
        if self.upstream:
            d["upstream"] = stage_input_hash(ctx, self.upstream)
        return d

    def run(self, ctx: Context) -> StageResult:
        self.runs += 1
        if self.fail_with is not None:
            ctx.path(f"{self.name}.json").write_text('{"half": ')  # a torn write, then death
            raise self.fail_with
        write_json(ctx.path(f"{self.name}.json"), {"value": self.value})
        return StageResult(outputs=[f"{self.name}.json"], counts={"things": 3},
                           tools={"toy": "1.0"}, summary=["did toy things"])

    @property
    def stage(self) -> Stage:
        return Stage(self.name, self.inputs, self.run, lambda ctx: self.again)


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(out=tmp_path / "out", config=None, jobs=1, progress=False)


def run(ctx: Context, *toys: Toy, **kw) -> tuple[list[str], list[str]]:
    """Run the toys; return (status per stage, log lines)."""
    lines: list[str] = []
    rows = run_stages(ctx, [t.stage for t in toys], log=lines.append, **kw)
    return [status for _, status, _ in rows], lines


def test_manifest_records_inputs_outputs_tools_counts_timings(ctx):
    a = Toy("a", value=42)
    statuses, _ = run(ctx, a)
    assert a.runs == 1 and statuses[0].endswith("s")
    man = read_json(manifest_path(ctx, "a"))
    assert man["stage"] == "a"
    assert man["inputs"] == {"value": 42}
    assert man["input_hash"] == sha256_json({"value": 42})
    assert man["outputs"] == {"a.json": sha256_file(ctx.path("a.json"))}
    assert man["counts"] == {"things": 3}
    assert man["tools"]["toy"] == "1.0" and man["tools"]["kcg"] == pipeline.__version__
    assert man["timings"]["seconds"] >= 0
    assert "finished_at" in man


def test_fresh_stage_is_skipped(ctx):
    a = Toy("a")
    run(ctx, a)
    statuses, lines = run(ctx, a)
    assert a.runs == 1
    assert statuses == ["skipped"]
    assert "[a] up to date, skipped" in lines


def test_force_reruns_fresh_stages(ctx):
    a, b = Toy("a"), Toy("b")
    run(ctx, a, b)
    ctx.force = True
    _, lines = run(ctx, a, b)
    assert (a.runs, b.runs) == (2, 2)
    assert "[a] running (forced)" in lines


def test_first_forced_reruns_only_that_stage(ctx):
    a, b = Toy("a"), Toy("b")
    run(ctx, a, b)
    statuses, _ = run(ctx, a, b, first_forced="b")
    assert (a.runs, b.runs) == (1, 2)
    assert statuses[0] == "skipped"


def test_deleted_output_makes_it_rerun(ctx):
    a = Toy("a")
    run(ctx, a)
    ctx.path("a.json").unlink()
    _, lines = run(ctx, a)
    assert a.runs == 2
    assert "[a] running (output a.json missing)" in lines
    assert ctx.path("a.json").exists()


def test_changed_output_makes_it_rerun(ctx):
    a = Toy("a")
    run(ctx, a)
    ctx.path("a.json").write_text('{"value": "edited by hand"}\n')
    _, lines = run(ctx, a)
    assert a.runs == 2 and "[a] running (output a.json changed since)" in lines


def test_changed_inputs_rerun_and_propagate_downstream(ctx):
    a, b, c = Toy("a", value=1), Toy("b", upstream="a"), Toy("c", upstream="b")
    run(ctx, a, b, c)
    a.value = 2  # a's output changes, so b's input (a's output hashes) changes; b's output does not
    statuses, lines = run(ctx, a, b, c)
    assert (a.runs, b.runs, c.runs) == (2, 2, 1)
    assert "[a] running (inputs changed)" in lines and "[b] running (inputs changed)" in lines
    assert statuses[2] == "skipped"


def test_always_run_reason_is_reported(ctx):
    a = Toy("a")
    run(ctx, a)
    a.again = "the tree is the user's"
    _, lines = run(ctx, a)
    assert a.runs == 2 and "[a] running (the tree is the user's)" in lines


def test_missing_upstream_is_a_clear_error(ctx):
    with pytest.raises(KcgError, match=r"the 'a' stage has not run yet \(kcg run --to a\)"):
        run(ctx, Toy("b", upstream="a"))


def test_need_names_the_producing_stage(ctx):
    with pytest.raises(KcgError, match=r"source\.json is missing: run the 'source' stage first"):
        ctx.need("source.json", "source")


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("crash")])
def test_interrupted_stage_leaves_no_manifest_and_resumes(ctx, exc):
    a, b = Toy("a"), Toy("b", fail_with=exc)
    with pytest.raises(type(exc)):
        run(ctx, a, b)
    assert manifest_path(ctx, "a").exists()
    assert not manifest_path(ctx, "b").exists()
    b.fail_with = None
    statuses, lines = run(ctx, a, b)
    assert statuses[0] == "skipped" and (a.runs, b.runs) == (1, 2)
    assert "[b] running (never ran (or was interrupted))" in lines
    assert read_json(ctx.path("b.json")) == {"value": 1}


def test_interrupted_rerun_drops_the_old_manifest(ctx):
    a = Toy("a")
    run(ctx, a)
    a.value, a.fail_with = 2, KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        run(ctx, a)
    # The torn a.json must not pass for the output of the earlier, finished run.
    assert not manifest_path(ctx, "a").exists()


def test_unreadable_manifest_reruns(ctx):
    a = Toy("a")
    run(ctx, a)
    manifest_path(ctx, "a").write_text("{not json")
    _, lines = run(ctx, a)
    assert a.runs == 2 and "[a] running (manifest unreadable)" in lines


HOLD_LOCK = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, f"pid {os.getpid()} on testhost\\n".encode(), 0)
    print("locked", flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def locked_out(ctx):
    """The output directory, locked by another process for the duration of the test."""
    ctx.out.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ctx.out / ".kcg.lock")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_second_run_on_locked_output_fails_clearly(ctx, locked_out):
    a = Toy("a")
    with pytest.raises(KcgError) as exc:
        run(ctx, a)
    msg = str(exc.value)
    assert f"{ctx.out} is in use by another kcg run" in msg
    assert f"pid {locked_out.pid} on testhost" in msg
    assert "another --output directory" in msg
    assert a.runs == 0


def test_lock_is_released_when_the_holder_dies(ctx, locked_out):
    locked_out.kill()
    locked_out.wait()
    a = Toy("a")
    run(ctx, a)
    assert a.runs == 1


def test_lock_is_released_after_a_run_and_after_a_failure(ctx):
    with pytest.raises(RuntimeError), output_lock(ctx.out):
        raise RuntimeError("stage crashed")
    with output_lock(ctx.out):
        assert "pid" in (ctx.out / ".kcg.lock").read_text()


def test_not_built_stage_says_so(ctx):
    stage = stages_mod._not_built("emit", "pipeline/emit.py does not exist")
    with pytest.raises(NotBuiltError, match=r"the 'emit' stage is not built yet"):
        run_stages(ctx, [stage], log=lambda s: None)


def test_registry_order_and_real_stages():
    reg = stages_mod.get_stages()
    assert tuple(reg) == ("source", "build", "parse", "link", "resolve", "roots", "annotate", "emit")
    assert all(reg[n].name == n for n in reg)


@pytest.fixture
def extra_pipeline_dir(tmp_path, monkeypatch):
    """A directory appended to the pipeline package, for modules that exist only in a test."""
    d = tmp_path / "pkg"
    d.mkdir()
    monkeypatch.setattr(pipeline, "__path__", [*pipeline.__path__, str(d)])
    yield d
    for name in [m for m in sys.modules if m.startswith("pipeline.kcgtest_")]:
        del sys.modules[name]


def test_load_stage_distinguishes_missing_modules_from_bugs(extra_pipeline_dir):
    (extra_pipeline_dir / "kcgtest_needs_sibling.py").write_text("import pipeline.kcgtest_nothere\n")
    (extra_pipeline_dir / "kcgtest_no_stage.py").write_text("X = 1\n")
    (extra_pipeline_dir / "kcgtest_broken.py").write_text("import kcgtest_no_such_package\n")
    (extra_pipeline_dir / "kcgtest_ok.py").write_text(textwrap.dedent("""
        from pipeline.runner import Stage, StageResult
        STAGE = Stage("kcgtest_ok", lambda ctx: {}, lambda ctx: StageResult(outputs=[]))
    """))

    def why(name: str) -> str:
        with pytest.raises(NotBuiltError) as exc:
            stages_mod._load_stage(name).run(None)
        return str(exc.value)

    assert "pipeline/kcgtest_absent.py does not exist" in why("kcgtest_absent")
    assert "needs pipeline.kcgtest_nothere, which does not exist" in why("kcgtest_needs_sibling")
    assert "defines no STAGE" in why("kcgtest_no_stage")
    with pytest.raises(ModuleNotFoundError, match="kcgtest_no_such_package"):
        stages_mod._load_stage("kcgtest_broken")
    assert stages_mod._load_stage("kcgtest_ok").name == "kcgtest_ok"

