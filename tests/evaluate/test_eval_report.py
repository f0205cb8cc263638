"""Plots, DVC-plots data files, the split suite and the evaluate stage, on hand-written files."""

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from eval_cases import REC_ACC, REC_AVG, WHITESPACE, WHITESPACE_LENIENT, WHITESPACE_REFERENCE, record, write

from colonpipe.evaluate.report import MAX_PLOT_LABELS, REST, write_json, write_plots
from colonpipe.evaluate.score import score_predictions
from colonpipe.evaluate.suite import evaluate_splits

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CAPS = ["A sessile polyp sits on the fold.", "Fresh blood covers the mucosa.", "A tool is visible."]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _results(files):
    return {
        "cls": score_predictions(files["cls_pred"], "cls"),
        "rec": score_predictions(files["rec_pred"], "rec"),
    }


def test_write_plots_files_and_contents(files, tmp_path):
    out = tmp_path / "plots" / "test"
    paths = write_plots(_results(files), out, label="test", iou_bins=10)
    names = sorted(p.name for p in paths)
    assert names == sorted(["cls_confusion.png", "cls_confusion.csv", "rec_iou_hist.png", "rec_iou_hist.csv",
                            "by_dataset.png", "cls_by_dataset.csv", "rec_by_dataset.csv"])
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp"))  # atomic writes leave nothing behind
    assert _rows(out / "cls_confusion.csv") == [
        ["actual", "predicted"], ["polyp", "polyp"], ["ulcer", "ulcer"], ["polyp", "(other)"], ["erosion", "(none)"],
    ]
    hist = _rows(out / "rec_iou_hist.csv")
    assert hist[0] == ["bin", "count"] and len(hist) == 11
    counts = {b: int(c) for b, c in hist[1:]}
    # IoUs 1, 0.5, 1/7, 0, 0: failures in the first bin, 0.5 opens the 0.50-0.60 bin, 1.0 closes the last.
    assert counts["0.00-0.10"] == 2 and counts["0.10-0.20"] == 1 and counts["0.50-0.60"] == 1
    assert counts["0.90-1.00"] == 1 and sum(counts.values()) == 5
    assert _rows(out / "cls_by_dataset.csv") == [["dataset", "value"], ["DsA", "1.0"], ["DsB", "0.0"]]


def test_plots_are_byte_identical_on_rerun(files, tmp_path):
    results = _results(files)
    a = write_plots(results, tmp_path / "a", label="test")
    b = write_plots(results, tmp_path / "b", label="test")
    for pa, pb in zip(a, b):
        assert pa.name == pb.name and pa.read_bytes() == pb.read_bytes(), pa.name


def test_write_json_is_sorted_and_atomic(tmp_path):
    path = write_json(tmp_path / "m" / "x.json", {"b": 1, "a": {"d": 2, "c": 3}})
    assert path.read_text() == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def _layout(files, tmp_path):
    """val + test predictions (CLS, REC) in pred/, CAP in align/, sources next to them."""
    pred, cap = files["pred_dir"], tmp_path / "align_pred"
    for task in ("cls", "rec"):
        shutil.copy(pred / f"test_pred_{task}.json", pred / f"val_pred_{task}.json")
        (files["src_dir"] / "val").mkdir(exist_ok=True)
        shutil.copy(files["src_dir"] / "test" / f"ColonINST-test-{task}.json",
                    files["src_dir"] / "val" / f"ColonINST-val-{task}.json")
    for split in ("val", "test"):
        recs = [record(f"Ds{i % 2}/T/x/{i}.png", "Describe what you see in the image.", c, c) for i, c in enumerate(CAPS)]
        write(cap / f"{split}_pred_cap.json", recs)
    return pred, cap


def test_evaluate_splits_writes_shallow_metrics(files, tmp_path):
    pred, cap = _layout(files, tmp_path)
    res = evaluate_splits(pred, metrics_dir=tmp_path / "metrics", plots_dir=tmp_path / "plots",
                          splits=["val", "test"], tasks=["cls", "reg", "rec", "cap"], cap_pred_dir=cap,
                          source_dir=files["src_dir"], train_json=files["train"])
    text = (tmp_path / "metrics" / "test.json").read_text()
    test = json.loads(text)
    assert set(test) == {"cls", "rec", "cap"}  # no REG predictions: skipped
    assert test["cls"]["accuracy"] == 0.5 and test["cls"]["baseline_accuracy"] == 0.5
    assert test["rec"]["avg_iou"] == REC_AVG and repr(REC_AVG) in text  # full precision, not 6 digits
    assert len(repr(REC_AVG).split(".")[1]) > 6
    assert {block["scoring"] for block in test.values()} == {"reference"}
    assert test["rec"]["acc_iou_0.5"] == REC_ACC and "baseline_avg_iou" in test["rec"]
    assert test["cap"]["rouge_l"] == 1.0
    assert all(not isinstance(v, (dict, list)) for block in test.values() for v in block.values())
    assert res.metrics["test"] == test and len(res.metric_files) == 2
    assert res.flat()["test.rec.avg_iou"] == test["rec"]["avg_iou"] and res.flat()["val.cls.n"] == 4.0
    assert "test.cls.scoring" not in res.flat()  # MLflow gets numbers only
    assert {p.name for p in res.artifacts} >= {"scores.json", "cls_confusion.png", "rec_iou_hist.png", "by_dataset.png"}
    details = json.loads((tmp_path / "plots" / "test" / "scores.json").read_text())
    assert details["rec"]["by_category"]["polyp"]["mean"] == 0.75 and "records" not in details["rec"]


def test_evaluate_stage_cli(files, tmp_path):
    pred, cap = _layout(files, tmp_path)
    params = REPO / "params.yaml"  # the project's own file: splits val+test, every task
    cmd = [sys.executable, str(REPO / "stages" / "evaluate.py"), "--pred-dir", str(pred), "--cap-pred-dir", str(cap),
           "--train-json", str(files["train"]), "--source-dir", str(files["src_dir"]),
           "--metrics-dir", str(tmp_path / "metrics"), "--plots-dir", str(tmp_path / "plots"), "--params", str(params)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    val = json.loads((tmp_path / "metrics" / "val.json").read_text())
    assert val["rec"]["avg_iou"] == REC_AVG and val["cls"]["scoring"] == "reference"  # the project's default
    assert (tmp_path / "plots" / "val" / "rec_iou_hist.png").exists()
    bins = _rows(tmp_path / "plots" / "val" / "rec_iou_hist.csv")[1:]
    assert sum(int(c) for _, c in bins) == 5
    write(files["src_dir"] / "test" / "ColonINST-test-rec.json", [])  # stale source: count mismatch
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "test_pred_rec.json: 5 records but its source" in done.stderr


def test_lenient_scoring_through_the_suite_and_the_stage_knob(files, tmp_path, monkeypatch):
    pred = tmp_path / "ws"
    write(pred / "test_pred_cls.json", WHITESPACE)
    kw = dict(splits=["test"], tasks=["cls"])
    ref = evaluate_splits(pred, metrics_dir=tmp_path / "m1", plots_dir=tmp_path / "p1", **kw)
    assert ref.metrics["test"]["cls"]["accuracy"] == WHITESPACE_REFERENCE
    with pytest.raises(ValueError, match="unknown scoring"):
        evaluate_splits(pred, metrics_dir=tmp_path / "m0", plots_dir=tmp_path / "p0", scoring="strip", **kw)
    # evaluate.scoring in params.yaml reaches the stage (in process: no interpreter start-up)
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("  scoring: reference ", "  scoring: lenient   "))
    spec = importlib.util.spec_from_file_location("colonpipe_stage_evaluate", REPO / "stages" / "evaluate.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    monkeypatch.chdir(tmp_path)
    argv = ["--pred-dir", str(pred), "--metrics-dir", "metrics", "--plots-dir", "plots", "--params", str(params)]
    assert stage.main(argv) == 0
    test = json.loads((tmp_path / "metrics" / "test.json").read_text())
    assert test["cls"]["scoring"] == "lenient" and test["cls"]["accuracy"] == WHITESPACE_LENIENT
    params.write_text(params.read_text().replace("  scoring: lenient ", "  scoring: strip   "))
    assert stage.main(argv) == 1  # a bad knob is a params error, before anything is scored


def test_write_json_refuses_nan_and_escapes_lone_surrogates(tmp_path):
    with pytest.raises(ValueError, match=r"bad\.json: Out of range float values are not JSON compliant"):
        write_json(tmp_path / "bad.json", {"a": float("nan")})
    assert not (tmp_path / "bad.json").exists()
    path = write_json(tmp_path / "s.json", {"id": "D\ud800/1.png", "label": "\u00e9"})
    assert json.loads(path.read_text(encoding="ascii")) == {"id": "D\ud800/1.png", "label": "\u00e9"}


def test_plots_survive_hostile_labels_with_bounded_size(tmp_path):
    """Lone surrogates and mathtext in labels crashed matplotlib; N labels made an N x N figure
    (2000 labels: 903 inches square, 8e9 pixels)."""
    recs = [record("D\ud800/x/1.png", "Categorize the object.", "\ud800polyp", "\udc00"),
            record("$\\frac{/x/2.png", "Categorize the object.", "$\\frac$", "x"),
            record("$a$/x/3.png", "Categorize the object.", "a$b$c", "a$b$c")]
    recs += [record(f"D/x/{i}.png", "Categorize the object.", f"label {i // 2}", "x") for i in range(300)]
    pred = tmp_path / "pred"
    write(pred / "test_pred_cls.json", recs)
    res = evaluate_splits(pred, metrics_dir=tmp_path / "metrics", plots_dir=tmp_path / "plots",
                          splits=["test"], tasks=["cls"])
    plots = tmp_path / "plots" / "test"
    with Image.open(plots / "cls_confusion.png") as im:
        assert max(im.size) <= 100 * (2.5 + 0.45 * (MAX_PLOT_LABELS + 3))  # 64 labels + (rest), (other), (none)
    actual = {row[0] for row in _rows(plots / "cls_confusion.csv")[1:]}
    assert len(actual) == MAX_PLOT_LABELS + 1 and REST in actual and "\\ud800polyp" not in actual
    assert json.loads((plots / "scores.json").read_text())["cls"]["by_category"]["\ud800polyp"]["n"] == 1
    assert res.metrics["test"]["cls"]["n"] == 303


def test_each_split_is_labelled_from_what_was_trained_on(files, tmp_path):
    """seen / held-out comes from the training output's train_config.json, not from a comment."""
    from colonpipe.evaluate.suite import trained_splits

    pred, cap = _layout(files, tmp_path)
    cfg = tmp_path / "train_config.json"
    kw = dict(splits=["val", "test"], tasks=["cls", "rec"], source_dir=files["src_dir"])
    for trained, want in (({"train": ["t.json"], "val": ["v.json"]}, "seen"), ({"train": ["t.json"]}, "held-out")):
        cfg.write_text(json.dumps({"train_splits": trained}))
        res = evaluate_splits(pred, metrics_dir=tmp_path / want, plots_dir=tmp_path / f"p-{want}",
                              seen_splits=trained_splits(cfg), **kw)
        val = json.loads((tmp_path / want / "val.json").read_text())
        assert val["split_role"] == want and res.metrics["test"]["split_role"] == "held-out"
        assert "val.split_role" not in res.flat()  # a label, not a metric
        assert json.loads((tmp_path / f"p-{want}" / "val" / "scores.json").read_text())["split_role"] == want
    cfg.write_text(json.dumps({"stage": "finetune"}))  # written before train_splits existed: train only
    assert trained_splits(cfg) == {"train"}
