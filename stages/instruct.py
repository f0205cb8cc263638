"""Stage ``instruct``: manifest -> ColonINST instruction JSON + stats.json.

    python stages/instruct.py --manifest data/interim/annotations.parquet --out-dir data/coloninst

When ingest read the official release (a ``coloninst_release`` source), its JSON files are
passed on unchanged instead. Found-vs-ColonINST counts of catalogued datasets are in
stats.json (``catalogue``); differences are logged as warnings (``count_warnings``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from colonpipe.data.instruct import InstructError, build_instruct
from colonpipe.params import flatten
from colonpipe.stage_cli import run_stage
from colonpipe.tracking import stage_run
from colonpipe.tracking.logger import numeric_leaves

logger = logging.getLogger("stages.instruct")
BREAKDOWNS = ("datasets", "categories", "files", "catalogue", "release", "count_warnings")  # stay in stats.json


def add_arguments(parser) -> None:
    parser.add_argument("--manifest", type=Path, required=True, help="annotations.parquet from ingest")
    parser.add_argument("--out-dir", type=Path, required=True, help="receives Json-file/ and stats.json")


def run(args, params) -> None:
    with stage_run("instruct", params=flatten(params, "instruct"), inputs=[args.manifest]) as log:
        stats = build_instruct(args.manifest, args.out_dir, params)
        log.log_metrics({**numeric_leaves(stats, "instruct", skip=BREAKDOWNS),
                         **({"instruct.count_warnings": len(stats["count_warnings"])}
                            if "count_warnings" in stats else {})})
        log.log_artifact(args.out_dir / "stats.json")
    for split, tasks in stats["records"].items():
        counts = ", ".join(f"{task}={n}" for task, n in tasks.items())
        logger.info("%-5s %6d images: %s", split, stats["images"][split], counts)
    logger.info("wrote %d records for %d images to %s", stats["records_total"], stats["images_total"], args.out_dir)


def main(argv: list[str] | None = None) -> int:
    return run_stage("instruct", __doc__, add_arguments, run, argv, errors=(InstructError,))


if __name__ == "__main__":
    sys.exit(main())
