"""Content hashes of files and folders (one implementation for lineage, resume and journals).

``sha256_path(path, skip=...)``: a file's sha256, or for a folder the sha256 of its sorted
``relpath\\0filehash`` lines. Files whose relative path has a part in ``skip`` (and any
``__pycache__``) are left out. A missing path raises ``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_path(path: str | Path, *, skip: Collection[str] = ()) -> str:
    """sha256 of a file's bytes, or of a folder's sorted ``relpath\\0filehash`` lines."""
    path = Path(path)
    if path.is_file():
        return _file_digest(path)
    if path.is_dir():
        h = hashlib.sha256()
        ignored = {"__pycache__", *skip}
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = f.relative_to(path)
            if not ignored.isdisjoint(rel.parts):
                continue
            h.update(f"{rel.as_posix()}\0{_file_digest(f)}\n".encode())
        return h.hexdigest()
    raise FileNotFoundError(f"{path}: input to hash does not exist")
