"""Stage ``instruct``: manifest -> ColonINST instruction JSON + stats.json.

    python stages/instruct.py --manifest data/interim/annotations.parquet --out-dir data/coloninst

When ingest read the official release (a ``coloninst_release`` source), its JSON files are
passed on unchanged instead. Found-vs-ColonINST counts of catalogued datasets are in
stats.json (``catalogue``); differences are logged as warnings (``count_warnings``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colonpipe.data.instruct import InstructError, build_instruct
from colonpipe.params import ParamsError, flatten, load_section
from colonpipe.tracking import stage_run
from colonpipe.tracking.summaries import numeric_leaves

logger = logging.getLogger("stages.instruct")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="annotations.parquet from ingest")
    parser.add_argument("--out-dir", type=Path, required=True, help="receives Json-file/ and stats.json")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section("instruct", args.params)
        with stage_run("instruct", params=flatten(params, "instruct"), inputs=[args.manifest]) as log:
            stats = build_instruct(args.manifest, args.out_dir, params)
            # per-dataset/category/file/catalogue breakdowns stay in the stats.json artifact
            log.log_metrics({**numeric_leaves(stats, "instruct", skip=("datasets", "categories", "files", "catalogue",
                                                                         "release", "count_warnings")),
                             **({"instruct.count_warnings": len(stats["count_warnings"])}
                                if "count_warnings" in stats else {})})
            log.log_artifact(args.out_dir / "stats.json")
    except (ParamsError, InstructError) as exc:
        logger.error("%s", exc)
        return 1
    for split, tasks in stats["records"].items():
        counts = ", ".join(f"{task}={n}" for task, n in tasks.items())
        logger.info("%-5s %6d images: %s", split, stats["images"][split], counts)
    logger.info("wrote %d records for %d images to %s", stats["records_total"], stats["images_total"], args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
