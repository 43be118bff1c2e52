"""The content-addressed facts store, shared by every output directory.

Layout: ``<root>/<key[:2]>/<key>.json.gz``, one gzip JSON document per key.  Keys:

- ``t…``: a TU's facts, keyed by its sanitised arguments and the content of every file the
  parse read (with the source and build roots replaced by placeholders, so two configs over the
  same tree share entries);
- ``h…``: a header function's facts, keyed by its header's content and location;
- ``m…``: a TU's manifest: which files the last parse read and their hashes, so a lookup can
  tell whether anything changed before parsing (ccache's "direct mode").

A corrupted entry (bad gzip CRC, bad JSON, wrong schema) reads as missing and is counted, so the
caller re-parses it.  Eviction is least-recently-used by mtime (reads touch the entry), run only
between parses, down to a size bound.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from pathlib import Path
from typing import Any

from pipeline.facts import FACTS_SCHEMA
from pipeline.fsutil import atomic_write_bytes, cache_dir

DEFAULT_MAX_BYTES = 8 << 30  # a full 6.1 defconfig run is ~0.5 GB of facts


def default_store_root() -> Path:
    return cache_dir() / "facts"


class FactsStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else default_store_root()
        self.corrupted: list[str] = []

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json.gz"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(gzip.decompress(raw))
            if not isinstance(doc, dict) or doc.get("schema") != FACTS_SCHEMA:
                raise ValueError("wrong schema")
        except (OSError, EOFError, ValueError, UnicodeDecodeError):
            self.corrupted.append(key)
            p.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(p)  # LRU by mtime
        return doc

    def put(self, key: str, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        atomic_write_bytes(self.path(key), gzip.compress(data, compresslevel=5, mtime=0))

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*/*.json.gz"))

    def evict(self, max_bytes: int = DEFAULT_MAX_BYTES, keep: set[str] | None = None) -> int:
        """Delete least-recently-used entries until the store is under ``max_bytes``."""
        entries = []
        for p in self.root.glob("*/*.json.gz"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(e[1] for e in entries)
        removed = 0
        for _, size, p in sorted(entries):
            if total <= max_bytes:
                break
            if keep and p.name[: -len(".json.gz")] in keep:
                continue
            p.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed
