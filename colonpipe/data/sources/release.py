"""The official ColonINST release as a source (format ``coloninst_release``).

The source root holds ``Positive-images/<Dataset>/<Split>/<category>/<file>`` and
``Json-file/{train,val,test}/ColonINST-*.json`` (the layout of the ColonINST guideline).

Contract of ``read_release(root)``:
- The release is checked with ``check_coloninst`` (the ``colonpipe check-data`` command)
  against ``Positive-images``; its counts and examples go into the ingest report.
- Its records become manifest objects so stats and the image checks work as for raw data:
  each CLS record gives the image's category (class only), each REC record a box for the
  category its question names; CAP answers are the captions. Records ``check_coloninst``
  rejects are left out here (it reports them). Ids are ``<Dataset>/<path>``, split from the
  file name (the first file naming an id wins; ``check_coloninst`` reports overlaps).
- ``files`` records the sha256 of every JSON file: ``instruct`` copies those exact files to
  its output (the rest of the pipeline trains and evaluates on them unchanged) and refuses
  when one changed after ingest.
- A missing ``Json-file`` or ``Positive-images`` folder raises ``FileNotFoundError``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colonpipe.data.check import check_coloninst, record_task, shape_error
from colonpipe.data.sources.common import RawObject, ReadResult, SourceListing
from colonpipe.coloninst import HUMAN_PREFIX, BoxTextError, parse_box, parse_instruction_file

JSON_DIR, IMAGE_DIR = "Json-file", "Positive-images"


@dataclass
class ReleaseRead:
    """A release read into per-dataset objects, with its check report and file digests."""

    json_dir: Path
    image_root: Path
    objects: dict[str, list[RawObject]] = field(default_factory=dict)  # dataset -> objects (image = path in it)
    splits: dict[str, str] = field(default_factory=dict)  # record id -> split
    captions: dict[str, str] = field(default_factory=dict)  # record id -> caption
    files: dict[str, str] = field(default_factory=dict)  # JSON path under json_dir -> sha256
    check: dict[str, Any] = field(default_factory=dict)

    def dataset_read(self, name: str) -> tuple[SourceListing, ReadResult]:
        """The listing and read result of one dataset folder, as a reader would give them."""
        objects = self.objects.get(name, [])
        images = sorted({o.image for o in objects})
        return SourceListing(self.image_root / name, tuple(images)), ReadResult(objects=objects, images=images)


def _add_record(rel: str, split: str | None, task: str | None, rec: dict, out: ReleaseRead) -> None:
    question = rec["conversations"][0]["value"][len(HUMAN_PREFIX):]
    answer = rec["conversations"][1]["value"]
    matched = record_task(task, question)
    dataset, _, path = rec["id"].partition("/")
    if matched is None or not path:
        return
    kind, fields = matched
    if split is not None:
        out.splits.setdefault(rec["id"], split)
    shown = f"../../{JSON_DIR}/{rel}"  # relative to Positive-images/<Dataset>, the dataset's listing root
    if kind == "cls":
        obj = RawObject(image=path, label=answer.strip(), box=None, annotation=shown)
    elif kind == "rec":
        try:
            obj = RawObject(image=path, label=fields["cat"].strip(), box=parse_box(answer.strip()), annotation=shown)
        except BoxTextError:
            return
    else:
        if kind == "cap" and answer.strip():
            out.captions.setdefault(rec["id"], answer)
        return
    out.objects.setdefault(dataset, []).append(obj)


def read_release(root: Path, *, max_examples: int = 20) -> ReleaseRead:
    """Check and read a release folder (module docstring)."""
    json_dir, image_root = Path(root) / JSON_DIR, Path(root) / IMAGE_DIR
    missing = [p.as_posix() for p in (json_dir, image_root) if not p.is_dir()]
    if missing:
        raise FileNotFoundError(f"{Path(root).as_posix()}: not a ColonINST release (missing {', '.join(missing)})")
    out = ReleaseRead(json_dir, image_root, check=check_coloninst(json_dir, image_root, max_examples=max_examples))
    for path in sorted(p for p in json_dir.rglob("*.json") if not p.name.startswith(".")):
        rel = path.relative_to(json_dir).as_posix()
        data = path.read_bytes()
        out.files[rel] = hashlib.sha256(data).hexdigest()
        split, task = parse_instruction_file(path.name) or (None, None)
        try:
            records = json.loads(data)
        except ValueError:
            continue  # reported by check_coloninst as bad_json
        for rec in records if isinstance(records, list) else []:
            if shape_error(rec) is None:
                _add_record(rel, split, task, rec, out)
    return out
