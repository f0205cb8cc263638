"""Evaluate every split and task of a prediction folder: DVC metrics, details and plots.

For each split in ``splits`` and each task whose prediction file exists
(``{pred_dir}/{split}_pred_{task}.json``; CAP from ``cap_pred_dir`` when given, as the
reference scores captions with the stage-1 model), this scores the file against its source
``{source_dir}/{split}/ColonINST-{split}-{task}.json`` (count check) and writes:

- ``{metrics_dir}/{split}.json``: ``{task: headline metrics}``, shallow for ``dvc metrics``,
  at full precision (anyone can check parity with the reference evaluator), each block
  naming its ``"scoring"`` rule, and ``"split_role": "seen" | "held-out"`` read from what the
  stage-2 model was actually trained on (:func:`split_metrics`, :func:`trained_splits`);
- ``{plots_dir}/{split}/scores.json``: full results with breakdowns (no per-record rows);
- ``{plots_dir}/{split}/*.png|csv``: see :mod:`colonpipe.evaluate.report`.

A missing prediction file is skipped with a warning; a file-level problem raises.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from colonpipe.coloninst import ColonINSTError, instruction_path, prediction_file
from colonpipe.evaluate.metrics import check_scoring
from colonpipe.evaluate.report import write_json, write_plots
from colonpipe.evaluate.score import (
    Baselines,
    headline,
    score_predictions,
    train_baselines,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    """What one evaluation wrote; ``metrics`` is ``{split: {task: {metric: value}}}``."""

    metrics: dict[str, dict[str, dict]]
    metric_files: list[Path]
    artifacts: list[Path]  # plots, plot data and scores.json files, for MLflow

    def flat(self) -> dict[str, float]:
        """Numeric metrics as ``{"test.cls.accuracy": 0.9, ...}`` (MLflow / registry names)."""
        return {
            f"{split}.{task}.{name}": float(value)
            for split, tasks in self.metrics.items()
            for task, block in tasks.items()
            if isinstance(block, dict)  # a split-level label (not a task block) is no metric
            for name, value in block.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }


def _for_log(block: dict) -> dict:
    """Rounded for a readable log line only; files keep full precision."""
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in block.items()}


SPLIT_ROLE = "split_role"  # the label key in metrics/{split}.json: "seen" or "held-out"


def trained_splits(train_config: Path) -> set[str]:
    """The ColonINST splits a training output was trained on, read from its ``train_config.json``
    (``train_splits``; an output written before that field existed trained on ``train`` only)."""
    try:
        cfg = json.loads(Path(train_config).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ColonINSTError(f"{train_config}: cannot read the training config ({exc})") from None
    return set(cfg.get("train_splits") or {"train": None})


def split_role(split: str, seen: set[str] | None) -> str | None:
    """``"seen"`` if the model trained on ``split``, ``"held-out"`` if not, None when unknown."""
    return None if seen is None else ("seen" if split in seen else "held-out")


def split_metrics(results: dict[str, dict], *, role: str | None = None) -> dict[str, dict]:
    """The ``{task: headline}`` content of one ``metrics/{split}.json`` (one place to add labels),
    with ``"split_role"`` first when the training output says what was trained on."""
    label = {SPLIT_ROLE: role} if role else {}
    return label | {task: headline(r) for task, r in results.items()}


def evaluate_split(
    split: str,
    pred_dir: Path,
    *,
    tasks: list[str],
    cap_pred_dir: Path | None = None,
    source_dir: Path | None = None,
    baselines: Baselines | None = None,
    scoring: str = "reference",
) -> dict[str, dict]:
    """``{task: full score dict}`` for the tasks of ``split`` that have a prediction file."""
    results = {}
    for task in tasks:
        folder = cap_pred_dir if task == "cap" and cap_pred_dir is not None else pred_dir
        pred = Path(folder) / prediction_file(split, task)
        if not pred.exists():
            logger.warning("%s: no prediction file; %s %s not evaluated", pred, split, task)
            continue
        source = instruction_path(source_dir, split, task) if source_dir else None
        if source is not None and not source.exists():
            logger.warning("%s: source file missing; record count not checked", source)
            source = None
        results[task] = score_predictions(pred, task, source_path=source, baselines=baselines, scoring=scoring)
        logger.info("%s %s: %s", split, task, _for_log(headline(results[task])))
    return results


def evaluate_splits(
    pred_dir: Path,
    *,
    metrics_dir: Path,
    plots_dir: Path,
    splits: list[str],
    tasks: list[str],
    cap_pred_dir: Path | None = None,
    source_dir: Path | None = None,
    train_json: Path | None = None,
    iou_bins: int = 20,
    scoring: str = "reference",
    seen_splits: set[str] | None = None,
) -> EvaluationResult:
    """Score every (split, task) present, write metrics, details and plots (module docstring).

    ``scoring``: the CLS/REG rule, ``"reference"`` (default) or ``"lenient"``. ``seen_splits``
    (from :func:`trained_splits` of the stage-2 output) labels each split seen or held-out.
    """
    check_scoring(scoring)  # before any file is read
    baselines = train_baselines(Path(train_json), scoring=scoring) if train_json is not None else None
    metrics, metric_files, artifacts = {}, [], []
    for split in splits:
        results = evaluate_split(split, Path(pred_dir), tasks=tasks, cap_pred_dir=cap_pred_dir,
                                 source_dir=source_dir, baselines=baselines, scoring=scoring)
        if not results:
            logger.warning("split %s: no prediction files found; writing empty metrics", split)
        role = split_role(split, seen_splits)
        if role == "seen":
            logger.warning("split %s was trained on: its metrics are not a held-out estimate", split)
        metrics[split] = split_metrics(results, role=role)
        metric_files.append(write_json(Path(metrics_dir) / f"{split}.json", metrics[split]))
        split_dir = Path(plots_dir) / split
        details = {t: {k: v for k, v in r.items() if k != "records"} for t, r in results.items()}
        artifacts.append(write_json(split_dir / "scores.json", {SPLIT_ROLE: role, **details} if role else details))
        artifacts += write_plots(results, split_dir, label=split, iou_bins=iou_bins)
    return EvaluationResult(metrics, metric_files, artifacts)
