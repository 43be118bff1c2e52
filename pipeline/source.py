"""The source stage: get a kernel tree for a version.

Three kinds of source (see :mod:`pipeline.config`):

- ``debian_package``: Debian's ``linux-source-X.Y`` package, fetched with ``apt-get download``
  into ``~/.cache/kcg/debs`` (no root needed) and unpacked with ``dpkg-deb -x``; the package
  carries ``/usr/src/linux-source-X.Y.tar.xz``, which is extracted once into
  ``~/.cache/kcg/src/<package>_<version>/``.  A cached ``.deb`` is used when offline.
- ``path``: a tree on disk (for example the ``kernel-src/`` submodule), used read-only.
- ``tarball``: a local ``.tar.*`` checked against its sha256, extracted into the cache.

Writes ``source.json``: the tree's path and ``make kernelversion``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.fsutil import KcgError, cache_dir, sha256_file, write_json
from pipeline.runner import Context, StageResult


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, text=True, capture_output=True, **kw)
    except FileNotFoundError:
        raise KcgError(f"'{cmd[0]}' not found: install it (Debian package: "
                       f"{ {'apt-get': 'apt', 'dpkg-deb': 'dpkg', 'make': 'make'}.get(cmd[0], cmd[0]) })"
                       ) from None


@contextmanager
def _cache_lock(name: str):
    """Serialise two runs that fill the same cache entry."""
    d = cache_dir() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def kernel_version(tree: Path) -> str:
    """``make kernelversion`` of a tree; an error if it is not a kernel tree."""
    if not (tree / "Makefile").is_file() or not (tree / "Kconfig").is_file():
        raise KcgError(f"{tree}: not a Linux source tree (no top-level Makefile and Kconfig)")
    # O= a scratch dir: kernelversion must not write into a read-only tree.
    with tempfile.TemporaryDirectory(prefix="kcg-kv-") as tmp:
        r = _run(["make", "-s", "-C", str(tree), f"O={tmp}", "kernelversion"])
    version = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if r.returncode != 0 or not re.match(r"^\d+\.\d+", version):
        raise KcgError(f"{tree}: 'make kernelversion' failed: {r.stderr.strip()[-500:]}")
    return version


def debian_candidate_version(package: str) -> str | None:
    r = _run(["apt-cache", "policy", package])
    m = re.search(r"Candidate:\s*(\S+)", r.stdout)
    return m.group(1) if m and m.group(1) != "(none)" else None


def _deb_name(package: str, version: str) -> str:
    # Debian file names drop an epoch ("1:") from the version.
    return f"{package}_{version.split(':', 1)[-1]}_all.deb"


def fetch_debian_package(package: str, version: str | None) -> tuple[Path, str]:
    """Download (or reuse from the cache) the .deb; returns (path, version)."""
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    wanted = version or debian_candidate_version(package)
    if wanted and (debs / _deb_name(package, wanted)).is_file():
        return debs / _deb_name(package, wanted), wanted
    if wanted:
        r = _run(["apt-get", "download", f"{package}={wanted}"], cwd=debs)
        if r.returncode == 0 and (debs / _deb_name(package, wanted)).is_file():
            return debs / _deb_name(package, wanted), wanted
        err = r.stderr.strip().splitlines()[-1:] or ["?"]
    else:
        err = [f"apt-cache knows no package {package} (run 'apt-get update'?)"]
    # Offline or the archive moved on: fall back to the newest cached copy, unless pinned.
    cached = sorted(debs.glob(f"{package}_*_all.deb"))
    if cached and not version:
        deb = cached[-1]
        return deb, deb.name[len(package) + 1:-len("_all.deb")]
    raise KcgError(f"cannot download {package}{'=' + wanted if wanted else ''}: {err[0]}")


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    # The 'data' filter refuses absolute paths, '..' and device files (PEP 706).
    tar.extractall(dest, filter="data")


def extract_tree(archive: Path, dest: Path) -> Path:
    """Extract a kernel tarball into ``dest`` (atomically: temp dir + rename); the tree root."""
    if not dest.exists():
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent))
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the cached tree is readable like any other
        try:
            # GNU tar with xz is ~2x faster than tarfile's lzma; fall back when absent.
            if shutil.which("tar"):
                r = _run(["tar", "-xf", str(archive), "-C", str(tmp), "--no-same-owner"])
                if r.returncode != 0:
                    raise KcgError(f"{archive}: cannot extract: {r.stderr.strip()[-300:]}")
            else:
                with tarfile.open(archive) as tar:
                    _safe_extract(tar, tmp)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tree_root(dest, archive)


def tree_root(dest: Path, archive: Path) -> Path:
    """The kernel tree inside an extraction directory (tarballs carry one top directory)."""
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) == 1 and (tops[0] / "Makefile").exists():
        return tops[0]
    if (dest / "Makefile").exists():
        return dest
    raise KcgError(f"{archive}: no kernel tree inside (top-level entries: {[p.name for p in tops]})")


def prepare_debian(package: str, version: str | None) -> dict[str, Any]:
    deb, ver = fetch_debian_package(package, version)
    src_root = cache_dir() / "src"
    src_root.mkdir(parents=True, exist_ok=True)
    dest = src_root / f"{package}_{ver}"
    with _cache_lock(dest.name):
        if not dest.exists():
            with tempfile.TemporaryDirectory(prefix="kcg-deb-", dir=src_root) as unpack:
                r = _run(["dpkg-deb", "-x", str(deb), unpack])
                if r.returncode != 0:
                    raise KcgError(f"{deb}: dpkg-deb -x failed: {r.stderr.strip()[-300:]}")
                tars = sorted(Path(unpack, "usr/src").glob("linux-source-*.tar.*"))
                if not tars:
                    raise KcgError(f"{deb}: carries no usr/src/linux-source-*.tar.*")
                tree = extract_tree(tars[0], dest)
        else:
            tree = tree_root(dest, deb)
    return {"debian_package": package, "debian_version": ver, "deb": str(deb),
            "deb_sha256": sha256_file(deb), "path": str(tree)}


def prepare_tarball(tarball: Path, sha256: str) -> dict[str, Any]:
    if not tarball.is_file():
        raise KcgError(f"{tarball}: no such tarball")
    actual = sha256_file(tarball)
    if actual != sha256:
        raise KcgError(f"{tarball}: sha256 mismatch: expected {sha256}, got {actual}")
    dest = cache_dir() / "src" / f"tarball-{sha256[:16]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _cache_lock(dest.name):
        tree = extract_tree(tarball, dest)
    return {"tarball": str(tarball), "sha256": sha256, "path": str(tree)}


def source_inputs(ctx: Context) -> dict[str, Any]:
    if ctx.direct:
        return {"direct": str(ctx.direct.source.resolve())}
    assert ctx.config is not None
    return {"source": ctx.config.source.fingerprint()}


def run_source(ctx: Context) -> StageResult:
    if ctx.direct:
        tree = ctx.direct.source.resolve()
        if not tree.is_dir():
            raise KcgError(f"--source {tree}: no such directory")
        info: dict[str, Any] = {"kind": "direct", "path": str(tree)}
    else:
        assert ctx.config is not None
        spec = ctx.config.source
        if spec.kind == "debian_package":
            assert spec.debian_package
            info = {"kind": "debian_package", **prepare_debian(spec.debian_package, spec.debian_version)}
        elif spec.kind == "tarball":
            assert spec.tarball and spec.sha256
            info = {"kind": "tarball", **prepare_tarball(spec.tarball, spec.sha256)}
        else:
            assert spec.path
            if not spec.path.is_dir():
                raise KcgError(f"{ctx.config.file}: source.path: no such directory: {spec.path}")
            info = {"kind": "path", "path": str(spec.path)}
    try:
        info["kernelversion"] = kernel_version(Path(info["path"]))
    except KcgError:
        if info["kind"] != "direct":
            raise
        info["kernelversion"] = None  # a prebuilt tree may be a partial checkout
    write_json(ctx.path("source.json"), info)
    return StageResult(outputs=["source.json"], counts={"kernelversion": info["kernelversion"]},
                       summary=[f"kernel {info['kernelversion']} at {info['path']}"])


def load_source(ctx: Context) -> dict[str, Any]:
    from pipeline.fsutil import read_json
    return read_json(ctx.need("source.json", "source"))
