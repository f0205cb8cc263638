"""Stage ``evaluate``: prediction files -> metrics/{split}.json (DVC metrics) + plots/{split}/.

    python stages/evaluate.py --pred-dir models/finetune/pred --cap-pred-dir models/align/pred \\
        --train-json data/coloninst/Json-file/train/ColonINST-train-3tasks.json \\
        --source-dir data/coloninst/Json-file --metrics-dir metrics --plots-dir plots \\
        --train-config models/finetune/final/train_config.json
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from colonpipe.coloninst import ColonINSTError, prediction_file
from colonpipe.evaluate.suite import evaluate_splits, trained_splits
from colonpipe.params import flatten
from colonpipe.stage_cli import run_stage
from colonpipe.tracking import stage_run
from colonpipe.tracking.logger import log_files

logger = logging.getLogger("stages.evaluate")


def add_arguments(parser) -> None:
    parser.add_argument("--pred-dir", type=Path, required=True, help="{split}_pred_{task}.json files")
    parser.add_argument("--cap-pred-dir", type=Path, help="CAP predictions (default: --pred-dir)")
    parser.add_argument("--train-json", type=Path, help="stage-2 train JSON for the baselines")
    parser.add_argument("--source-dir", type=Path, help="Json-file folder; record counts are checked")
    parser.add_argument("--train-config", type=Path,
                        help="the stage-2 output's train_config.json: labels each split seen or held-out")
    parser.add_argument("--metrics-dir", type=Path, required=True)
    parser.add_argument("--plots-dir", type=Path, required=True)


def run(args, params) -> None:
    cap_dir = args.cap_pred_dir or args.pred_dir
    preds = [(cap_dir if t == "cap" else args.pred_dir) / prediction_file(s, t) for s in params.splits for t in params.tasks]
    inputs = [p for p in (*preds, args.train_json, args.source_dir) if p and p.exists()]
    with stage_run("evaluate", params=flatten(params, "evaluate"), inputs=inputs) as log:
        result = evaluate_splits(
            args.pred_dir, metrics_dir=args.metrics_dir, plots_dir=args.plots_dir,
            splits=params.splits, tasks=params.tasks, cap_pred_dir=args.cap_pred_dir,
            source_dir=args.source_dir, train_json=args.train_json, iou_bins=params.iou_bins,
            scoring=params.scoring,
            seen_splits=trained_splits(args.train_config) if args.train_config else None,
        )
        log.log_metrics(result.flat())
        log_files(log, result.metric_files, "metrics")
        log_files(log, result.artifacts, "plots", root=args.plots_dir)
    logger.info("scoring: %s (evaluate.scoring in %s)", params.scoring, args.params)
    for split, tasks in result.metrics.items():
        for task, block in tasks.items():
            logger.info("%-4s %-3s %s", split, task, block)
    logger.info("wrote %d metrics files and %d plot files", len(result.metric_files), len(result.artifacts))


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate", __doc__, add_arguments, run, argv, errors=(ColonINSTError,))


if __name__ == "__main__":
    sys.exit(main())
