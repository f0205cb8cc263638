"""Binary segmentation masks: a box is the extent of the mask's foreground.

Layout: images and masks in parallel folders with the same relative path below them and
the same file stem (any image extension), e.g. Kvasir-SEG / CVC-ClinicDB style::

    <root>/[<Split>/]images/[<label>/]x.jpg      <root>/[<Split>/]masks/[<label>/]x.png

Mask folders are ``masks``, ``mask``, ``ground truth`` or ``groundtruth`` (any case); image
folders ``images``, ``image`` or ``original``; ``annotation_dirs`` / ``image_dirs`` (folder
globs, e.g. ``masks_*`` / ``images_*`` for PolypGen's numbered folders) and
``annotation_suffix`` (``_mask``: ``x_mask.jpg`` belongs to ``x.jpg``) replace them. The raw
label is the folder right below the mask folder, or ``foreground`` when masks lie directly in it. Foreground is any pixel above
half the mask's range (so 0/255, 0/1, noisy JPEG and 16-bit masks all work). One object per
mask; the mask's size travels with it so ``ingest`` can reject masks that do not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from colonpipe.data.images import BOMB_KIND, ImageBombError, ImageError, open_image
from colonpipe.data.sources.common import Problem, RawObject, ReadOptions, ReadResult, SourceListing
from colonpipe.data.sources.pairing import PairIndex, below_folder, in_folder

MASK_DIRS = ("masks", "mask", "ground truth", "groundtruth")
IMAGE_DIRS = ("images", "image", "original")
DEFAULT_LABEL = "foreground"


def mask_label(rel: str, mask_dirs: Sequence[str] = MASK_DIRS) -> str:
    """Folder right below the (last) mask folder, else ``foreground``."""
    return below_folder(rel, mask_dirs) or DEFAULT_LABEL


_ABOVE = {thr: [255 if v > thr else 0 for v in range(256)] for thr in (0, 127)}  # threshold lookup tables


def _extent_8bit(im: Image.Image) -> tuple[int, int, int, int] | None:
    """Foreground bbox of an 8-bit grey mask with PIL's C routines (no numpy copy).

    The thresholded passes run on the non-zero extent only (``getbbox``: one fast scan), as
    every foreground pixel lies inside it: the same box, at a fraction of the work for a
    polyp covering part of a megapixel frame.
    """
    nonzero = im.getbbox()
    if nonzero is None:
        return None
    crop = im.crop(nonzero)
    _, hi = crop.getextrema()  # the image's maximum: every non-zero pixel is in the crop
    thr = 0 if hi <= 1 else 127  # 0/1 masks, else above half of 255 (noisy JPEG masks too)
    bbox = crop.point(_ABOVE[thr]).getbbox()
    if bbox is None:
        return None
    x0, y0 = nonzero[0], nonzero[1]
    return x0 + bbox[0], y0 + bbox[1], x0 + bbox[2] - 1, y0 + bbox[3] - 1


def mask_extent(path) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
    """``((x1, y1, x2, y2) inclusive or None when empty, (width, height))`` of a mask file.

    Raises ``ImageBombError`` (from the header, before any decoding) for a decompression bomb,
    ``ImageError``/``OSError``/``ValueError`` for an unreadable file.
    """
    with open_image(path, label="") as im:
        im.load()
        size = im.size
        if im.mode in ("1", "P"):
            fg = np.asarray(im) > 0
        elif im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            arr = np.asarray(im)
            full = 65535 if arr.dtype.kind in "ui" else 1.0
            fg = arr > 0 if arr.max(initial=0) <= 1 else arr > full / 2
        else:
            return _extent_8bit(im if im.mode == "L" else im.convert("L")), size
    if not fg.any():
        return None, size
    cols = np.flatnonzero(fg.any(axis=0))
    rows = np.flatnonzero(fg.any(axis=1))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])), size


def _safe_extent(path: str):
    """``mask_extent``, or ``(problem kind, message)`` when the mask cannot be used (for the
    process pool): ``decompression_bomb`` or ``corrupt_annotation``."""
    try:
        return mask_extent(path)
    except ImageBombError as exc:
        return BOMB_KIND, str(exc)
    except (ImageError, OSError, ValueError, SyntaxError) as exc:
        return "corrupt_annotation", f"mask cannot be read ({exc})"


def mask_extents(paths: list[str], *, workers: int = 1) -> list:
    """``_safe_extent`` of every path, in order; a process pool when ``workers > 1``."""
    if workers <= 1 or len(paths) < 64:
        return [_safe_extent(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_safe_extent, paths, chunksize=max(8, len(paths) // (workers * 16))))


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """One object per non-empty mask, paired with its image by folder and stem."""
    mask_dirs, workers = opts.annotation_dirs or MASK_DIRS, opts.workers
    candidates = listing.images()
    result = ReadResult(images=[r for r in candidates if not in_folder(r, mask_dirs)])
    index = PairIndex(result.images, opts.image_dirs or IMAGE_DIRS)
    pairs = []
    for rel in (r for r in candidates if in_folder(r, mask_dirs)):
        image, others = index.find(rel, mask_dirs, opts.annotation_suffix)
        if image is None:
            result.problems.append(Problem(listing.display(rel), "annotation_without_image", "mask has no matching image"))
            continue
        result.claimed.add(image)
        if others:
            result.problems.append(Problem(listing.display(rel), "ambiguous_image", f"several images match this mask; "
                                           f"using {image}, ignoring {', '.join(others)}"))
        pairs.append((rel, image))
    extents = mask_extents([str(listing.root / rel) for rel, _ in pairs], workers=workers)
    for (rel, image), extent in zip(pairs, extents):
        if isinstance(extent[0], str):
            result.problems.append(Problem(listing.display(rel), *extent))
        elif extent[0] is None:
            result.problems.append(Problem(listing.display(rel), "empty_mask", f"mask has no foreground pixels (image {image})"))
        else:
            result.objects.append(RawObject(image=image, label=mask_label(rel, mask_dirs), box=extent[0], annotation=rel,
                                            size=extent[1]))
    return result


__all__ = ["read", "mask_extent", "mask_label"]
