"""ColonINST instruction JSON + images -> tokenised training examples.

A record must be ``{"id", "conversations": [human turn with one "<image>", gpt turn]}``.
Records that are malformed, whose image cannot be resolved or opened, or whose prompt leaves
no room for the answer are **skipped and reported** (``InstructionDataset.skipped``), never
fatal. Images are header-checked when the dataset is built; an image that only fails when
fully decoded is replaced by the next usable record at load time (logged and counted), so
every rank still sees full batches. A decompression bomb (a header declaring more pixels than
PIL's ``MAX_IMAGE_PIXELS``) is skipped at either point and never decoded.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from colonpipe import coloninst
from colonpipe.data.images import ImageError, ImageResolver, load_rgb, open_image
from colonpipe.model.processing import ColonGPTProcessor, PromptTooLongError

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Record:
    """One usable dialogue: position in the JSON file, image path, question, answer."""

    index: int
    id: str
    image: Path
    question: str
    answer: str


def _header_ok(path: Path) -> None:
    """Raise ``ImageError`` (``ImageBombError`` for a bomb) unless ``path``'s header parses."""
    with open_image(path):
        pass


def usable_records(json_path: Path, resolver: ImageResolver, *, max_records: int | None = None,
                   seed: int = 0) -> tuple[list[Record], list[dict[str, Any]]]:
    """Usable records of ``json_path`` and the skipped ones as ``{"index", "id", "reason"}``.

    ``max_records`` keeps a seeded random subset (in file order). A file that is not a JSON list
    raises ``ColonINSTError`` (a ``ValueError``) naming it; a record that is not a
    ``coloninst.dialogue`` is skipped with the reason.
    """
    raw = coloninst.read_records(json_path)
    positions = list(range(len(raw)))
    if max_records is not None and max_records < len(raw):
        positions = sorted(random.Random(seed).sample(positions, max_records))
    records, skipped = [], []
    for i in tqdm(positions, desc=f"checking {Path(json_path).name}", disable=len(positions) < 2000):
        rec_id = raw[i].get("id") if isinstance(raw[i], dict) else None
        try:
            rec_id, question, answer = coloninst.dialogue(raw[i])
            path = resolver.resolve(rec_id)
            _header_ok(path)
        except (ValueError, OSError) as exc:  # ImageError is a ValueError
            skipped.append({"index": i, "id": rec_id, "reason": str(exc)})
            logger.warning("%s: skipping record %d (%s): %s", json_path, i, rec_id, exc)
            continue
        records.append(Record(i, rec_id, path, question, answer))
    if not records:
        raise ValueError(f"{json_path}: no usable records ({len(skipped)} skipped)")
    return records, skipped


class InstructionDataset(Dataset):
    """Map-style dataset of encoded examples: ``{"input_ids", "labels"}`` lists and
    ``pixel_values`` (3, S, S) float32."""

    def __init__(self, records: list[Record], processor: ColonGPTProcessor, *, max_length: int,
                 skipped: list[dict[str, Any]] | None = None):
        self.records = records
        self.processor = processor
        self.max_length = max_length
        self.skipped = list(skipped or [])

    def __len__(self) -> int:
        return len(self.records)

    def encode(self, rec: Record) -> dict[str, Any]:
        """Encode one record; raises ``ImageError`` / ``PromptTooLongError`` on a bad one."""
        ex = self.processor.encode_training(rec.question, rec.answer, max_length=self.max_length)
        pixels = self.processor.preprocess_images([load_rgb(rec.image)])[0]
        return {"input_ids": ex.input_ids, "labels": ex.labels, "pixel_values": pixels}

    def __getitem__(self, idx: int) -> dict[str, Any]:
        for offset in range(len(self.records)):
            rec = self.records[(idx + offset) % len(self.records)]
            try:
                return self.encode(rec)
            except (ImageError, PromptTooLongError) as exc:
                self.skipped.append({"index": rec.index, "id": rec.id, "reason": str(exc)})
                logger.warning("skipping record %d (%s) at load time: %s", rec.index, rec.id, exc)
        raise RuntimeError("every record failed to load")


# The val files that hold the same tasks as a stage's train file (spec section 2 names).
_VAL_FILES = {coloninst.instruction_file("train", coloninst.COMBINED_TASK):
              [coloninst.instruction_file("val", t) for t in coloninst.STAGE2_TASKS],
              coloninst.instruction_file("train", "cap"): [coloninst.instruction_file("val", "cap")]}


def split_files(train_json: Path, splits: list[str]) -> dict[str, list[Path]]:
    """``{split: instruction files}`` a stage trains on: ``train`` is ``train_json`` itself, ``val``
    the val files of the same tasks next to it (``Json-file/val/ColonINST-val-{cls,reg,rec}.json``
    for the 3-task file, ``ColonINST-val-cap.json`` for the CAP file). Missing files raise
    ``ValueError`` naming them."""
    train_json = Path(train_json)
    out = {"train": [train_json]}
    if "val" in splits:
        names = _VAL_FILES.get(train_json.name)
        if names is None:
            raise ValueError(f"{train_json}: train_splits has val, but val files can only be found next to "
                             f"a ColonINST train file ({', '.join(_VAL_FILES)})")
        files = [train_json.parent.parent / "val" / n for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"train_splits has val but these files are missing: {missing}")
        out["val"] = files
    return out


def load_dataset(json_paths: Path | list[Path], image_root: Path, processor: ColonGPTProcessor, *,
                 max_length: int, max_records: int | None = None, seed: int = 0) -> InstructionDataset:
    """Build the training dataset from instruction JSON file(s) and an image root (folder or roots
    JSON). Several files are concatenated in order; ``max_records`` subsamples each file; a skipped
    record names its file."""
    paths = [json_paths] if isinstance(json_paths, (str, Path)) else list(json_paths)
    resolver = ImageResolver.from_path(image_root)
    records, skipped = [], []
    for path in paths:
        got, bad = usable_records(path, resolver, max_records=max_records, seed=seed)
        logger.info("%s: %d usable records, %d skipped", path, len(got), len(bad))
        records += got
        skipped += [{**b, "file": str(path)} for b in bad] if len(paths) > 1 else bad
    return InstructionDataset(records, processor, max_length=max_length, skipped=skipped)


def token_count(batch: dict[str, torch.Tensor]) -> int:
    """Non-padding tokens in a batch (image tokens included)."""
    return int(batch["attention_mask"].sum())
