"""Atomic writes, content hashes and the user cache directory.

Every file a stage produces goes through :func:`atomic_write_bytes` so that an interrupted run
never leaves a half-written output that a rerun would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

# The process umask, read once at import (reading it means setting it): mkstemp makes 0600 files,
# and outputs should get the same mode as any other file the user creates.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class KcgError(Exception):
    """An error caused by the user's input or environment, reported without a traceback."""


def cache_dir() -> Path:
    """The per-user cache (Debian packages, extracted sources, facts store).

    ``KCG_CACHE`` overrides it; the default follows XDG: ``~/.cache/kcg``.
    """
    env = os.environ.get("KCG_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "kcg"


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, fixed separators, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=1, separators=(",", ": ")) + "\n"


def write_json(path: Path | str, obj: Any, *, compress: bool = False) -> None:
    text = dumps_json(obj) if not compress else json.dumps(obj, sort_keys=True, separators=(",", ":"))
    data = text.encode()
    if compress:
        # mtime=0 keeps the gzip bytes a pure function of the content (byte-identical reruns).
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(path, data)


def read_json(path: Path | str) -> Any:
    """Read JSON (gzip-compressed when the name ends in .gz), naming the file on failure."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except FileNotFoundError:
        raise KcgError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
        raise KcgError(f"{path}: not valid JSON ({e})") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
