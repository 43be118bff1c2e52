"""The HTML report in a real browser: headless Chromium shows the roots table (screenshot test).

Screenshots are saved under ``tests/artifacts/`` (git-ignored) for a person to look at.  Needs
Debian's ``chromium`` (installed by the project's set-up); skipped, saying so, without it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from emit_fixture import emitted

from pipeline.fsutil import read_json

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; "
                             "the project's set-up installs it)")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emitted(tmp_path_factory.mktemp("browser") / "a", "a")


def chromium(url: str, profile: Path, *extra: str, timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    # A blank page filters to runs of one value (white rows, zero deltas); a rendered table,
    # text and links give many.
    return width, height, len(set(raw))


def screenshot(url: str, name: str, profile: Path, size: str = "1280,900") -> bytes:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    shot.unlink(missing_ok=True)
    r = chromium(url, profile, f"--screenshot={shot}", f"--window-size={size}")
    assert shot.is_file(), f"chromium wrote no screenshot (exit {r.returncode}):\n{r.stderr[-2000:]}"
    return shot.read_bytes()


class _Table(HTMLParser):
    """Rows (data-root) of the table with id="roots"."""

    def __init__(self) -> None:
        super().__init__()
        self.in_table = False
        self.rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "table" and d.get("id") == "roots":
            self.in_table = True
        elif tag == "tr" and self.in_table and d.get("data-root"):
            self.rows.append(d["data-root"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_table = False


def dom_rows(out: Path, profile: Path, fragment: str = "") -> list[str]:
    url = (out / "report" / "index.html").as_uri() + fragment
    r = chromium(url, profile, "--dump-dom")
    assert r.returncode == 0 and "<table" in r.stdout, r.stderr[-2000:]
    p = _Table()
    p.feed(r.stdout)
    return p.rows


def test_index_screenshot_shows_the_roots_table(out: Path, tmp_path: Path) -> None:
    data = screenshot((out / "report" / "index.html").as_uri(), "report-index.png",
                      tmp_path / "profile")
    width, height, distinct = png_facts(data)
    assert (width, height) == (1280, 900)
    assert distinct > 40, "the screenshot looks blank"
    roots = read_json(out / "roots.json")
    rows = dom_rows(out, tmp_path / "profile")
    assert rows == [r["id"] for r in sorted(roots, key=lambda r: (-r["max_stack"], r["id"]))]


def test_sorting_script_runs_in_the_browser(out: Path, tmp_path: Path) -> None:
    roots = read_json(out / "roots.json")
    default = sorted(roots, key=lambda r: (-r["max_stack"], r["id"]))
    # column 5 is "Reachable functions"; the script's sort is stable, like Python's
    rows = dom_rows(out, tmp_path / "profile", "#sort=5,asc")
    assert rows == [r["id"] for r in sorted(default, key=lambda r: r["reachable"])]
    rows = dom_rows(out, tmp_path / "profile", "#sort=0,desc")
    assert rows == sorted((r["id"] for r in roots), reverse=True)


def test_root_page_screenshot_shows_the_drawing(out: Path, tmp_path: Path) -> None:
    page = out / "report" / "roots" / "bpf_map_update_elem.html"
    data = screenshot(page.as_uri(), "report-root-bpf_map_update_elem.png", tmp_path / "profile",
                      "1280,1400")
    assert png_facts(data)[2] > 40
    r = chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")
    assert re.search(r"<svg[^>]*>", r.stdout), "no inline SVG in the page"
    assert "htab_map_update_elem" in r.stdout and "Critical path" in r.stdout
