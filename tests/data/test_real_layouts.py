"""Every catalogue entry, read through its preset from a tiny copy of its documented layout.

The layouts come from each dataset's own documentation (tests/data/layouts.py names the
page per builder); the source entry is only ``name``, ``root`` and ``preset``, as a user
would write it. Ingest must find exactly the images, categories, boxes and splits the
layout holds, skip what the dataset's documentation calls negatives or extras (overlays,
duplicates, weak labels) without a report entry, and compare the counts with ColonINST's.
"""

import json

import pyarrow.parquet as pq
import pytest

from colonpipe.data import catalogue
from colonpipe.data.ingest import ingest
from colonpipe.data.instruct import build_instruct
from colonpipe.params import IngestParams, InstructParams, SourceParams
from tests.data.layouts import BUILDERS

# problems the documented layout itself produces (and ColonINST's counting explains)
EXPECTED_PROBLEMS = {"SUN": {"empty_mask"}, "PolypGen": {"empty_mask"}}


def test_every_catalogue_entry_has_a_layout_fixture():
    assert sorted(BUILDERS) == sorted(catalogue.entries())


def _ingest(tmp_path, key):
    root = tmp_path / key
    expected = BUILDERS[key](root)
    name = key.replace(" ", "_")
    params = IngestParams(sources=[SourceParams(name=name, root=str(root), preset=key)], workers=1)
    ingest(params, tmp_path / "interim", progress=False)
    rows = pq.read_table(tmp_path / "interim/annotations.parquet").to_pylist()
    report = json.loads((tmp_path / "interim/ingest_report.json").read_text())
    return name, expected, rows, report


@pytest.mark.parametrize("key", sorted(BUILDERS))
def test_preset_reads_its_documented_layout(tmp_path, key):
    name, expected, rows, report = _ingest(tmp_path, key)
    got = {(r["image"].split("/", 1)[1], r["category"], tuple(r["box"]) if r["box"] else None, r["split"])
           for r in rows}
    want = {(rel.split("#")[0], e.category, e.box, e.split) for rel, e in expected.items()}
    assert got == want, f"{key}: missing {sorted(want - got)[:3]}, unexpected {sorted(got - want)[:3]}"
    kinds = {p["kind"] for p in report["problems"]}
    assert kinds <= EXPECTED_PROBLEMS.get(key, set()), report["problems"][:5]
    counts = report["sources"][name]["counts"]
    assert counts["preset"] == key and counts["expected"] == {s: catalogue.lookup(key).expected.get(s, 0)
                                                              for s in ("train", "val", "test")}
    assert counts["status"] == "differs" and any(w.startswith(f"{name}:") for w in report["count_warnings"])


@pytest.mark.parametrize("key", ["Kvasir-Capsule", "KUMC"])
def test_instruct_compares_each_split_with_coloninst(tmp_path, key):
    name, expected, rows, _ = _ingest(tmp_path, key)
    stats = build_instruct(tmp_path / "interim/annotations.parquet", tmp_path / "out", InstructParams())
    record = stats["catalogue"][name]
    assert record["preset"] == key and record["found_total"] == len({k.split("#")[0] for k in expected})
    assert record["expected"] == {s: catalogue.lookup(key).expected[s] for s in ("train", "val", "test")}
    assert record["status"] == "differs" and stats["count_warnings"][0].startswith(f"{name}: train/val/test")


def test_kvasir_capsule_keeps_each_video_in_one_split(tmp_path):
    _, _, rows, report = _ingest(tmp_path, "Kvasir-Capsule")
    assert {r["group"] for r in rows} == {"04a78ef00c5245e0", "3c8d5f0b90d7475f"}
    assert report["sources"]["Kvasir-Capsule"]["groups"] == 2
    stats = build_instruct(tmp_path / "interim/annotations.parquet", tmp_path / "out", InstructParams())
    split_of = {}
    for split in ("train", "val", "test"):
        for task in ("cls",):
            path = tmp_path / "out/Json-file" / ("train/ColonINST-train-3tasks.json" if split == "train"
                                                  else f"{split}/ColonINST-{split}-{task}.json")
            for rec in json.loads(path.read_text()):
                split_of[rec["id"]] = split
    video_splits = {}
    for rec_id, split in split_of.items():
        video_splits.setdefault(rec_id.rsplit("/", 1)[1].split("_")[0], set()).add(split)
    assert all(len(s) == 1 for s in video_splits.values()), video_splits
    assert stats["images_total"] == len(split_of)
