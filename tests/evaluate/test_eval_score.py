"""Scoring hand-written reference-format prediction files, through the API and `colonpipe score`."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from colonpipe.cli import main as cli_main
from colonpipe.evaluate.command import task_from_name
from colonpipe.coloninst import ColonINSTError
from colonpipe.evaluate.records import PredictionFileError
from colonpipe.evaluate.score import headline, rec_category, score_predictions, train_baselines

from eval_cases import (
    REC_ACC,
    REC_AVG,
    WHITESPACE,
    WHITESPACE_LENIENT,
    WHITESPACE_REFERENCE,
    record,
    strip_prediction,
    write,
)

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
    with pytest.raises(ColonINSTError, match=rf"{path.name}: {message}"):
        score_predictions(path, "cls")
    with pytest.raises(ColonINSTError, match="file not found"):
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
        head = headline(r)
        assert r["n"] == 0 and head.pop("scoring") == "reference" and all(v == 0 for v in head.values())


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


def test_task_from_name():
    assert task_from_name(Path("x/test_pred_rec.json")) == "rec"
    assert task_from_name(Path("ColonINST-val-cap.json")) == "cap"
    assert task_from_name(Path("preds.json")) is None


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


# ----------------------------------------------------------------------------- reference vs lenient
def test_default_scoring_is_the_reference_rule_and_lenient_is_named(tmp_path):
    path = write(tmp_path / "test_pred_cls.json", WHITESPACE)
    ref = score_predictions(path, "cls")
    assert ref["scoring"] == "reference" and ref["accuracy"] == WHITESPACE_REFERENCE
    # the reference evaluator's loop, verbatim, on the same file
    turns = [r["conversations"] for r in WHITESPACE]
    verbatim = sum(t[2]["value"].lower().replace("<|endoftext|>", "") == t[1]["value"].lower() for t in turns)
    assert ref["accuracy"] == verbatim / len(turns)
    assert [x["predicted"] for x in ref["records"]][:3] == ["polyp ", "polyp\n", " ulcer"]  # nothing stripped
    lenient = score_predictions(path, "cls", scoring="lenient")
    assert lenient["scoring"] == "lenient" and lenient["accuracy"] == WHITESPACE_LENIENT
    assert headline(ref)["scoring"] == "reference" and headline(lenient)["scoring"] == "lenient"
    with pytest.raises(ValueError, match="unknown scoring"):
        score_predictions(path, "cls", scoring="strict")


def test_baseline_is_judged_by_the_same_rule(tmp_path):
    train = [record(f"D/Train/p/{i}.png", "Categorize the object.", a, with_prediction=False)
             for i, a in enumerate(["polyp ", "polyp ", "polyp", "ulcer"])]
    write(tmp_path / "train.json", train)
    test = write(tmp_path / "test_pred_cls.json", [record("D/Test/p/1.png", "Categorize the object.", "polyp", "x")])
    ref = score_predictions(test, "cls", train_rec_path=tmp_path / "train.json")
    assert ref["baseline_label"] == "polyp " and ref["baseline_accuracy"] == 0.0  # "polyp " != "polyp"
    lenient = score_predictions(test, "cls", train_rec_path=tmp_path / "train.json", scoring="lenient")
    assert lenient["baseline_label"] == "polyp" and lenient["baseline_accuracy"] == 1.0


def test_colonpipe_score_names_the_rule_in_output_and_json(tmp_path, capsys):
    path = write(tmp_path / "test_pred_cls.json", WHITESPACE)
    out = tmp_path / "scores.json"
    assert cli_main(["score", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("scoring: reference (CLS/REG: prediction.lower().replace('<|endoftext|>', '')"
                              " == answer.lower())")
    assert "scoring=reference" in printed and "accuracy=0.2500" in printed
    assert json.loads(out.read_text())[str(path)]["scoring"] == "reference"
    assert cli_main(["score", str(path), "--lenient", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("scoring: lenient") and "accuracy=0.7500" in printed
    saved = json.loads(out.read_text())[str(path)]
    assert saved["scoring"] == "lenient" and saved["accuracy"] == WHITESPACE_LENIENT


# ----------------------------------------------------------------------------- probes
def test_rec_numbers_beyond_the_int_string_limit_score_zero(tmp_path, capsys):
    over = "9" * 4301  # the reference evaluator dies here: int() refuses more than 4,300 digits
    recs = [
        record("D/Test/polyp/1.png", "Where is polyp located?", "{<0><0><9><9>}", f"{{<{over}><0><9><9>}}"),
        record("D/Test/polyp/2.png", "Where is polyp located?", f"{{<0><0><{over}><9>}}", "{<0><0><9><9>}"),
        record("D/Test/polyp/3.png", "Where is polyp located?", "{<0><0><9><9>}", "{<0><0><9><9>}"),
    ]
    path = write(tmp_path / "test_pred_rec.json", recs)
    r = score_predictions(path, "rec")
    assert [x["iou"] for x in r["records"]] == [0.0, 0.0, 1.0]
    assert r["avg_iou"] == 1 / 3 and r["n_unparsed_prediction"] == 1 and r["n_unparsed_answer"] == 1
    assert cli_main(["score", str(path)]) == 0
    assert f"avg_iou={1 / 3:.4f}" in capsys.readouterr().out


def test_train_baselines_survive_huge_boxes(tmp_path):
    big = "1" + "0" * 400  # parses, but the float mean used to overflow
    train = [record("D/Train/p/1.png", "Where is polyp located?", f"{{<0><0><{big}><{big}>}}", with_prediction=False),
             record("D/Train/p/2.png", "Where is polyp located?", "{<0><0><10><10>}", with_prediction=False),
             record("D/Train/p/3.png", "Where is polyp located?", "{<0><0><" + "9" * 5000 + "><1>}",
                    with_prediction=False)]
    b = train_baselines(write(tmp_path / "train.json", train))
    assert b.rec_box == (0, 0, (int(big) + 10 + 1) // 2, (int(big) + 10 + 1) // 2)  # the 5000-digit box left out
    assert b.cls_label is None  # and not mistaken for a CLS label


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{"id": 1' + "0" * 5000 + "}]", "cannot read JSON: Exceeds the limit"),  # JSON int too long for int()
        ("[" * 100_000 + "]" * 100_000, "cannot read JSON: nested too deeply"),
        ("NaN", "expected a JSON list of records, got float"),
        ("null", "expected a JSON list of records, got NoneType"),
        ('"records"', "expected a JSON list of records, got str"),
    ],
)
def test_file_level_problems_are_clear_errors(tmp_path, capsys, text, message):
    path = tmp_path / "test_pred_cls.json"
    path.write_text(text)
    with pytest.raises(ColonINSTError, match=rf"{path.name}: {message}"):
        score_predictions(path, "cls")
    assert cli_main(["score", str(path)]) == 1
    assert message.split(":")[0] in capsys.readouterr().err


def test_nan_infinity_and_non_string_values(tmp_path):
    text = json.dumps([
        {"id": "D/Test/p/1.png", "conversations": [{"from": "human", "value": "<image>\nCategorize the object."},
                                                   {"from": "gpt", "value": "polyp"},
                                                   {"from": "prediction", "value": "polyp"}]},
    ])[:-1] + """,
        {"id": NaN, "error": NaN, "conversations": [{"from": "human", "value": Infinity},
            {"from": "gpt", "value": "polyp"}, {"from": "prediction", "value": -Infinity}]},
        {"id": "D/Test/p/3.png", "conversations": [{"from": "gpt", "value": NaN}]},
        {"id": ["D"], "conversations": [{"from": "gpt", "value": "polyp"}, {"from": "prediction", "value": ["polyp"]}]},
        {"id": "D/Test/p/5.png", "conversations": {"from": "gpt", "value": "polyp"}},
        {"id": "D/Test/p/6.png", "conversations": [null, 7, "x", {"from": null}, {"value": "polyp"}]},
        {"id": "D/Test/p/7.png", "conversations": [{"from": "gpt", "value": "polyp"}, {"from": "prediction"}]},
        [], 3.5, null]"""
    path = tmp_path / "test_pred_cls.json"
    path.write_text(text)
    for task in ("cls", "reg", "rec", "cap"):
        r = score_predictions(path, task)
        counts = (r["n"], r["n_invalid"], r["n_missing_prediction"], r["n_inference_error"], r["n_duplicate_record"])
        assert counts == (4, 6, 3, 1, 0), task  # two id-less records are not duplicates of each other
        numbers = [v for v in headline(r).values() if isinstance(v, float)]
        assert numbers and all(math.isfinite(v) for v in numbers), task
    assert score_predictions(path, "cls")["accuracy"] == 0.25
    assert score_predictions(path, "cls")["by_dataset"]["(unknown)"]["n"] == 2  # ids that are not strings


def test_duplicate_records_are_scored_and_counted(tmp_path):
    one = record("D/Test/polyp/1.png", "Categorize the object.", "polyp", "polyp")
    other = record("D/Test/polyp/1.png", "Categorize the object.", "ulcer", "polyp")  # same id, other answer
    r = score_predictions(write(tmp_path / "test_pred_cls.json", [one, one, one, other]), "cls")
    assert r["n"] == 4 and r["accuracy"] == 0.75  # the reference scores every record it is given
    assert r["n_duplicate_record"] == 2 and headline(r)["n_duplicate_record"] == 2


def test_source_check_names_predictions_for_another_file(tmp_path):
    q = "Where is polyp located?"
    src = [record("D/Test/a/1.png", q, "{<0><0><9><9>}", with_prediction=False),
           record("D/Test/a/1.png", "Where is ulcer located?", "{<5><5><9><9>}", with_prediction=False),
           record("D/Test/a/2.png", q, "{<0><0><9><9>}", with_prediction=False)]
    write(tmp_path / "src.json", src)
    good = [{**r, "conversations": r["conversations"] + [{"from": "prediction", "value": "{<0><0><9><9>}"}]}
            for r in reversed(src)]  # any order; ids repeat legitimately (one REC record per category)
    assert score_predictions(write(tmp_path / "p.json", good), "rec", source_path=tmp_path / "src.json")["n"] == 3
    other = [good[0], good[1], {**good[2], "id": "D/Val/a/9.png"}]
    with pytest.raises(PredictionFileError, match=r"p\.json: 1 record\(s\) with an id its source .*src\.json does not "
                                                  r"hold \(as often\), e.g. 'D/Val/a/9\.png'"):
        score_predictions(write(tmp_path / "p.json", other), "rec", source_path=tmp_path / "src.json")
    twice = [good[0], good[0], good[2]]  # a resumed run that wrote a record twice and lost one
    with pytest.raises(PredictionFileError, match=r"e.g. 'D/Test/a/2\.png'"):
        score_predictions(write(tmp_path / "p.json", twice), "rec", source_path=tmp_path / "src.json")
    write(tmp_path / "src.json", "not a list")
    with pytest.raises(ColonINSTError, match=r"src\.json: expected a JSON list"):
        score_predictions(tmp_path / "p.json", "rec", source_path=tmp_path / "src.json")


def test_cap_file_whose_references_are_all_empty(tmp_path):
    recs = [record(f"D/Test/x/{i}.png", "Describe what you see in the image.", ref, pred)
            for i, (ref, pred) in enumerate([("", "A polyp."), ("...", ""), ("", None)])]
    r = score_predictions(write(tmp_path / "test_pred_cap.json", recs), "cap")
    assert r["n"] == 3 and r["cider"] == 0.0 and r["n_missing_prediction"] == 1
    assert all(math.isfinite(v) for v in headline(r).values() if isinstance(v, float))
