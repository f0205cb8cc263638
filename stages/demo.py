"""Stage ``demo``: generate the demo raw dataset (six sources, six formats, captions).

    python stages/demo.py --out data/raw

Reads the ``demo`` section of params.yaml; ``ingest.sources`` in params.yaml names the same
sources (see ``colonpipe.data.demo.DEMO_SOURCES``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from colonpipe.data.demo import generate_demo
from colonpipe.params import flatten
from colonpipe.stage_cli import run_stage
from colonpipe.tracking import stage_run

logger = logging.getLogger("stages.demo")


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder that receives the raw sources")


def run(args, params) -> None:
    with stage_run("demo", params=flatten(params, "demo")) as log:
        summary = generate_demo(args.out, params)
        log.log_metrics({**{f"demo.images.{k}": n for k, n in summary.images.items()},
                         "demo.images_total": sum(summary.images.values()),
                         "demo.captions": summary.captions, "demo.bad_inputs": summary.bad_inputs})
    for name, n in summary.images.items():
        logger.info("%-18s %5d images", name, n)
    logger.info("%d captions, %d planted bad inputs, written to %s", summary.captions, summary.bad_inputs, args.out)


def main(argv: list[str] | None = None) -> int:
    return run_stage("demo", __doc__, add_arguments, run, argv, errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
