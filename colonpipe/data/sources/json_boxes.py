"""JSON box lists. Two shapes are read, from every ``.json`` file under the root:

1. Kvasir-SEG style, a mapping keyed by image (stem or relative path)::

       {"cju0qkwl35piu0993l0dewei2": {"width": 622, "height": 529,
           "bbox": [{"label": "polyp", "xmin": 38, "ymin": 5, "xmax": 430, "ymax": 338}]}}

2. A list of records::

       [{"image": "images/a.jpg", "width": 622, "height": 529,
         "boxes": [{"label": "polyp", "box": [38, 5, 430, 338]}]}]

Images are looked up relative to the JSON's folder, first in its ``images/`` sub-folder
and then beside it (exact case first; two files differing only in case are reported as
ambiguous); a key without extension matches by stem. Boxes are inclusive 0-based pixels;
a coordinate that is not a number, or an integer too large for a float (a 400-digit one),
is a malformed box, reported. ``width``/``height``, when given, must match the image
(``ingest`` checks).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from colonpipe.data.sources.common import (Problem, RawObject, ReadOptions, ReadResult, SourceListing, parent_dir,
                                           safe_relpath, to_coord)
from colonpipe.data.sources.pairing import PathIndex, case_problem, stem_index

IMAGE_DIRS = ("images", "image", "")


def _entries(data) -> list[tuple[str, dict]]:
    """``[(image key, entry)]`` from either JSON shape; ``ValueError`` for anything else."""
    if isinstance(data, dict):
        return [(str(k), v) for k, v in data.items()]
    if isinstance(data, list):
        out = []
        for i, rec in enumerate(data):
            if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
                raise ValueError(f"record {i} is not an object with a string 'image'")
            out.append((rec["image"], rec))
        return out
    raise ValueError("top level must be an object keyed by image or a list of records")


def _box(item) -> tuple[tuple[float, float, float, float], str]:
    if not isinstance(item, dict) or not isinstance(item.get("label"), (str, int)):
        raise ValueError("box entry needs a 'label'")
    if "box" in item:
        vals = item["box"]
        if not isinstance(vals, list) or len(vals) != 4:
            raise ValueError("'box' must be a list [x1, y1, x2, y2]")
    else:
        vals = [item.get(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in vals):
        raise ValueError(f"box coordinates must be numbers, got {_short(vals)}")
    x1, y1, x2, y2 = (to_coord(v) for v in vals)
    return (x1, y1, x2, y2), str(item["label"])


def _short(value, limit: int = 120) -> str:
    """``repr`` cut to ``limit`` characters; huge integers shown by their size (hostile files)."""
    if isinstance(value, list):
        text = "[" + ", ".join(_short(v, 24) for v in value) + "]"
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        text = f"<{value.bit_length()}-bit integer>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _size(entry: dict) -> tuple[int, int] | None:
    """``(width, height)`` when both are plain, plausible integers (else unchecked)."""
    w, h = entry.get("width"), entry.get("height")
    ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**31 for v in (w, h))
    return (w, h) if ok else None


def _find(json_dir: str, key: str, paths: PathIndex, index) -> tuple[str | None, list[str], bool]:
    """``(image or None, case variants, escaped)`` for an image key relative to the JSON's folder."""
    for sub in IMAGE_DIRS:
        base = f"{json_dir}/{sub}".strip("/") if sub else json_dir
        joined = safe_relpath(base, key)
        if joined is None:
            return None, [], True
        if PurePosixPath(key).suffix:
            image, others = paths.lookup(joined)
            if image is not None or others:
                return image, others, False
            continue
        hits = index.get((parent_dir(joined).lower(), PurePosixPath(joined).name), [])
        if hits:
            return hits[0], [], False
    return None, [], False


def _read_json(listing: SourceListing, rel: str, paths: PathIndex, index, result: ReadResult) -> None:
    shown = listing.display(rel)
    try:
        entries = _entries(json.loads((listing.root / rel).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        result.problems.append(Problem(shown, "malformed_annotation", f"JSON cannot be read ({exc})"))
        return
    for key, entry in entries:
        image, others, escaped = _find(parent_dir(rel), key, paths, index)
        if escaped:
            result.problems.append(Problem(shown, "path_escape", f"image {key!r} points outside the source root"))
            continue
        problem = case_problem(shown, key, image, others)
        if problem is not None:
            result.problems.append(problem)
            if image is None:
                continue
        if image is None:
            result.problems.append(Problem(shown, "annotation_without_image", f"image {key!r} not found"))
            continue
        result.claimed.add(image)
        boxes = entry.get("bbox", entry.get("boxes")) if isinstance(entry, dict) else None
        if not isinstance(boxes, list):
            result.problems.append(Problem(shown, "malformed_annotation", f"image {key!r}: no 'bbox'/'boxes' list"))
            continue
        for i, item in enumerate(boxes):
            try:
                box, label = _box(item)
            except ValueError as exc:
                result.problems.append(Problem(shown, "malformed_annotation", f"image {key!r} box {i}: {exc}"))
                continue
            result.objects.append(RawObject(image=image, label=label, box=box, annotation=rel, size=_size(entry)))


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """Objects of every ``.json`` file under the root."""
    result = ReadResult(images=listing.images())
    paths, index = PathIndex(result.images), stem_index(result.images)
    for rel in listing.with_suffix(".json"):
        _read_json(listing, rel, paths, index, result)
    return result
