"""``check_coloninst`` / ``colonpipe check-data`` on hand-made ColonINST trees."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from colonpipe.cli import main as cli_main
from colonpipe.data.check import PROBLEM_KINDS, check_coloninst
from colonpipe.data.instruct import build_instruct
from colonpipe.data.manifest import SCHEMA
from colonpipe.params import InstructParams


def rec(rid, question, answer, image=None):
    return {"id": rid, "image": image if image is not None else Path(rid).stem,
            "conversations": [{"from": "human", "value": "<image>\n" + question},
                              {"from": "gpt", "value": answer}]}


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "Positive-images"
    for rel in ["K/Train/polyp/1.png", "K/Test/polyp/2.png", "K/Test/ulcer/3.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"png")
    return root


def clean_tree(json_dir: Path) -> None:
    dump(json_dir / "train/ColonINST-train-3tasks.json", [
        rec("K/Train/polyp/1.png", "Categorize the object.", "polyp"),
        rec("K/Train/polyp/1.png", "What category does {<1><2><30><40>} belong to?", "polyp"),
        rec("K/Train/polyp/1.png", "Where is polyp located?", "{<1><2><30><40>}"),
    ])
    dump(json_dir / "train/ColonINST-train-cap.json",
         [rec("K/Train/polyp/1.png", "Interpret what the image shows.", "A polyp.")])
    dump(json_dir / "test/ColonINST-test-rec.json",
         [rec("K/Test/polyp/2.png", "Please specify the coordinates of polyp.", "{<0><0><5><5>}")])


def test_clean_tree_is_ok(tmp_path, images):
    clean_tree(tmp_path / "Json-file")
    report = check_coloninst(tmp_path / "Json-file", images)
    assert report["ok"], report["examples"]
    assert report["records"] == 5 and report["unknown_files"] == []
    assert report["files"]["train/ColonINST-train-3tasks.json"] == {"records": 3, "split": "train", "task": "3tasks"}


def test_every_problem_kind_is_found(tmp_path, images):
    jd = tmp_path / "Json-file"
    clean_tree(jd)
    dump(jd / "test/ColonINST-test-reg.json", [
        rec("K/Test/ulcer/3.png", "What category does {<1><2><3>} belong to?", "ulcer"),  # bad_box
        rec("K/Test/ulcer/9.png", "Can you tell me the category of {<1><2><3><4>}?", "ulcer"),  # missing
        rec("K/Test/ulcer/3.png", "Which class is {<1><2><3><4>}?", "ulcer"),  # unknown template
        rec("K/Test/ulcer/3.png", "Categorize the object.", "ulcer"),  # cls template in reg file
        rec("K/Test/ulcer/3.png", "What is the category for {<1><2><3><4>}?", "ulcer", image="x"),  # shape
        {"id": "K/Test/ulcer/3.png", "conversations": []},  # shape
        rec("K/Test/ulcer/3.png", "Please specify the category of {<1><2><3><4>}.", "ulcer"),
        rec("K/Test/ulcer/3.png", "Please specify the category of {<1><2><3><4>}.", "ulcer"),  # duplicate
    ])
    dump(jd / "test/ColonINST-test-rec.json",
         [rec("K/Test/polyp/2.png", "Where is polyp located?", "<0><0><5><5>"),  # bad_box answer
          rec("K/Train/polyp/1.png", "Where is polyp located?", "{<0><0><5><5>}")])  # split_overlap
    (jd / "val").mkdir()
    (jd / "val/ColonINST-val-cls.json").write_text("[{not json")
    dump(jd / "extra/notes.json", [rec("K/Test/polyp/2.png", "Describe what you see in the image.", "x")])

    report = check_coloninst(jd, images)
    assert not report["ok"]
    assert report["problems"] == {"bad_json": 1, "bad_shape": 2, "missing_image": 1, "bad_box": 2,
                                  "unknown_template": 2, "duplicate": 1, "split_overlap": 1}
    assert set(report["problems"]) == set(PROBLEM_KINDS)
    assert report["unknown_files"] == ["extra/notes.json"]
    assert any("K/Test/ulcer/9.png" in m for m in report["examples"]["missing_image"])
    assert any("test/ColonINST-test-reg.json[0]" in m for m in report["examples"]["bad_box"])


def test_cli_exit_codes_and_report_file(tmp_path, images, capsys):
    jd = tmp_path / "Json-file"
    clean_tree(jd)
    assert cli_main(["check-data", str(jd), "--image-root", str(images)]) == 0
    assert "OK" in capsys.readouterr().out
    dump(jd / "val/ColonINST-val-cls.json", [rec("K/Train/polyp/7.png", "Categorize the object.", "polyp")])
    out = tmp_path / "report.json"
    assert cli_main(["check-data", str(jd), "--image-root", str(images), "--report", str(out)]) == 1
    assert "missing_image: 1" in capsys.readouterr().out
    assert json.loads(out.read_text())["problems"]["missing_image"] == 1
    assert cli_main(["check-data", str(tmp_path / "nowhere")]) == 2


def test_our_own_output_passes_the_checker(tmp_path):
    root = tmp_path / "raw"
    rows = []
    for i in range(30):
        rid = f"D/{'polyp' if i % 2 else 'ulcer'}/{i}.png"
        (root / rid).parent.mkdir(parents=True, exist_ok=True)
        (root / rid).write_bytes(b"img")
        rows.append({"dataset": "D", "split": None, "image": rid, "width": 64, "height": 48,
                     "category": rid.split("/")[1], "box": [i, 1, i + 9, 20], "caption": f"Image {i}."})
    cols = {f.name: [r[f.name] for r in rows] for f in SCHEMA}
    pq.write_table(pa.table(cols, schema=SCHEMA), tmp_path / "m.parquet")
    build_instruct(tmp_path / "m.parquet", tmp_path / "out", InstructParams())
    report = check_coloninst(tmp_path / "out/Json-file", root)
    assert report["ok"], report["examples"]
    assert report["records"] == 30 * 4
