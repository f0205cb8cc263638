"""Score one prediction file (ours or the original ColonGPT code's) for one task.

A prediction file is a JSON list of instruction records, each with a third turn
``{"from": "prediction", "value": ...}`` appended to ``conversations``; the answer is the
``"gpt"`` turn. Record-level problems are skipped-and-reported, never fatal:

- a record whose prediction turn is missing or not a string is scored as wrong (IoU 0,
  empty caption) and counted in ``n_missing_prediction``;
- a record our inference marked with a top-level ``"error"`` (prediction ``""``) is scored
  as wrong and counted in ``n_inference_error``;
- a record without a usable ``gpt`` answer cannot be scored: it is left out of every
  denominator and counted in ``n_invalid``.

File-level problems raise :class:`PredictionFileError` naming the file: unreadable or
non-list JSON, and a record count that differs from the source instruction file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from colonpipe.data.templates import HUMAN_PREFIX, match_template
from colonpipe.evaluate import metrics as M
from colonpipe.params import TASKS as PARAM_TASKS

logger = logging.getLogger(__name__)

TASKS = PARAM_TASKS  # ("cls", "reg", "rec", "cap")
UNKNOWN = "(unknown)"


class PredictionFileError(ValueError):
    """A prediction, source or training file that cannot be scored; the message names it."""


@dataclass(frozen=True)
class Row:
    """One scorable record: position in the file, ids, question, answer, prediction."""

    index: int
    id: str
    dataset: str
    question: str
    answer: str
    prediction: str | None  # None: missing/malformed prediction turn
    error: str | None = None  # inference error our merge recorded (its prediction is "")


def load_records(path: Path) -> list:
    """The JSON list in ``path``; ``PredictionFileError`` naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise PredictionFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PredictionFileError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(data, list):
        raise PredictionFileError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _turn(record: dict, role: str) -> str | None:
    """Value of the last turn from ``role`` when it is a string, else None."""
    turns = record.get("conversations")
    if not isinstance(turns, list):
        return None
    found = [t.get("value") for t in turns if isinstance(t, dict) and t.get("from") == role]
    return found[-1] if found and isinstance(found[-1], str) else None


def dataset_of(record_id: str) -> str:
    """Source dataset of a record: first path component of its id."""
    return record_id.split("/", 1)[0] if record_id else UNKNOWN


def to_rows(records: list, *, source: str = "<records>") -> tuple[list[Row], int]:
    """Scorable rows and the count of records without a usable answer (logged, skipped)."""
    rows, invalid = [], 0
    for i, rec in enumerate(records):
        answer = _turn(rec, "gpt") if isinstance(rec, dict) else None
        if answer is None:
            invalid += 1
            logger.warning("%s: record %d has no 'gpt' answer turn; skipped", source, i)
            continue
        rid = rec.get("id") if isinstance(rec.get("id"), str) else ""
        question = _turn(rec, "human") or ""
        error = str(rec["error"]) if rec.get("error") is not None else None
        rows.append(Row(i, rid, dataset_of(rid), question, answer, _turn(rec, "prediction"), error))
    return rows, invalid


def rec_category(question: str) -> str:
    """Category named in a REC question (one of the 5 templates), or ``(unknown)``."""
    text = question[len(HUMAN_PREFIX):] if question.startswith(HUMAN_PREFIX) else question
    found = match_template("rec", text.strip())
    return found[1]["cat"].strip().lower() if found else UNKNOWN


def _accuracy_block(rows: list[Row], baseline_label: str | None) -> dict:
    preds = [M.normalize_label(r.prediction) if r.prediction is not None else None for r in rows]
    gts = [M.normalize_label(r.answer) for r in rows]
    correct = [float(p == g) for p, g in zip(preds, gts)]
    out = {
        "accuracy": M.mean(correct),
        "by_category": M.group_means(correct, gts),
        "by_dataset": M.group_means(correct, [r.dataset for r in rows]),
        "records": [
            {"index": r.index, "id": r.id, "dataset": r.dataset, "actual": g, "predicted": p, "correct": bool(c)}
            for r, p, g, c in zip(rows, preds, gts, correct)
        ],
    }
    if baseline_label is not None:
        out["baseline_label"] = baseline_label
        out["baseline_accuracy"] = M.mean([float(g == baseline_label) for g in gts])
    return out


def _rec_block(rows: list[Row], baseline_box: M.Box | None) -> dict:
    ious = [M.rec_iou(r.prediction or "", r.answer) for r in rows]
    cats = [rec_category(r.question) for r in rows]
    out = {
        "avg_iou": M.mean(ious),
        "acc_iou_0.5": M.mean([float(M.iou_hit(v)) for v in ious]),
        "n_unparsed_prediction": sum(M.parse_box(r.prediction or "") is None for r in rows),
        "n_unparsed_answer": sum(M.parse_box(r.answer) is None for r in rows),
        "by_category": M.group_means(ious, cats),
        "by_dataset": M.group_means(ious, [r.dataset for r in rows]),
        "records": [
            {"index": r.index, "id": r.id, "dataset": r.dataset, "category": c, "iou": v}
            for r, c, v in zip(rows, cats, ious)
        ],
    }
    if baseline_box is not None:
        base = [M.rec_iou(M.format_box(baseline_box), r.answer) for r in rows]
        out["baseline_box"] = list(baseline_box)
        out["baseline_avg_iou"] = M.mean(base)
        out["baseline_acc_iou_0.5"] = M.mean([float(M.iou_hit(v)) for v in base])
    return out


def _cap_block(rows: list[Row]) -> dict:
    scores = M.caption_scores([r.prediction or "" for r in rows], [r.answer for r in rows])
    each = scores.pop("per_record")
    datasets = [r.dataset for r in rows]
    rouge = M.group_means(each["rouge_l"], datasets)
    cider = M.group_means(each["cider"], datasets)
    by_dataset = {k: {"n": g["n"], "rouge_l": g["mean"], "cider": cider[k]["mean"]} for k, g in rouge.items()}
    records = [
        {"index": r.index, "id": r.id, "dataset": r.dataset, "bleu4": b, "rouge_l": rl, "cider": c}
        for r, b, rl, c in zip(rows, each["bleu4"], each["rouge_l"], each["cider"])
    ]
    return {**scores, "by_category": {}, "by_dataset": by_dataset, "records": records}


@dataclass(frozen=True)
class Baselines:
    """Trivial predictors fitted on the training file, scored next to the model."""

    cls_label: str | None = None  # majority CLS answer
    reg_label: str | None = None  # majority REG answer
    rec_box: M.Box | None = None  # per-coordinate mean REC box, rounded half up


def train_baselines(train_path: Path) -> Baselines:
    """Fit :class:`Baselines` on a stage-2 training file (CLS+REG+REC records).

    REC records are those whose answer parses as a box, REG those whose question holds a
    box, CLS the rest.
    """
    rows, invalid = to_rows(load_records(train_path), source=str(train_path))
    cls, reg, boxes = [], [], []
    for r in rows:
        box = M.parse_box(r.answer)
        if box is not None:
            boxes.append(box)
        elif M.parse_box(r.question) is not None:
            reg.append(r.answer)
        else:
            cls.append(r.answer)
    logger.info("%s: baselines from %d CLS, %d REG, %d REC records (%d invalid)",
                train_path, len(cls), len(reg), len(boxes), invalid)
    return Baselines(M.majority_label(cls), M.majority_label(reg), M.mean_box(boxes))


def score_rows(rows: list[Row], task: str, *, baselines: Baselines | None = None) -> dict:
    """Score parsed rows for ``task``: headline numbers, breakdowns and per-record results."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    b = baselines or Baselines()
    if task == "cls":
        block = _accuracy_block(rows, b.cls_label)
    elif task == "reg":
        block = _accuracy_block(rows, b.reg_label)
    elif task == "rec":
        block = _rec_block(rows, b.rec_box)
    else:
        block = _cap_block(rows)
    missing = sum(r.prediction is None for r in rows)
    errors = sum(r.error is not None for r in rows)
    return {"task": task, "n": len(rows), "n_missing_prediction": missing, "n_inference_error": errors, **block}


def score_predictions(
    pred_path: Path,
    task: str,
    *,
    source_path: Path | None = None,
    train_rec_path: Path | None = None,
    baselines: Baselines | None = None,
) -> dict:
    """Score one prediction file for ``task`` (``cls``, ``reg``, ``rec`` or ``cap``).

    ``source_path``: the instruction file the predictions were made from; its record count
    must match. ``train_rec_path``: the stage-2 training JSON (CLS+REG+REC) used to fit
    the majority-class and mean-box baselines (or pass already fitted ``baselines``). Returns :func:`score_rows`'s dict plus
    ``file`` and ``n_invalid``; raises :class:`PredictionFileError` on file-level problems.
    """
    pred_path = Path(pred_path)
    records = load_records(pred_path)
    if source_path is not None:
        n_source = len(load_records(Path(source_path)))
        if n_source != len(records):
            raise PredictionFileError(
                f"{pred_path}: {len(records)} records but its source {source_path} has {n_source}"
            )
    rows, invalid = to_rows(records, source=str(pred_path))
    if baselines is None and train_rec_path is not None:
        baselines = train_baselines(Path(train_rec_path))
    result = score_rows(rows, task, baselines=baselines)
    if result["n_missing_prediction"]:
        logger.warning("%s: %d record(s) have no prediction turn; scored as wrong",
                       pred_path, result["n_missing_prediction"])
    return {"file": str(pred_path), "n_invalid": invalid, **result}


_HEADLINE = {
    "cls": ("accuracy", "baseline_accuracy"),
    "reg": ("accuracy", "baseline_accuracy"),
    "rec": ("avg_iou", "acc_iou_0.5", "baseline_avg_iou", "baseline_acc_iou_0.5", "n_unparsed_prediction"),
    "cap": ("bleu4", "rouge_l", "cider"),
}


def headline(result: dict) -> dict:
    """The shallow ``{metric: value}`` view of a score dict (for ``dvc metrics`` and MLflow)."""
    keys = _HEADLINE[result["task"]] + ("n", "n_missing_prediction", "n_inference_error", "n_invalid")
    return {k: result[k] for k in keys if k in result}


def infer_task(path: Path) -> str | None:
    """Task from a file name such as ``test_pred_rec.json`` or ``ColonINST-test-rec.json``."""
    stem = Path(path).stem.lower()
    for task in TASKS:
        if stem.endswith((f"_{task}", f"-{task}")):
            return task
    return None


def _split_of(path: Path) -> str | None:
    name = Path(path).name.lower()
    return next((s for s in ("train", "val", "test") if name.startswith(s + "_")), None)


def _source_for(path: Path, task: str, args: argparse.Namespace) -> Path | None:
    if args.source is not None:
        return args.source
    if args.source_dir is None:
        return None
    split = _split_of(path)
    if split is None:
        raise PredictionFileError(f"{path}: cannot tell the split from the name (want {{split}}_pred_{{task}}.json)")
    return args.source_dir / split / f"ColonINST-{split}-{task}.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="colonpipe score", description="Score ColonINST prediction files.")
    p.add_argument("files", nargs="+", type=Path, help="prediction JSON files (reference format)")
    p.add_argument("--task", choices=TASKS, help="task of every file (default: from each file name)")
    p.add_argument("--source", type=Path, help="source instruction JSON to check the count (one file only)")
    p.add_argument("--source-dir", type=Path, help="Json-file dir: {split}/ColonINST-{split}-{task}.json")
    p.add_argument("--train", type=Path, help="stage-2 train JSON: fits the majority/mean-box baselines")
    p.add_argument("--out", type=Path, help="write all results (with breakdowns) to this JSON file")
    p.add_argument("--records", action="store_true", help="keep per-record results in --out")
    return p


def main(argv: list[str] | None = None) -> int:
    """``colonpipe score``: print a table of headline metrics; exit 1 on a file-level error."""
    from colonpipe.evaluate.report import format_table, write_json

    args = _parser().parse_args(argv)
    if args.source is not None and len(args.files) != 1:
        raise SystemExit("colonpipe score: --source needs exactly one prediction file")
    results = {}
    try:
        baselines = train_baselines(args.train) if args.train is not None else None
        for path in args.files:
            task = args.task or infer_task(path)
            if task is None:
                raise PredictionFileError(f"{path}: cannot tell the task from the name; pass --task")
            source = _source_for(path, task, args)
            results[str(path)] = score_predictions(path, task, source_path=source, baselines=baselines)
    except PredictionFileError as exc:
        print(f"colonpipe score: error: {exc}", file=sys.stderr)
        return 1
    print(format_table(results))
    if args.out is not None:
        keep = {k: (v if args.records else {x: y for x, y in v.items() if x != "records"}) for k, v in results.items()}
        write_json(args.out, keep)
    return 0
