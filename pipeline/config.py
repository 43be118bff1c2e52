"""Run configurations: YAML files under ``configs/``, validated on load.

Relative paths in a config (kconfig fragments, a source ``path``, a ``tarball``) are resolved
against the directory of the config file, so a config means the same thing from any working
directory.  Every error names the file and the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.fsutil import KcgError

ARCHES = {"x86_64": "x86"}  # kcg arch name -> kbuild ARCH / arch/<dir>
COMPILERS = ("gcc", "clang")


class ConfigError(KcgError):
    pass


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "debian_package" | "path" | "tarball"
    debian_package: str | None = None
    debian_version: str | None = None  # pin; None = the archive's candidate
    path: Path | None = None
    tarball: Path | None = None
    sha256: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Config:
    file: Path
    name: str
    source: SourceSpec
    arch: str
    kconfig_base: str  # a make target (defconfig, tinyconfig, ...) or an absolute .config path
    kconfig_fragments: tuple[Path, ...]
    compiler: str
    targets: tuple[str, ...] | None  # None = all
    root_helpers: bool = True
    root_kfuncs: bool = True
    extra_roots: tuple[str, ...] = ()
    output: Path | None = None
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def fingerprint(self, section: str) -> Any:
        """The part of the config one stage depends on (for the stage's input hash)."""
        if section == "source":
            return self.source.fingerprint()
        if section == "build":
            return {
                "arch": self.arch,
                "base": self.kconfig_base,
                "fragments": [str(p) for p in self.kconfig_fragments],
                "compiler": self.compiler,
                "targets": list(self.targets) if self.targets is not None else "all",
            }
        if section == "roots":
            return {
                "helpers": self.root_helpers,
                "kfuncs": self.root_kfuncs,
                "extra": list(self.extra_roots),
            }
        raise KeyError(section)


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {str: "string", bool: "boolean", list: "list", dict: "mapping", int: "integer"}.get(
        t, t.__name__
    )


class _Reader:
    """Typed access to a YAML mapping that reports the file and dotted key on every error."""

    def __init__(self, file: Path, data: dict[str, Any], prefix: str = ""):
        self.file, self.data, self.prefix = file, data, prefix
        self.used: set[str] = set()

    def err(self, key: str, msg: str) -> ConfigError:
        where = f"{self.prefix}{key}".rstrip(".") or "top level"
        return ConfigError(f"{self.file}: {where}: {msg}")

    def get(self, key: str, typ: type | tuple[type, ...], *, required: bool = False,
            default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.err(key, "missing required key")
            return default
        value = self.data[key]
        # bool is a subclass of int; never accept it where another type is wanted.
        if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
            raise self.err(key, f"expected {_type_name(typ)}, got {type(value).__name__} {value!r}")
        return value

    def sub(self, key: str, *, required: bool = False) -> _Reader | None:
        value = self.get(key, dict, required=required)
        return None if value is None else _Reader(self.file, value, f"{self.prefix}{key}.")

    def str_list(self, key: str, *, default: list[str] | None = None) -> list[str]:
        value = self.get(key, list, default=default if default is not None else [])
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.err(f"{key}[{i}]", f"expected string, got {type(item).__name__}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.err(unknown[0], f"unknown key (allowed: {', '.join(sorted(self.used))})")


def _resolve(base: Path, p: str) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_config(file: Path | str) -> Config:
    file = Path(file)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{file}: cannot read config: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level")
    base = file.resolve().parent
    top = _Reader(file, data)

    name = top.get("name", str, required=True)
    if not name or "/" in name:
        raise top.err("name", f"must be a non-empty file name, got {name!r}")
    description = top.get("description", str, default="")

    src = top.sub("source", required=True)
    assert src is not None
    kinds = [k for k in ("debian_package", "path", "tarball") if src.data.get(k) is not None]
    if len(kinds) != 1:
        raise src.err("", "exactly one of debian_package, path, tarball is required"
                      f" (got {', '.join(kinds) or 'none'})")
    kind = kinds[0]
    if kind == "debian_package":
        source = SourceSpec(kind, debian_package=src.get("debian_package", str),
                            debian_version=src.get("version", str))
    elif kind == "path":
        source = SourceSpec(kind, path=_resolve(base, src.get("path", str)))
    else:
        sha = src.get("sha256", str, required=True)
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
            raise src.err("sha256", "expected 64 hex digits")
        source = SourceSpec(kind, tarball=_resolve(base, src.get("tarball", str)), sha256=sha.lower())
    src.finish()

    arch = top.get("arch", str, required=True)
    if arch not in ARCHES:
        raise top.err("arch", f"unsupported arch {arch!r} (supported: {', '.join(ARCHES)})")

    kc = top.sub("kconfig", required=True)
    assert kc is not None
    kbase = kc.get("base", str, default="defconfig")
    if "/" in kbase or "." in kbase:
        # A full .config file (a make target such as defconfig has neither '/' nor '.').
        base_file = _resolve(base, kbase)
        if not base_file.is_file():
            raise kc.err("base", f"no such file: {base_file} (or use a make target such as defconfig)")
        kbase = str(base_file)
    fragments = []
    for i, f in enumerate(kc.str_list("fragments")):
        p = _resolve(base, f)
        if not p.is_file():
            raise kc.err(f"fragments[{i}]", f"no such file: {p}")
        fragments.append(p)
    kc.finish()

    b = top.sub("build", required=True)
    assert b is not None
    compiler = b.get("compiler", str, default="gcc")
    if compiler not in COMPILERS:
        raise b.err("compiler", f"expected one of {', '.join(COMPILERS)}, got {compiler!r}")
    targets_raw = b.get("targets", (str, list), default="all")
    if isinstance(targets_raw, str):
        if targets_raw != "all":
            raise b.err("targets", f"expected 'all' or a list of directories/objects, got {targets_raw!r}")
        targets = None
    else:
        targets = tuple(b.str_list("targets"))
        if not targets:
            raise b.err("targets", "empty list (use 'all' for the whole kernel)")
        for i, t in enumerate(targets):
            if t.startswith("/") or ".." in Path(t).parts:
                raise b.err(f"targets[{i}]", f"must be relative to the source tree, got {t!r}")
    b.finish()

    r = top.sub("roots")
    helpers, kfuncs, extra = True, True, []
    if r is not None:
        helpers = r.get("helpers", bool, default=True)
        kfuncs = r.get("kfuncs", bool, default=True)
        extra = r.str_list("extra")
        r.finish()

    output = top.get("output", str)
    top.finish()
    return Config(
        file=file.resolve(), name=name, source=source, arch=arch, kconfig_base=kbase,
        kconfig_fragments=tuple(fragments), compiler=compiler, targets=targets,
        root_helpers=helpers, root_kfuncs=kfuncs, extra_roots=tuple(extra),
        output=_resolve(base, output) if output else None, description=description, raw=data,
    )
