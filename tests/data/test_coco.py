"""COCO detection JSON, as cocodataset.org/#format-data defines it, through ingest.

Fixtures follow the format page: ``images`` {id, width, height, file_name}, ``annotations``
{id, image_id, category_id, segmentation, area, bbox [x, y, width, height], iscrowd},
``categories`` {id, name, supercategory}; crowd annotations carry RLE, single objects
polygons. RLE strings come from pycocotools (the COCO API), not from our code.
"""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pycocotools import mask as mask_utils

from colonpipe.data.ingest import check_box, ingest
from colonpipe.data.sources.coco import annotation_box, rle_counts, rle_extent
from colonpipe.params import IngestParams, SourceParams
from tests.data.layouts import coco_detection, img


def _coco(path, images, annotations, categories=({"id": 1, "name": "polyp", "supercategory": "lesion"},),
          key="annotations"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"info": {"year": 2021, "version": "1.0"}, "licenses": [], "images": list(images),
                                key: list(annotations), "categories": list(categories)}))


def _ingest(tmp_path, root, categories, **kw):
    src = SourceParams(name="COCO", root=str(root), format="coco", categories=categories, **kw)
    ingest(IngestParams(sources=[src], workers=1), tmp_path / "out", progress=False)
    rows = pq.read_table(tmp_path / "out/annotations.parquet").to_pylist()
    report = json.loads((tmp_path / "out/ingest_report.json").read_text())
    return {(r["image"].split("/", 1)[1], r["category"], tuple(r["box"]) if r["box"] else None) for r in rows}, report


def _kinds(report):
    return sorted(p["kind"] for p in report["problems"])


# --------------------------------------------------------------------------- box convention
@pytest.mark.parametrize("bbox,box", [
    ([10, 20, 5, 4], (10, 20, 14, 23)),        # covers pixels 10..14 x 20..23
    ([10.3, 20.0, 5.4, 4.0], (10, 20, 15, 23)),  # edges 10.3 -> 15.7: pixels 10..15 (half-up rounding)
    ([0, 0, 40, 30], (0, 0, 39, 29)),          # the whole 40x30 image
])
def test_bbox_xywh_becomes_inclusive_pixels(bbox, box):
    raw, _ = annotation_box({"bbox": bbox}, "xywh")
    assert tuple(check_box(raw, 40, 30)[0]) == box


def test_xyxy_box_format_reads_corners_inclusive():
    assert annotation_box({"bbox": [10, 20, 14, 23]}, "xyxy")[0] == (10, 20, 14, 23)


def test_polygon_extent_matches_the_equivalent_bbox():
    # COCO's bbox of a polygon is its extent [min x, min y, max x - min x, max y - min y]
    poly = [[12.0, 8.0, 30.0, 8.0, 30.0, 20.0, 12.0, 20.0]]
    assert annotation_box({"segmentation": poly}, "xywh")[0] == annotation_box({"bbox": [12, 8, 18, 12]}, "xywh")[0]


def test_rle_from_pycocotools_decodes_to_the_mask_extent():
    m = np.zeros((30, 40), np.uint8, order="F")
    m[5:12, 7:25] = 1
    m[20, 3] = 1  # a second blob: the extent spans both
    rle = mask_utils.encode(np.asfortranarray(m))
    runs = rle_counts(rle["counts"].decode())
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)  # run boundaries
    assert sum(runs) == m.size and runs[0] == int(np.argmax(flat))  # background first
    assert len(runs) >= 3 and change.size > 0
    assert rle_extent(runs, 30, 40) == (3, 5, 24, 20)
    box, size = annotation_box({"segmentation": {"size": [30, 40], "counts": rle["counts"].decode()}}, "xywh")
    assert box == (3, 5, 24, 20) and size == (40, 30)
    uncompressed = {"size": [30, 40], "counts": runs}
    assert annotation_box({"segmentation": uncompressed}, "xywh")[0] == (3, 5, 24, 20)


def test_rle_of_a_run_crossing_a_column_spans_every_row():
    assert rle_extent([28, 4, 88], 30, 4) == (0, 0, 1, 29)  # rows 28,29 of col 0 and 0,1 of col 1


# --------------------------------------------------------------------------- files, images, categories
def test_several_files_subfolders_category_by_name_crowd_and_segmentation_only(tmp_path):
    root = tmp_path / "coco"
    img(root / "images/train/case1/a.jpg", (40, 30))
    img(root / "images/val/b.jpg", (40, 30))
    img(root / "images/val/c.jpg", (40, 30))
    cats = [{"id": 1, "name": "polyp"}, {"id": 2, "name": "instrument"}]
    _coco(root / "annotations/instances_train.json",
          [{"id": 7, "width": 40, "height": 30, "file_name": "train/case1/a.jpg"}],
          [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 5, 4], "iscrowd": 0, "area": 20},
           {"id": 2, "image_id": 7, "category_id": 2, "bbox": [1, 1, 3, 3], "iscrowd": 1,
            "segmentation": {"size": [30, 40], "counts": [31, 3, 27, 3, 27, 3, 1106]}}], cats)
    _coco(root / "annotations/instances_val.json",
          [{"id": 1, "width": 40, "height": 30, "file_name": "val/b.jpg"},
           {"id": 2, "width": 40, "height": 30, "file_name": "val/c.jpg"}],
          [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1,
            "segmentation": [[12.0, 8.0, 30.0, 8.0, 30.0, 20.0, 12.0, 20.0]]}], cats)
    rows, report = _ingest(tmp_path, root, {"polyp": "polyp", "instrument": "accessory tool"})
    assert rows == {("images/train/case1/a.jpg", "polyp", (10, 20, 14, 23)),
                    ("images/train/case1/a.jpg", "accessory tool", (1, 1, 3, 3)),
                    ("images/val/b.jpg", "polyp", (12, 8, 29, 19))}
    assert _kinds(report) == []  # c.jpg is listed without annotations: a negative frame, not an error


def test_category_by_id(tmp_path):
    root = tmp_path / "coco"
    img(root / "a.jpg", (40, 30))
    _coco(root / "ann.json", [{"id": 1, "width": 40, "height": 30, "file_name": "a.jpg"}],
          [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 2, 10, 10]}], [{"id": 3, "name": "Polyp"}])
    rows, _ = _ingest(tmp_path, root, {"3": "polyp"}, category_key="id")
    assert rows == {("a.jpg", "polyp", (2, 2, 11, 11))}


def test_sun_seg_variant_annotation_key_and_id_tie(tmp_path):
    """SUN-SEG's bbox_annotation.json (github.com/GewelsJI/VPS docs/DATA_DESCRIPTION.md): list
    ``annotation``, ids shared with the image, extension-less file names, no category."""
    root = tmp_path / "sun"
    img(root / "TrainDataset/Frame/case1_1/case_M_1_a2_ayy_image0001.jpg", (60, 50))
    _coco(root / "TrainDataset/Detection/bbox_annotation.json",
          [{"id": "case1_1-a2-image0001", "width": 60, "height": 50, "case_name": "case1_1",
            "file_name": "case_M_1_a2_ayy_image0001"}],
          [{"id": "case1_1-a2-image0001", "bbox": [26, 7, 6, 8]}], categories=(), key="annotation")
    rows, report = _ingest(tmp_path, root, {"object": "polyp"})
    assert rows == {("TrainDataset/Frame/case1_1/case_M_1_a2_ayy_image0001.jpg", "polyp", (26, 7, 31, 14))}
    assert _kinds(report) == []


# --------------------------------------------------------------------------- hostile input
def test_bad_coco_input_is_reported_never_raised(tmp_path):
    root = tmp_path / "coco"
    img(root / "a.jpg", (40, 30))
    img(root / "A.JPG", (40, 30))
    img(root / "b.jpg", (40, 30))
    huge = int("9" * 400)
    (root / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "width": 40, "height": 30, "file_name": "a.jpg"},
                   {"id": 2, "file_name": "missing.jpg"}, {"id": 3, "file_name": "a.JpG"},
                   {"id": 4, "width": 40, "height": 30, "file_name": "b.jpg"}, {"id": 4, "file_name": "b.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [huge, 1, 2, 3]},
                        {"id": 2, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 3]},
                        {"id": 3, "image_id": 1, "category_id": 1, "bbox": "1,2,3,4"},
                        {"id": 4, "image_id": 1, "category_id": 1},
                        {"id": 5, "image_id": 4, "category_id": 1, "segmentation": {"size": [30, 40], "counts": "#"}},
                        {"id": 6, "image_id": 4, "category_id": 1, "segmentation": {"size": [30, 40], "counts": [5]}}],
        "categories": [{"id": 1, "name": "polyp"}]}))
    (root / "other.json").write_text('{"not": "coco"}')
    (root / "broken.json").write_text("{")
    rows, report = _ingest(tmp_path, root, {"polyp": "polyp"})
    assert rows == set()
    # a.JpG matches a.jpg and A.JPG (case only): ambiguous, skipped; a.jpg itself: exact match used
    assert _kinds(report) == sorted(["ambiguous_image"] * 2 + ["annotation_without_image"] * 2
                                    + ["malformed_annotation"] * 8 + ["image_without_annotation"])
    actions = {(p["kind"], p["action"]) for p in report["problems"] if p["kind"] == "ambiguous_image"}
    assert actions == {("ambiguous_image", "skipped"), ("ambiguous_image", "repaired")}
    huge_reason = next(p["reason"] for p in report["problems"] if "annotations[0]" in p["reason"])
    assert "1329 bits" in huge_reason and "999" not in huge_reason  # named by size, never printed


def test_one_file_listing_many_images(tmp_path):
    expected = coco_detection(tmp_path / "c", n=12)
    rows, report = _ingest(tmp_path, tmp_path / "c", {"polyp": "polyp"})
    assert rows == {(rel, e.category, e.box) for rel, e in expected.items()} and _kinds(report) == []
