"""Stage ``infer@<task>``: a trained model -> {split}_pred_{task}.json for every split.

    python stages/infer.py --task cls --model-dir models/finetune/final \\
        --data-dir data/coloninst/Json-file --image-root data/interim/image_roots.json \\
        --out-dir models/finetune/pred

Sharded over GPUs (or CPU processes) and resumable: journals live in
``{out-dir}/.shards-{task}/`` (DVC ``persist``), so a killed run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import time
import logging
import sys
from pathlib import Path

from colonpipe.infer.task import infer_task, task_paths
from colonpipe.params import TASKS, ParamsError, flatten, load_section
from colonpipe.tracking import stage_run
from colonpipe.tracking.summaries import infer_metrics, log_files

logger = logging.getLogger("stages.infer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--model-dir", type=Path, required=True, help="trained model folder (…/final)")
    parser.add_argument("--data-dir", type=Path, required=True, help="Json-file folder with {split}/ inside")
    parser.add_argument("--image-root", type=Path, required=True,
                        help="image_roots.json from ingest, or the Positive-images folder")
    parser.add_argument("--out-dir", type=Path, required=True, help="receives {split}_pred_{task}.json")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section("infer", args.params)
        paths = [task_paths(args.task, s, data_dir=args.data_dir, out_dir=args.out_dir) for s in params.splits]
        inputs = [args.model_dir, *(p[0] for p in paths), args.image_root, "data/raw"]
        with stage_run(f"infer@{args.task}", params=flatten(params, "infer"), inputs=inputs) as log:
            start = time.time()
            summaries = infer_task(args.task, model_dir=args.model_dir, data_dir=args.data_dir,
                                   image_root=args.image_root, out_dir=args.out_dir, params=params)
            log.log_metrics({**infer_metrics(args.task, summaries, splits=params.splits,
                                             journal_dirs=[p[2] for p in paths], since=start),
                             f"{args.task}.wall_seconds": time.time() - start})
            log_files(log, [s.path for s in summaries], "predictions")
    except (ParamsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 1
    for s in summaries:
        logger.info("%s: %d records, %d errors", s.path, s.records, s.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
