"""COCO detection JSON: ``images`` / ``annotations`` / ``categories`` (one or several files).

Box convention (tested in tests/data/test_coco.py): COCO's ``bbox`` is ``[x, y, w, h]`` in
continuous pixel-edge coordinates, so the box covers pixels ``x .. x+w-1`` and
``y .. y+h-1``: it becomes the inclusive box ``(x, y, x + w - 1, y + h - 1)``, e.g.
``[10, 20, 5, 4]`` -> ``(10, 20, 14, 23)``; fractional values are rounded half-up by
``ingest``. ``box_format: xyxy`` reads ``[x1, y1, x2, y2]`` inclusive instead.

Contract:
- Files: every ``.json`` under the root, or those matching ``annotation_files`` globs. A
  JSON file without ``images`` and ``annotations`` lists is ``malformed_annotation``.
- ``images[].file_name`` may hold sub-folders; it is resolved relative to the root, then to
  the JSON's folder, then as the end of an image path, by file name and by stem anywhere
  under the root (``NameResolver``: COCO keeps images in a folder the JSON does not name,
  ``annotations/x.json`` + ``train2017/``; several matches are ``ambiguous_image``).
- Raw label: the category's ``name`` (``category_key: id`` -> the ``category_id`` as text);
  an annotation without a category gets ``object`` (SUN-SEG's boxes carry none: its
  ``classification.txt`` table supplies the label).
- ``iscrowd`` annotations are used like any other: their box still bounds that category's
  region, and ColonINST merges same-category boxes of an image anyway.
- No ``bbox`` (or an empty one): the box is the extent of the ``segmentation``: polygons
  (edge coordinates, like ``bbox``: ``(min x, min y, max x - 1, max y - 1)``) or RLE,
  uncompressed (``counts`` list) or compressed (COCO's string), decoded here without
  materialising the mask; its ``size`` must match the image.
- SUN-SEG's variant is read as is: the list is called ``annotation`` and an annotation is
  tied to its image by an ``id`` equal to the image's (no ``image_id``).
- Coordinates that are not numbers, or integers too large for a float, are
  ``malformed_annotation``; nothing is ever raised for bad input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from colonpipe.data.sources.common import (Problem, RawObject, ReadOptions, ReadResult, SourceListing, matches_any,
                                           parent_dir, to_coord)
from colonpipe.data.sources.pairing import NameResolver, PathIndex, case_problem

NO_CATEGORY = "object"
Box = tuple[float, float, float, float]


def rle_counts(counts: str) -> list[int]:
    """Run lengths of COCO's compressed RLE string (LEB128-like, 6 bits a character, runs
    after the second stored as differences). ``ValueError`` for a malformed string."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts):
                raise ValueError("compressed RLE ends inside a number")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"compressed RLE has an invalid character {counts[p]!r}")
            if k > 13:  # 14 x 5 bits > 64: no real mask has such a run
                raise ValueError("compressed RLE holds a number longer than 64 bits")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def rle_extent(runs: Sequence[int], height: int, width: int) -> tuple[int, int, int, int] | None:
    """Inclusive ``(x1, y1, x2, y2)`` of a column-major RLE (first run = background), or None
    when empty. ``ValueError`` when the runs do not cover ``height * width`` pixels."""
    if any(r < 0 for r in runs) or sum(runs) != height * width:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels, the mask has {height}x{width}")
    x1 = y1 = 10**18
    x2 = y2 = -1
    pos = 0
    for i, run in enumerate(runs):
        if i % 2 and run:
            start, end = pos, pos + run - 1
            c0, c1 = start // height, end // height
            r0, r1 = (start % height, end % height) if c0 == c1 else (0, height - 1)  # spans a column break
            x1, x2, y1, y2 = min(x1, c0), max(x2, c1), min(y1, r0), max(y2, r1)
        pos += run
    return None if x2 < 0 else (x1, y1, x2, y2)


def _polygon_extent(polys: list) -> Box:
    coords = [to_coord(v) for poly in polys for v in poly] if all(isinstance(p, list) for p in polys) else None
    if not coords or any(len(p) < 6 or len(p) % 2 for p in polys):
        raise ValueError("polygon segmentation needs lists of at least 3 x,y points")
    xs, ys = coords[0::2], coords[1::2]
    return min(xs), min(ys), max(xs) - 1, max(ys) - 1


def _segmentation_box(seg: Any) -> tuple[Box | None, tuple[int, int] | None]:
    """``(box or None when the mask is empty, (width, height) the RLE states or None)``."""
    if isinstance(seg, list):
        return _polygon_extent(seg), None
    if isinstance(seg, dict) and isinstance(seg.get("size"), list) and len(seg["size"]) == 2:
        h, w = (int(to_coord(v)) for v in seg["size"])
        counts = seg.get("counts")
        runs = rle_counts(counts) if isinstance(counts, str) else counts
        if not isinstance(runs, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in runs):
            raise ValueError("RLE counts must be a list of integers or a compressed string")
        return rle_extent(runs, h, w), (w, h)
    raise ValueError("no usable bbox and the segmentation is neither polygons nor RLE")


def annotation_box(ann: dict, box_format: str) -> tuple[Box | None, tuple[int, int] | None]:
    """Inclusive box of one annotation (see module docstring); ValueError when malformed."""
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4:
        x, y, a, b = (to_coord(v) for v in bbox)
        return ((x, y, a, b) if box_format == "xyxy" else (x, y, x + a - 1, y + b - 1)), None
    if bbox not in (None, []):
        raise ValueError(f"bbox must be a list of 4 numbers, got {type(bbox).__name__}")
    if "segmentation" not in ann:
        raise ValueError("annotation has neither bbox nor segmentation")
    return _segmentation_box(ann["segmentation"])


def _label(ann: dict, categories: dict[Any, str], key: str) -> str:
    cid = ann.get("category_id")
    if key == "id" and cid is not None:
        return str(cid)
    if cid in categories:
        return categories[cid]
    name = ann.get("category_name", ann.get("category"))
    if isinstance(name, str) and name:
        return name
    return str(cid) if cid is not None else NO_CATEGORY


def _categories(data: dict) -> dict[Any, str]:
    cats = data.get("categories")
    out: dict[Any, str] = {}
    for c in cats if isinstance(cats, list) else []:
        if isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("id"), (int, str)):
            out[c["id"]] = c["name"]
    return out


def _images(data: dict, resolver: NameResolver, shown: str, result: ReadResult) -> dict[Any, tuple]:
    """``{image id: (rel path, (w, h) or None)}`` for every resolvable ``images`` entry."""
    out: dict[Any, tuple] = {}
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str) or "id" not in entry:
            result.problems.append(Problem(shown, "malformed_annotation", f"images[{i}] needs an id and a file_name"))
            continue
        iid, name = entry["id"], entry["file_name"]
        if not isinstance(iid, (int, str)) or iid in out:
            result.problems.append(Problem(shown, "malformed_annotation", f"images[{i}]: id {iid!r} is not a "
                                           "unique integer or string"))
            continue
        image, others, escaped = resolver.resolve(name)
        if escaped:
            result.problems.append(Problem(shown, "path_escape", f"file_name {name!r} points outside the root"))
            continue
        if image is None:
            kind, why = ("ambiguous_image", f"matches several images ({', '.join(others[:5])})") if others else \
                ("annotation_without_image", "not found")
            result.problems.append(Problem(shown, kind, f"images[{i}] file_name {name!r} {why}"))
            continue
        problem = case_problem(shown, name, image, others)
        if problem is not None:
            result.problems.append(problem)
        w, h = entry.get("width"), entry.get("height")
        size = (w, h) if all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in (w, h)) else None
        out[iid] = (image, size)
        result.claimed.add(image)  # listed = annotated, even with no objects (a negative frame)
    return out


def _annotations(data: dict) -> list | None:
    anns = data.get("annotations", data.get("annotation"))
    return anns if isinstance(anns, list) else None


def _read_file(listing: SourceListing, rel: str, paths: PathIndex, opts: ReadOptions, result: ReadResult) -> None:
    shown = listing.display(rel)
    try:
        data = json.loads((listing.root / rel).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: bad JSON, 4300+ digit integers
        result.problems.append(Problem(shown, "malformed_annotation", f"JSON cannot be read ({str(exc)[:200]})"))
        return
    anns = _annotations(data) if isinstance(data, dict) else None
    if anns is None or not isinstance(data.get("images"), list):
        result.problems.append(Problem(shown, "malformed_annotation",
                                       "not a COCO detection file (needs 'images' and 'annotations' lists)"))
        return
    images = _images(data, NameResolver(result.images, base=parent_dir(rel), paths=paths), shown, result)
    categories = _categories(data)
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            result.problems.append(Problem(shown, "malformed_annotation", f"annotations[{i}] is not an object"))
            continue
        ref = ann["image_id"] if "image_id" in ann else ann.get("id")  # SUN-SEG ties by id
        if not isinstance(ref, (int, str)) or ref not in images:
            result.problems.append(Problem(shown, "annotation_without_image",
                                           f"annotations[{i}]: image id {str(ref)[:40]!r} is not a listed, found image"))
            continue
        image, size = images[ref]
        try:
            box, seg_size = annotation_box(ann, opts.box_format)
        except (ValueError, TypeError) as exc:
            result.problems.append(Problem(shown, "malformed_annotation", f"annotations[{i}] ({image}): {exc}"))
            continue
        if box is None:
            result.problems.append(Problem(shown, "empty_mask", f"annotations[{i}]: segmentation is empty ({image})"))
            continue
        result.objects.append(RawObject(image=image, label=_label(ann, categories, opts.category_key), box=box,
                                        annotation=rel, size=seg_size or size))


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """Objects of every COCO file of the source (see module docstring)."""
    result = ReadResult(images=listing.images())
    paths = PathIndex(result.images)
    for rel in listing.with_suffix(".json"):
        if opts.annotation_files is None or matches_any(rel, opts.annotation_files):
            _read_file(listing, rel, paths, opts, result)
    return result


__all__ = ["read", "annotation_box", "rle_counts", "rle_extent"]
