"""SUN-style per-image box text: one ``x1,y1,x2,y2,class`` line per object.

Each ``.txt`` file belongs to the image with the same stem, found in a parallel folder
(``annotations/`` or ``labels/`` -> ``images/``; ``annotation_dirs`` / ``image_dirs`` /
``annotation_suffix`` change the pairing, e.g. EDD2020's ``bbox/`` -> ``originalImages/``)
or beside it. Coordinates are inclusive
0-based pixels; commas and/or whitespace separate the five fields; blank lines and ``#``
comments are ignored. The raw label is the class field as written (``1``, ``polyp``).
"""

from __future__ import annotations

import re

from colonpipe.data.sources.common import Problem, RawObject, ReadOptions, ReadResult, SourceListing
from colonpipe.data.sources.pairing import pair_text_files

ANN_DIRS = ("annotations", "annotation", "labels", "txt", "bbox", "boxes")
IMAGE_DIRS = ("images", "image", "frames")
_SPLIT = re.compile(r"[,\s]+")


def parse_line(line: str) -> tuple[tuple[float, float, float, float], str]:
    """``((x1, y1, x2, y2), label)`` from one line; ``ValueError`` when malformed."""
    fields = [f for f in _SPLIT.split(line.strip()) if f]
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields x1,y1,x2,y2,class, got {len(fields)}")
    x1, y1, x2, y2 = (float(f) for f in fields[:4])
    return (x1, y1, x2, y2), fields[4]


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """Objects of every ``.txt`` file under the root."""
    result = ReadResult(images=listing.images())
    pairs = pair_text_files(listing, opts.annotation_dirs or ANN_DIRS, opts.image_dirs or IMAGE_DIRS, result,
                            suffix=opts.annotation_suffix)
    for rel, image, text in pairs:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                box, label = parse_line(line)
            except ValueError as exc:
                result.problems.append(Problem(listing.display(rel), "malformed_annotation", f"line {n}: {exc}"))
                continue
            result.objects.append(RawObject(image=image, label=label, box=box, annotation=rel))
    return result
