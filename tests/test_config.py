"""Config loading: the shipped configs, and every error naming the file and the dotted key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"

VALID = {
    "name": "t",
    "source": {"debian_package": "linux-source-6.1"},
    "arch": "x86_64",
    "kconfig": {"base": "defconfig", "fragments": ["frag.config"]},
    "build": {"compiler": "gcc", "targets": ["kernel/bpf/"]},
    "roots": {"helpers": True, "kfuncs": True, "extra": []},
}


def write_config(tmp_path: Path, data: object, name: str = "c.yaml") -> Path:
    (tmp_path / "frag.config").write_text("CONFIG_BPF=y\n")
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def with_change(path: str, value: object) -> dict:
    """VALID with the dotted key set to value (or deleted when value is DELETE)."""
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


def test_valid_config_loads_and_resolves_paths(tmp_path):
    cfg = load_config(write_config(tmp_path, VALID))
    assert cfg.name == "t"
    assert cfg.source.kind == "debian_package" and cfg.source.debian_package == "linux-source-6.1"
    # Relative paths are resolved against the config's directory, not the working directory.
    assert cfg.kconfig_fragments == ((tmp_path / "frag.config").resolve(),)
    assert cfg.targets == ("kernel/bpf/",)
    assert cfg.compiler == "gcc" and cfg.arch == "x86_64" and cfg.kconfig_base == "defconfig"


@pytest.mark.parametrize("name", ["default", "bpf-core", "linux-6.12", "linux-6.12-bpf-core"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.name == name
    assert cfg.arch == "x86_64" and cfg.kconfig_base == "defconfig"
    assert cfg.kconfig_fragments == ((CONFIGS / "kconfig" / "bpf.config").resolve(),)
    assert cfg.source.kind == "debian_package"
    assert cfg.source.debian_package == ("linux-source-6.12" if "6.12" in name else "linux-source-6.1")


def test_default_builds_everything_and_bpf_core_three_targets():
    assert load_config(CONFIGS / "default.yaml").targets is None  # all
    assert load_config(CONFIGS / "bpf-core.yaml").targets == (
        "kernel/bpf/", "kernel/trace/bpf_trace.o", "net/core/filter.o")


def test_bpf_fragment_has_the_options_the_issue_asks_for():
    text = (CONFIGS / "kconfig" / "bpf.config").read_text()
    for opt in ("BPF_SYSCALL", "BPF_JIT", "BPF_EVENTS", "DEBUG_INFO", "DEBUG_INFO_BTF", "FTRACE",
                "FUNCTION_TRACER", "DYNAMIC_FTRACE", "KPROBES", "NET_CLS_BPF", "NET_ACT_BPF",
                "BPF_LSM", "CGROUP_BPF", "LWTUNNEL_BPF", "XDP_SOCKETS", "BPF_KPROBE_OVERRIDE"):
        assert f"CONFIG_{opt}=y\n" in text, opt
    assert "# CONFIG_BPF_PRELOAD is not set" in text
    lsm = next(line for line in text.splitlines() if line.startswith("CONFIG_LSM="))
    assert "bpf" in lsm.split("=", 1)[1].strip('"').split(",")


ERRORS = [
    # (dotted key changed, new value, dotted key named in the message, words in the message)
    ("colour", "red", "colour", "unknown key"),
    ("build.jobs", 4, "build.jobs", "unknown key"),
    ("source.sha256", "0" * 64, "source.sha256", "unknown key"),
    ("roots.extra_roots", [], "roots.extra_roots", "unknown key"),
    ("arch", 5, "arch", "expected string"),
    ("name", True, "name", "expected string"),
    ("build.targets", 3, "build.targets", "expected string or list"),
    ("build.targets", ["kernel/bpf/", 7], "build.targets[1]", "expected string"),
    ("build.targets", "some", "build.targets", "'all' or a list"),
    ("build.targets", [], "build.targets", "empty list"),
    ("build.targets", ["/abs/kernel"], "build.targets[0]", "relative"),
    ("build.targets", ["../x.o"], "build.targets[0]", "relative"),
    ("build.compiler", "icc", "build.compiler", "gcc, clang"),
    ("roots.helpers", "yes", "roots.helpers", "expected boolean"),
    ("roots.kfuncs", 1, "roots.kfuncs", "expected boolean"),
    ("kconfig", ["defconfig"], "kconfig", "expected mapping"),
    ("kconfig.fragments", "frag.config", "kconfig.fragments", "expected list"),
    ("kconfig.fragments", ["nope.config"], "kconfig.fragments[0]", "no such file"),
    ("kconfig.base", "missing.config", "kconfig.base", "no such file"),
    ("arch", "riscv", "arch", "unsupported arch"),
    ("name", DELETE, "name", "missing required key"),
    ("source", DELETE, "source", "missing required key"),
    ("arch", DELETE, "arch", "missing required key"),
    ("kconfig", DELETE, "kconfig", "missing required key"),
    ("build", DELETE, "build", "missing required key"),
    ("source", {}, "source", "exactly one of"),
    ("source", {"debian_package": "linux-source-6.1", "path": "/tmp"}, "source",
     "got debian_package, path"),
    ("source", {"tarball": "linux.tar.xz"}, "source.sha256", "missing required key"),
    ("source", {"tarball": "linux.tar.xz", "sha256": "abc"}, "source.sha256", "64 hex digits"),
    ("output", 3, "output", "expected string"),
]


@pytest.mark.parametrize(("key", "value", "named", "words"), ERRORS,
                         ids=[f"{k}={v!r}"[:40] for k, v, _, _ in ERRORS])
def test_errors_name_file_and_dotted_key(tmp_path, key, value, named, words):
    path = write_config(tmp_path, with_change(key, value))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: {named}: "), msg
    assert words in msg, msg


def test_unknown_key_message_lists_allowed_keys(tmp_path):
    path = write_config(tmp_path, with_change("build.target", ["kernel/bpf/"]))
    with pytest.raises(ConfigError, match=r"build\.target: unknown key \(allowed: compiler, targets\)"):
        load_config(path)


@pytest.mark.parametrize(("text", "words"), [
    ("name: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping at the top level"),
    ("", "expected a mapping at the top level"),
])
def test_file_level_errors(tmp_path, text, words):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}: ") and words in str(exc.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_source_path_and_kconfig_base_file_resolve_against_config_dir(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "full.config").write_text("CONFIG_BPF=y\n")
    data = with_change("source", {"path": "tree"})
    data["kconfig"]["base"] = "full.config"
    data["output"] = "out"
    cfg = load_config(write_config(tmp_path, data))
    assert cfg.source.kind == "path" and cfg.source.path == (tmp_path / "tree").resolve()
    assert cfg.kconfig_base == str((tmp_path / "full.config").resolve())
    assert cfg.output == (tmp_path / "out").resolve()


def test_tarball_source_and_targets_all(tmp_path):
    data = with_change("source", {"tarball": "linux.tar.xz", "sha256": "AB" * 32})
    data["build"]["targets"] = "all"
    cfg = load_config(write_config(tmp_path, data))
    assert cfg.source.kind == "tarball" and cfg.source.sha256 == "ab" * 32
    assert cfg.source.tarball == (tmp_path / "linux.tar.xz").resolve()
    assert cfg.targets is None


def test_fingerprints_change_with_what_a_stage_depends_on(tmp_path):
    a = load_config(write_config(tmp_path, VALID, "a.yaml"))
    b = load_config(write_config(tmp_path, with_change("build.targets", ["net/core/"]), "b.yaml"))
    assert a.fingerprint("source") == b.fingerprint("source")
    assert a.fingerprint("build") != b.fingerprint("build")
