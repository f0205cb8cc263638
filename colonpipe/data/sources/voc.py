"""Pascal-VOC XML boxes: one ``.xml`` per image, ``<object><name>`` + ``<bndbox>``.

The image is the XML's ``<filename>`` (the XML's own stem when absent), looked up in a folder
parallel to the XML's (``Annotations/`` -> ``JPEGImages/`` or ``images/``) and then beside
the XML, exact case first (two files differing only in case are reported as ambiguous);
when the exact name is missing, an image with the same stem is used (KUMC's XMLs name
``.png`` files its ``Image/<video>/`` folders hold as ``.jpg``). A filename
that climbs out of the source root (``../``, absolute) is reported as a path escape.
VOC coordinates are 1-based inclusive; they are shifted to 0-based here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import PurePosixPath

from colonpipe.data.sources.common import (Problem, RawObject, ReadOptions, ReadResult, SourceListing, parent_dir,
                                           safe_relpath)
from colonpipe.data.sources.pairing import PairIndex, PathIndex, case_problem, swap_folder

ANN_DIRS = ("annotations", "annotation", "xml", "labels")
IMAGE_DIRS = ("jpegimages", "images", "image")
_GLOB = set("*?[")


def _resolve_image(xml_rel: str, filename: str, paths: PathIndex, pairs: PairIndex,
                   opts: ReadOptions) -> tuple[str | None, list[str], bool]:
    """``(image rel path or None, case variants, escaped)`` for the XML's ``<filename>``."""
    ann_dirs = opts.annotation_dirs or ANN_DIRS
    names = [d for d in (opts.image_dirs or IMAGE_DIRS) if not _GLOB & set(d)]  # literal folder names
    for folder in swap_folder(parent_dir(xml_rel), {d.lower() for d in ann_dirs}, tuple(names)):
        joined = safe_relpath(folder, filename)
        if joined is None:
            return None, [], True
        image, others = paths.lookup(joined)
        if image is not None or others:
            return image, others, False
    image, _ = pairs.find(xml_rel, ann_dirs, stem=PurePosixPath(filename.replace("\\", "/")).stem)
    return image, [], False


def _box(obj: ET.Element) -> tuple[float, float, float, float]:
    bb = obj.find("bndbox")
    if bb is None:
        raise ValueError("object has no <bndbox>")
    vals = [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if any(v is None for v in vals):
        raise ValueError("<bndbox> lacks one of xmin/ymin/xmax/ymax")
    x1, y1, x2, y2 = (float(v) - 1.0 for v in vals)  # ValueError on non-numbers
    return x1, y1, x2, y2


def _read_xml(listing: SourceListing, rel: str, paths: PathIndex, pairs: PairIndex, opts: ReadOptions,
              result: ReadResult) -> None:
    shown = listing.display(rel)
    try:
        tree = ET.parse(listing.root / rel)
    except (ET.ParseError, OSError) as exc:
        result.problems.append(Problem(shown, "malformed_annotation", f"XML cannot be parsed ({exc})"))
        return
    xml_root = tree.getroot()
    filename = (xml_root.findtext("filename") or "").strip() or PurePosixPath(rel).stem
    image, others, escaped = _resolve_image(rel, filename, paths, pairs, opts)
    if escaped:
        result.problems.append(Problem(shown, "path_escape", f"<filename> {filename!r} points outside the source root"))
        return
    problem = case_problem(shown, filename, image, others)
    if problem is not None:
        result.problems.append(problem)
        if image is None:
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


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """Objects of every ``.xml`` file under the root."""
    result = ReadResult(images=listing.images())
    paths, pairs = PathIndex(result.images), PairIndex(result.images, opts.image_dirs or IMAGE_DIRS)
    for rel in listing.with_suffix(".xml"):
        _read_xml(listing, rel, paths, pairs, opts, result)
    return result
