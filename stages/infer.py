"""Stage ``infer@<task>``: a trained model -> {split}_pred_{task}.json for every split.

    python stages/infer.py --task cls --model-dir models/finetune/final \\
        --data-dir data/coloninst/Json-file --image-root data/interim/image_roots.json \\
        --out-dir models/finetune/pred

Sharded over GPUs (or CPU processes) and resumable: journals live in
``{out-dir}/.shards-{task}/`` (DVC ``persist``), so a killed run picks up where it stopped.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from colonpipe.data.images import ImageResolver
from colonpipe.infer.inputs import image_roots
from colonpipe.infer.task import infer_metrics, infer_task, task_paths
from colonpipe.params import TASKS, flatten
from colonpipe.stage_cli import run_stage
from colonpipe.tracking import stage_run
from colonpipe.tracking.logger import log_files

logger = logging.getLogger("stages.infer")


def add_arguments(parser) -> None:
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--model-dir", type=Path, required=True, help="trained model folder (…/final)")
    parser.add_argument("--data-dir", type=Path, required=True, help="Json-file folder with {split}/ inside")
    parser.add_argument("--image-root", type=Path, required=True,
                        help="image_roots.json from ingest, or the Positive-images folder")
    parser.add_argument("--out-dir", type=Path, required=True, help="receives {split}_pred_{task}.json")


def run(args, params) -> None:
    paths = [task_paths(args.task, s, data_dir=args.data_dir, out_dir=args.out_dir) for s in params.splits]
    roots = image_roots(ImageResolver.from_path(args.image_root))  # the images, wherever ingest found them
    inputs = [args.model_dir, *(p[0] for p in paths), args.image_root, *roots.values()]
    with stage_run(f"infer@{args.task}", params=flatten(params, "infer"), inputs=inputs) as log:
        start = time.time()
        summaries = infer_task(args.task, model_dir=args.model_dir, data_dir=args.data_dir,
                               image_root=args.image_root, out_dir=args.out_dir, params=params)
        log.log_metrics({**infer_metrics(args.task, summaries, splits=params.splits,
                                         journal_dirs=[p[2] for p in paths], since=start),
                         f"{args.task}.wall_seconds": time.time() - start})
        log_files(log, [s.path for s in summaries], "predictions")
    for s in summaries:
        logger.info("%s: %d records, %d errors", s.path, s.records, s.errors)


def main(argv: list[str] | None = None) -> int:
    return run_stage("infer", __doc__, add_arguments, run, argv, name="infer",
                     errors=(FileNotFoundError, ValueError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
