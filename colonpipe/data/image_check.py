"""Cheap, reliable image checks for ``ingest``: size, mode, content hash, truncation.

Contract:
- ``check_image(path, level)`` reads the file once, hashes its bytes (sha256) and never
  raises: a problem comes back in ``ImageInfo.error`` (and its kind in ``error_kind``:
  ``decompression_bomb`` for an image whose header declares more pixels than PIL's
  ``MAX_IMAGE_PIXELS``, refused before decoding; ``corrupt_image`` otherwise).
- Levels (benchmarked in ``benchmarks/bench_data.py``):
  - ``full``: decode every pixel (the naive baseline).
  - ``reduced``: JPEG decoded at 1/8 scale (``draft``; all entropy data is still read, so
    truncation is caught), PNG checked chunk by chunk with CRCs (``verify``), other formats
    fully decoded.
  - ``markers`` (default): JPEG header parsed and the end-of-image marker required at the end
    of the file, falling back to ``reduced`` when it is missing (trailing bytes after EOI
    are tolerated only if the reduced decode succeeds); PNG as in ``reduced``; others fully
    decoded. libjpeg tolerates corrupt entropy data in a full decode too, so for JPEG this
    catches what a full decode catches: truncation and broken headers.
- ``check_images(paths, level=..., workers=N)`` keeps input order; ``workers > 1`` uses a
  process pool (decoding and header parsing are CPU bound).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from PIL import Image
from tqdm import tqdm

from colonpipe.data.images import ImageBombError, ImageError, open_image

logger = logging.getLogger(__name__)

LEVELS = ("full", "reduced", "markers")
CORRUPT_KIND = "corrupt_image"
_JPEG_TAIL_PADDING = b"\x00\r\n \t"


@dataclass(frozen=True)
class ImageInfo:
    """What ingest needs to know about one image file (``error`` set when unusable)."""

    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    sha256: str = ""
    error: str | None = None
    error_kind: str = CORRUPT_KIND  # the report kind of ``error``


def _decode(im: Image.Image, level: str) -> None:
    """Run the level's integrity check on an opened image; raises on a bad file."""
    if level == "full":
        im.load()
    elif im.format == "PNG":
        im.verify()
    elif im.format == "JPEG":
        im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()
    else:
        im.load()


def _inspect(data: bytes, level: str) -> tuple[int, int, str, str]:
    with open_image(io.BytesIO(data), label="") as im:  # a bomb is refused here, from the header
        size, mode, fmt = im.size, im.mode, im.format or ""
        if level == "markers" and fmt == "JPEG":
            if not data.rstrip(_JPEG_TAIL_PADDING).endswith(b"\xff\xd9"):
                _decode(im, "reduced")
        else:
            _decode(im, level)
    return size[0], size[1], mode, fmt


def check_image(path: str, level: str = "markers") -> ImageInfo:
    """Inspect one image file at ``level`` (see module doc); never raises."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return ImageInfo(error=f"cannot read file ({exc.strerror or exc})")
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return ImageInfo(sha256=digest, error="file is empty")
    try:
        width, height, mode, fmt = _inspect(data, level)
    except ImageBombError as exc:
        return ImageInfo(sha256=digest, error=str(exc), error_kind=exc.kind)
    except ImageError as exc:  # the header cannot be parsed
        return ImageInfo(sha256=digest, error=f"not a readable image ({exc})")
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unusable image
        return ImageInfo(sha256=digest, error=f"not a readable image ({type(exc).__name__}: {exc})")
    if width <= 0 or height <= 0:
        return ImageInfo(sha256=digest, error=f"image has no pixels ({width}x{height})")
    return ImageInfo(width, height, mode, fmt, digest)


def _check_star(args: tuple[str, str]) -> ImageInfo:
    return check_image(*args)


def check_images(paths: Sequence[str], *, level: str = "markers", workers: int = 1,
                 progress: bool = True) -> list[ImageInfo]:
    """``check_image`` for every path, in input order; ``workers > 1`` runs a process pool."""
    if level not in LEVELS:
        raise ValueError(f"unknown image check level {level!r} (known: {', '.join(LEVELS)})")
    jobs = [(str(p), level) for p in paths]
    logger.info("checking %d images (level %s, %d worker(s))", len(jobs), level, workers)
    bar = dict(total=len(jobs), desc=f"check images ({level})", unit="img", disable=not progress,
               mininterval=1.0)
    if workers <= 1 or len(jobs) < 64:
        return [check_image(*job) for job in tqdm(jobs, **bar)]
    chunk = max(8, min(256, len(jobs) // (workers * 16)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_check_star, jobs, chunksize=chunk), **bar))
