"""Stage ``ingest``: raw sources in their native formats -> one annotation manifest.

    python stages/ingest.py --out-dir data/interim

Writes ``annotations.parquet`` (schema: colonpipe/data/manifest.py), ``image_roots.json``
({source: root}) and ``ingest_report.json`` (every skipped or repaired input and why, and
for catalogued sources the images found against ColonINST's; docs/data.md). A missing
source folder, an unknown preset or a malformed params entry stops with one message and exit 1.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from colonpipe.data.ingest import IngestError, ingest
from colonpipe.params import flatten
from colonpipe.stage_cli import run_stage
from colonpipe.tracking import stage_run
from colonpipe.tracking.logger import numeric_leaves

logger = logging.getLogger("stages.ingest")


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", type=Path, required=True, help="receives the manifest, roots and report")


def run(args, params) -> None:
    roots = sorted({s.root for s in params.sources})  # the raw data, wherever params put it
    with stage_run("ingest", params=flatten(params, "ingest"), inputs=roots) as log:
        summary = ingest(params, args.out_dir, params_file=str(args.params))
        report = json.loads(summary.report.read_text())
        log.log_metrics({"ingest.images": summary.images, "ingest.rows": summary.rows,
                         "ingest.skipped": summary.skipped, "ingest.repaired": summary.repaired,
                         **numeric_leaves(report.get("totals", {}), "ingest")})
        log.log_artifact(summary.report)
    logger.info("%d images, %d rows -> %s", summary.images, summary.rows, summary.manifest)
    logger.info("%d inputs skipped, %d repaired: see %s", summary.skipped, summary.repaired, summary.report)


def main(argv: list[str] | None = None) -> int:
    return run_stage("ingest", __doc__, add_arguments, run, argv, errors=(IngestError,))


if __name__ == "__main__":
    sys.exit(main())
