"""Stage ``ingest``: raw sources in their native formats -> one annotation manifest.

    python stages/ingest.py --out-dir data/interim

Writes ``annotations.parquet`` (schema: colonpipe/data/manifest.py), ``image_roots.json``
({source: root}) and ``ingest_report.json`` (every skipped or repaired input and why).
A missing source folder or a malformed params entry stops with one message and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colonpipe.data.ingest import IngestError, ingest
from colonpipe.params import ParamsError, load_section

logger = logging.getLogger("stages.ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, required=True, help="receives the manifest, roots and report")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section("ingest", args.params)
        summary = ingest(params, args.out_dir, params_file=str(args.params))
    except (ParamsError, IngestError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("%d images, %d rows -> %s", summary.images, summary.rows, summary.manifest)
    logger.info("%d inputs skipped, %d repaired: see %s", summary.skipped, summary.repaired, summary.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
