"""Each raw-format reader on small fixtures built in tmp_path."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colonpipe.data.sources import READERS, ReadOptions, list_source
from colonpipe.data.sources.common import safe_relpath
from colonpipe.data.sources.mask import mask_extent, mask_extents


def _img(path: Path, size=(40, 30), colour=(200, 100, 90)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _read(fmt: str, root: Path, **kw):
    if "yolo_classes" in kw:
        kw["yolo_classes"] = tuple(kw["yolo_classes"])
    return READERS[fmt](list_source(root), ReadOptions(**kw))


def _kinds(result) -> list[str]:
    return sorted(p.kind for p in result.problems)


# --------------------------------------------------------------------------- listing / paths
def test_list_source_sorts_and_reports_escaping_symlinks(tmp_path):
    root = tmp_path / "src"
    _img(root / "b/2.png")
    _img(root / "a/1.png")
    outside = _img(tmp_path / "outside.png")
    os.symlink(outside, root / "a/escape.png")
    os.symlink("1.png", root / "a/inside.png")
    os.symlink(tmp_path, root / "dirlink")
    listing = list_source(root)
    assert listing.files == ("a/1.png", "a/inside.png", "b/2.png")
    kinds = {p.file.rsplit("/", 1)[-1]: p.kind for p in listing.problems}
    assert kinds == {"escape.png": "path_escape", "dirlink": "path_escape"}


@pytest.mark.parametrize("base,name,expected", [
    ("Annotations", "x.jpg", "Annotations/x.jpg"),
    ("JPEGImages", "../JPEGImages/x.jpg", "JPEGImages/x.jpg"),
    ("JPEGImages", "../../other/x.jpg", None),
    ("", "/etc/passwd", None),
    ("a", "C:\\x.jpg", None),
    ("", "..", None),
])
def test_safe_relpath(base, name, expected):
    assert safe_relpath(base, name) == expected


# --------------------------------------------------------------------------- class folders
def test_class_folders_official_split_and_nesting(tmp_path):
    root = tmp_path / "cf"
    _img(root / "Train/polyp/1.jpg")
    _img(root / "test/accessory_tool/sub/2.png")
    _img(root / "Val/3.jpg")  # no category folder below the split
    _img(root / "all-images/4.jpg")  # EDD2020-like: read, label left for the mapping to judge
    res = _read("class_folders", root, official_split=True)
    got = {(o.image, o.label, o.box) for o in res.objects}
    assert got == {("Train/polyp/1.jpg", "polyp", None), ("test/accessory_tool/sub/2.png", "accessory_tool", None),
                   ("all-images/4.jpg", "all-images", None)}
    assert _kinds(res) == ["no_category_folder"] and res.claimed == {"Val/3.jpg"}


def test_class_folders_without_split_uses_first_folder(tmp_path):
    root = tmp_path / "cf"
    _img(root / "ulcer/x/1.jpg")
    _img(root / "top.jpg")
    res = _read("class_folders", root)
    assert [(o.image, o.label) for o in res.objects] == [("ulcer/x/1.jpg", "ulcer")]
    assert _kinds(res) == ["no_category_folder"]


# --------------------------------------------------------------------------- masks
def _mask(path: Path, size, box=None, value=255, mode="L", fmt=None):
    arr = np.zeros((size[1], size[0]), np.uint8)
    if box:
        x1, y1, x2, y2 = box
        arr[y1:y2 + 1, x1:x2 + 1] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr) if mode == "L" else Image.fromarray(arr.astype(np.uint16) * 257)
    im.save(path, fmt)


def test_mask_extent_handles_binary_01_jpeg_and_16bit(tmp_path):
    _mask(tmp_path / "a.png", (50, 40), (5, 6, 20, 30))
    _mask(tmp_path / "b.png", (50, 40), (5, 6, 20, 30), value=1)
    _mask(tmp_path / "c.jpg", (64, 48), (8, 8, 31, 23), fmt="JPEG")  # lossy: noise around edges
    _mask(tmp_path / "d.png", (50, 40), (1, 2, 3, 4), mode="I;16")
    _mask(tmp_path / "e.png", (50, 40))
    assert mask_extent(tmp_path / "a.png") == ((5, 6, 20, 30), (50, 40))
    assert mask_extent(tmp_path / "b.png") == ((5, 6, 20, 30), (50, 40))
    box, _ = mask_extent(tmp_path / "c.jpg")
    assert all(abs(a - b) <= 1 for a, b in zip(box, (8, 8, 31, 23)))
    assert mask_extent(tmp_path / "d.png") == ((1, 2, 3, 4), (50, 40))
    assert mask_extent(tmp_path / "e.png") == (None, (50, 40))


def test_mask_extents_pool_matches_sequential(tmp_path):
    paths = []
    for i in range(70):
        _mask(tmp_path / f"{i}.png", (30, 20), (i % 10, 1, 10 + i % 10, 5 + i % 7) if i % 9 else None)
        paths.append(str(tmp_path / f"{i}.png"))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    paths.append(str(tmp_path / "bad.png"))
    seq = mask_extents(paths, workers=1)
    assert mask_extents(paths, workers=2) == seq
    assert seq[1] == ((1, 1, 11, 6), (30, 20)) and seq[0] == (None, (30, 20)) and seq[-1][0] == "corrupt_annotation"


def test_mask_reader_pairs_by_folder_and_stem(tmp_path):
    root = tmp_path / "m"
    _img(root / "images/polyp/1.jpg", (50, 40))
    _mask(root / "masks/polyp/1.png", (50, 40), (2, 3, 10, 12))
    _img(root / "Train/images/2.jpg", (50, 40))
    _mask(root / "Train/masks/2.png", (50, 40), (0, 0, 49, 39))
    _img(root / "images/polyp/3.jpg", (50, 40))
    _mask(root / "masks/polyp/3.png", (50, 40))  # empty
    _mask(root / "masks/polyp/4.png", (50, 40), (1, 1, 5, 5))  # no image
    _img(root / "images/polyp/5.jpg", (50, 40))  # no mask
    _img(root / "images/polyp/6.jpg", (50, 40))
    (root / "masks/polyp/6.png").write_bytes(b"not a png")
    res = _read("mask", root)
    got = sorted((o.image, o.label, o.box, o.size) for o in res.objects)
    assert got == [("Train/images/2.jpg", "foreground", (0, 0, 49, 39), (50, 40)),
                   ("images/polyp/1.jpg", "polyp", (2, 3, 10, 12), (50, 40))]
    assert _kinds(res) == ["annotation_without_image", "corrupt_annotation", "empty_mask"]
    assert "images/polyp/3.jpg" in res.claimed and "images/polyp/5.jpg" not in res.claimed
    assert "images/polyp/5.jpg" in res.images and not any("masks/" in i for i in res.images)


# --------------------------------------------------------------------------- VOC
def _voc(name: str, objects: str) -> str:
    return f"<annotation><filename>{name}</filename>{objects}</annotation>"


def _obj(label, x1, y1, x2, y2):
    return (f"<object><name>{label}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def test_voc_reader_converts_one_based_and_reports(tmp_path):
    root = tmp_path / "voc"
    _img(root / "JPEGImages/a.jpg")
    _img(root / "JPEGImages/b.png")
    _img(tmp_path / "outside.jpg")
    _text(root / "Annotations/a.xml", _voc("a.jpg", _obj("polyp", 1, 1, 10, 20) + _obj("tool", 5.5, 2, 8, 9)))
    _text(root / "Annotations/b.xml", _voc("b.jpg", _obj("polyp", 2, 2, 4, 4)))  # wrong extension: stem match
    _text(root / "Annotations/c.xml", _voc("c.jpg", _obj("polyp", 2, 2, 4, 4)))
    _text(root / "Annotations/d.xml", _voc("../../outside.jpg", _obj("polyp", 2, 2, 4, 4)))
    _text(root / "Annotations/e.xml", "<annotation><filename>a.jpg")
    _text(root / "Annotations/f.xml", _voc("a.jpg", "<object><name>polyp</name></object>"))
    res = _read("voc", root)
    got = [(o.image, o.label, o.box) for o in res.objects]
    assert got == [("JPEGImages/a.jpg", "polyp", (0, 0, 9, 19)), ("JPEGImages/a.jpg", "tool", (4.5, 1, 7, 8)),
                   ("JPEGImages/b.png", "polyp", (1, 1, 3, 3))]
    assert _kinds(res) == ["annotation_without_image", "malformed_annotation", "malformed_annotation",
                           "path_escape"]


# --------------------------------------------------------------------------- SUN / YOLO text
def test_sun_txt_reader(tmp_path):
    root = tmp_path / "sun"
    _img(root / "images/case1/a.jpg")
    _img(root / "images/b.jpg")
    _text(root / "annotations/case1/a.txt", "# comment\n1,2,30,20,1\n3 4 5 6 polyp\n\nbad,line\n")
    _text(root / "annotations/b.txt", "\n")
    _text(root / "annotations/c.txt", "1,1,2,2,1\n")
    res = _read("sun_txt", root)
    assert [(o.image, o.label, o.box) for o in res.objects] == [
        ("images/case1/a.jpg", "1", (1, 2, 30, 20)), ("images/case1/a.jpg", "polyp", (3, 4, 5, 6))]
    assert _kinds(res) == ["annotation_without_image", "empty_annotation", "malformed_annotation"]


def test_yolo_txt_reader(tmp_path):
    root = tmp_path / "yolo"
    _img(root / "images/a.jpg", (100, 50))
    _text(root / "labels/a.txt", "1 0.5 0.5 0.2 0.4\n3 0.5 0.5 0.1 0.1\nx 0.5 0.5 0.1 0.1\n0 0.5\n")
    _text(root / "labels/classes.txt", "polyp\nblood\n")
    res = _read("yolo_txt", root, yolo_classes=["polyp", "blood"])
    (obj,) = res.objects
    assert obj.label == "blood" and obj.normalized and obj.box == pytest.approx((0.4, 0.3, 0.6, 0.7))
    assert _kinds(res) == ["malformed_annotation", "malformed_annotation", "unknown_category"]


# --------------------------------------------------------------------------- JSON
def test_json_boxes_reader_both_shapes(tmp_path):
    root = tmp_path / "js"
    _img(root / "images/k1.jpg")
    _img(root / "sub/images/x.png")
    _text(root / "bboxes.json", json.dumps({
        "k1": {"width": 40, "height": 30, "bbox": [{"label": "polyp", "xmin": 1, "ymin": 2, "xmax": 9, "ymax": 8}]},
        "missing": {"bbox": []},
        "../../../etc/passwd": {"bbox": []},
    }))
    _text(root / "sub/list.json", json.dumps([
        {"image": "x.png", "boxes": [{"label": "ulcer", "box": [0, 0, 5, 5]}, {"label": "ulcer", "box": [1, 2]}]}]))
    _text(root / "broken.json", "{")
    res = _read("json_boxes", root)
    got = [(o.image, o.label, o.box, o.size) for o in res.objects]
    assert got == [("images/k1.jpg", "polyp", (1, 2, 9, 8), (40, 30)),
                   ("sub/images/x.png", "ulcer", (0, 0, 5, 5), None)]
    assert _kinds(res) == ["annotation_without_image", "malformed_annotation", "malformed_annotation",
                           "path_escape"]


def test_mask_extent_matches_a_numpy_reference_on_noisy_masks(tmp_path):
    """The 8-bit path thresholds inside the non-zero extent only; it must give the same box."""
    rng = np.random.default_rng(0)
    for k in range(120):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        arr = np.zeros((h, w), np.uint8)
        arr[rng.random((h, w)) < 0.05] = rng.integers(1, 256)
        if k % 3 == 0:
            arr = (arr > 0).astype(np.uint8)  # a 0/1 mask
        path = tmp_path / f"m{k}.png"
        Image.fromarray(arr).save(path)
        fg = arr > (0 if arr.max() <= 1 else 127)
        cols, rows = np.flatnonzero(fg.any(axis=0)), np.flatnonzero(fg.any(axis=1))
        want = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])) if fg.any() else None
        assert mask_extent(path) == (want, (w, h))
