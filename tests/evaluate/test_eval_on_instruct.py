"""The evaluation suite on files produced by the real `instruct` code (oracle and trivial predictors)."""

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from colonpipe.data.instruct import build_instruct
from colonpipe.data.manifest import SCHEMA
from colonpipe.evaluate.suite import evaluate_splits
from colonpipe.params import InstructParams

CATS = ["polyp", "ulcer", "erosion", "blood fresh", "dyed lifted polyp"]


def _manifest(path: Path, n: int = 80) -> Path:
    rows = []
    for i in range(n):
        cat = CATS[i % len(CATS)]
        x = 7 * i % 300
        rows.append({"dataset": f"Src{i % 3}", "split": None, "image": f"Src{i % 3}/{cat}/{i:04d}.png",
                     "width": 640, "height": 480, "category": cat, "box": [x, 20, x + 60, 120],
                     "caption": f"A {cat} is seen near the fold in frame {i}."})
    cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA}
    pq.write_table(pa.table(cols, schema=SCHEMA), path)
    return path


def _predict(src: Path, dst: Path, answer) -> None:
    """Reference-format predictions: every source record plus a prediction turn from ``answer``."""
    for f in src.glob("*/ColonINST-*-*.json"):
        split, task = f.stem.split("-")[1:]
        if split == "train":
            continue
        recs = json.loads(f.read_text())
        for r in recs:
            r["conversations"].append({"from": "prediction", "value": answer(task, r["conversations"][1]["value"])})
        dst.mkdir(parents=True, exist_ok=True)
        (dst / f"{split}_pred_{task}.json").write_text(json.dumps(recs))


def _run(tmp_path, name, answer, scoring="reference"):
    src = tmp_path / "data" / "Json-file"
    _predict(src, tmp_path / name, answer)
    return evaluate_splits(tmp_path / name, metrics_dir=tmp_path / name / "metrics", plots_dir=tmp_path / name / "plots",
                           splits=["val", "test"], tasks=["cls", "reg", "rec", "cap"], source_dir=src,
                           train_json=src / "train" / "ColonINST-train-3tasks.json", scoring=scoring)


def test_oracle_scores_perfect_and_beats_baselines(tmp_path):
    build_instruct(_manifest(tmp_path / "m.parquet"), tmp_path / "data", InstructParams(seed=0))
    res = _run(tmp_path, "oracle", lambda task, gt: gt + "<|endoftext|>")
    test = res.metrics["test"]
    assert test["cls"]["accuracy"] == 1.0 and test["reg"]["accuracy"] == 1.0
    assert test["rec"]["avg_iou"] == 1.0 and test["rec"]["acc_iou_0.5"] == 1.0
    assert test["rec"]["baseline_avg_iou"] < 1.0
    assert test["cls"]["baseline_accuracy"] < 1.0 and test["cap"]["bleu4"] > 0.99
    details = json.loads((tmp_path / "oracle" / "plots" / "test" / "scores.json").read_text())
    assert set(details["rec"]["by_category"]) <= set(CATS)  # every REC question parsed to its category
    assert set(details["cls"]["by_dataset"]) <= {"Src0", "Src1", "Src2"}


def test_constant_predictor_scores_its_baseline(tmp_path):
    build_instruct(_manifest(tmp_path / "m.parquet"), tmp_path / "data", InstructParams(seed=0))
    oracle = _run(tmp_path, "oracle", lambda task, gt: gt).metrics["test"]
    details = json.loads((tmp_path / "oracle" / "plots" / "test" / "scores.json").read_text())
    box = "{" + "".join(f"<{v}>" for v in details["rec"]["baseline_box"]) + "}"
    label = details["cls"]["baseline_label"]
    const = _run(tmp_path, "const", lambda task, gt: box if task == "rec" else label).metrics["test"]
    assert const["rec"]["avg_iou"] == const["rec"]["baseline_avg_iou"]
    assert const["cls"]["accuracy"] == const["cls"]["baseline_accuracy"]


def test_pipeline_files_score_the_same_under_both_rules(tmp_path):
    """Our answers carry no outer whitespace and our inference strips every output (as the
    reference inference does: ``ColonGPTProcessor.decode_generated``), so the reference rule
    leaves the pipeline's numbers where the stripped rule put them."""
    build_instruct(_manifest(tmp_path / "m.parquet"), tmp_path / "data", InstructParams(seed=0))
    for f in (tmp_path / "data" / "Json-file").glob("*/ColonINST-*-*.json"):
        answers = [r["conversations"][1]["value"] for r in json.loads(f.read_text())]
        assert all(a == a.strip() for a in answers), f
    ref = _run(tmp_path, "ref", _half_right()).flat()
    lenient = _run(tmp_path, "lenient", _half_right(), scoring="lenient").flat()
    assert ref == lenient and 0 < ref["test.cls.accuracy"] < 1 and 0 < ref["test.rec.avg_iou"] < 1


def _half_right():
    """A predictor right on every other record; its outputs are stripped, like ours."""
    n = itertools.count()
    return lambda task, gt: gt if next(n) % 2 else ("ulcer" if gt == "polyp" else "polyp")
