"""Shared fixtures.

``bpf_core_build`` is the real Linux 6.1 tree (Debian's linux-source-6.1) configured and built for
``configs/bpf-core.yaml`` up to the build stage.  It lives under the kcg cache
(``~/.cache/kcg/test-outputs/bpf-core``, or ``$KCG_CACHE/test-outputs/bpf-core``) so it survives
between test runs: the stage runner skips fresh stages and make is incremental, so a warm run costs
a second or two and a cold one about a minute on 2 cores (plus the .deb download once).
Later stages' tests (parse, link, roots on bpf-core) reuse it.

``default_build`` is the full default-config build (20-30 minutes on 2 cores): only for tests
marked ``slow``.  ``KCG_DEFAULT_BUILD=DIR`` points it at an output directory that already holds a
finished default build (used read-only, kcg is not run on it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.fsutil import cache_dir

REPO = Path(__file__).resolve().parent.parent


def run_kcg(*args: object, cwd: Path = REPO, timeout: float | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``kcg`` command line (``python -m pipeline``) and capture its output."""
    cmd = [sys.executable, "-m", "pipeline", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _explain(r: subprocess.CompletedProcess[str]) -> str:
    return (f"$ {' '.join(map(str, r.args))}\nexit {r.returncode}\n"
            f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")


def run_kcg_when_free(*args: object, wait: float = 3600) -> subprocess.CompletedProcess[str]:
    """``run_kcg``, waiting while another kcg run (another test session) holds the output lock."""
    deadline = time.monotonic() + wait
    while True:
        r = run_kcg(*args)
        if not (r.returncode == 2 and "in use by another kcg run" in r.stderr
                and time.monotonic() < deadline):
            return r
        time.sleep(5)


def _build_to(config: str, out: Path) -> Path:
    r = run_kcg_when_free("run", "--config", REPO / "configs" / config, "--to", "build",
                          "--output", out, "--no-progress")
    if r.returncode != 0:
        pytest.fail(f"building {config} failed:\n{_explain(r)}", pytrace=False)
    return out


@pytest.fixture
def kcg():
    """The ``run_kcg`` helper, for tests that drive the command line in a subprocess."""
    return run_kcg


@pytest.fixture
def kcg_when_free():
    """``run_kcg_when_free``: for a kcg run on a shared output directory such as bpf_core_build."""
    return run_kcg_when_free


@pytest.fixture(scope="session")
def bpf_core_build() -> Path:
    """Output directory of ``kcg run --config configs/bpf-core.yaml --to build`` (cached)."""
    return _build_to("bpf-core.yaml", cache_dir() / "test-outputs" / "bpf-core")


@pytest.fixture(scope="session")
def default_build() -> Path:
    """Output directory of the full default-config build (slow tests only)."""
    given = os.environ.get("KCG_DEFAULT_BUILD")
    if given:
        out = Path(given).resolve()
        if not (out / "manifests" / "build.json").is_file():
            pytest.fail(f"KCG_DEFAULT_BUILD={given}: no finished build stage there "
                        "(manifests/build.json missing)", pytrace=False)
        return out
    return _build_to("default.yaml", cache_dir() / "test-outputs" / "default")


@pytest.fixture(scope="session")
def default_pipeline(default_build: Path) -> Path:
    """The full default config run through every stage (slow tests only).

    Runs ``kcg run --config configs/default.yaml`` on the default build's output directory (with
    ``KCG_DEFAULT_BUILD=DIR``, that directory); fresh stages are skipped, so after one full run
    this costs the parse cache check (~20 s).
    """
    r = run_kcg("run", "--config", REPO / "configs" / "default.yaml", "--output", default_build,
                "--no-progress", timeout=4 * 3600)
    if r.returncode != 0:
        pytest.fail(f"the default pipeline failed:\n{_explain(r)}", pytrace=False)
    return default_build


@pytest.fixture(scope="session")
def linux_612_core() -> Path:
    """Linux 6.12 (Debian's linux-source-6.12), BPF core scope, run through the roots stage
    (cached under ``$KCG_CACHE/test-outputs/linux-6.12-bpf-core``; ~4 minutes cold)."""
    out = cache_dir() / "test-outputs" / "linux-6.12-bpf-core"
    r = run_kcg("run", "--config", REPO / "configs" / "linux-6.12-bpf-core.yaml", "--to", "roots",
                "--output", out, "--no-progress", timeout=3600)
    if r.returncode != 0:
        pytest.fail(f"linux-6.12 bpf-core failed:\n{_explain(r)}", pytrace=False)
    return out
