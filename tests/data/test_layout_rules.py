"""Pairing, split and label rules a source can set, and issue 10's two ingest probes.

- the three layouts issue 14 found giving zero images: VOC under ``train2019``-style split
  folders with per-video sub-folders, COCO JSON (tests/data/test_coco.py) and
  ``masks_C1/x_mask.jpg`` beside ``images_C1/x.jpg``;
- split aliases, list files / folders, fixed splits, ignore globs, label levels, folded and
  ignored labels, class-only unannotated images;
- a 400-digit integer in a JSON box, and two files differing only in case.
"""

import json

import pyarrow.parquet as pq
import pytest

from colonpipe.data.ingest import IngestError, ingest
from colonpipe.params import IngestParams, SourceParams
from tests.data.layouts import box_for, img, mask


def _run(tmp_path, sources, **kw):
    out = tmp_path / "out"
    ingest(IngestParams(sources=list(sources), workers=1, **kw), out, progress=False)
    rows = pq.read_table(out / "annotations.parquet").to_pylist()
    return rows, json.loads((out / "ingest_report.json").read_text())


def _got(rows):
    return sorted((r["image"].split("/", 1)[1], r["split"], r["category"], tuple(r["box"]) if r["box"] else None)
                  for r in rows)


def _kinds(report):
    return sorted(p["kind"] for p in report["problems"])


def test_voc_under_year_split_folders_with_video_subfolders(tmp_path):
    root = tmp_path / "PolypsSet"
    want = []
    for split_dir, split in (("train2019", "train"), ("val2019", "val"), ("test2019", "test")):
        rel = f"{split_dir}/Image/12/5.jpg"
        img(root / rel, (40, 30))
        b = box_for(root / rel, (40, 30))
        (root / f"{split_dir}/Annotation/12").mkdir(parents=True)
        (root / f"{split_dir}/Annotation/12/5.xml").write_text(
            f"<annotation><filename>5.jpg</filename><object><name>hyperplastic</name><bndbox><xmin>{b[0] + 1}</xmin>"
            f"<ymin>{b[1] + 1}</ymin><xmax>{b[2] + 1}</xmax><ymax>{b[3] + 1}</ymax></bndbox></object></annotation>")
        want.append((rel, split, "polyp", b))
    src = SourceParams(name="K", root=str(root), format="voc", split="official", categories={"hyperplastic": "polyp"},
                       split_folders={"Train2019": "train", "val2019": "val", "test2019": "test"})
    rows, report = _run(tmp_path, [src])
    assert _got(rows) == sorted(want) and _kinds(report) == []
    # without the aliases the symptom: every image lacks a split folder
    rows, report = _run(tmp_path, [SourceParams(name="K", root=str(root), format="voc", split="official",
                                                categories={"hyperplastic": "polyp"})])
    assert rows == [] and _kinds(report) == ["no_split_folder"] * 3


def test_numbered_mask_folders_with_a_suffix(tmp_path):
    root = tmp_path / "pg"
    want = []
    for c in (1, 2):
        rel = f"data_C{c}/images_C{c}/{c}00H0050.jpg"
        img(root / rel, (44, 33))
        b = box_for(root / rel, (44, 33))
        mask(root / f"data_C{c}/masks_C{c}/{c}00H0050_mask.jpg", (44, 33), b)
        want.append((rel, None, "polyp", b))
    spec = dict(name="P", root=str(root), format="mask", categories={"foreground": "polyp"})
    rows, report = _run(tmp_path, [SourceParams(**spec, image_dirs=["images_*"], annotation_dirs=["masks_*"],
                                                annotation_suffix="_mask")])
    assert _got(rows) == sorted(want) and _kinds(report) == []
    # the defaults (issue 14's symptom): masks counted as images, every image unannotated
    rows, report = _run(tmp_path, [SourceParams(**spec)])
    assert rows == [] and set(_kinds(report)) == {"image_without_annotation"}


def test_split_aliases_for_test_easy_and_hard(tmp_path):
    root = tmp_path / "s"
    for d in ("TrainDataset", "TestEasyDataset", "TestHardDataset"):
        img(root / f"{d}/polyp/a.jpg")
    src = SourceParams(name="S", root=str(root), format="class_folders", split="official", label_level=-1,
                       categories={"polyp": "polyp"},
                       split_folders={"TrainDataset": "train", "TestEasyDataset": "test", "testharddataset": "test"})
    rows, _ = _run(tmp_path, [src])
    assert sorted(r["split"] for r in rows) == ["test", "test", "train"]


def test_split_lists_files_folders_unlisted_and_conflicts(tmp_path):
    root = tmp_path / "ki"
    for i in range(6):
        img(root / f"images/img{i}.jpg")
        mask(root / f"masks/img{i}.png", (32, 24), (2, 2, 10, 10))
    (root / "train.txt").write_text("# stems\nimg0\nimg1\nimg2\nghost\n")
    pranet = tmp_path / "PraNet/TestDataset/X/images"
    for i in (2, 3):
        img(pranet / f"img{i}.png")  # a benchmark folder naming the test images (another extension)
    src = dict(name="KI", root=str(root), format="mask", categories={"foreground": "accessory tool"}, split="list")
    rows, report = _run(tmp_path, [SourceParams(**src, split_lists={"train": "train.txt", "test": str(pranet)})])
    assert {r["image"].rsplit("/", 1)[1]: r["split"] for r in rows} == {"img0.jpg": "train", "img1.jpg": "train",
                                                                        "img3.jpg": "test"}
    assert _kinds(report) == ["not_in_split_list", "not_in_split_list", "split_conflict", "split_list_unmatched"]
    rows, _ = _run(tmp_path, [SourceParams(**src, split_lists={"test": str(pranet)}, unlisted_split="train")])
    assert sorted(r["split"] for r in rows) == ["test"] * 2 + ["train"] * 4


def test_fixed_split_ignore_globs_label_level_and_labels(tmp_path):
    root = tmp_path / "g"
    img(root / "Gastrovision/Colon polyps/a.jpg")
    img(root / "Gastrovision/Normal stomach/b.jpg")
    img(root / "Gastrovision/Colon_Polyps/c.jpg")
    img(root / "overlays/d.jpg")
    src = SourceParams(name="G", root=str(root), format="class_folders", split="test", label_level=-1,
                       ignore=["overlays/*"], fold_labels=True, categories={"colon polyps": "polyp"},
                       ignore_labels=["normal stomach"])
    rows, report = _run(tmp_path, [src])
    assert [(r["image"].rsplit("/", 1)[1], r["split"], r["category"]) for r in sorted(rows, key=lambda r: r["image"])] \
        == [("a.jpg", "test", "polyp"), ("c.jpg", "test", "polyp")]
    assert _kinds(report) == []  # the negative class is counted, not reported
    assert report["sources"]["G"]["excluded_labels"] == {"Normal stomach": 1}
    assert report["sources"]["G"]["ignored_files"] == 1


def test_unannotated_label_keeps_frames_without_boxes_class_only(tmp_path):
    root = tmp_path / "m"
    img(root / "images/a.jpg")
    img(root / "images/b.jpg")
    mask(root / "masks/a.png", (32, 24), (1, 1, 9, 9))
    mask(root / "masks/b.png", (32, 24), None)
    src = SourceParams(name="M", root=str(root), format="mask", categories={"foreground": "polyp", "polyp": "polyp"},
                       unannotated_label="polyp")
    rows, report = _run(tmp_path, [src])
    assert _got(rows) == [("images/a.jpg", None, "polyp", (1, 1, 9, 9)), ("images/b.jpg", None, "polyp", None)]
    assert _kinds(report) == ["empty_mask"]


# --------------------------------------------------------------------------- issue 10 probes
def test_a_400_digit_integer_in_a_json_box_is_a_reported_skip(tmp_path):
    root = tmp_path / "j"
    img(root / "images/a.jpg", (40, 30))
    img(root / "images/b.jpg", (40, 30))
    huge = int("7" * 400)
    (root / "boxes.json").write_text(json.dumps({
        "a": {"width": 40, "height": 30, "bbox": [{"label": "polyp", "xmin": huge, "ymin": 1, "xmax": 5, "ymax": 9}]},
        "b": {"width": huge, "height": 30, "bbox": [{"label": "polyp", "xmin": 1, "ymin": 1, "xmax": 5, "ymax": 9}]}}))
    rows, report = _run(tmp_path, [SourceParams(name="J", root=str(root), format="json_boxes",
                                                categories={"polyp": "polyp"})])
    assert _got(rows) == [("images/b.jpg", None, "polyp", (1, 1, 5, 9))]  # an absurd width is just not checked
    bad = [p for p in report["problems"] if p["kind"] == "malformed_annotation"]
    assert len(bad) == 1 and bad[0]["action"] == "skipped" and "bits" in bad[0]["reason"]
    assert "7777" not in json.dumps(report)


def test_files_differing_only_in_case_are_reported_ambiguous(tmp_path):
    root = tmp_path / "c"
    img(root / "images/Frame1.jpg", (40, 30))
    img(root / "images/frame1.jpg", (40, 30))
    img(root / "JPEGImages/IMG.jpg", (40, 30))
    img(root / "JPEGImages/img.JPG", (40, 30))
    (root / "boxes.json").write_text(json.dumps([
        {"image": "images/FRAME1.jpg", "boxes": [{"label": "polyp", "box": [1, 1, 9, 9]}]},  # no exact match
        {"image": "images/frame1.jpg", "boxes": [{"label": "polyp", "box": [2, 2, 9, 9]}]}]))  # exact match
    (root / "Annotations").mkdir()
    (root / "Annotations/x.xml").write_text("<annotation><filename>Img.jpg</filename><object><name>polyp</name>"
                                            "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
                                            "</object></annotation>")
    cats = {"polyp": "polyp"}
    rows, report = _run(tmp_path, [SourceParams(name="J", root=str(root), format="json_boxes", categories=cats),
                                   SourceParams(name="V", root=str(root), format="voc", categories=cats)])
    assert {(r["dataset"], r["image"].split("/", 1)[1]) for r in rows} == {("J", "images/frame1.jpg")}
    amb = sorted((p["source"], p["action"]) for p in report["problems"] if p["kind"] == "ambiguous_image")
    assert amb == [("J", "repaired"), ("J", "skipped"), ("V", "skipped")]


def test_unknown_preset_and_unusable_resolved_source_stop_with_the_params_file(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    with pytest.raises(IngestError) as err:
        ingest(IngestParams(sources=[SourceParams(name="A", root=str(root), preset="NotADataset"),
                                     SourceParams(name="B", root=str(root), preset="Kvasir-SEG", split="list")]),
               tmp_path / "out", params_file="my.yaml")
    msg = str(err.value)
    assert msg.startswith("my.yaml: cannot ingest") and "unknown preset 'NotADataset'" in msg and "Hyper-Kvasir" in msg
    assert "ingest.sources[B]" in msg and "split: list needs split_lists" in msg
