"""Manifest -> ColonINST JSON: merge, templates, files, splits, determinism, stats."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from colonpipe.data.instruct import InstructError, build_instruct, merge_boxes, primary_category
from colonpipe.data.manifest import SCHEMA
from colonpipe.coloninst import BoxTextError, format_box, parse_box
from colonpipe.data.templates import TEMPLATES, match_template, template_index
from colonpipe.params import InstructParams, ParamsError

SPEC_FILES = [
    "Json-file/train/ColonINST-train-cap.json",
    "Json-file/train/ColonINST-train-3tasks.json",
] + [f"Json-file/{s}/ColonINST-{s}-{t}.json" for s in ("val", "test") for t in ("cls", "reg", "rec", "cap")]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    """Rows with keys of the manifest schema (missing keys -> null)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
    pq.write_table(pa.table(cols, schema=SCHEMA), path)
    return path


def row(image, category, box=None, *, dataset=None, split=None, caption=None, size=(640, 480)):
    return {"dataset": dataset or image.split("/")[0], "split": split, "image": image,
            "width": size[0], "height": size[1], "category": category, "box": box, "caption": caption}


def load(out: Path, rel: str) -> list:
    return json.loads((out / rel).read_text(encoding="utf-8"))


def q(rec) -> str:
    return rec["conversations"][0]["value"]


def a(rec) -> str:
    return rec["conversations"][1]["value"]


def all_records(out: Path) -> list:
    return [r for rel in SPEC_FILES for r in load(out, rel)]


@pytest.fixture
def multi(tmp_path):
    """One image with 2 polyps + 1 tool (official train), and a class-only + captionless image."""
    rows = [
        row("E/Train/all/1.jpg", "polyp", [10, 20, 50, 60], split="train", caption="Two polyps."),
        row("E/Train/all/1.jpg", "polyp", [100, 5, 120, 30], split="train", caption="Two polyps."),
        row("E/Train/all/1.jpg", "accessory tool", [0, 0, 9, 9], split="train", caption="Two polyps."),
        row("E/Test/ulcer/2.jpg", "ulcer", None, split="test"),
    ]
    return write_manifest(tmp_path / "m.parquet", rows)


def test_merge_boxes_is_enclosing_box():
    assert merge_boxes([(10, 20, 50, 60), (100, 5, 120, 30)]) == (10, 5, 120, 60)
    assert merge_boxes([(1, 2, 3, 4)]) == (1, 2, 3, 4)
    assert merge_boxes([]) is None


def test_primary_category_largest_box_then_alphabetical():
    assert primary_category({"polyp": (0, 0, 9, 9), "ulcer": (0, 0, 19, 19)}) == "ulcer"
    assert primary_category({"polyp": (0, 0, 9, 9), "erosion": (10, 10, 19, 19)}) == "erosion"
    assert primary_category({"polyp": None, "ulcer": (0, 0, 1, 1)}) == "ulcer"
    assert primary_category({"polyp": None, "erosion": None}) == "erosion"


def test_box_text_round_trip_and_strictness():
    for box in [(0, 0, 0, 0), (123, 95, 242, 195), (1, 2, 3000, 4000)]:
        assert format_box(box) == "{<%d><%d><%d><%d>}" % box
        assert parse_box(format_box(box)) == box
    assert format_box([123, 95, 242, 195]) == "{<123><95><242><195>}"
    for bad in ["{<1><2><3>}", "{<1><2><3><4>", "<1><2><3><4>", "{<1> <2><3><4>}", "{<5><2><3><4>}", "{<1.5><2><3><4>}"]:
        with pytest.raises(BoxTextError):
            parse_box(bad)
    with pytest.raises(BoxTextError):
        format_box((5, 0, 4, 0))


def test_template_index_is_stable_and_spreads():
    assert template_index(0, "cls", "a/b.png", "polyp") == template_index(0, "cls", "a/b.png", "polyp")
    seen = {template_index(0, "reg", f"x/{i}.png", "polyp") for i in range(100)}
    assert seen == set(range(5))


def test_file_names_exactly_as_spec_and_json_format(multi, tmp_path):
    out = tmp_path / "out"
    build_instruct(multi, out, InstructParams())
    written = sorted(p.relative_to(out).as_posix() for p in (out / "Json-file").rglob("*") if p.is_file())
    assert written == sorted(SPEC_FILES)
    text = (out / "Json-file/train/ColonINST-train-3tasks.json").read_text(encoding="utf-8")
    assert text.endswith("]\n") and text.startswith("[\n  {\n    \"id\"")
    assert json.loads((out / "stats.json").read_text())["records_total"] > 0


def test_multi_category_image_records(multi, tmp_path):
    out = tmp_path / "out"
    build_instruct(multi, out, InstructParams())
    train = load(out, "Json-file/train/ColonINST-train-3tasks.json")
    rec = {"id": "E/Train/all/1.jpg", "image": "1"}
    assert all({k: r[k] for k in rec} == rec for r in train)
    cls = [r for r in train if match_template("cls", q(r)[len("<image>\n"):])]
    reg = [r for r in train if match_template("reg", q(r)[len("<image>\n"):])]
    rec_ = [r for r in train if match_template("rec", q(r)[len("<image>\n"):])]
    assert [a(r) for r in cls] == ["polyp"]  # merged polyp box (10,5,120,60) beats the tool
    assert [a(r) for r in reg] == ["accessory tool", "polyp"]
    assert "{<0><0><9><9>}" in q(reg[0]) and "{<10><5><120><60>}" in q(reg[1])
    assert [a(r) for r in rec_] == ["{<0><0><9><9>}", "{<10><5><120><60>}"]
    assert "accessory tool" in q(rec_[0]) and "{" not in q(rec_[0])
    cap = load(out, "Json-file/train/ColonINST-train-cap.json")
    assert [a(r) for r in cap] == ["Two polyps."]
    assert load(out, "Json-file/test/ColonINST-test-reg.json") == []
    assert [a(r) for r in load(out, "Json-file/test/ColonINST-test-cls.json")] == ["ulcer"]


def test_stats_counts_and_skips(multi, tmp_path):
    stats = build_instruct(multi, tmp_path / "out", InstructParams())
    assert stats["records"]["train"] == {"cls": 1, "reg": 2, "rec": 2, "cap": 1}
    assert stats["records"]["test"] == {"cls": 1, "reg": 0, "rec": 0, "cap": 0}
    assert stats["images"] == {"train": 1, "val": 0, "test": 1}
    assert stats["datasets"]["E"]["train"]["reg"] == 2
    assert stats["categories"]["accessory tool"]["train"] == {"reg": 1, "rec": 1}
    assert stats["categories"]["ulcer"]["test"] == {"cls": 1}
    assert stats["skipped"] == {"categories_without_box": 1, "images_without_caption": 1}
    assert json.loads((tmp_path / "out/stats.json").read_text()) == stats


def _big_manifest(path: Path, n: int = 120) -> Path:
    rows = []
    cats = ["polyp", "ulcer", "erosion", "blood fresh"]
    for i in range(n):
        cat = cats[i % len(cats)]
        x = 3 * i % 200
        rows.append(row(f"S/{cat}/{i:04d}.png", cat, [x, 10, x + 40, 90], caption=f"Caption {i}."))
        if i % 5 == 0:
            rows.append(row(f"S/{cat}/{i:04d}.png", cat, [x + 50, 0, x + 60, 100], caption=f"Caption {i}."))
    rows.append(row("O/Val/polyp/a.png", "polyp", [1, 1, 5, 5], split="val", caption="Official."))
    return write_manifest(path, rows)


def test_every_template_used_and_every_question_matches(tmp_path):
    out = tmp_path / "out"
    build_instruct(_big_manifest(tmp_path / "m.parquet"), out, InstructParams(seed=1))
    used = {t: set() for t in TEMPLATES}
    for rel in SPEC_FILES:
        for r in load(out, rel):
            assert q(r).startswith("<image>\n")
            hits = [(t, match_template(t, q(r)[8:])) for t in TEMPLATES]
            hits = [(t, h) for t, h in hits if h is not None]
            assert len(hits) == 1, q(r)
            task, (idx, fields) = hits[0]
            used[task].add(idx)
            if task == "reg":
                parse_box(fields["box"])
            if task == "rec":
                parse_box(a(r))
    assert all(used[t] == set(range(5)) for t in TEMPLATES), used


def test_no_image_in_two_splits_and_proportions(tmp_path):
    out = tmp_path / "out"
    stats = build_instruct(_big_manifest(tmp_path / "m.parquet"), out, InstructParams())
    split_of = {}
    for rel in SPEC_FILES:
        split = rel.split("/")[1]
        for r in load(out, rel):
            assert split_of.setdefault(r["id"], split) == split, r["id"]
    assert split_of["O/Val/polyp/a.png"] == "val"
    for cat in ["polyp", "ulcer", "erosion", "blood fresh"]:
        per_split = [sum(1 for i, s in split_of.items() if i.startswith(f"S/{cat}/") and s == sp)
                     for sp in ("train", "val", "test")]
        assert per_split == [18, 3, 9], (cat, per_split)
    assert stats["images_official_split"] == 1


def test_rerun_is_byte_identical_and_seed_matters(tmp_path):
    manifest = _big_manifest(tmp_path / "m.parquet")

    def digest(out):
        return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    build_instruct(manifest, tmp_path / "a", InstructParams(seed=5))
    build_instruct(manifest, tmp_path / "b", InstructParams(seed=5))
    build_instruct(manifest, tmp_path / "a", InstructParams(seed=5))  # overwrite in place
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert len(digest(tmp_path / "a")) == len(SPEC_FILES) + 1  # + stats.json
    build_instruct(manifest, tmp_path / "c", InstructParams(seed=6))
    assert digest(tmp_path / "c") != digest(tmp_path / "a")
    assert not list((tmp_path / "a").rglob(".*tmp*"))


def test_bad_rows_are_skipped_and_counted(tmp_path):
    rows = [
        row("D/1.png", "polyp", [50, 50, 10, 10]),  # inverted box: label kept, box dropped
        row("D/2.png", "polyp", [1, 1, 4, 4], split="train"),
        row("D/2.png", "polyp", [2, 2, 6, 6], split="test"),  # conflicting official splits
        row("D/3.png", "polyp", [1, 1, 4, 4], split="dev"),  # unknown split
    ]
    stats = build_instruct(write_manifest(tmp_path / "m.parquet", rows), tmp_path / "o", InstructParams())
    assert stats["skipped"]["boxes_invalid"] == 1
    assert stats["skipped"]["images_bad_split"] == 2
    assert stats["images_total"] == 1
    assert sum(v["reg"] for v in stats["records"].values()) == 0


def test_unusable_manifest_names_the_file(tmp_path):
    with pytest.raises(InstructError, match=re.escape(str(tmp_path / "nope.parquet"))):
        build_instruct(tmp_path / "nope.parquet", tmp_path / "o", InstructParams())
    pq.write_table(pa.table({"image": ["a.png"]}), tmp_path / "few.parquet")
    with pytest.raises(InstructError, match="lacks column"):
        build_instruct(tmp_path / "few.parquet", tmp_path / "o", InstructParams())
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(InstructError, match="junk.parquet"):
        build_instruct(tmp_path / "junk.parquet", tmp_path / "o", InstructParams())
    with pytest.raises(ParamsError, match="InstructParams: split_ratios must sum to 1"):
        InstructParams(split_ratios=[0.5, 0.1, 0.1])  # refused when built, before any file is read


def test_stage_cli_runs_and_reports_bad_manifest(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    manifest = _big_manifest(tmp_path / "m.parquet", n=12)
    cmd = [sys.executable, str(repo / "stages/instruct.py"), "--params", str(repo / "params.yaml")]
    ok = subprocess.run(cmd + ["--manifest", str(manifest), "--out-dir", str(tmp_path / "o")],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stderr and (tmp_path / "o/Json-file/train/ColonINST-train-3tasks.json").is_file()
    bad = subprocess.run(cmd + ["--manifest", str(tmp_path / "none.parquet"), "--out-dir", str(tmp_path / "p")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1 and "none.parquet: manifest not found" in bad.stderr
