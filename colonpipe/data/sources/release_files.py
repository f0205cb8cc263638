"""Pass an official ColonINST release on as the instruct output, unchanged.

``pass_release(release, out_dir, expected, required)``:
- ``release`` is the manifest's ``colonpipe.release`` entry written by ingest
  (``{"json_dir": path, "files": {path under Json-file: sha256}}``).
- Every file named in ``required`` (the spec's file names, relative to ``Json-file``) must
  be in the release; every file must still have the digest ingest recorded. Otherwise
  ``ValueError`` names the file: the copy would not be what ingest checked.
- Each file is copied byte for byte (atomically) to ``out_dir/<same path>``.
- Returns stats in the shape ``build_instruct`` writes (records per split x task, images
  per split, per dataset and category) plus the found-vs-ColonINST comparison per
  catalogued dataset (``expected``: the manifest's ``colonpipe.expected``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from colonpipe import atomic
from colonpipe.data.catalogue import compare_datasets
from colonpipe.coloninst import (
    COMBINED_TASK, HUMAN, SPLITS, STAGE2_TASKS, TASKS, parse_instruction_file, question_text, turn,
)
from colonpipe.data.templates import match_template


def _task(file_task: str, record: Any) -> str | None:
    """The record's task: the file's, or (3-task file) the first template family that matches."""
    if file_task != COMBINED_TASK:
        return file_task
    question = turn(record, HUMAN)
    if question is None:
        return None
    return next((t for t in STAGE2_TASKS if match_template(t, question_text(question))), None)


def _copy(src: Path, out_dir: Path, files: dict[str, str], required: list[str]) -> dict[str, bytes]:
    missing = [f for f in required if f not in files]
    if missing:
        raise ValueError(f"release {src} lacks {', '.join(missing)} (the pipeline trains and scores on them)")
    data = {}
    for rel, digest in sorted(files.items()):
        try:
            blob = (src / rel).read_bytes()
        except OSError as exc:
            raise ValueError(f"{src / rel}: cannot read ({exc.strerror or exc}); rerun ingest") from None
        if hashlib.sha256(blob).hexdigest() != digest:
            raise ValueError(f"{src / rel} changed since ingest checked it (sha256 differs); rerun ingest")
        data[rel] = blob
    for rel, blob in data.items():
        atomic.write_bytes(out_dir / rel, blob)
    return data


def _nested() -> defaultdict:
    return defaultdict(lambda: defaultdict(lambda: defaultdict(int)))


def release_stats(data: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Counts of a release's records (the shape of ``instruct.compute_stats``), and the CLS
    images per dataset and split."""
    records = {s: {t: 0 for t in TASKS} for s in SPLITS}
    datasets, categories = _nested(), _nested()
    cls_images: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    files = {}
    for rel, blob in sorted(data.items()):
        try:
            recs = json.loads(blob)
        except ValueError:
            recs = None
        files[rel] = len(recs) if isinstance(recs, list) else 0
        split, file_task = parse_instruction_file(Path(rel).name) or (None, None)
        for rec in recs if split and isinstance(recs, list) else []:
            task = _task(file_task, rec)
            if task is None or not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                continue
            records[split][task] += 1
            dataset = rec["id"].split("/", 1)[0]
            datasets[dataset][split][task] += 1
            if task == "cls":
                cls_images[dataset][split].add(rec["id"])
                answer = (rec.get("conversations") or [{}, {}])[1].get("value")
                if isinstance(answer, str):
                    categories[answer.strip()][split][task] += 1
    images = {s: records[s]["cls"] for s in SPLITS}
    return {"records": records, "images": images, "images_total": sum(images.values()),
            "images_official_split": sum(images.values()),
            "records_total": sum(sum(v.values()) for v in records.values()),
            "datasets": _plain(datasets), "categories": _plain(categories), "skipped": {},
            "files": files}, {d: {s: len(v) for s, v in per.items()} for d, per in cls_images.items()}


def _plain(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _plain(tree[k]) for k in sorted(tree)}
    return tree


def pass_release(release: dict[str, Any], out_dir: Path, expected: dict[str, Any],
                 required: list[str]) -> dict[str, Any]:
    """Copy the release's JSON files to ``out_dir`` and return their stats (module docstring)."""
    src = Path(release["json_dir"])
    stats, found = release_stats(_copy(src, Path(out_dir), release["files"], required))
    stats["release"] = {"json_dir": src.as_posix(), "files": len(release["files"])}
    if expected:
        stats["catalogue"], warnings = compare_datasets(found, expected)
        if warnings:
            stats["count_warnings"] = warnings
    return stats
