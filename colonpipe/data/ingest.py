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
  ``MAX_IMAGE_PIXELS``) is never decoded: it is skipped as ``decompression_bomb`` (the image
  check refuses images from their header, the mask reader masks the same way).
- A missing source folder or captions file, an unknown ``preset`` or a source whose final
  values (after its preset) are unusable stops the run with one ``IngestError`` naming the
  params file and every problem (params schema errors come from ``load_params``).
- Sources are resolved against the catalogue (``colonpipe.data.catalogue``) and scanned by
  ``colonpipe.data.sources.scan`` (pairing, table labels, splits, groups). Raw labels in
  ``ignore_labels`` (ColonINST negatives) are left out and only counted per source
  (``excluded_labels``); ``fold_labels`` matches labels ignoring case, ``-``, ``_``, spaces.
- For a source with a preset, the report (``sources.<name>.counts``) and the manifest's
  metadata carry the positive images ColonINST lists for it, compared with what was found
  (per split where the split is known here, else the total); a difference is logged as a
  warning and listed under ``count_warnings``.
- A ``coloninst_release`` source (the official release) is checked with ``check-data``,
  its records become the manifest and its JSON files' digests go into the manifest's
  metadata, so ``instruct`` passes those exact files on (``colonpipe.data.sources.release``).
- Outputs are written atomically and deterministically: rows sorted by (image, category,
  box), report problems sorted, fixed parquet writer options, no timestamps. Keys for
  features a run does not use (groups, presets, releases) are left out of every output.
"""

from __future__ import annotations

import dataclasses
import functools
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
from colonpipe.data import catalogue
from colonpipe.data.captions import load_captions
from colonpipe.data.catalogue import Entry
from colonpipe.data.image_check import ImageInfo, check_images
from colonpipe.coloninst import SPLITS
from colonpipe.data.manifest import EXPECTED_KEY, GROUPED_SCHEMA, RELEASE_KEY, SCHEMA
from colonpipe.data.sources.common import (REPAIRED, SKIPPED, SPLIT_FOLDERS, Problem, RawObject, ReadResult,
                                           SourceListing, split_of, to_pixel)
from colonpipe.data.sources.release import ReleaseRead, read_release
from colonpipe.data.sources.scan import scan_source
from colonpipe.taxonomy import canonical
from colonpipe.params import IngestParams, SourceParams

logger = logging.getLogger(__name__)

MANIFEST_NAME = "annotations.parquet"
ROOTS_NAME = "image_roots.json"
REPORT_NAME = "ingest_report.json"


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
    rows: list[tuple] = field(default_factory=list)  # manifest rows + group (9 values)
    entry: Entry | None = None  # catalogue entry of the source's preset (or dataset, for a release)
    groups: dict[str, str] = field(default_factory=dict)  # image -> video / case id
    excluded: Counter = field(default_factory=Counter)  # ignore_labels label -> objects left out

    @functools.cached_property
    def _labels(self) -> tuple[dict[str, str], set[str]]:
        """(raw label -> category, ignored labels), keys folded when the source folds labels."""
        fold = canonical if self.spec.fold_labels else (lambda x: x)
        return ({fold(k): v for k, v in self.spec.categories.items()},
                {fold(x) for x in self.spec.ignore_labels or ()})

    def category(self, label: str) -> str | None:
        """ColonINST category of a raw label (folded when the source says so); None if unmapped."""
        if self.spec.format == "coloninst_release":
            return label
        return self._labels[0].get(canonical(label) if self.spec.fold_labels else label)

    def is_excluded(self, label: str) -> bool:
        return (canonical(label) if self.spec.fold_labels else label) in self._labels[1]


# --------------------------------------------------------------------------- configuration
def check_config(params: IngestParams, *,
                 params_file: str = "params.yaml") -> list[tuple[SourceParams, Entry | None]]:
    """Every source resolved against its preset; ``IngestError`` naming ``params_file`` and
    every missing source root / captions file and every unusable (resolved) source."""
    resolved, missing = catalogue.resolve_sources(params)
    for src in params.sources:
        root = Path(src.root)
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            missing.append(f"ingest.sources[{src.name}].root: {src.root} {what}")
    if params.captions is not None and not Path(params.captions).is_file():
        missing.append(f"ingest.captions: {params.captions} does not exist")
    if missing:
        raise IngestError(f"{params_file}: cannot ingest:\n  " + "\n  ".join(missing))
    return resolved


def official_split(rel: str) -> str | None:
    """``train``/``val``/``test`` from the first split folder in ``rel``; None without one."""
    return split_of(rel, SPLIT_FOLDERS)


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
def _scan(spec: SourceParams, entry: Entry | None = None, *, workers: int = 1) -> _Scan:
    """List and read one source (``sources.scan``): objects, problems, splits and groups."""
    found = scan_source(spec, workers=workers)
    scan = _Scan(spec, found.listing, found.read, problems=found.problems, splits=found.splits, entry=entry,
                 groups=found.groups)
    logger.info("%s (%s): %d files, %d images, %d objects", spec.name, spec.format, len(scan.listing.files),
                len(scan.read.images), len(scan.read.objects))
    return scan


def _release_scans(spec: SourceParams, release: ReleaseRead) -> list[_Scan]:
    """One scan per dataset folder of an official release; its ids are ``<dataset>/<path>``."""
    scans = []
    for name in sorted(release.objects):
        listing, result = release.dataset_read(name)
        ds_spec = dataclasses.replace(spec, name=name, root=(Path(spec.root) / "Positive-images" / name).as_posix(),
                                      split="official")
        splits = {rel: release.splits.get(f"{name}/{rel}") for rel in result.images}
        scans.append(_Scan(ds_spec, listing, result, splits=splits, entry=catalogue.find(name)))
    return scans


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
    if scan.is_excluded(obj.label):
        scan.excluded[obj.label] += 1
        return None
    category = scan.category(obj.label)
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
            category, box, None, scan.groups.get(obj.image))


def _build_rows(scan: _Scan, policy: str) -> None:
    by_image: dict[str, list[RawObject]] = {}
    for obj in scan.read.objects:
        if obj.image in scan.infos:
            by_image.setdefault(obj.image, []).append(obj)
    for rel in sorted(by_image):
        rows = [r for r in (_object_row(scan, o, scan.infos[rel], policy) for o in by_image[rel]) if r is not None]
        if not rows and not all(scan.is_excluded(o.label) for o in by_image[rel]):
            scan.problems.append(Problem(scan.listing.display(rel), "no_usable_annotation",
                                         "every annotation of this image was rejected (see its other entries)"))
        scan.rows.extend(rows)


def _attach_captions(rows: list[tuple], path: str | None,
                     given: dict[str, str] | None = None) -> tuple[list[tuple], list[Problem], int]:
    """Rows with captions filled in (from the JSONL ``path``, or ``given`` ones: a release's),
    caption problems, and the number of images lacking one."""
    if given is not None:
        images = {r[2] for r in rows}
        return [r[:7] + (given.get(r[2]),) + r[8:] for r in rows], [], len(images - set(given))
    if path is None:
        return rows, [], len({r[2] for r in rows})
    captions, problems = load_captions(Path(path))
    images = {r[2] for r in rows}
    for image in sorted(set(captions) - images):
        problems.append(Problem(Path(path).as_posix(), "caption_unmatched", f"caption for {image}, which is not "
                                "an ingested image; ignored"))
    out = [r[:7] + (captions.get(r[2]),) + r[8:] for r in rows]
    return out, problems, len(images - set(captions))


# --------------------------------------------------------------------------- writing
def manifest_bytes(rows: list[tuple], metadata: dict[bytes, bytes] | None = None) -> bytes:
    """Parquet bytes of manifest rows (sorted here); fixed writer options -> byte-stable.

    Rows hold the 8 schema columns and optionally a 9th, the group: the ``group`` column is
    written only when some row has one. ``metadata`` goes into the key-value metadata.
    """
    rows = sorted(rows, key=lambda r: (r[2], r[5], r[6] is not None, r[6] or [], r[0]))
    schema = GROUPED_SCHEMA if any(len(r) > 8 and r[8] is not None for r in rows) else SCHEMA
    rows = [tuple(r[: len(schema)]) + (None,) * (len(schema) - len(r)) for r in rows]
    columns = list(zip(*rows)) if rows else [[] for _ in schema.names]
    if metadata:
        schema = schema.with_metadata(metadata)
    table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=3, use_dictionary=True,
                   write_statistics=True, version="2.6", data_page_version="1.0")
    return buf.getvalue()


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _count_check(scan: _Scan) -> tuple[dict, str | None]:
    """Found vs ColonINST's positive images for a catalogued source, and a warning if they differ."""
    kept = {r[2]: r[1] for r in scan.rows}
    expected = scan.entry.expected
    if scan.spec.split == "none":
        record = catalogue.compare_total(len(kept), expected)
    else:
        record = catalogue.compare(Counter(kept.values()), expected, exact=True)
    record["preset"] = scan.entry.key
    if record["status"] != "differs":
        return record, None
    found = "/".join(str(record["found"][s]) for s in SPLITS) if "found" in record else "not split yet"
    return record, (f"{scan.spec.name}: {record['found_total']} positive images kept, ColonINST has "
                    f"{record['expected_total']} ({scan.entry.key}; train/val/test found {found}, expected "
                    + "/".join(str(expected.get(s, 0)) for s in SPLITS) + ")")


def _source_report(s: _Scan) -> tuple[dict, str | None]:
    kept = {r[2] for r in s.rows}
    out = {
        "format": s.spec.format, "root": s.spec.root, "split": s.spec.split, "files": len(s.listing.files),
        "image_files": len(s.read.images), "objects": len(s.read.objects), "images_kept": len(kept),
        "rows": len(s.rows), "images_per_category": dict(sorted(Counter(c for _, c in {(r[2], r[5]) for r in s.rows}).items())),
        "problems": dict(sorted(Counter(p.kind for p in s.problems).items())),
    }
    if s.spec.preset is not None:
        out["preset"] = s.spec.preset
    if s.listing.ignored:
        out["ignored_files"] = s.listing.ignored
    if s.excluded:
        out["excluded_labels"] = dict(sorted(s.excluded.items()))
    if s.groups:
        out["groups"] = len({s.groups[r.split("/", 1)[1]] for r in kept if r.split("/", 1)[1] in s.groups})
    warning = None
    if s.entry is not None:
        out["counts"], warning = _count_check(s)
    return out, warning


def _report(scans: list[_Scan], extra: list[Problem], params: IngestParams, rows: list[tuple],
            uncaptioned: int, release: ReleaseRead | None = None) -> dict:
    problems = sorted([p.as_dict(s.spec.name) for s in scans for p in s.problems]
                      + [p.as_dict("captions") for p in extra],
                      key=lambda d: (d["source"], d["file"], d["kind"], d["reason"]))
    sources, warnings = {}, []
    for s in scans:
        sources[s.spec.name], warning = _source_report(s)
        if warning is not None:
            warnings.append(warning)
    actions = Counter(p["action"] for p in problems)
    totals = {"images_kept": len({r[2] for r in rows}), "rows": len(rows), "skipped": actions[SKIPPED],
              "repaired": actions[REPAIRED], "images_without_caption": uncaptioned,
              "problems_by_kind": dict(sorted(Counter(p["kind"] for p in problems).items()))}
    out = {"box_policy": params.box_policy, "image_check": params.image_check, "captions": params.captions,
           "sources": sources, "totals": totals, "problems": problems}
    if warnings:
        out["count_warnings"] = warnings
    if release is not None:
        check = release.check
        out["release"] = {"json_dir": release.json_dir.as_posix(), "image_root": release.image_root.as_posix(),
                          "files": len(release.files), "check": {k: check[k] for k in ("ok", "records", "problems",
                                                                                        "examples", "unknown_files")}}
    return out


def _metadata(scans: list[_Scan], release: ReleaseRead | None) -> dict[bytes, bytes]:
    """The manifest's key-value metadata (``colonpipe.data.manifest``); empty for plain sources."""
    meta = {}
    expected = {s.spec.name: {"preset": s.entry.key, "expected": s.entry.expected,
                              "expected_reg": s.entry.expected_reg, "exact": s.spec.split != "none"}
                for s in scans if s.entry is not None}
    if expected:
        meta[EXPECTED_KEY] = json.dumps(expected, sort_keys=True).encode()
    if release is not None:
        meta[RELEASE_KEY] = json.dumps({"json_dir": release.json_dir.as_posix(), "files": release.files},
                                       sort_keys=True).encode()
    return meta


def _scan_all(resolved: list[tuple[SourceParams, Entry | None]], workers: int) -> tuple[list[_Scan], ReleaseRead | None]:
    """Scans of every source; a release gives one scan per dataset folder."""
    if resolved and resolved[0][0].format == "coloninst_release":
        try:
            release = read_release(Path(resolved[0][0].root))
        except FileNotFoundError as exc:
            raise IngestError(f"ingest.sources[{resolved[0][0].name}]: {exc}") from None
        return _release_scans(resolved[0][0], release), release
    return [_scan(spec, entry, workers=workers) for spec, entry in resolved], None


def ingest(params: IngestParams, out_dir: Path, *, params_file: str = "params.yaml",
           progress: bool = True) -> IngestSummary:
    """Read every source, check it, and write the three outputs into ``out_dir``."""
    scans, release = _scan_all(check_config(params, params_file=params_file), params.workers)
    _check_all_images(scans, level=params.image_check, workers=params.workers, progress=progress)
    for scan in scans:
        _build_rows(scan, params.box_policy)
    _drop_duplicates(scans)
    rows, caption_problems, uncaptioned = _attach_captions([r for s in scans for r in s.rows], params.captions,
                                                           release.captions if release else None)
    report = _report(scans, caption_problems, params, rows, uncaptioned, release)
    for warning in report.get("count_warnings", []):
        logger.warning("count check: %s", warning)
    if release is not None and not release.check["ok"]:
        logger.warning("the release has problems (passed on unchanged): %s", release.check["problems"])
    out_dir = Path(out_dir)
    paths = (out_dir / MANIFEST_NAME, out_dir / REPORT_NAME, out_dir / ROOTS_NAME)
    atomic.write_bytes(paths[0], manifest_bytes(rows, _metadata(scans, release)))
    atomic.write_bytes(paths[1], _json_bytes(report))
    atomic.write_bytes(paths[2], _json_bytes({s.spec.name: s.spec.root for s in scans}))
    t = report["totals"]
    logger.info("ingest: %d images, %d rows; %d inputs skipped, %d repaired (see %s)", t["images_kept"], t["rows"],
                t["skipped"], t["repaired"], paths[1])
    return IngestSummary(*paths, rows=t["rows"], images=t["images_kept"], skipped=t["skipped"], repaired=t["repaired"])
