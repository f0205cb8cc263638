"""Raw sources -> ``annotations.parquet`` + ``image_roots.json`` + ``ingest_report.json``.

Contract (``ingest(params, out_dir)``):
- Each source in ``params.sources`` is listed (``list_source``), read by its format's reader,
  and every image an annotation refers to is checked once (``image_check``, process pool).
- Record id / ``image`` column = ``<source name>/<path relative to the source root>``.
- Bad inputs never stop the run: each gets one report entry (file, kind, action, reason):
  corrupt/truncated image, non-RGB image (kept: ``repaired``, converted to RGB at load),
  annotation without image, image without annotation, box partly outside (``box_policy``:
  clip -> repaired, skip -> skipped), inverted / degenerate / fully-outside / non-finite box
  (always skipped), empty mask, unknown raw label, duplicate content (the first image with
  usable annotations is kept, in source then path order), symlink or
  ``..`` escaping the root, annotation size not matching the image, malformed annotation or
  caption line.
- A decompression bomb (an image or mask whose header declares more pixels than PIL's
  ``MAX_IMAGE_PIXELS``) is never decoded: it is skipped as ``decompression_bomb``. Sources whose
  reader decodes masks (``DECODING_FORMATS``) have bombs screened out of their listing first.
- A missing source folder or captions file stops the run with one ``IngestError`` naming
  the params file and every missing path (params schema errors come from ``load_params``).
- Outputs are written atomically and deterministically: rows sorted by (image, category,
  box), report problems sorted, fixed parquet writer options, no timestamps.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from colonpipe import atomic
from colonpipe.data.captions import load_captions
from colonpipe.data.image_check import ImageInfo, check_images
from colonpipe.data.images import BOMB_KIND, ImageBombError, ImageError, open_image
from colonpipe.data.manifest import SCHEMA
from colonpipe.data.sources import READERS, list_source
from colonpipe.data.sources.common import (REPAIRED, SKIPPED, SPLIT_FOLDERS, Problem, RawObject, ReadResult,
                                           SourceListing, to_pixel)
from colonpipe.params import IngestParams, SourceParams

logger = logging.getLogger(__name__)

MANIFEST_NAME = "annotations.parquet"
ROOTS_NAME = "image_roots.json"
REPORT_NAME = "ingest_report.json"
# Readers of these formats decode annotation images (masks) themselves: bombs are screened out
# of their listing first, from the header. Other formats never decode; the image check refuses bombs.
DECODING_FORMATS = frozenset({"mask"})


class IngestError(ValueError):
    """The configuration cannot be ingested at all (missing source folder, captions file)."""


@dataclass(frozen=True)
class IngestSummary:
    manifest: Path
    report: Path
    roots: Path
    rows: int
    images: int
    skipped: int
    repaired: int


@dataclass
class _Scan:
    """One source after listing and reading."""

    spec: SourceParams
    listing: SourceListing
    read: ReadResult
    problems: list[Problem] = field(default_factory=list)
    splits: dict[str, str | None] = field(default_factory=dict)  # image -> split (annotated images)
    infos: dict[str, ImageInfo] = field(default_factory=dict)  # image -> info (kept images)
    rows: list[tuple] = field(default_factory=list)


# --------------------------------------------------------------------------- configuration
def check_config(params: IngestParams, *, params_file: str = "params.yaml") -> None:
    """Raise ``IngestError`` naming ``params_file`` and every source root / captions file missing."""
    missing = []
    for src in params.sources:
        root = Path(src.root)
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            missing.append(f"ingest.sources[{src.name}].root: {src.root} {what}")
    if params.captions is not None and not Path(params.captions).is_file():
        missing.append(f"ingest.captions: {params.captions} does not exist")
    if missing:
        raise IngestError(f"{params_file}: cannot ingest:\n  " + "\n  ".join(missing))


def official_split(rel: str) -> str | None:
    """``train``/``val``/``test`` from the first split folder in ``rel``; None without one."""
    for part in rel.split("/")[:-1]:
        if part.lower() in SPLIT_FOLDERS:
            return SPLIT_FOLDERS[part.lower()]
    return None


# --------------------------------------------------------------------------- boxes
def check_box(box, width: int, height: int, *, normalized: bool = False,
              policy: str = "clip") -> tuple[list[int] | None, str | None, str]:
    """``(pixel box or None, problem kind or None, reason)`` for a raw box.

    ``box`` is ``(x1, y1, x2, y2)``: inclusive 0-based pixels, or pixel-edge fractions of the
    image when ``normalized`` (YOLO). Inverted, degenerate (zero extent), non-finite and
    fully-outside boxes are always rejected; a box partly outside is clipped (``policy=clip``,
    kind ``box_clipped`` with the box kept) or rejected (``policy=skip``).
    """
    if not all(math.isfinite(v) for v in box):
        return None, "invalid_box", f"box {list(box)} has non-finite coordinates"
    if normalized:
        x1, y1 = to_pixel(box[0] * width), to_pixel(box[1] * height)
        x2, y2 = to_pixel(box[2] * width) - 1, to_pixel(box[3] * height) - 1
    else:
        x1, y1, x2, y2 = (to_pixel(v) for v in box)
    raw = [x1, y1, x2, y2]
    if box[2] < box[0] or box[3] < box[1]:
        return None, "inverted_box", f"box {raw} is inverted (x2 < x1 or y2 < y1)"
    if x2 <= x1 or y2 <= y1:
        return None, "degenerate_box", f"box {raw} is degenerate (under 2 pixels wide or high)"
    if x1 > width - 1 or y1 > height - 1 or x2 < 0 or y2 < 0:
        return None, "box_outside", f"box {raw} lies entirely outside the {width}x{height} image"
    clipped = [max(x1, 0), max(y1, 0), min(x2, width - 1), min(y2, height - 1)]
    if clipped == raw:
        return raw, None, ""
    if policy != "clip":
        return None, "box_partly_outside", f"box {raw} extends outside the {width}x{height} image (box_policy=skip)"
    if clipped[2] == clipped[0] or clipped[3] == clipped[1]:
        return None, "degenerate_box", f"box {raw} clipped to the image is under 2 pixels wide or high"
    return clipped, "box_clipped", f"box {raw} extends outside the {width}x{height} image; clipped to {clipped}"


# --------------------------------------------------------------------------- scanning
def _screen_bombs(listing: SourceListing, fmt: str) -> SourceListing:
    """``listing`` without its image files whose header declares a decompression bomb, each
    reported (``decompression_bomb``), for formats whose reader decodes images; else as it is."""
    if fmt not in DECODING_FORMATS:
        return listing
    bombs: dict[str, str] = {}
    for rel in listing.images():
        try:
            with open_image(listing.root / rel, label=""):
                pass  # the header alone: nothing is decoded
        except ImageBombError as exc:
            bombs[rel] = str(exc)
        except ImageError:
            pass  # unreadable: the reader or the image check reports it
    if not bombs:
        return listing
    found = tuple(Problem(listing.display(rel), BOMB_KIND, reason) for rel, reason in bombs.items())
    return dataclasses.replace(listing, files=tuple(f for f in listing.files if f not in bombs),
                               problems=listing.problems + found)


def _scan(spec: SourceParams, *, workers: int = 1) -> _Scan:
    """List and read one source; report images without annotation and missing split folders."""
    listing = _screen_bombs(list_source(Path(spec.root)), spec.format)
    result = READERS[spec.format](listing, official_split=spec.split == "official",
                                  yolo_classes=tuple(spec.yolo_classes), workers=workers)
    scan = _Scan(spec, listing, result, problems=list(listing.problems) + result.problems)
    annotated = sorted({o.image for o in result.objects})
    for rel in sorted(set(result.images) - set(annotated) - result.claimed):
        scan.problems.append(Problem(listing.display(rel), "image_without_annotation", "no annotation refers to this image"))
    for rel in annotated:
        split = official_split(rel) if spec.split == "official" else None
        if spec.split == "official" and split is None:
            scan.problems.append(Problem(listing.display(rel), "no_split_folder",
                                         "source split is official but the path has no Train/Val/Test folder"))
            continue
        scan.splits[rel] = split
    logger.info("%s (%s): %d files, %d images, %d objects", spec.name, spec.format, len(listing.files),
                len(result.images), len(result.objects))
    return scan


def _check_all_images(scans: list[_Scan], *, level: str, workers: int, progress: bool) -> None:
    """Check every annotated image once (process pool); report unreadable ones."""
    jobs = [(scan, rel) for scan in scans for rel in sorted(scan.splits)]
    infos = check_images([str(scan.listing.root / rel) for scan, rel in jobs], level=level, workers=workers,
                         progress=progress)
    for (scan, rel), info in zip(jobs, infos):
        if info.error:
            scan.problems.append(Problem(scan.listing.display(rel), info.error_kind, info.error))
        else:
            scan.infos[rel] = info


def _drop_duplicates(scans: list[_Scan]) -> None:
    """Among images that produced rows, keep the first of identical files (source order, then
    path order) and report the rest; report kept non-RGB images as repaired."""
    first_of: dict[str, str] = {}
    for scan in scans:
        images = sorted({r[2] for r in scan.rows})
        drop = set()
        for image in images:
            rel = image.split("/", 1)[1]
            info, shown = scan.infos[rel], scan.listing.display(rel)
            if info.sha256 in first_of:
                scan.problems.append(Problem(shown, "duplicate_image", f"same content as {first_of[info.sha256]}; "
                                             "kept that one"))
                drop.add(image)
                continue
            first_of[info.sha256] = shown
            if info.mode != "RGB":
                scan.problems.append(Problem(shown, "non_rgb_image", f"{info.format} image in mode {info.mode}; "
                                             "kept, converted to RGB when loaded", REPAIRED))
        scan.rows = [r for r in scan.rows if r[2] not in drop]


# --------------------------------------------------------------------------- rows
def _object_row(scan: _Scan, obj: RawObject, info: ImageInfo, policy: str) -> tuple | None:
    """The manifest row for one object, or None (the problem is appended to ``scan``)."""
    shown = scan.listing.display(obj.annotation)
    category = scan.spec.categories.get(obj.label)
    if category is None:
        scan.problems.append(Problem(shown, "unknown_category",
                                     f"label {obj.label!r} (image {obj.image}) is not in the categories of {scan.spec.name}"))
        return None
    if obj.size is not None and tuple(obj.size) != (info.width, info.height):
        scan.problems.append(Problem(shown, "size_mismatch", f"annotation is for a {obj.size[0]}x{obj.size[1]} image "
                                     f"but {obj.image} is {info.width}x{info.height}"))
        return None
    box = None
    if obj.box is not None:
        box, kind, reason = check_box(obj.box, info.width, info.height, normalized=obj.normalized, policy=policy)
        if kind is not None:
            scan.problems.append(Problem(shown, kind, f"{reason} (image {obj.image})",
                                         REPAIRED if box is not None else SKIPPED))
        if box is None:
            return None
    return (scan.spec.name, scan.splits[obj.image], f"{scan.spec.name}/{obj.image}", info.width, info.height,
            category, box, None)


def _build_rows(scan: _Scan, policy: str) -> None:
    by_image: dict[str, list[RawObject]] = {}
    for obj in scan.read.objects:
        if obj.image in scan.infos:
            by_image.setdefault(obj.image, []).append(obj)
    for rel in sorted(by_image):
        rows = [r for r in (_object_row(scan, o, scan.infos[rel], policy) for o in by_image[rel]) if r is not None]
        if not rows:
            scan.problems.append(Problem(scan.listing.display(rel), "no_usable_annotation",
                                         "every annotation of this image was rejected (see its other entries)"))
        scan.rows.extend(rows)


def _attach_captions(rows: list[tuple], path: str | None) -> tuple[list[tuple], list[Problem], int]:
    """Rows with captions filled in, caption problems, and the number of images lacking one."""
    if path is None:
        return rows, [], len({r[2] for r in rows})
    captions, problems = load_captions(Path(path))
    images = {r[2] for r in rows}
    for image in sorted(set(captions) - images):
        problems.append(Problem(Path(path).as_posix(), "caption_unmatched", f"caption for {image}, which is not "
                                "an ingested image; ignored"))
    out = [r[:7] + (captions.get(r[2]),) for r in rows]
    return out, problems, len(images - set(captions))


# --------------------------------------------------------------------------- writing
def manifest_bytes(rows: list[tuple]) -> bytes:
    """Parquet bytes of manifest rows (sorted here); fixed writer options -> byte-stable."""
    rows = sorted(rows, key=lambda r: (r[2], r[5], r[6] is not None, r[6] or [], r[0]))
    columns = list(zip(*rows)) if rows else [[] for _ in SCHEMA.names]
    table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, SCHEMA)], schema=SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=3, use_dictionary=True,
                   write_statistics=True, version="2.6", data_page_version="1.0")
    return buf.getvalue()


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _report(scans: list[_Scan], extra: list[Problem], params: IngestParams, rows: list[tuple],
            uncaptioned: int) -> dict:
    problems = sorted([p.as_dict(s.spec.name) for s in scans for p in s.problems]
                      + [p.as_dict("captions") for p in extra],
                      key=lambda d: (d["source"], d["file"], d["kind"], d["reason"]))
    sources = {}
    for s in scans:
        kept = {r[2] for r in s.rows}
        sources[s.spec.name] = {
            "format": s.spec.format, "root": s.spec.root, "split": s.spec.split, "files": len(s.listing.files),
            "image_files": len(s.read.images), "objects": len(s.read.objects), "images_kept": len(kept),
            "rows": len(s.rows), "images_per_category": dict(sorted(Counter(c for _, c in {(r[2], r[5]) for r in s.rows}).items())),
            "problems": dict(sorted(Counter(p.kind for p in s.problems).items())),
        }
    actions = Counter(p["action"] for p in problems)
    totals = {"images_kept": len({r[2] for r in rows}), "rows": len(rows), "skipped": actions[SKIPPED],
              "repaired": actions[REPAIRED], "images_without_caption": uncaptioned,
              "problems_by_kind": dict(sorted(Counter(p["kind"] for p in problems).items()))}
    return {"box_policy": params.box_policy, "image_check": params.image_check, "captions": params.captions,
            "sources": sources, "totals": totals, "problems": problems}


def ingest(params: IngestParams, out_dir: Path, *, params_file: str = "params.yaml",
           progress: bool = True) -> IngestSummary:
    """Read every source, check it, and write the three outputs into ``out_dir``."""
    check_config(params, params_file=params_file)
    scans = [_scan(spec, workers=params.workers) for spec in params.sources]
    _check_all_images(scans, level=params.image_check, workers=params.workers, progress=progress)
    for scan in scans:
        _build_rows(scan, params.box_policy)
    _drop_duplicates(scans)
    rows, caption_problems, uncaptioned = _attach_captions([r for s in scans for r in s.rows], params.captions)
    report = _report(scans, caption_problems, params, rows, uncaptioned)
    out_dir = Path(out_dir)
    paths = (out_dir / MANIFEST_NAME, out_dir / REPORT_NAME, out_dir / ROOTS_NAME)
    atomic.write_bytes(paths[0], manifest_bytes(rows))
    atomic.write_bytes(paths[1], _json_bytes(report))
    atomic.write_bytes(paths[2], _json_bytes({s.name: s.root for s in params.sources}))
    t = report["totals"]
    logger.info("ingest: %d images, %d rows; %d inputs skipped, %d repaired (see %s)", t["images_kept"], t["rows"],
                t["skipped"], t["repaired"], paths[1])
    return IngestSummary(*paths, rows=t["rows"], images=t["images_kept"], skipped=t["skipped"], repaired=t["repaired"])
