"""Score one prediction file (ours or the original ColonGPT code's) for one task.

Reading and file-level checks live in :mod:`colonpipe.evaluate.records` (what counts as a
missing prediction, an invalid record or a file error); the metric rules in
:mod:`colonpipe.evaluate.metrics`. ``scoring`` picks the CLS/REG rule: ``"reference"``
(default, the reference evaluator's exact match) or ``"lenient"`` (also strips outer
whitespace). Every score dict names the rule it used in ``"scoring"``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from colonpipe.coloninst import TASKS, UNKNOWN_DATASET as UNKNOWN, format_box, question_text, read_records
from colonpipe.data.templates import match_template
from colonpipe.evaluate import metrics as M
from colonpipe.evaluate.records import Row, check_source, duplicate_count, to_rows

logger = logging.getLogger(__name__)


def rec_category(question: str) -> str:
    """Category named in a REC question (one of the 5 templates), or ``(unknown)``."""
    found = match_template("rec", question_text(question).strip())
    return found[1]["cat"].strip().lower() if found else UNKNOWN


def _accuracy_block(rows: list[Row], baseline_label: str | None, scoring: str) -> dict:
    preds = [M.normalize_prediction(r.prediction, scoring) if r.prediction is not None else None for r in rows]
    gts = [M.normalize_answer(r.answer, scoring) for r in rows]
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
        # the constant predictor is judged by the same rule as the model
        out["baseline_accuracy"] = M.mean([float(M.exact_match(baseline_label, r.answer, scoring)) for r in rows])
    return out


def _rec_block(rows: list[Row], baseline_box: M.Box | None) -> dict:
    ious = [M.rec_iou(r.prediction or "", r.answer) for r in rows]
    cats = [rec_category(r.question) for r in rows]
    out = {
        "avg_iou": M.mean(ious),
        "acc_iou_0.5": M.mean([float(M.iou_hit(v)) for v in ious]),
        "n_unparsed_prediction": sum(M.box_numbers(r.prediction or "") is None for r in rows),
        "n_unparsed_answer": sum(M.box_numbers(r.answer) is None for r in rows),
        "by_category": M.group_means(ious, cats),
        "by_dataset": M.group_means(ious, [r.dataset for r in rows]),
        "records": [
            {"index": r.index, "id": r.id, "dataset": r.dataset, "category": c, "iou": v}
            for r, c, v in zip(rows, cats, ious)
        ],
    }
    if baseline_box is not None:
        base = [M.rec_iou(format_box(baseline_box), r.answer) for r in rows]
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


def train_baselines(train_path: Path, *, scoring: str = "reference") -> Baselines:
    """Fit :class:`Baselines` on a stage-2 training file (CLS+REG+REC records).

    REC records are those whose answer holds a ``<n>`` box number (their mean box uses the
    answers that parse; too long numbers or not 4 of them are left out), REG those whose
    question holds one, CLS the rest. Labels are normalised as ``scoring`` normalises answers.
    """
    rows, invalid = to_rows(read_records(train_path), source=str(train_path))
    cls, reg, boxes, unparsed = [], [], [], 0
    for r in rows:
        if M.BOX_NUMBER.search(r.answer):
            box = M.box_numbers(r.answer)
            boxes += [box] if box is not None else []
            unparsed += box is None
        elif M.BOX_NUMBER.search(r.question):
            reg.append(r.answer)
        else:
            cls.append(r.answer)
    logger.info("%s: baselines from %d CLS, %d REG, %d REC records (%d invalid, %d unparsable boxes)",
                train_path, len(cls), len(reg), len(boxes), invalid, unparsed)
    return Baselines(M.majority_label(cls, scoring), M.majority_label(reg, scoring), M.mean_box(boxes))


def score_rows(
    rows: list[Row], task: str, *, baselines: Baselines | None = None, scoring: str = "reference"
) -> dict:
    """Score parsed rows for ``task``: headline numbers, breakdowns and per-record results."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    M.check_scoring(scoring)
    b = baselines or Baselines()
    if task == "cls":
        block = _accuracy_block(rows, b.cls_label, scoring)
    elif task == "reg":
        block = _accuracy_block(rows, b.reg_label, scoring)
    elif task == "rec":
        block = _rec_block(rows, b.rec_box)
    else:
        block = _cap_block(rows)
    missing = sum(r.prediction is None for r in rows)
    errors = sum(r.error is not None for r in rows)
    return {"task": task, "scoring": scoring, "n": len(rows), "n_missing_prediction": missing,
            "n_inference_error": errors, "n_duplicate_record": duplicate_count(rows), **block}


def score_predictions(
    pred_path: Path,
    task: str,
    *,
    source_path: Path | None = None,
    train_rec_path: Path | None = None,
    baselines: Baselines | None = None,
    scoring: str = "reference",
) -> dict:
    """Score one prediction file for ``task`` (``cls``, ``reg``, ``rec`` or ``cap``).

    ``source_path``: the instruction file the predictions were made from
    (:func:`~colonpipe.evaluate.records.check_source`). ``train_rec_path``: the stage-2
    training JSON (CLS+REG+REC) used to fit the majority-class and mean-box baselines (or
    pass already fitted ``baselines``). ``scoring``: ``"reference"`` or ``"lenient"``.
    Returns :func:`score_rows`'s dict plus ``file`` and ``n_invalid``; raises
    :class:`~colonpipe.coloninst.ColonINSTError` on file-level problems.
    """
    pred_path = Path(pred_path)
    records = read_records(pred_path)
    if source_path is not None:
        check_source(pred_path, records, Path(source_path))
    rows, invalid = to_rows(records, source=str(pred_path))
    if baselines is None and train_rec_path is not None:
        baselines = train_baselines(Path(train_rec_path), scoring=scoring)
    result = score_rows(rows, task, baselines=baselines, scoring=scoring)
    if result["n_missing_prediction"]:
        logger.warning("%s: %d record(s) have no prediction turn; scored as wrong",
                       pred_path, result["n_missing_prediction"])
    if result["n_duplicate_record"]:
        logger.warning("%s: %d record(s) repeat an earlier record (same id, question, answer); each scored, "
                       "as the reference does", pred_path, result["n_duplicate_record"])
    return {"file": str(pred_path), "n_invalid": invalid, **result}


_COUNTS = ("n", "n_missing_prediction", "n_inference_error", "n_invalid", "n_duplicate_record")
_HEADLINE = {
    "cls": ("accuracy", "baseline_accuracy"),
    "reg": ("accuracy", "baseline_accuracy"),
    "rec": ("avg_iou", "acc_iou_0.5", "baseline_avg_iou", "baseline_acc_iou_0.5", "n_unparsed_prediction"),
    "cap": ("bleu4", "rouge_l", "cider"),
}


def headline(result: dict) -> dict:
    """The shallow ``{metric: value}`` view of a score dict (for ``dvc metrics`` and MLflow).

    Full precision; ``"scoring"`` names the rule (MLflow and the registry read numbers only).
    """
    keys = _HEADLINE[result["task"]] + _COUNTS
    return {"scoring": result["scoring"], **{k: result[k] for k in keys if k in result}}
