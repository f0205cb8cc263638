"""What a prediction depends on besides the model: the image roots, each image, the decoder.

These go into the journals' fingerprint (``colonpipe.infer.runner.job_fingerprint``):
- ``image_roots(resolver)``: ``{dataset: absolute root}`` (``{"": root}`` for one folder);
  pointing inference at other folders starts over.
- ``image_identities(records, resolver)``: one string per record *position*, the identity of
  the image it names when the run starts: ``"<size>:<mtime_ns>"``, or ``"missing"``,
  ``"unresolvable"`` (unknown dataset, escapes its root), ``"unreadable"`` (stat failed),
  ``"no-id"`` (a malformed record). A prediction is reused only while its position's
  identity is unchanged (``journal.prepare_journal_dir``), so replacing one image redoes the
  records that show it, not the whole file. A tool that rewrites an image keeping both its
  size and its mtime defeats this check.
- ``decode_code()``: sha256 of the source that turns a file into pixels (the image loader
  and the processor's preprocessing) and the Pillow version that runs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import PIL

from colonpipe.data.images import ImageError, ImageResolver
from colonpipe.hashing import sha256_path

PACKAGE = Path(__file__).resolve().parents[1]
# the source that turns an image file into pixel_values: the loader, the processor's preprocessing
DECODE_FILES = ("data/images.py", "model/processing.py")


def image_roots(resolver: ImageResolver) -> dict[str, str]:
    """The folders images are read from, absolute and with symlinks resolved."""
    if resolver.root is not None:
        return {"": str(Path(resolver.root).resolve())}
    return {name: str(Path(root).resolve()) for name, root in sorted((resolver.roots or {}).items())}


def _identity(resolver: ImageResolver, image_id: Any) -> str:
    if not isinstance(image_id, str) or not image_id:
        return "no-id"
    try:
        st = os.stat(resolver.resolve(image_id))
    except ImageError:
        return "unresolvable"
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    return f"{st.st_size}:{st.st_mtime_ns}"


def image_identities(records: Sequence[Any], resolver: ImageResolver) -> list[str]:
    """Identity of the image of every record, by position (see the module doc)."""
    cache: dict[Any, str] = {}  # records repeat images (one per task question)
    out = []
    for rec in records:
        image_id = rec.get("id") if isinstance(rec, dict) else None
        key = image_id if isinstance(image_id, str) else None
        if key not in cache:
            cache[key] = _identity(resolver, image_id)
        out.append(cache[key])
    return out


def decode_code() -> dict[str, str]:
    """sha256 of the image-decoding source files (read, not imported), and the Pillow version."""
    return {**{f"colonpipe/{rel}": sha256_path(PACKAGE / rel) for rel in DECODE_FILES}, "pillow": PIL.__version__}
