"""Content fingerprints: what a resumed run, a skipped recipe step or a cached result must match to be reused."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def file_digest(path: str | os.PathLike, h: Any = None) -> str:
    """SHA-1 of a file's bytes, read in 1 MiB blocks."""
    h = h or hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def content_hash(paths: Iterable[str | os.PathLike]) -> str:
    """SHA-1 over the contents of files and of every file inside folders (sorted relative paths; curate's own lineage file left out)."""
    h = hashlib.sha1()
    for p in sorted(Path(str(x)) for x in paths):
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")) if p.is_dir() else [p]
        for f in files:
            if f.name == "curate_lineage.json":
                continue
            h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
            file_digest(f, h)
    return h.hexdigest()


def data_hash(source: Any) -> str:
    """The content hash of a data source: a path, a glob, or a list of them."""
    from curate.io import resolve

    files, arrow_dir, _ = resolve(source)
    return content_hash([arrow_dir] if arrow_dir is not None else files)


def digest(value: Any) -> str:
    """SHA-1 of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two fingerprints."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
