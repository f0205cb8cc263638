"""YOLO label files: one ``class cx cy w h`` line per object, all normalised to 0..1.

Pairing is YOLO's own: ``labels/x.txt`` belongs to ``images/x.<ext>`` (or an image beside
it). ``class`` is an index into the source's ``yolo_classes`` list, which gives the raw label
that the ``categories`` mapping then translates. ``classes.txt`` files are class lists, not
labels, and are skipped. Boxes stay normalised (pixel-edge fractions ``x1 = cx - w/2``);
``ingest`` scales them by the real image size.
"""

from __future__ import annotations

from collections.abc import Sequence

from colonpipe.data.sources.common import Problem, RawObject, ReadOptions, ReadResult, SourceListing
from colonpipe.data.sources.pairing import pair_text_files

ANN_DIRS = ("labels", "label", "annotations")
IMAGE_DIRS = ("images", "image")


def parse_line(line: str, classes: Sequence[str]) -> tuple[tuple[float, float, float, float], str]:
    """``((x1, y1, x2, y2) normalised, raw label)``; ``ValueError`` when malformed or unknown."""
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields 'class cx cy w h', got {len(fields)}")
    try:
        idx = int(fields[0])
    except ValueError:
        raise ValueError(f"class {fields[0]!r} is not an integer index") from None
    cx, cy, w, h = (float(f) for f in fields[1:])
    if not 0 <= idx < len(classes):
        raise LookupError(f"class index {idx} outside yolo_classes (0..{len(classes) - 1})")
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), classes[idx]


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """Objects of every label ``.txt`` file under the root."""
    result = ReadResult(images=listing.images())
    yolo_classes = opts.yolo_classes
    pairs = pair_text_files(listing, opts.annotation_dirs or ANN_DIRS, opts.image_dirs or IMAGE_DIRS, result,
                            suffix=opts.annotation_suffix, skip=frozenset({"classes.txt"}))
    for rel, image, text in pairs:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                box, label = parse_line(line, yolo_classes)
            except LookupError as exc:
                result.problems.append(Problem(listing.display(rel), "unknown_category", f"line {n}: {exc}"))
                continue
            except ValueError as exc:
                result.problems.append(Problem(listing.display(rel), "malformed_annotation", f"line {n}: {exc}"))
                continue
            result.objects.append(RawObject(image=image, label=label, box=box, annotation=rel, normalized=True))
    return result
