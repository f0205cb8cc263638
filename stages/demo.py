"""Stage ``demo``: generate the demo raw dataset (six sources, six formats, captions).

    python stages/demo.py --out data/raw

Reads the ``demo`` section of params.yaml; ``ingest.sources`` in params.yaml names the same
sources (see ``colonpipe.data.demo.DEMO_SOURCES``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colonpipe.data.demo import generate_demo
from colonpipe.params import ParamsError, flatten, load_section
from colonpipe.tracking import stage_run

logger = logging.getLogger("stages.demo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder that receives the raw sources")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section("demo", args.params)
        with stage_run("demo", params=flatten(params, "demo")) as log:
            summary = generate_demo(args.out, params)
            log.log_metrics({**{f"demo.images.{k}": n for k, n in summary.images.items()},
                             "demo.images_total": sum(summary.images.values()),
                             "demo.captions": summary.captions, "demo.bad_inputs": summary.bad_inputs})
    except (ParamsError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    for name, n in summary.images.items():
        logger.info("%-18s %5d images", name, n)
    logger.info("%d captions, %d planted bad inputs, written to %s", summary.captions, summary.bad_inputs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
