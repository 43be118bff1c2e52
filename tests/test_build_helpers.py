"""The build stage's pieces that need no kernel: kconfig checks, make output, compile databases."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from pipeline import build
from pipeline.config import load_config
from pipeline.fsutil import KcgError

REPO = Path(__file__).resolve().parent.parent


def test_kconfig_mismatches_names_options_not_as_asked(tmp_path):
    frag = tmp_path / "frag.config"
    frag.write_text("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_LSM=\"x,bpf\"\nCONFIG_D=y\n")
    dot = tmp_path / ".config"
    dot.write_text("CONFIG_A=y\nCONFIG_B=m\nCONFIG_C=y\nCONFIG_LSM=\"x,bpf\"\n# CONFIG_D is not set\n")
    assert build.kconfig_mismatches([frag], dot) == [
        {"option": "CONFIG_B", "wanted": "y", "got": "m"},
        {"option": "CONFIG_C", "wanted": "n", "got": "y"},
        {"option": "CONFIG_D", "wanted": "y", "got": "n"},
    ]


def test_read_kconfig_absent_and_not_set_read_as_n(tmp_path):
    dot = tmp_path / ".config"
    dot.write_text("# comment\nCONFIG_X=y\n# CONFIG_Y is not set\nCONFIG_S=\"a b\"\n")
    assert build.read_kconfig(dot) == {"CONFIG_X": "y", "CONFIG_Y": "n", "CONFIG_S": '"a b"'}


@pytest.mark.parametrize(("line", "target"), [
    ("make[4]: *** [/usr/src/linux/scripts/Makefile.build:250: kernel/bpf/verifier.o] Error 1",
     "kernel/bpf/verifier.o"),
    ("make[2]: *** [scripts/Makefile.build:500: kernel/bpf] Error 2", "kernel/bpf"),
    ("make: *** [Makefile:1992: .] Error 2", "."),
])
def test_failed_target_regex(line, target):
    assert build.FAILED_TARGET_RE.search(line).group(1) == target


@pytest.mark.parametrize(("line", "named"), [
    ("make[1]: *** No rule to make target 'kernel/bpf/typo.o'.", "kernel/bpf/typo.o"),
    ("make[3]: *** No rule to make target 'include/gone.h', needed by 'kernel/bpf/core.o'.  Stop.",
     "kernel/bpf/core.o"),
])
def test_missing_targets_are_named(line, named):
    m = build.NO_RULE_RE.search(line)
    assert (m.group(2) or m.group(1)) == named


def test_run_make_build_collects_failed_objects_and_goes_on(tmp_path):
    """A real make -k run: one object fails, a missing target is named, the others are built."""
    (tmp_path / "Makefile").write_text(
        "all: good.o bad.o\n"
        "%.o:\n\t@echo '  CC      $@'\n\t@touch $@\n"
        "bad.o:\n\t@echo '  CC      $@'\n\t@false\n")
    log = tmp_path / "build.log"
    cmd = ["make", "-r", "-C", str(tmp_path), "-k", "all", "typo"]
    rc, failed = build.run_make_build(cmd, log, progress=False, expected=None)
    assert rc != 0
    assert failed == ["bad.o", "typo"]
    assert (tmp_path / "good.o").exists()
    assert log.read_text().startswith("$ make -r -C ")


def test_object_of_and_is_kernel_tu():
    cmd = "gcc -Wp,-MMD,kernel/bpf/.core.o.d -D__KERNEL__ -c -o kernel/bpf/core.o /s/kernel/bpf/core.c"
    e = {"directory": "/b", "file": "/s/kernel/bpf/core.c", "command": cmd}
    assert build.object_of(e) == "kernel/bpf/core.o"
    assert build.is_kernel_tu(e)
    assert build.su_path_for(e).as_posix() == "/b/kernel/bpf/core.su"
    args = {"directory": "/b", "file": "/s/x.c", "arguments": shlex.split("cc -ox.o -c /s/x.c")}
    assert build.object_of(args) == "x.o" and not build.is_kernel_tu(args)
    assembly = {"directory": "/b", "file": "/s/entry.S", "command": "gcc -D__KERNEL__ -c -o e.o /s/entry.S"}
    assert not build.is_kernel_tu(assembly)  # only C translation units are parsed later


def test_missing_host_tools_name_the_debian_packages(monkeypatch):
    config = load_config(REPO / "configs" / "bpf-core.yaml")
    real_which = build.shutil.which
    monkeypatch.setattr(build.shutil, "which",
                        lambda t: None if t in ("flex", "pahole") else real_which(t))
    with pytest.raises(KcgError) as exc:
        build.check_host_tools(config, "CONFIG_DEBUG_INFO_BTF=y\n")
    msg = str(exc.value)
    assert "flex" in msg and "pahole" in msg
    assert "apt-get install dwarves flex" in msg


def test_host_tools_present_here():
    # The machine that runs the tests has what `make setup` installs.
    config = load_config(REPO / "configs" / "bpf-core.yaml")
    build.check_host_tools(config, (REPO / "configs/kconfig/bpf.config").read_text())


def test_build_reruns_when_su_files_are_gone_or_the_tree_is_the_users(tmp_path):
    from pipeline.fsutil import write_json
    from pipeline.runner import Context, DirectTree

    config = load_config(REPO / "configs" / "bpf-core.yaml")
    ctx = Context(out=tmp_path, config=config, jobs=1)
    assert build.build_always_run(ctx) is False  # nothing built yet: the manifest decides
    present = tmp_path / "a.su"
    present.write_text("")
    write_json(tmp_path / "stack_usage.json", {"files": [str(present)], "tus_without_su": []})
    assert build.build_always_run(ctx) is False
    write_json(tmp_path / "stack_usage.json",
               {"files": [str(present), str(tmp_path / "gone.su")], "tus_without_su": []})
    assert build.build_always_run(ctx) == f"1 .su files gone from the build tree (e.g. {tmp_path}/gone.su)"
    # Direct-tree mode never rebuilds (kcg did not make those files); a user's tree always does.
    ctx.direct = DirectTree(tmp_path, tmp_path / "cc.json")
    assert build.build_always_run(ctx) is False
    ctx.direct = None
    (tmp_path / "own.yaml").write_text((REPO / "configs" / "bpf-core.yaml").read_text()
                                       .replace("debian_package: linux-source-6.1", f"path: {tmp_path}")
                                       .replace("kconfig/bpf.config", str(REPO / "configs/kconfig/bpf.config")))
    ctx.config = load_config(tmp_path / "own.yaml")
    assert "user's tree" in build.build_always_run(ctx)


def test_separately_linked_images_are_not_kernel_tus():
    """Boot decompressor, realmode, vDSO, EFI stub: -D__KERNEL__ but not vmlinux."""
    from pipeline.build import is_kernel_tu

    def entry(obj: str) -> dict[str, str]:
        return {"directory": "/b", "file": f"/s/{obj[:-2]}.c",
                "command": f"gcc -D__KERNEL__ -c -o {obj} /s/{obj[:-2]}.c"}

    assert is_kernel_tu(entry("kernel/bpf/core.o"))
    assert is_kernel_tu(entry("drivers/firmware/efi/efi.o"))
    for obj in ("arch/x86/boot/compressed/misc.o", "arch/x86/boot/a20.o",
                "arch/x86/realmode/rm/wakemain.o", "arch/x86/entry/vdso/vclock_gettime.o",
                "drivers/firmware/efi/libstub/random.o", "arch/x86/purgatory/purgatory.o"):
        assert not is_kernel_tu(entry(obj)), obj
    host = {"directory": "/b", "file": "/s/scripts/kallsyms.c", "command": "gcc -c scripts/kallsyms.c"}
    assert not is_kernel_tu(host)


# One line of `make -n` output for a kbuild C compile (6.1 rule_cc_o_c), abridged: the compile,
# objtool, and fixdep with the command quoted again for the .cmd file.
_KBUILD_RECIPE = (
    "set -e;  echo '  CC      kernel/bpf/helpers.o';    trap 'rm -f kernel/bpf/helpers.o; "
    "trap - HUP; kill -s HUP $$' HUP; gcc -Wp,-MMD,kernel/bpf/.helpers.o.d -nostdinc "
    "-I/src/arch/x86/include -I./include -include /src/include/linux/kconfig.h -D__KERNEL__ "
    "-DKBUILD_MODFILE='\"kernel/bpf/helpers\"' -DKBUILD_MODNAME='\"helpers\"' -c -o "
    "kernel/bpf/helpers.o /src/kernel/bpf/helpers.c   ; ./tools/objtool/objtool --orc "
    "kernel/bpf/helpers.o; scripts/basic/fixdep kernel/bpf/.helpers.o.d kernel/bpf/helpers.o "
    "'gcc -Wp,-MMD,kernel/bpf/.helpers.o.d -nostdinc -D__KERNEL__ "
    "-DKBUILD_MODFILE='\\''\"kernel/bpf/helpers\"'\\'' -c -o kernel/bpf/helpers.o "
    "/src/kernel/bpf/helpers.c' > kernel/bpf/.helpers.o.cmd; rm -f kernel/bpf/.helpers.o.d")


def test_compile_command_read_from_a_make_n_recipe():
    entries = build.compile_commands_in_recipe(_KBUILD_RECIPE, "/obj")
    assert entries == [{
        "directory": "/obj", "file": "/src/kernel/bpf/helpers.c",
        "arguments": ["gcc", "-Wp,-MMD,kernel/bpf/.helpers.o.d", "-nostdinc",
                      "-I/src/arch/x86/include", "-I./include", "-include",
                      "/src/include/linux/kconfig.h", "-D__KERNEL__",
                      '-DKBUILD_MODFILE="kernel/bpf/helpers"', '-DKBUILD_MODNAME="helpers"',
                      "-c", "-o", "kernel/bpf/helpers.o", "/src/kernel/bpf/helpers.c"]}]
    assert build.is_kernel_tu(entries[0])


def test_compile_commands_in_recipes_that_are_not_one_compile():
    # A generated source in the build directory: relative to it.
    gen = build.compile_commands_in_recipe(
        "gcc -D__KERNEL__ -c -o lib/oid_registry_data.o lib/oid_registry_data.c", "/obj")
    assert [e["file"] for e in gen] == ["/obj/lib/oid_registry_data.c"]
    # Linking, archiving, assembling and broken quoting give nothing.
    assert build.compile_commands_in_recipe("ld -m elf_x86_64 -r -o vmlinux.o vmlinux.a", "/o") == []
    assert build.compile_commands_in_recipe("gcc -D__ASSEMBLY__ -c -o a.o a.S", "/o") == []
    assert build.compile_commands_in_recipe("gcc -c -o a.o 'a.c", "/o") == []
