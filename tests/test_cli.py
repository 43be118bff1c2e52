"""The command line: option errors, direct-tree mode, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import stages as stages_mod
from pipeline.cli import main
from pipeline.fsutil import read_json
from pipeline.runner import STAGE_ORDER

REPO = Path(__file__).resolve().parent.parent


def argparse_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("argv", "words"), [
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "--from", "nosuch"], "argument --from: invalid choice: 'nosuch'"),
    (["run", "--to", "linking"], "argument --to: invalid choice: 'linking'"),
    (["build", "--from", "parse"], "unrecognized arguments: --from parse"),
    (["source", "--to", "build"], "unrecognized arguments: --to build"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["run", "--jobs", "two"], "argument --jobs/-j: invalid int value: 'two'"),
    ([], "the following arguments are required: command"),
])
def test_unknown_options_and_stages(capsys, argv, words):
    assert words in argparse_error(capsys, argv)


def test_every_stage_has_a_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in (*STAGE_ORDER, "run"):
        assert name in out


def kcg_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "kcg: error: " in err, err
    return err


@pytest.mark.parametrize(("argv", "words"), [
    (["run", "--source", "tree", "--output", "o"],
     "direct-tree mode needs both --source DIR and --compile-commands FILE"),
    (["run", "--compile-commands", "cc.json", "--output", "o"],
     "direct-tree mode needs both --source DIR and --compile-commands FILE"),
    (["run", "--source", "tree", "--compile-commands", "cc.json"], "direct-tree mode needs --output DIR"),
    (["run", "--config", "configs/bpf-core.yaml", "--source", "tree", "--compile-commands", "cc.json",
      "--output", "o"], "--config and direct-tree mode (--source/--compile-commands) exclude each other"),
    (["run", "--config", "configs/bpf-core.yaml", "--stack-usage", "su"],
     "--stack-usage belongs to direct-tree mode"),
    (["run", "--config", "configs/bpf-core.yaml", "--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["run", "--config", "configs/bpf-core.yaml", "--from", "emit", "--to", "source"],
     "--from emit comes after --to source"),
    (["run", "--config", "configs/bpf-core.yaml", "--executor", "dask"],
     "--executor dask needs --scheduler ADDRESS"),
])
def test_argument_errors(capsys, monkeypatch, tmp_path, argv, words):
    monkeypatch.chdir(REPO)
    argv = [a if a != "o" else str(tmp_path / "o") for a in argv]
    assert words in kcg_error(capsys, argv)
    assert not (tmp_path / "o").exists()  # nothing written on a usage error


def test_config_errors_reach_the_user_with_file_and_key(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: {debian_package: linux-source-6.1}\narch: x86_64\n"
                   "kconfig: {}\nbuild: {compiler: tcc}\n")
    err = kcg_error(capsys, ["run", "--config", str(bad), "--output", str(tmp_path / "o")])
    assert f"{bad}: build.compiler: expected one of gcc, clang, got 'tcc'" in err
    err = kcg_error(capsys, ["run", "--config", str(tmp_path / "none.yaml")])
    assert f"{tmp_path / 'none.yaml'}: config file not found" in err


def test_default_config_and_output_dir(monkeypatch, tmp_path):
    from pipeline.cli import build_parser, make_context

    monkeypatch.chdir(REPO)
    ctx = make_context(build_parser().parse_args(["run"]))
    assert ctx.config is not None and ctx.config.name == "default"
    assert ctx.out == REPO / "outputs" / "default"
    assert ctx.jobs >= 1
    ctx = make_context(build_parser().parse_args(
        ["run", "--config", "configs/bpf-core.yaml", "--output", str(tmp_path), "-j", "3", "--force"]))
    assert (ctx.out, ctx.jobs, ctx.force) == (tmp_path, 3, True)


@pytest.fixture
def fake_tree(tmp_path) -> dict[str, Path]:
    """A prebuilt 'tree': a compile database with two kernel TUs and a host tool, one .su file."""
    src, bdir = tmp_path / "src", tmp_path / "build"
    (src / "kernel").mkdir(parents=True)
    (bdir / "kernel").mkdir(parents=True)
    for f in ("a.c", "b.c"):
        (src / "kernel" / f).write_text("int f(void) { return 0; }\n")
    (bdir / "kernel" / "a.o").write_bytes(b"")
    (bdir / "kernel" / "a.su").write_text("kernel/a.c:1:5:f\t16\tstatic\n")
    db = [
        {"directory": str(bdir), "file": str(src / "kernel/a.c"),
         "command": f"gcc -D__KERNEL__ -fstack-usage -c -o kernel/a.o {src / 'kernel/a.c'}"},
        {"directory": str(bdir), "file": str(src / "scripts/tool.c"),
         "command": f"gcc -O2 -o scripts/tool {src / 'scripts/tool.c'}"},
        {"directory": str(bdir), "file": str(src / "kernel/b.c"),
         "arguments": ["gcc", "-D__KERNEL__", "-c", "-o", "kernel/b.o", str(src / "kernel/b.c")]},
    ]
    cc = tmp_path / "compile_commands.json"
    cc.write_text(json.dumps(db))
    return {"src": src, "build": bdir, "cc": cc, "out": tmp_path / "out"}


def direct(t: dict[str, Path], *extra: str) -> list[str]:
    return ["run", "--source", str(t["src"]), "--compile-commands", str(t["cc"]),
            "--output", str(t["out"]), "--to", "build", *extra]


def test_direct_tree_mode_imports_kernel_tus_and_su_files(capsys, fake_tree):
    t = fake_tree
    assert main(direct(t)) == 0
    out = capsys.readouterr()
    assert "direct tree: 2 TUs, 1 .su files" in out.out
    cc = read_json(t["out"] / "compile_commands.json")
    assert [Path(e["file"]).name for e in cc] == ["a.c", "b.c"]  # the host tool is dropped
    su = read_json(t["out"] / "stack_usage.json")
    assert su == {"files": [str(t["build"] / "kernel/a.su")],
                  "tus_without_su": [str(t["src"] / "kernel/b.c")]}
    source = read_json(t["out"] / "source.json")
    assert source["kind"] == "direct" and source["path"] == str(t["src"])
    assert read_json(t["out"] / "build.json")["direct"] is True
    assert (t["out"] / "manifests" / "build.json").is_file()


def test_direct_tree_mode_with_stack_usage_dir(capsys, fake_tree):
    t = fake_tree
    mirror = t["src"].parent / "su"
    (mirror / "kernel").mkdir(parents=True)
    (mirror / "kernel" / "b.su").write_text("kernel/b.c:1:5:f\t32\tstatic\n")
    assert main(direct(t, "--stack-usage", str(mirror))) == 0
    su = read_json(t["out"] / "stack_usage.json")
    assert su["files"] == sorted([str(t["build"] / "kernel/a.su"), str(mirror / "kernel/b.su")])
    assert su["tus_without_su"] == []
    # A rerun with the same inputs is skipped; a changed compile database is re-imported.
    assert main(direct(t, "--stack-usage", str(mirror))) == 0
    assert "[build] up to date, skipped" in capsys.readouterr().err
    t["cc"].write_text(json.dumps(json.loads(t["cc"].read_text())[:1]))
    assert main(direct(t, "--stack-usage", str(mirror))) == 0
    assert "[build] running (inputs changed)" in capsys.readouterr().err
    assert len(read_json(t["out"] / "compile_commands.json")) == 1


@pytest.mark.parametrize(("breakage", "words"), [
    ("no-source", "--source {src}: no such directory"),
    ("no-cc", "--compile-commands {cc}: no such file"),
    ("bad-json", "{cc}: not a JSON compile database"),
    ("not-list", "{cc}: a compile database is a JSON list of entries"),
    ("no-kernel-tus", "{cc}: no kernel translation units"),
    ("no-su-dir", "--stack-usage {src}/nowhere: no such directory"),
])
def test_direct_tree_mode_bad_input(capsys, fake_tree, breakage, words):
    t = fake_tree
    extra: list[str] = []
    if breakage == "no-source":
        t["src"] = t["src"].parent / "missing-tree"
    elif breakage == "no-cc":
        t["cc"].unlink()
    elif breakage == "bad-json":
        t["cc"].write_text("[{")
    elif breakage == "not-list":
        t["cc"].write_text("{}")
    elif breakage == "no-kernel-tus":
        t["cc"].write_text(json.dumps([json.loads(t["cc"].read_text())[1]]))
    elif breakage == "no-su-dir":
        extra = ["--stack-usage", str(t["src"] / "nowhere")]
    err = kcg_error(capsys, direct(t, *extra))
    assert words.format(src=t["src"], cc=t["cc"]) in err
    assert not (t["out"] / "manifests" / "build.json").exists()


def test_stage_not_built_yet_exits_3(capsys, monkeypatch, fake_tree):
    real = stages_mod.get_stages

    def with_unbuilt():
        reg = real()
        reg["parse"] = stages_mod._not_built("parse", "pipeline/parse.py does not exist")
        return reg

    monkeypatch.setattr(stages_mod, "get_stages", with_unbuilt)
    argv = direct(fake_tree)
    argv[argv.index("--to") + 1] = "parse"
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "kcg: the 'parse' stage is not built yet (pipeline/parse.py does not exist)" in err
    # The stages before it ran and were recorded.
    assert (fake_tree["out"] / "manifests" / "build.json").is_file()
    assert not (fake_tree["out"] / "manifests" / "parse.json").exists()


def test_missing_pipeline_module_command_exits_3(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pipeline.query", None)  # as if pipeline/query.py were absent
    assert main(["query", "--db", "x.sqlite", "roots"]) == 3
    assert "'query' is not built yet (pipeline.query does not exist)" in capsys.readouterr().err


def test_locked_output_dir_through_the_cli(capsys, fake_tree):
    out = fake_tree["out"]
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,os,sys; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(out / ".kcg.lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = kcg_error(capsys, direct(fake_tree))
        assert f"{out} is in use by another kcg run" in err
    finally:
        holder.kill()
        holder.wait()
    assert main(direct(fake_tree)) == 0


def test_python_dash_m_and_console_script_agree(kcg):
    r = kcg("--help")
    assert r.returncode == 0 and "kcg" in r.stdout
    script = Path(sys.executable).parent / "kcg"
    if script.exists():  # the venv's console script, as the README uses it
        r2 = subprocess.run([str(script), "--help"], capture_output=True, text=True)
        assert r2.returncode == 0 and r2.stdout == r.stdout
