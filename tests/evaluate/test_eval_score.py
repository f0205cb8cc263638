"""Scoring hand-written reference-format prediction files, through the API and `colonpipe score`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from colonpipe.cli import main as cli_main
from colonpipe.evaluate.score import (
    PredictionFileError,
    headline,
    infer_task,
    rec_category,
    score_predictions,
    train_baselines,
)

from eval_cases import REC_ACC, REC_AVG, record, strip_prediction, write

BASE_REC_AVG = (3 * 81 / 163 + 108 / 236 + 64 / 180) / 5  # mean box (1,1,12,12) vs the 5 answers


def test_cls_accuracy_breakdowns_and_baseline(files):
    r = score_predictions(files["cls_pred"], "cls", source_path=files["cls_src"], train_rec_path=files["train"])
    assert r["n"] == 4 and r["n_missing_prediction"] == 1 and r["n_invalid"] == 0
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["by_category"] == {
        "erosion": {"n": 1, "mean": 0.0},
        "polyp": {"n": 2, "mean": 0.5},
        "ulcer": {"n": 1, "mean": 1.0},
    }
    assert r["by_dataset"] == {"DsA": {"n": 2, "mean": 1.0}, "DsB": {"n": 2, "mean": 0.0}}
    assert r["baseline_label"] == "polyp" and r["baseline_accuracy"] == pytest.approx(0.5)
    assert [x["predicted"] for x in r["records"]] == ["polyp", "ulcer", "adenoma", None]


def test_rec_iou_failures_included_and_strict_threshold(files):
    r = score_predictions(files["rec_pred"], "rec", source_path=files["rec_src"], train_rec_path=files["train"])
    assert [x["iou"] for x in r["records"]] == pytest.approx([1.0, 0.5, 25 / 175, 0.0, 0.0])
    assert r["avg_iou"] == pytest.approx(REC_AVG)
    assert r["acc_iou_0.5"] == pytest.approx(REC_ACC)  # the 0.5 record is not a hit
    assert r["n_missing_prediction"] == 1 and r["n_unparsed_prediction"] == 2
    assert r["by_category"]["polyp"] == {"n": 2, "mean": 0.75}
    assert r["by_category"]["blood fresh"] == {"n": 1, "mean": 0.0}
    assert r["by_dataset"]["DsB"]["n"] == 3
    assert r["baseline_box"] == [1, 1, 12, 12]
    assert r["baseline_avg_iou"] == pytest.approx(BASE_REC_AVG)


def test_train_baselines_split_tasks_by_shape(files):
    b = train_baselines(files["train"])
    assert (b.cls_label, b.reg_label, b.rec_box) == ("polyp", "ulcer", (1, 1, 12, 12))


def test_rec_category_from_every_template():
    for q in ("Where is the location of dyed lifted polyp?", "Could you give the position of dyed lifted polyp?",
              "Where is dyed lifted polyp located?", "Could you specify the location of dyed lifted polyp?",
              "Please specify the coordinates of dyed lifted polyp."):
        assert rec_category("<image>\n" + q) == "dyed lifted polyp"
    assert rec_category("<image>\nWhat is this?") == "(unknown)"


def test_count_mismatch_names_both_files(files):
    write(files["cls_src"], strip_prediction(files_cls := json.loads(files["cls_pred"].read_text()))[:3])
    with pytest.raises(PredictionFileError, match=r"test_pred_cls\.json: 4 records but its source .*has 3"):
        score_predictions(files["cls_pred"], "cls", source_path=files["cls_src"])
    assert len(files_cls) == 4


@pytest.mark.parametrize(
    "content, message",
    [("[{\"id\": ", "cannot read JSON"), ("{\"a\": 1}", "expected a JSON list"), (b"\xff\xfe\x00", "cannot read JSON")],
)
def test_unreadable_file_is_named(tmp_path, content, message):
    path = tmp_path / "test_pred_cls.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PredictionFileError, match=rf"{path.name}: {message}"):
        score_predictions(path, "cls")
    with pytest.raises(PredictionFileError, match="file not found"):
        score_predictions(tmp_path / "nope.json", "cls")


def test_malformed_records_are_skipped_or_scored_wrong(tmp_path):
    bad_turn = record("DsA/Test/polyp/2.png", "Categorize the object.", "polyp", None)
    bad_turn["conversations"][2]["value"] = 7  # not a string -> missing prediction
    recs = [
        record("DsA/Test/polyp/1.png", "Categorize the object.", "polyp", "polyp"),
        bad_turn,
        {"id": "DsA/Test/polyp/3.png", "conversations": [{"from": "human", "value": "x"}]},  # no answer
        "not a record",
    ]
    failed = record("DsA/Test/polyp/4.png", "Categorize the object.", "polyp", "")
    failed["error"] = "image: cannot identify image file"  # how our merge marks a failed record
    recs.append(failed)
    r = score_predictions(write(tmp_path / "p.json", recs), "cls")
    assert (r["n"], r["n_invalid"], r["n_missing_prediction"], r["n_inference_error"]) == (3, 2, 1, 1)
    assert r["accuracy"] == pytest.approx(1 / 3)


def test_empty_file_scores_zero_not_nan(tmp_path):
    for task in ("cls", "rec", "cap"):
        r = score_predictions(write(tmp_path / f"p_{task}.json", []), task)
        assert r["n"] == 0 and all(v == 0 for k, v in headline(r).items())


def test_cap_scores(tmp_path):
    caps = ["A sessile polyp sits on the fold.", "Fresh blood covers the mucosa.", "A tool is visible."]
    recs = [record(f"Ds{i % 2}/Test/x/{i}.png", "Describe what you see in the image.", c, c + "<|endoftext|>")
            for i, c in enumerate(caps)]
    r = score_predictions(write(tmp_path / "test_pred_cap.json", recs), "cap")
    assert r["bleu4"] == pytest.approx(1.0, abs=1e-6) and r["rouge_l"] == 1.0 and r["cider"] == pytest.approx(10.0)
    assert r["by_dataset"]["Ds0"]["n"] == 2
    recs[0]["conversations"][2]["value"] = "Nothing to see."
    worse = score_predictions(write(tmp_path / "test_pred_cap.json", recs), "cap")
    assert worse["bleu4"] < r["bleu4"] and worse["cider"] < r["cider"]


def test_infer_task():
    assert infer_task(Path("x/test_pred_rec.json")) == "rec"
    assert infer_task(Path("ColonINST-val-cap.json")) == "cap"
    assert infer_task(Path("preds.json")) is None


def test_colonpipe_score_cli_end_to_end(files, tmp_path, capsys):
    out = tmp_path / "scores.json"
    rc = cli_main(["score", str(files["cls_pred"]), str(files["rec_pred"]), "--source-dir", str(files["src_dir"]),
                   "--train", str(files["train"]), "--out", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "CLS" in table and "accuracy=0.5000" in table and f"avg_iou={REC_AVG:.4f}" in table
    saved = json.loads(out.read_text())
    rec = saved[str(files["rec_pred"])]
    assert rec["avg_iou"] == pytest.approx(REC_AVG) and rec["acc_iou_0.5"] == pytest.approx(REC_ACC)
    assert rec["baseline_avg_iou"] == pytest.approx(BASE_REC_AVG) and "records" not in rec


def test_colonpipe_score_cli_reports_errors(files, tmp_path, capsys):
    write(files["rec_src"], [])
    assert cli_main(["score", str(files["rec_pred"]), "--source", str(files["rec_src"])]) == 1
    assert "5 records but its source" in capsys.readouterr().err
    unnamed = write(tmp_path / "preds.json", [])
    assert cli_main(["score", str(unnamed)]) == 1
    assert "pass --task" in capsys.readouterr().err


def test_colonpipe_console_script(files):
    exe = Path(sys.executable).with_name("colonpipe")
    done = subprocess.run([str(exe), "score", str(files["rec_pred"])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"avg_iou={REC_AVG:.4f}" in done.stdout and "acc_iou_0.5=0.2000" in done.stdout
