"""Binary segmentation masks: a box is the extent of the mask's foreground.

Layout: images and masks in parallel folders with the same relative path below them and
the same file stem (any image extension), e.g. Kvasir-SEG / CVC-ClinicDB style::

    <root>/[<Split>/]images/[<label>/]x.jpg      <root>/[<Split>/]masks/[<label>/]x.png

Mask folders are ``masks``, ``mask``, ``ground truth`` or ``groundtruth`` (any case); image
folders ``images``, ``image`` or ``original``. The raw label is the folder right below the
mask folder, or ``foreground`` when masks lie directly in it. Foreground is any pixel above
half the mask's range (so 0/255, 0/1, noisy JPEG and 16-bit masks all work). One object per
mask; the mask's size travels with it so ``ingest`` can reject masks that do not fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from colonpipe.data.sources.common import (Problem, RawObject, ReadResult, SourceListing, find_image,
                                           stem_index)

MASK_DIRS = {"masks", "mask", "ground truth", "groundtruth"}
IMAGE_DIRS = ("images", "image", "original")
DEFAULT_LABEL = "foreground"


def _is_mask(rel: str) -> bool:
    return any(part.lower() in MASK_DIRS for part in rel.split("/")[:-1])


def mask_label(rel: str) -> str:
    """Folder right below the (last) mask folder, else ``foreground``."""
    parts = rel.split("/")[:-1]
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].lower() in MASK_DIRS:
            return parts[i + 1] if i + 1 < len(parts) else DEFAULT_LABEL
    return DEFAULT_LABEL


def mask_extent(path) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
    """``((x1, y1, x2, y2) inclusive or None when empty, (width, height))`` of a mask file.

    Raises ``OSError``/``ValueError`` for an unreadable file.
    """
    with Image.open(path) as im:
        im.load()
        size = im.size
        if im.mode in ("1", "P"):
            fg = np.asarray(im) > 0
        else:
            if im.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
                im = im.convert("L")
            arr = np.asarray(im)
            full = 255 if arr.dtype == np.uint8 else (65535 if arr.dtype.kind in "ui" else 1.0)
            fg = arr > 0 if arr.max(initial=0) <= 1 else arr > full / 2
    if not fg.any():
        return None, size
    cols = np.flatnonzero(fg.any(axis=0))
    rows = np.flatnonzero(fg.any(axis=1))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])), size


def read(listing: SourceListing, *, official_split: bool = False, yolo_classes: Sequence[str] = ()) -> ReadResult:
    """One object per non-empty mask, paired with its image by folder and stem."""
    candidates = listing.images()
    masks = [r for r in candidates if _is_mask(r)]
    result = ReadResult(images=[r for r in candidates if not _is_mask(r)])
    index = stem_index(result.images)
    for rel in masks:
        shown = listing.display(rel)
        image, others = find_image(rel, index, ann_dirs=MASK_DIRS, image_dirs=IMAGE_DIRS)
        if image is None:
            result.problems.append(Problem(shown, "annotation_without_image", "mask has no matching image"))
            continue
        result.claimed.add(image)
        if others:
            result.problems.append(Problem(shown, "ambiguous_image", f"several images match this mask; using {image}, "
                                           f"ignoring {', '.join(others)}"))
        try:
            box, size = mask_extent(listing.root / rel)
        except (OSError, ValueError, SyntaxError) as exc:
            result.problems.append(Problem(shown, "corrupt_annotation", f"mask cannot be read ({exc})"))
            continue
        if box is None:
            result.problems.append(Problem(shown, "empty_mask", f"mask has no foreground pixels (image {image})"))
            continue
        result.objects.append(RawObject(image=image, label=mask_label(rel), box=box, annotation=rel, size=size))
    return result


__all__ = ["read", "mask_extent", "mask_label"]
