"""The generated demo: deterministic bytes, the properties the pipeline relies on, params in step."""

import hashlib
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from colonpipe.data.demo import DEMO_SOURCES, generate_demo, source_params
from colonpipe.data.demo_render import LOOKS, SIZE, render
from colonpipe.data.images import load_rgb
from colonpipe.data.ingest import ingest
from colonpipe.params import DemoParams, IngestParams, load_params

REPO = Path(__file__).resolve().parents[2]

# Every check ingest makes, planted once by bad_inputs=True.
BAD_KINDS = {"corrupt_image", "non_rgb_image", "annotation_without_image", "image_without_annotation",
             "box_clipped", "inverted_box", "box_outside", "degenerate_box", "empty_mask", "unknown_category",
             "duplicate_image", "path_escape", "size_mismatch", "malformed_annotation", "malformed_caption",
             "caption_unmatched", "no_usable_annotation"}


def _digests(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo with 6 images per category, ingested with the demo's own source list."""
    base = tmp_path_factory.mktemp("demo")
    generate_demo(base / "raw", DemoParams(seed=3, images_per_category=6), progress=False)
    params = IngestParams(sources=source_params(base / "raw"), captions=str(base / "raw/captions.jsonl"), workers=1)
    ingest(params, base / "interim", progress=False)
    rows = pq.read_table(base / "interim/annotations.parquet").to_pylist()
    report = json.loads((base / "interim/ingest_report.json").read_text())
    return base, rows, report


def test_same_seed_gives_identical_files_other_seed_differs(tmp_path):
    a = generate_demo(tmp_path / "a", DemoParams(seed=1, images_per_category=2), progress=False)
    generate_demo(tmp_path / "b", DemoParams(seed=1, images_per_category=2), progress=False)
    generate_demo(tmp_path / "c", DemoParams(seed=2, images_per_category=2), progress=False)
    da, db, dc = (_digests(tmp_path / x) for x in "abc")
    assert da == db and len(da) >= 90
    assert da.keys() == dc.keys() and da != dc
    assert sum(a.images.values()) == 2 * sum(len(s.labels) for s in DEMO_SOURCES)
    assert not list(tmp_path.glob(".*"))  # the temporary folder was moved into place


def test_regenerating_replaces_the_folder(tmp_path):
    generate_demo(tmp_path / "raw", DemoParams(images_per_category=1), progress=False)
    (tmp_path / "raw/stale.txt").write_text("old")
    generate_demo(tmp_path / "raw", DemoParams(images_per_category=1, bad_inputs=False), progress=False)
    files = _digests(tmp_path / "raw")
    assert "stale.txt" not in files and not any("zz_" in f for f in files)


def test_without_bad_inputs_ingest_reports_nothing(tmp_path):
    generate_demo(tmp_path / "raw", DemoParams(images_per_category=2, bad_inputs=False), progress=False)
    params = IngestParams(sources=source_params(tmp_path / "raw"), captions=str(tmp_path / "raw/captions.jsonl"),
                          workers=1)
    ingest(params, tmp_path / "out", progress=False)
    report = json.loads((tmp_path / "out/ingest_report.json").read_text())
    assert report["problems"] == []
    assert report["totals"]["images_kept"] == 2 * sum(len(s.labels) for s in DEMO_SOURCES)
    assert report["totals"]["images_without_caption"] == 0


def test_bad_inputs_cover_every_ingest_check(demo):
    _, _, report = demo
    assert set(report["totals"]["problems_by_kind"]) == BAD_KINDS
    escapes = {p["file"].rsplit("/", 2)[-2] + "/" + p["file"].rsplit("/", 1)[-1]
               for p in report["problems"] if p["kind"] == "path_escape"}
    assert escapes == {"polyp/zz_escape.jpg", "Annotations/zz_escape.xml"}  # symlink and '..'
    repaired = sorted(p["file"] for p in report["problems"] if p["kind"] == "non_rgb_image")
    names = sorted(f.rsplit("/", 1)[-1] for f in repaired)
    assert names == ["zz_16bit.png", "zz_grey.png", "zz_palette.png", "zz_rgba.png"]
    for f in repaired:  # "repaired" holds: the model's loader turns each into 8-bit RGB
        im = load_rgb(f)
        assert im.mode == "RGB" and np.asarray(im).std() > 5


def test_demo_properties(demo):
    _, rows, report = demo
    by_image = defaultdict(list)
    for r in rows:
        by_image[r["image"]].append(r)
    # >= 6 categories; one non-square frame size (SIZE), as one endoscope gives
    assert len({r["category"] for r in rows}) >= 6 and set(LOOKS) == {r["category"] for r in rows}
    assert {(r["width"], r["height"]) for r in rows} == {SIZE}
    # several objects of one category in one image (boxes to merge), and two categories in one image
    assert any(max(Counter(r["category"] for r in rs).values()) >= 2 and rs[0]["box"] for rs in by_image.values())
    assert any(len({r["category"] for r in rs}) == 2 for rs in by_image.values())
    # one source with an official split, the others without
    splits = {(r["dataset"], r["split"]) for r in rows}
    assert {s for d, s in splits if d == "SynthClassFolders"} == {"train", "val", "test"}
    assert {s for d, s in splits if d != "SynthClassFolders"} == {None}
    # every image captioned with 3-5 sentences
    for rs in by_image.values():
        n = len(re.findall(r"[.!?](?:\s|$)", rs[0]["caption"]))
        assert 3 <= n <= 5, rs[0]["caption"]
    assert report["totals"]["images_without_caption"] == 0


def test_objects_are_large_inside_and_boxes_match_pixels():
    rng = np.random.default_rng(0)
    for cat in [c for c in LOOKS for _ in range(10)]:
        sample = render(rng, (448, 336), [cat])
        (obj,) = sample.objects
        x1, y1, x2, y2 = obj.box
        assert 0 <= x1 < x2 < 448 and 0 <= y1 < y2 < 336
        assert 0.1 <= max((x2 - x1 + 1) / 448, (y2 - y1 + 1) / 336) <= 0.55, (cat, obj.box)  # 15-45 % + tilt
        ys, xs = np.nonzero(obj.mask)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == obj.box
        # the object's colour is what the look says (noise and shading aside)
        mean = sample.image[obj.mask].mean(axis=0)
        assert np.abs(mean - np.array(LOOKS[cat].colour)).max() < 45, (cat, mean)


def test_params_yaml_reads_the_demo():
    params = load_params(REPO / "params.yaml")
    assert params["ingest"].sources == source_params("data/raw")
    assert params["ingest"].captions == "data/raw/captions.jsonl"


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return ix * iy / (area(a) + area(b) - ix * iy)


def test_manifest_boxes_sit_on_the_drawn_objects_in_every_format(demo):
    """Pixels of the category's colour, found in the decoded image, span the manifest box."""
    base, rows, _ = demo
    by_image = defaultdict(list)
    for r in rows:
        by_image[r["image"]].append(r)
    checked = Counter()
    for image, rs in sorted(by_image.items()):
        if len(rs) != 1 or rs[0]["box"] is None or "/zz_" in image:
            continue
        r = rs[0]
        src, rel = image.split("/", 1)
        pixels = np.asarray(load_rgb(base / "raw" / src / rel)).astype(np.float32)
        near = np.abs(pixels - np.array(LOOKS[r["category"]].colour, np.float32)).max(axis=2) < 40
        cols, lines = np.flatnonzero(near.sum(axis=0) >= 2), np.flatnonzero(near.sum(axis=1) >= 2)  # drop specks
        found = (cols[0], lines[0], cols[-1], lines[-1])
        assert _iou(found, r["box"]) > 0.8, (image, r["category"], found, r["box"])
        checked[src] += 1
    assert set(checked) == {s.name for s in DEMO_SOURCES if s.format != "class_folders"}

