"""Label tables (CSV/TSV) with the column names the datasets' own files use.

- HyperKvasir ``image-labels.csv``: ``Video file,Organ,Finding,Classification`` (the
  ``Video file`` cell is the image's file stem); its official split file
  ``official_splits/2_fold_split.csv``: ``file-name;class-name;split-index``
  (github.com/simula/hyper-kvasir).
- Kvasir-Capsule ``metadata.csv``: ``filename;video_id;frame_number;finding_category;
  finding_class;x1;y1;x2;y2;x3;y3;x4;y4`` (github.com/simula/kvasir-capsule).
"""

import json

import pyarrow.parquet as pq

from colonpipe.data.ingest import ingest
from colonpipe.params import IngestParams, SourceParams, TableParams
from tests.data.layouts import img, mask


def _run(tmp_path, root, table, categories, **kw):
    src = SourceParams(name="T", root=str(root), format=kw.pop("format", "label_table"), table=table,
                       categories=categories, **kw)
    ingest(IngestParams(sources=[src], workers=1), tmp_path / "out", progress=False)
    rows = pq.read_table(tmp_path / "out/annotations.parquet").to_pylist()
    report = json.loads((tmp_path / "out/ingest_report.json").read_text())
    return rows, report


def _hk_images(root):
    stems = {"3ada4222-967f-4d36-8a34-0e8b1f1e5a6f": "cecum", "00b3bc3b-1c8c-4d33-9d56-79f1d3ea5c5f": "bbps-2-3"}
    for stem, cls in stems.items():
        img(root / f"labeled-images/lower-gi-tract/x/{cls}/{stem}.jpg")
    return stems


def test_hyperkvasir_image_labels_csv(tmp_path):
    root = tmp_path / "hk"
    stems = _hk_images(root)
    lines = ["Video file,Organ,Finding,Classification"] + [f"{s},Lower GI,{c},anatomical-landmarks"
                                                             for s, c in stems.items()]
    (root / "labeled-images/image-labels.csv").write_text("\n".join(lines) + "\n")
    table = TableParams(file="labeled-images/image-labels.csv", image="Video file", label="Finding")
    rows, report = _run(tmp_path, root, table, {"cecum": "cecum", "bbps 2 3": "bbps 3"}, fold_labels=True)
    assert sorted((r["image"].rsplit("/", 1)[1], r["category"], r["box"]) for r in rows) == [
        ("00b3bc3b-1c8c-4d33-9d56-79f1d3ea5c5f.jpg", "bbps 3", None),
        ("3ada4222-967f-4d36-8a34-0e8b1f1e5a6f.jpg", "cecum", None)]
    assert report["problems"] == []


def test_hyperkvasir_official_split_file_semicolons_sniffed(tmp_path):
    root = tmp_path / "hk"
    stems = _hk_images(root)
    lines = ["file-name;class-name;split-index"] + [f"{s}.jpg;{c};0" for s, c in stems.items()]
    (root / "2_fold_split.csv").write_text("\n".join(lines) + "\n")
    rows, _ = _run(tmp_path, root, TableParams(file="2_fold_split.csv", image="file-name", label="class-name"),
                   {"cecum": "cecum", "bbps-2-3": "bbps 3"})
    assert sorted(r["category"] for r in rows) == ["bbps 3", "cecum"]


def test_kvasir_capsule_corners_groups_and_bad_rows(tmp_path):
    root = tmp_path / "kc"
    for name, folder in (("04a78ef00c5245e0_100.jpg", "Polyp"), ("04a78ef00c5245e0_101.jpg", "Ileocecal valve"),
                         ("3c8d5f0b90d7475f_7.jpg", "Polyp"), ("3c8d5f0b90d7475f_8.jpg", "Polyp")):
        img(root / f"labelled_images/{folder}/{name}", (40, 40))
    img(root / "labelled_images/Erosion/3c8d5f0b90d7475f_8.jpg", (40, 40))  # same name in two folders
    head = "filename;video_id;frame_number;finding_category;finding_class;x1;y1;x2;y2;x3;y3;x4;y4"
    rows = [head,
            "04a78ef00c5245e0_100.jpg;04a78ef00c5245e0;100;Luminal;Polyp;12;5;30;5;30;20;12;20",
            "04a78ef00c5245e0_101.jpg;04a78ef00c5245e0;101;Anatomy;Ileocecal valve;;;;;;;;",
            "3c8d5f0b90d7475f_7.jpg;3c8d5f0b90d7475f;7;Luminal;Polyp;12;5;30;;30;20;12;20",  # partly empty
            "3c8d5f0b90d7475f_8.jpg;3c8d5f0b90d7475f;8;Luminal;Polyp;1;1;9;1;9;9;1;9",  # ambiguous name
            "missing_1.jpg;3c8d5f0b90d7475f;1;Luminal;Polyp;;;;;;;;"]
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    table = TableParams(file="metadata.csv", sep=";", image="filename", label="finding_class", group="video_id",
                        box=["x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"])
    out, report = _run(tmp_path, root, table, {"polyp": "polyp", "ileocecal valve": "ileocecal valve"},
                       fold_labels=True)
    assert sorted((r["image"].rsplit("/", 1)[1], r["category"], r["box"], r["group"]) for r in out) == [
        ("04a78ef00c5245e0_100.jpg", "polyp", [12, 5, 30, 20], "04a78ef00c5245e0"),
        ("04a78ef00c5245e0_101.jpg", "ileocecal valve", None, "04a78ef00c5245e0")]
    kinds = sorted(p["kind"] for p in report["problems"])
    assert kinds == ["ambiguous_image", "annotation_without_image", "image_without_annotation",
                     "image_without_annotation", "image_without_annotation", "malformed_annotation"]


def test_missing_column_and_missing_table_are_reported(tmp_path):
    root = tmp_path / "t"
    img(root / "a.jpg")
    (root / "labels.csv").write_text("image,class\na.jpg,polyp\n")
    _, report = _run(tmp_path, root, TableParams(file="labels.csv", image="image", label="finding"), {"polyp": "polyp"})
    assert sorted(p["kind"] for p in report["problems"]) == ["image_without_annotation", "malformed_annotation"]
    assert any("'finding'" in p["reason"] for p in report["problems"])
    _, report = _run(tmp_path, root, TableParams(file="nope*.csv", image="image", label="class"), {"polyp": "polyp"})
    assert "missing_annotation_file" in {p["kind"] for p in report["problems"]}


def test_table_labels_override_another_format_and_conflicts_are_reported(tmp_path):
    """SUN-SEG style: masks give boxes, a header-less ``name<TAB>class`` table the label."""
    root = tmp_path / "s"
    for name in ("f1", "f2"):
        img(root / f"Frame/case1/{name}.jpg", (40, 30))
        mask(root / f"GT/case1/{name}.png", (40, 30), (5, 5, 20, 15))
    (root / "classification.txt").write_text("f1.jpg\tlow_grade_adenoma\nf2.jpg\tinvasive_carcinoma\n"
                                             "f2.jpg\thyperplastic_polyp\n")
    table = TableParams(file="classification.txt", header=False, image="0", label="1")
    rows, report = _run(tmp_path, root, table, {"low_grade_adenoma": "low grade adenoma",
                                                "invasive_carcinoma": "invasive carcinoma"},
                        format="mask", image_dirs=["Frame"], annotation_dirs=["GT"])
    assert sorted((r["image"].rsplit("/", 1)[1], r["category"], r["box"]) for r in rows) == [
        ("f1.jpg", "low grade adenoma", [5, 5, 20, 15]), ("f2.jpg", "invasive carcinoma", [5, 5, 20, 15])]
    assert [(p["kind"], p["action"]) for p in report["problems"]] == [("conflicting_label", "repaired")]
