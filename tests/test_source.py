"""The source stage's tarball and path kinds, and its errors, on small trees made here.

(The Debian package kind on the real linux-source-6.1 is in test_kernel_source_build.py.)
"""

from __future__ import annotations

import stat
import tarfile
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.fsutil import read_json, sha256_file

FAKE_MAKEFILE = "kernelversion:\n\t@echo 6.1.99-fake\n"


def fake_kernel(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "Makefile").write_text(FAKE_MAKEFILE)
    (root / "Kconfig").write_text("mainmenu \"fake\"\n")
    return root


def config(tmp_path: Path, source: dict) -> Path:
    (tmp_path / "frag.config").write_text("CONFIG_BPF=y\n")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "source": source, "arch": "x86_64",
        "kconfig": {"fragments": ["frag.config"]}, "build": {"targets": ["kernel/bpf/"]}}))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KCG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tarball(tmp_path) -> Path:
    tree = fake_kernel(tmp_path / "mk" / "linux-6.1.99")
    out = tmp_path / "linux-6.1.99.tar.xz"
    with tarfile.open(out, "w:xz") as tar:
        tar.add(tree, arcname="linux-6.1.99")
    return out


def test_tarball_source_is_checked_and_extracted_into_the_cache(tmp_path, cache, tarball, capsys):
    sha = sha256_file(tarball)
    cfg = config(tmp_path, {"tarball": tarball.name, "sha256": sha})
    assert main(["source", "--config", str(cfg), "--output", str(tmp_path / "out")]) == 0
    info = read_json(tmp_path / "out" / "source.json")
    tree = cache / "src" / f"tarball-{sha[:16]}" / "linux-6.1.99"
    assert info == {"kind": "tarball", "tarball": str(tarball), "sha256": sha, "path": str(tree),
                    "kernelversion": "6.1.99-fake"}
    assert (tree / "Makefile").read_text() == FAKE_MAKEFILE
    assert stat.S_IMODE(tree.parent.stat().st_mode) == 0o755
    assert not [p for p in tree.parent.parent.iterdir() if p.name.endswith(".tmp")]
    # A second output directory reuses the extracted tree.
    mtime = tree.stat().st_mtime_ns
    assert main(["source", "--config", str(cfg), "--output", str(tmp_path / "out2")]) == 0
    assert tree.stat().st_mtime_ns == mtime


def test_tarball_with_the_wrong_checksum_is_refused(tmp_path, cache, tarball, capsys):
    cfg = config(tmp_path, {"tarball": tarball.name, "sha256": "0" * 64})
    assert main(["source", "--config", str(cfg), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{tarball}: sha256 mismatch: expected {'0' * 64}, got {sha256_file(tarball)}" in err
    assert not (cache / "src").exists() or not any((cache / "src").iterdir())


def test_path_source_is_used_in_place(tmp_path, cache):
    tree = fake_kernel(tmp_path / "linux")
    cfg = config(tmp_path, {"path": "linux"})
    assert main(["run", "--config", str(cfg), "--to", "source", "--output", str(tmp_path / "out")]) == 0
    assert read_json(tmp_path / "out" / "source.json") == {
        "kind": "path", "path": str(tree), "kernelversion": "6.1.99-fake"}
    assert sorted(p.name for p in tree.iterdir()) == ["Kconfig", "Makefile"]  # nothing written


@pytest.mark.parametrize(("source", "words"), [
    ({"path": "nowhere"}, "source.path: no such directory"),
    ({"path": "."}, "not a Linux source tree (no top-level Makefile and Kconfig)"),
    ({"tarball": "none.tar.xz", "sha256": "0" * 64}, "none.tar.xz: no such tarball"),
    ({"debian_package": "kcg-no-such-package"}, "cannot download kcg-no-such-package"),
])
def test_source_errors(tmp_path, cache, capsys, source, words):
    cfg = config(tmp_path, source)
    assert main(["source", "--config", str(cfg), "--output", str(tmp_path / "out")]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifests" / "source.json").exists()
