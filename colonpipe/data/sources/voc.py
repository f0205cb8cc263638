"""Pascal-VOC XML boxes: one ``.xml`` per image, ``<object><name>`` + ``<bndbox>``.

The image is the XML's ``<filename>`` (the XML's own stem when absent), looked up in a folder
parallel to the XML's (``Annotations/`` -> ``JPEGImages/`` or ``images/``) and then beside
the XML; when the exact name is missing, an image with the same stem is used. A filename
that climbs out of the source root (``../``, absolute) is reported as a path escape.
VOC coordinates are 1-based inclusive; they are shifted to 0-based here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import PurePosixPath

from colonpipe.data.sources.common import (Problem, RawObject, ReadResult, SourceListing, parent_dir,
                                           safe_relpath, stem_index, swap_folder)

ANN_DIRS = {"annotations", "annotation", "xml", "labels"}
IMAGE_DIRS = ("jpegimages", "images", "image")


def _resolve_image(xml_rel: str, filename: str, lower: dict[str, str],
                   index: dict[tuple[str, str], list[str]]) -> tuple[str | None, bool]:
    """``(image rel path or None, escaped)`` for the XML's ``<filename>``."""
    for folder in swap_folder(parent_dir(xml_rel), ANN_DIRS, IMAGE_DIRS):
        joined = safe_relpath(folder, filename)
        if joined is None:
            return None, True
        if joined.lower() in lower:
            return lower[joined.lower()], False
    for folder in swap_folder(parent_dir(xml_rel), ANN_DIRS, IMAGE_DIRS):
        hits = index.get((folder.lower(), PurePosixPath(filename).stem), [])
        if hits:
            return hits[0], False
    return None, False


def _box(obj: ET.Element) -> tuple[float, float, float, float]:
    bb = obj.find("bndbox")
    if bb is None:
        raise ValueError("object has no <bndbox>")
    vals = [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if any(v is None for v in vals):
        raise ValueError("<bndbox> lacks one of xmin/ymin/xmax/ymax")
    x1, y1, x2, y2 = (float(v) - 1.0 for v in vals)  # ValueError on non-numbers
    return x1, y1, x2, y2


def _read_xml(listing: SourceListing, rel: str, lower, index, result: ReadResult) -> None:
    shown = listing.display(rel)
    try:
        tree = ET.parse(listing.root / rel)
    except (ET.ParseError, OSError) as exc:
        result.problems.append(Problem(shown, "malformed_annotation", f"XML cannot be parsed ({exc})"))
        return
    xml_root = tree.getroot()
    filename = (xml_root.findtext("filename") or "").strip() or PurePosixPath(rel).stem
    image, escaped = _resolve_image(rel, filename, lower, index)
    if escaped:
        result.problems.append(Problem(shown, "path_escape", f"<filename> {filename!r} points outside the source root"))
        return
    if image is None:
        result.problems.append(Problem(shown, "annotation_without_image", f"image {filename!r} not found"))
        return
    result.claimed.add(image)
    for i, obj in enumerate(xml_root.iter("object")):
        label = (obj.findtext("name") or "").strip()
        try:
            if not label:
                raise ValueError("object has no <name>")
            box = _box(obj)
        except ValueError as exc:
            result.problems.append(Problem(shown, "malformed_annotation", f"object {i}: {exc}"))
            continue
        result.objects.append(RawObject(image=image, label=label, box=box, annotation=rel))


def read(listing: SourceListing, *, official_split: bool = False, yolo_classes: Sequence[str] = (),
         workers: int = 1) -> ReadResult:
    """Objects of every ``.xml`` file under the root."""
    result = ReadResult(images=listing.images())
    lower = {r.lower(): r for r in result.images}
    index = stem_index(result.images)
    for rel in listing.with_suffix(".xml"):
        _read_xml(listing, rel, lower, index, result)
    return result
