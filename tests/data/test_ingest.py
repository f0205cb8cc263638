"""ingest: every bad-input case, config errors, box rules, determinism, and the stage itself."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from colonpipe.data.image_check import LEVELS, check_image, check_images
from colonpipe.data.ingest import IngestError, check_box, ingest, official_split
from colonpipe.params import IngestParams, ParamsError, SourceParams, parse_params
from stages import ingest as ingest_stage

REPO = Path(__file__).resolve().parents[2]


def _img(path: Path, size=(40, 30), seed=0, mode="RGB", fmt=None) -> Path:
    """A noisy image (distinct per seed, so no accidental duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    if mode == "I;16":
        im = Image.fromarray(arr[..., 0].astype(np.uint16) * 257)
    elif mode != "RGB":
        im = im.convert(mode)
    im.save(path, fmt)
    return path


def _src(root: Path, fmt: str, categories: dict, **kw) -> SourceParams:
    return SourceParams(name=root.name, root=str(root), format=fmt, categories=categories, **kw)


def _run(tmp_path: Path, sources, **kw) -> tuple[list[dict], dict]:
    out = tmp_path / "out"
    ingest(IngestParams(sources=list(sources), workers=1, **kw), out, progress=False)
    rows = pq.read_table(out / "annotations.parquet").to_pylist()
    return rows, json.loads((out / "ingest_report.json").read_text())


def _problems(report, kind=None):
    return [(p["file"].rsplit("/", 1)[-1], p["kind"], p["action"]) for p in report["problems"]
            if kind is None or p["kind"] == kind]


# --------------------------------------------------------------------------- boxes
@pytest.mark.parametrize("box,policy,expected", [
    ((1, 2, 10, 20), "clip", ([1, 2, 10, 20], None)),
    ((-5, 2, 10, 35), "clip", ([0, 2, 10, 29], "box_clipped")),
    ((-5, 2, 10, 35), "skip", (None, "box_partly_outside")),
    ((10, 2, 5, 20), "clip", (None, "inverted_box")),
    ((5, 5, 5, 20), "clip", (None, "degenerate_box")),
    ((50, 40, 60, 45), "clip", (None, "box_outside")),
    ((-9, 2, 0, 20), "clip", (None, "degenerate_box")),  # clipping leaves one column
    ((float("nan"), 2, 5, 20), "clip", (None, "invalid_box")),
    ((4.4, 4.5, 9.5, 9.49), "clip", ([4, 5, 10, 9], None)),  # half-up rounding
])
def test_check_box(box, policy, expected):
    got, kind, _ = check_box(box, 40, 30, policy=policy)
    assert (got, kind) == expected


def test_check_box_yolo_normalised_round_trip():
    # inclusive box [10, 5, 29, 24] in a 40x30 image, written the YOLO way (pixel edges)
    x1n, y1n, x2n, y2n = 10 / 40, 5 / 30, 30 / 40, 25 / 30
    assert check_box((x1n, y1n, x2n, y2n), 40, 30, normalized=True)[0] == [10, 5, 29, 24]
    assert check_box((0.5, 0.2, 0.5, 0.4), 40, 30, normalized=True)[1] == "degenerate_box"


def test_official_split_folder_names():
    assert official_split("Train/polyp/a.jpg") == "train"
    assert official_split("x/VAL/polyp/a.jpg") == "val"
    assert official_split("Test/a.jpg") == "test"
    assert official_split("polyp/test.jpg") is None  # a file name is not a split folder


# --------------------------------------------------------------------------- image checks
def _truncated_jpeg(path: Path) -> Path:
    _img(path, (64, 48), seed=3, fmt="JPEG")
    path.write_bytes(path.read_bytes()[:-300])
    return path


@pytest.mark.parametrize("level", LEVELS)
def test_every_check_level_catches_truncated_and_corrupt_files(tmp_path, level):
    jpg = _truncated_jpeg(tmp_path / "t.jpg")
    png = _img(tmp_path / "t.png", (64, 48), seed=4)
    png.write_bytes(png.read_bytes()[:-8])  # IEND chunk lost: a full decode alone misses this one
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = _img(tmp_path / "ok.jpg", (64, 48), seed=5, fmt="JPEG")
    infos = check_images([jpg, png, junk, empty, good], level=level, workers=1, progress=False)
    assert [i.error is not None for i in infos[:4]] == [True, level != "full", True, True]
    assert infos[4].error is None and (infos[4].width, infos[4].height, infos[4].mode) == (64, 48, "RGB")


def test_markers_level_tolerates_padding_after_jpeg_end(tmp_path):
    path = _img(tmp_path / "pad.jpg", (32, 32), fmt="JPEG")
    path.write_bytes(path.read_bytes() + b"\x00\x00\r\n")
    assert check_image(str(path), "markers").error is None


def test_process_pool_gives_the_same_infos(tmp_path):
    paths = [_img(tmp_path / f"{i}.png", (20, 10), seed=i) for i in range(70)]
    assert check_images(paths, workers=2, progress=False) == check_images(paths, workers=1, progress=False)


# --------------------------------------------------------------------------- bad inputs end to end
def test_corrupt_truncated_and_non_rgb_images(tmp_path):
    root = tmp_path / "cf"
    _img(root / "polyp/ok.png", seed=1)
    (root / "polyp/corrupt.jpg").write_bytes(b"not an image at all")
    _truncated_jpeg(root / "polyp/truncated.jpg")
    for i, mode in enumerate(("L", "RGBA", "P", "I;16")):
        _img(root / f"polyp/mode_{mode.replace(';', '')}.png", seed=10 + i, mode=mode)
    rows, report = _run(tmp_path, [_src(root, "class_folders", {"polyp": "polyp"})])
    assert sorted(r["image"] for r in rows) == sorted(
        f"cf/polyp/{n}.png" for n in ("ok", "mode_L", "mode_RGBA", "mode_P", "mode_I16"))
    assert sorted(_problems(report)) == sorted([
        ("corrupt.jpg", "corrupt_image", "skipped"), ("truncated.jpg", "corrupt_image", "skipped"),
        ("mode_L.png", "non_rgb_image", "repaired"), ("mode_RGBA.png", "non_rgb_image", "repaired"),
        ("mode_P.png", "non_rgb_image", "repaired"), ("mode_I16.png", "non_rgb_image", "repaired")])
    assert report["totals"]["skipped"] == 2 and report["totals"]["repaired"] == 4


def test_missing_pairs_unknown_category_and_duplicates(tmp_path):
    root = tmp_path / "sun"
    _img(root / "images/a.jpg", seed=1)
    _img(root / "images/no_ann.jpg", seed=2)
    shutil.copy(root / "images/a.jpg", root / "images/z_dup.jpg")
    (root / "annotations").mkdir()
    (root / "annotations/a.txt").write_text("1,1,10,10,1\n2,2,12,12,7\n")
    (root / "annotations/z_dup.txt").write_text("1,1,10,10,1\n")
    (root / "annotations/orphan.txt").write_text("1,1,10,10,1\n")
    rows, report = _run(tmp_path, [_src(root, "sun_txt", {"1": "polyp"})])
    assert [(r["image"], r["category"], r["box"]) for r in rows] == [("sun/images/a.jpg", "polyp", [1, 1, 10, 10])]
    assert sorted(_problems(report)) == [
        ("a.txt", "unknown_category", "skipped"), ("no_ann.jpg", "image_without_annotation", "skipped"),
        ("orphan.txt", "annotation_without_image", "skipped"), ("z_dup.jpg", "duplicate_image", "skipped")]
    dup = next(p for p in report["problems"] if p["kind"] == "duplicate_image")
    assert dup["reason"].startswith(f"same content as {root.as_posix()}/images/a.jpg")


def test_duplicates_across_sources_keep_the_first_source(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    _img(a / "polyp/x.png", seed=7)
    _img(b / "polyp/y.png", seed=7)
    rows, report = _run(tmp_path, [_src(a, "class_folders", {"polyp": "polyp"}),
                                   _src(b, "class_folders", {"polyp": "polyp"})])
    assert [r["image"] for r in rows] == ["A/polyp/x.png"]
    assert _problems(report) == [("y.png", "duplicate_image", "skipped")]


def test_duplicate_of_an_unusable_image_is_kept(tmp_path):
    root = tmp_path / "cf"
    _img(root / "bubbles/a.png", seed=5)  # unmapped label: no rows, so it must not shadow the copy
    _img(root / "polyp/b.png", seed=5)
    rows, report = _run(tmp_path, [_src(root, "class_folders", {"polyp": "polyp"})])
    assert [r["image"] for r in rows] == ["cf/polyp/b.png"]
    assert sorted(_problems(report)) == [("a.png", "no_usable_annotation", "skipped"),
                                         ("a.png", "unknown_category", "skipped")]


@pytest.mark.parametrize("policy", ["clip", "skip"])
def test_box_policy_and_always_skipped_boxes(tmp_path, policy):
    root = tmp_path / "voc"
    _img(root / "JPEGImages/a.jpg", (40, 30))
    objs = "".join(
        f"<object><name>polyp</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for b in [(2, 2, 10, 10), (30, 20, 45, 35), (10, 10, 5, 20), (50, 50, 60, 60), (5, 5, 5, 9)])
    (root / "Annotations").mkdir()
    (root / "Annotations/a.xml").write_text(f"<annotation><filename>a.jpg</filename>{objs}</annotation>")
    rows, report = _run(tmp_path, [_src(root, "voc", {"polyp": "polyp"})], box_policy=policy)
    boxes = [r["box"] for r in rows]
    partly = [("a.xml", "box_clipped", "repaired")] if policy == "clip" else [("a.xml", "box_partly_outside", "skipped")]
    assert boxes == ([[1, 1, 9, 9], [29, 19, 39, 29]] if policy == "clip" else [[1, 1, 9, 9]])
    assert sorted(_problems(report)) == sorted(partly + [
        ("a.xml", "inverted_box", "skipped"), ("a.xml", "box_outside", "skipped"),
        ("a.xml", "degenerate_box", "skipped")])


def test_empty_mask_and_size_mismatch(tmp_path):
    root = tmp_path / "m"
    _img(root / "images/a.jpg", (40, 30), seed=1)
    _img(root / "images/b.jpg", (40, 30), seed=2)
    _img(root / "images/c.jpg", (40, 30), seed=3)
    (root / "masks").mkdir()
    Image.new("L", (40, 30), 0).save(root / "masks/a.png")
    Image.new("L", (20, 30), 255).save(root / "masks/b.png")
    m = np.zeros((30, 40), np.uint8)
    m[3:8, 4:20] = 255
    Image.fromarray(m).save(root / "masks/c.png")
    rows, report = _run(tmp_path, [_src(root, "mask", {"foreground": "polyp"})])
    assert [(r["image"], r["box"]) for r in rows] == [("m/images/c.jpg", [4, 3, 19, 7])]
    assert sorted(_problems(report)) == [("a.png", "empty_mask", "skipped"), ("b.jpg", "no_usable_annotation", "skipped"),
                                         ("b.png", "size_mismatch", "skipped")]


def test_path_escapes_by_symlink_and_dotdot(tmp_path):
    root = tmp_path / "voc"
    _img(root / "JPEGImages/a.jpg", seed=1)
    _img(tmp_path / "secret.jpg", seed=2)
    os.symlink("../../secret.jpg", root / "JPEGImages/link.jpg")
    (root / "Annotations").mkdir()
    ann = "<annotation><filename>{}</filename><object><name>p</name><bndbox><xmin>1</xmin><ymin>1</ymin>" \
          "<xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    (root / "Annotations/a.xml").write_text(ann.format("a.jpg"))
    (root / "Annotations/b.xml").write_text(ann.format("../../secret.jpg"))
    (root / "Annotations/link.xml").write_text(ann.format("link.jpg"))
    rows, report = _run(tmp_path, [_src(root, "voc", {"p": "polyp"})])
    assert [r["image"] for r in rows] == ["voc/JPEGImages/a.jpg"]
    assert sorted(_problems(report)) == [("b.xml", "path_escape", "skipped"), ("link.jpg", "path_escape", "skipped"),
                                         ("link.xml", "annotation_without_image", "skipped")]


def test_official_split_captions_and_multi_object_rows(tmp_path):
    root = tmp_path / "cf"
    _img(root / "Train/polyp/a.png", seed=1)
    _img(root / "Test/ulcer/b.png", seed=2)
    _img(root / "polyp/c.png", seed=3)  # no split folder
    caps = tmp_path / "captions.jsonl"
    caps.write_text("\n".join([
        json.dumps({"image": "cf/Train/polyp/a.png", "caption": " A polyp. "}),
        json.dumps({"image": "cf/Train/polyp/a.png", "caption": "Again."}),
        "{broken", json.dumps({"image": "cf/nope.png", "caption": "x"}), json.dumps({"image": "cf/x", "caption": ""}),
    ]) + "\n")
    rows, report = _run(tmp_path, [_src(root, "class_folders", {"polyp": "polyp", "ulcer": "ulcer"}, split="official")],
                        captions=str(caps))
    assert [(r["image"], r["split"], r["category"], r["box"], r["caption"]) for r in rows] == [
        ("cf/Test/ulcer/b.png", "test", "ulcer", None, None), ("cf/Train/polyp/a.png", "train", "polyp", None, "A polyp.")]
    assert sorted(_problems(report)) == [
        ("c.png", "no_split_folder", "skipped"), ("captions.jsonl", "caption_unmatched", "skipped"),
        ("captions.jsonl", "duplicate_caption", "skipped"), ("captions.jsonl", "malformed_caption", "skipped"),
        ("captions.jsonl", "malformed_caption", "skipped")]
    assert report["totals"]["images_without_caption"] == 1


def test_rows_per_object_sorted_with_width_height(tmp_path):
    root = tmp_path / "y"
    _img(root / "images/a.jpg", (100, 50), seed=1)
    (root / "labels").mkdir()
    (root / "labels/a.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.25 0.5 0.1 0.2\n0 0.75 0.5 0.1 0.2\n")
    rows, _ = _run(tmp_path, [_src(root, "yolo_txt", {"p": "polyp", "t": "accessory tool"}, yolo_classes=["p", "t"])])
    assert [(r["category"], r["box"], r["width"], r["height"]) for r in rows] == [
        ("accessory tool", [40, 15, 59, 34], 100, 50), ("polyp", [20, 20, 29, 29], 100, 50),
        ("polyp", [70, 20, 79, 29], 100, 50)]


# --------------------------------------------------------------------------- config errors
def test_missing_source_folder_stops_with_one_message(tmp_path):
    params = IngestParams(sources=[_src(tmp_path / "nope", "voc", {"p": "polyp"})], captions=str(tmp_path / "c.jsonl"))
    with pytest.raises(IngestError) as err:
        ingest(params, tmp_path / "out", params_file="my-params.yaml")
    msg = str(err.value)
    assert msg.startswith("my-params.yaml: cannot ingest") and "nope does not exist" in msg and "c.jsonl" in msg
    assert not (tmp_path / "out").exists()


def _raw_params(**ingest_section) -> dict:
    base = {"sources": [{"name": "S", "root": "x", "format": "yolo_txt", "categories": {"p": "polyp"},
                         "yolo_classes": ["p"]}]}
    base.update(ingest_section)
    return {"ingest": base}


@pytest.mark.parametrize("section,needle", [
    ({"sources": [{"name": "S", "root": "x", "format": "voc", "categories": {"p": "Polyp_x"}}]}, "Polyp_x"),
    ({"sources": [{"name": "S", "root": "x", "format": "voc", "categories": {"t": "accessory_tool"}}]},
     "did you mean 'accessory tool'"),
    ({"sources": [{"name": "S", "root": "x", "format": "yolo_txt", "categories": {"p": "polyp"}}]}, "yolo_classes"),
    ({"sources": [{"name": "a/b", "root": "x", "format": "voc", "categories": {"p": "polyp"}}]}, "without '/'"),
    ({"sources": [{"name": "S", "root": "x", "format": "csv", "categories": {"p": "polyp"}}]}, "'csv' is not one of"),
    ({"box_policy": "shrink"}, "box_policy"),
    ({"workers": 0}, "workers must be >= 1"),
])
def test_malformed_params_are_one_params_error(section, needle):
    with pytest.raises(ParamsError) as err:
        parse_params(_raw_params(**section), source="p.yaml")
    assert needle in str(err.value) and str(err.value).startswith("p.yaml:")


def test_extra_categories_admit_new_targets():
    params = parse_params(_raw_params(sources=[{"name": "S", "root": "x", "format": "voc",
                                                "categories": {"q": "pseudo polyp"}}],
                                      extra_categories=["pseudo polyp"]))
    assert params["ingest"].sources[0].categories == {"q": "pseudo polyp"}


def test_stage_exits_1_with_the_message(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(_raw_params(sources=[
        {"name": "S", "root": "data/raw/S", "format": "voc", "categories": {"p": "polyp"}}])))
    assert ingest_stage.main(["--out-dir", "out"]) == 1
    assert "params.yaml: cannot ingest" in caplog.text and "data/raw/S does not exist" in caplog.text


# --------------------------------------------------------------------------- determinism
def test_ingest_is_byte_identical_across_runs_and_worker_counts(tmp_path):
    root = tmp_path / "cf"
    for i in range(80):
        _img(root / f"{'Train' if i % 3 else 'Test'}/{('polyp', 'ulcer')[i % 2]}/{i:03d}.png", (24, 16), seed=i)
    src = [_src(root, "class_folders", {"polyp": "polyp", "ulcer": "ulcer"}, split="official")]
    outs = []
    for workers, out in ((1, "o1"), (2, "o2"), (2, "o3")):
        ingest(IngestParams(sources=src, workers=workers), tmp_path / out, progress=False)
        outs.append({n: (tmp_path / out / n).read_bytes() for n in
                     ("annotations.parquet", "ingest_report.json", "image_roots.json")})
    assert outs[0] == outs[1] == outs[2]
    assert json.loads(outs[0]["image_roots.json"]) == {"cf": str(root)}
    assert not any(p.name.startswith(".") for p in (tmp_path / "o1").iterdir())  # no temp files left


# --------------------------------------------------------------------------- dvc repro ingest
def _copy_repo(dst: Path) -> None:
    """Tracked + untracked-but-not-ignored files, so work in progress is what gets tested."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)


def _dvc(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_dvc_repro_ingest_end_to_end(tmp_path):
    _copy_repo(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["demo"]["images_per_category"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc(["repro", "ingest"], tmp_path)
    interim = tmp_path / "data/interim"
    rows = pq.read_table(interim / "annotations.parquet").to_pylist()
    report = json.loads((interim / "ingest_report.json").read_text())
    assert len({r["image"] for r in rows}) == report["totals"]["images_kept"] > 40
    assert json.loads((interim / "image_roots.json").read_text())["SynthVOC"] == "data/raw/SynthVOC"
    assert (tmp_path / "data/raw/SynthClassFolders/Train/polyp/zz_escape.jpg").is_symlink()  # survived DVC
    assert {"path_escape", "duplicate_image", "corrupt_image"} <= set(report["totals"]["problems_by_kind"])
    before = (interim / "annotations.parquet").read_bytes()
    assert "didn't change" in _dvc(["repro", "ingest"], tmp_path)
    params["ingest"]["workers"] = 1  # speed-only knob: not a dependency
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "up to date" in _dvc(["status", "ingest"], tmp_path)
    _dvc(["repro", "--force", "ingest"], tmp_path)
    assert (interim / "annotations.parquet").read_bytes() == before
