"""Manifest -> ColonINST instruction JSON (stage ``instruct``).

Contract of ``build_instruct(manifest_path, out_dir, params)``:
- Reads the interim manifest (schema in ``colonpipe.data.manifest``: one row per object).
- Boxes of one (image, category) are merged into their enclosing box.
- Per image: one CLS record (its primary category, see ``primary_category``), one CAP
  record when it has a caption, and one REG + one REC record per category with a box.
- Splits: ``colonpipe.data.splits`` (official kept, else 60/10/30 per dataset x category).
- Writes under ``out_dir`` (each file atomically: tmp + fsync + os.replace)::

      Json-file/train/ColonINST-train-cap.json       stage 1 (CAP)
      Json-file/train/ColonINST-train-3tasks.json    stage 2 (CLS, then REG, then REC)
      Json-file/{val,test}/ColonINST-{split}-{cls,reg,rec,cap}.json
      stats.json                                     counts + skipped inputs

  Records inside a file (and each task block of the 3-task file) are sorted by (id,
  category); JSON is ``indent=2, ensure_ascii=False`` with a trailing newline, so reruns
  are byte-identical. Every file is written even when empty.
- Bad rows are skipped and counted under ``stats["skipped"]``; a missing or unreadable
  manifest, or one lacking columns, raises ``InstructError`` naming the file.
- A manifest ``group`` column (videos / cases) makes the seeded split leak-free: frames of
  one group land in one split (``splits.assign_grouped``).
- Catalogued datasets (manifest metadata ``colonpipe.expected``): ``stats["catalogue"]``
  compares the positive images per split with ColonINST's (``catalogue.compare``) and
  ``stats["count_warnings"]`` lists the ones that differ (also logged as warnings).
- An official release (manifest metadata ``colonpipe.release``) is passed on: its JSON
  files are copied byte for byte (after checking they still have the digests ingest
  recorded) instead of being regenerated, and ``stats.json`` counts their records.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from colonpipe import atomic
from colonpipe.data.catalogue import compare_datasets
from colonpipe.data.manifest import COLUMNS, EXPECTED_KEY, RELEASE_KEY
from colonpipe.data.sources.release_files import pass_release
from colonpipe.data.splits import SplitItem, assign_splits
from colonpipe.coloninst import (
    COMBINED_TASK, HUMAN_PREFIX, SPLITS, STAGE2_TASKS, TASKS, check_ratios, format_box, instruction_path,
)
from colonpipe.data.templates import render_question, template_index
from colonpipe.params import InstructParams

logger = logging.getLogger(__name__)

JSON_DIR = "Json-file"


class InstructError(ValueError):
    """The manifest cannot be used at all; the message names the file."""


Box = tuple[int, int, int, int]


@dataclass
class ImageEntry:
    """Everything ``instruct`` knows about one image after merging its manifest rows."""

    id: str
    dataset: str
    official: str | None = None
    caption: str | None = None
    boxes: dict[str, Box | None] = field(default_factory=dict)  # category -> merged box
    group: str | None = None  # video / case id (leak-free split)

    @property
    def primary(self) -> str:
        return primary_category(self.boxes)


def output_files() -> dict[tuple[str, str], str]:
    """``{(split, task): path relative to out_dir}`` exactly as the spec names them."""
    files = {("train", "cap"): instruction_path(JSON_DIR, "train", "cap").as_posix()}
    for task in STAGE2_TASKS:
        files[("train", task)] = instruction_path(JSON_DIR, "train", COMBINED_TASK).as_posix()
    for split in ("val", "test"):
        for task in TASKS:
            files[(split, task)] = instruction_path(JSON_DIR, split, task).as_posix()
    return files


def merge_boxes(boxes: list[Box]) -> Box | None:
    """Enclosing box of ``[x1, y1, x2, y2]`` boxes (inclusive pixels); None for no boxes."""
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def box_area(box: Box) -> int:
    """Area in inclusive pixels: ``(x2-x1+1) * (y2-y1+1)``."""
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def primary_category(boxes: dict[str, Box | None]) -> str:
    """The CLS category of an image: the category whose merged box is largest.

    Ties go to the alphabetically first category; categories without a box rank below
    any boxed one, and among class-only categories the alphabetically first wins.
    """
    if not boxes:
        raise ValueError("an image needs at least one category")
    return min(boxes, key=lambda c: (-(box_area(boxes[c]) if boxes[c] else -1), c))


def _valid_box(box: Any) -> Box | None:
    if box is None or len(box) != 4 or any(v is None for v in box):
        return None
    x1, y1, x2, y2 = (int(v) for v in box)
    if min(x1, y1) < 0 or x2 < x1 or y2 < y1:
        return None
    return x1, y1, x2, y2


def read_manifest(path: Path) -> dict[str, list[Any]]:
    """Columns of the manifest as Python lists; ``InstructError`` names the file on failure."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InstructError(f"{path}: manifest not found (run the ingest stage first)") from None
    except (OSError, pa.ArrowException) as exc:
        raise InstructError(f"{path}: cannot read manifest as parquet ({exc})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise InstructError(f"{path}: manifest lacks column(s) {missing} (schema: colonpipe.data.manifest)")
    cols = {c: table.column(c).to_pylist() for c in COLUMNS}
    cols["group"] = table.column("group").to_pylist() if "group" in table.column_names else [None] * table.num_rows
    return cols


def manifest_metadata(path: Path) -> dict[str, Any]:
    """The manifest's ``colonpipe.*`` metadata entries, decoded (``{}`` when absent)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise InstructError(f"{path}: cannot read manifest as parquet ({exc})") from None
    out = {}
    for key, name in ((EXPECTED_KEY, "expected"), (RELEASE_KEY, "release")):
        if key in meta:
            try:
                out[name] = json.loads(meta[key])
            except ValueError:
                raise InstructError(f"{path}: manifest metadata {key.decode()} is not JSON") from None
    return out


def collect_images(cols: dict[str, list[Any]], skipped: dict[str, int]) -> dict[str, ImageEntry]:
    """Merge manifest rows into one ``ImageEntry`` per image; bad rows counted in ``skipped``."""
    raw_boxes: dict[tuple[str, str], list[Box]] = defaultdict(list)
    images: dict[str, ImageEntry] = {}
    splits: dict[str, set[str | None]] = defaultdict(set)
    for ds, split, image, category, box, caption, group in zip(
        cols["dataset"], cols["split"], cols["image"], cols["category"], cols["box"], cols["caption"],
        cols.get("group") or [None] * len(cols["image"])
    ):
        if not image or not category or not ds:
            skipped["rows_missing_field"] += 1
            continue
        entry = images.setdefault(image, ImageEntry(id=image, dataset=ds, group=group))
        splits[image].add(split)
        if caption and entry.caption is None:
            entry.caption = caption
        elif caption and caption != entry.caption:
            skipped["captions_conflicting"] += 1
        entry.boxes.setdefault(category, None)
        if box is not None:
            valid = _valid_box(box)
            if valid is None:
                skipped["boxes_invalid"] += 1
            else:
                raw_boxes[(image, category)].append(valid)
    for (image, category), boxes in raw_boxes.items():
        images[image].boxes[category] = merge_boxes(boxes)
    for image, values in splits.items():
        named = {v for v in values if v is not None}
        if len(named) > 1 or (named and not named <= set(SPLITS)):
            logger.warning("%s: skipped, split labels %s are conflicting or unknown", image, sorted(named))
            skipped["images_bad_split"] += 1
            del images[image]
        elif named:
            images[image].official = named.pop()
    return images


def _record(entry: ImageEntry, task: str, category: str, seed: int) -> dict[str, Any]:
    box = entry.boxes.get(category)
    box_text = format_box(box) if box is not None else None
    idx = template_index(seed, task, entry.id, category)
    question = render_question(task, idx, box=box_text, category=category)
    answer = {"cls": category, "reg": category, "rec": box_text, "cap": entry.caption}[task]
    return {
        "id": entry.id,
        "image": PurePosixPath(entry.id).stem,
        "conversations": [
            {"from": "human", "value": HUMAN_PREFIX + question},
            {"from": "gpt", "value": answer},
        ],
    }


def build_records(
    images: dict[str, ImageEntry], split_of: dict[str, str], seed: int, skipped: dict[str, int]
) -> dict[tuple[str, str], list[tuple[str, str, dict[str, Any]]]]:
    """``{(split, task): [(id, category, record), ...]}`` sorted by (id, category)."""
    out: dict[tuple[str, str], list] = defaultdict(list)
    for image_id in tqdm(sorted(images), desc="instruct", unit="img", disable=None, mininterval=2):
        entry = images[image_id]
        split = split_of[image_id]
        primary = entry.primary
        out[(split, "cls")].append((image_id, primary, _record(entry, "cls", primary, seed)))
        if entry.caption:
            out[(split, "cap")].append((image_id, primary, _record(entry, "cap", primary, seed)))
        else:
            skipped["images_without_caption"] += 1
        for category in sorted(entry.boxes):
            if entry.boxes[category] is None:
                skipped["categories_without_box"] += 1
                continue
            for task in ("reg", "rec"):
                out[(split, task)].append((image_id, category, _record(entry, task, category, seed)))
    return out


def write_files(out_dir: Path, records: dict[tuple[str, str], list]) -> dict[str, int]:
    """Write every spec file (empty lists included); returns ``{relative path: n records}``."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for (split, task), rel in output_files().items():  # dict order: cls, reg, rec blocks
        by_file.setdefault(rel, []).extend(rec for _, _, rec in records.get((split, task), []))
    for rel, recs in by_file.items():
        atomic.write_json(out_dir / rel, recs)
        logger.info("wrote %s (%d records)", out_dir / rel, len(recs))
    return {rel: len(recs) for rel, recs in by_file.items()}


def _nested() -> defaultdict:
    return defaultdict(lambda: defaultdict(lambda: defaultdict(int)))


def compute_stats(
    images: dict[str, ImageEntry], split_of: dict[str, str], records: dict, skipped: dict[str, int]
) -> dict[str, Any]:
    """Counts per split x task, per dataset and category (x split x task), and skips."""
    per_split = {s: {t: len(records.get((s, t), [])) for t in TASKS} for s in SPLITS}
    datasets, categories = _nested(), _nested()
    for (split, task), recs in records.items():
        for image_id, category, _ in recs:
            datasets[images[image_id].dataset][split][task] += 1
            categories[category][split][task] += 1
    image_counts = {s: 0 for s in SPLITS}
    official = 0
    for image_id, split in split_of.items():
        image_counts[split] += 1
        official += images[image_id].official is not None
    return {
        "records": per_split,
        "images": image_counts,
        "images_total": len(images),
        "images_official_split": official,
        "records_total": sum(sum(v.values()) for v in per_split.values()),
        "datasets": _plain(datasets),
        "categories": _plain(categories),
        "skipped": dict(sorted(skipped.items())),
    }


def _plain(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _plain(tree[k]) for k in sorted(tree)}
    return tree


def catalogue_counts(images: dict[str, ImageEntry], split_of: dict[str, str],
                     expected: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Per catalogued dataset: found vs ColonINST positive images per split, and warnings."""
    found: dict[str, dict[str, int]] = defaultdict(lambda: {s: 0 for s in SPLITS})
    for image_id, split in split_of.items():
        found[images[image_id].dataset][split] += 1
    return compare_datasets(found, expected)


def build_instruct(manifest_path: Path, out_dir: Path, params: InstructParams) -> dict[str, Any]:
    """Manifest -> ColonINST JSON files + ``stats.json`` under ``out_dir``; returns the stats."""
    problems = check_ratios(params.split_ratios)
    if problems:
        raise InstructError("instruct params: " + "; ".join(problems))
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    meta = manifest_metadata(manifest_path) if manifest_path.is_file() else {}
    if "release" in meta:
        try:
            required = sorted({rel.split("/", 1)[1] for rel in output_files().values()})
            stats = pass_release(meta["release"], out_dir / JSON_DIR, meta.get("expected", {}), required)
        except ValueError as exc:
            raise InstructError(f"{manifest_path}: {exc}") from None
        for warning in stats.get("count_warnings", []):
            logger.warning("count check: %s", warning)
        atomic.write_json(out_dir / "stats.json", stats)
        return stats
    skipped: dict[str, int] = defaultdict(int)
    images = collect_images(read_manifest(manifest_path), skipped)
    logger.info("%s: %d images", manifest_path, len(images))
    items = (SplitItem(e.id, e.dataset, e.primary, e.official, e.group) for e in images.values())
    split_of = assign_splits(items, params.split_ratios, seed=params.seed)
    records = build_records(images, split_of, params.seed, skipped)
    files = write_files(out_dir, records)
    stats = compute_stats(images, split_of, records, skipped)
    stats["files"] = files
    if "expected" in meta:
        stats["catalogue"], warnings = catalogue_counts(images, split_of, meta["expected"])
        for warning in warnings:
            logger.warning("count check: %s", warning)
        if warnings:
            stats["count_warnings"] = warnings
    atomic.write_json(out_dir / "stats.json", stats)
    if stats["skipped"]:
        logger.info("skipped or unused: %s", ", ".join(f"{k}={n}" for k, n in stats["skipped"].items()))
    return stats
