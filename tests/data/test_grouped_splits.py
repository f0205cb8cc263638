"""Leak-free seeded splits: frames of one video never straddle two splits."""

import json
import random

import pyarrow.parquet as pq

from colonpipe.data.ingest import ingest
from colonpipe.data.instruct import build_instruct
from colonpipe.data.splits import SplitItem, assign_grouped, assign_splits
from colonpipe.params import IngestParams, InstructParams, SourceParams
from tests.data.layouts import BUILDERS, img

RATIOS = (0.6, 0.1, 0.3)


def _videos(n_videos=60, seed=1):
    """Videos of 1-40 frames; a video mostly shows one finding, sometimes a second one."""
    rng = random.Random(seed)
    items = []
    for v in range(n_videos):
        cats = ["polyp"] if rng.random() < 0.6 else ["ulcer", "erosion"][: rng.randint(1, 2)]
        for f in range(rng.randint(1, 40)):
            items.append(SplitItem(f"D/v{v}/f{f}.jpg", "D", rng.choice(cats), group=f"v{v}"))
    return items


def test_no_video_straddles_two_splits_and_counts_follow_the_ratios():
    items = _videos()
    out = assign_grouped(items, RATIOS, seed=0)
    by_video = {}
    for item in items:
        by_video.setdefault(item.group, set()).add(out[item.image])
    assert all(len(s) == 1 for s in by_video.values())
    share = {s: sum(v == s for v in out.values()) / len(out) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.6) < 0.12 and abs(share["test"] - 0.3) < 0.12 and share["val"] > 0


def test_grouped_split_is_seeded_and_independent_of_input_order():
    items = _videos()
    shuffled = items[:]
    random.Random(5).shuffle(shuffled)
    assert assign_splits(items, RATIOS, seed=3) == assign_splits(shuffled, RATIOS, seed=3)
    assert assign_splits(items, RATIOS, seed=3) != assign_splits(items, RATIOS, seed=4)


def test_ungrouped_datasets_split_exactly_as_before():
    plain = [SplitItem(f"E/{i}.jpg", "E", "polyp") for i in range(50)]
    alone = assign_splits(plain, RATIOS, seed=0)
    together = assign_splits(plain + _videos(), RATIOS, seed=0)
    assert {k: together[k] for k in alone} == alone


def test_group_by_from_the_path_end_to_end(tmp_path):
    root = tmp_path / "frames"
    for v in range(12):
        for f in range(3):
            img(root / f"polyp/bowel_{v}_score_1-0_{f:08d}.jpg")
    src = SourceParams(name="N", root=str(root), format="class_folders", categories={"polyp": "polyp"},
                       group_by=r"bowel_(\d+)_")
    ingest(IngestParams(sources=[src], workers=1), tmp_path / "i", progress=False)
    rows = pq.read_table(tmp_path / "i/annotations.parquet").to_pylist()
    assert len({r["group"] for r in rows}) == 12
    build_instruct(tmp_path / "i/annotations.parquet", tmp_path / "o", InstructParams())
    split_of = {}
    for rel, split in (("train/ColonINST-train-3tasks.json", "train"), ("val/ColonINST-val-cls.json", "val"),
                       ("test/ColonINST-test-cls.json", "test")):
        for rec in json.loads((tmp_path / "o/Json-file" / rel).read_text()):
            split_of[rec["id"]] = split
    videos = {}
    for rec_id, split in split_of.items():
        videos.setdefault(rec_id.rsplit("/", 1)[1].split("_")[1], set()).add(split)
    assert len(split_of) == 36 and all(len(s) == 1 for s in videos.values())
    assert {next(iter(s)) for s in videos.values()} == {"train", "val", "test"}


def test_a_preset_grouping_can_be_switched_off(tmp_path):
    BUILDERS["Nerthus"](tmp_path / "n")
    src = SourceParams(name="Nerthus", root=str(tmp_path / "n"), preset="Nerthus", group_by="")
    ingest(IngestParams(sources=[src], workers=1), tmp_path / "i", progress=False)
    assert "group" not in pq.read_schema(tmp_path / "i/annotations.parquet").names
