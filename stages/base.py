"""Stage ``base``: build the base ColonGPT (model + processor) that align/finetune start from.

    python stages/base.py --corpus data/coloninst/Json-file/train --out models/base

``tiny`` trains its BPE tokenizer on every ``*.json`` instruction file under ``--corpus``;
``phi15-siglip`` loads the pretrained LLM and vision tower named in ``params.yaml`` (model section).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colonpipe.model import build_base
from colonpipe.params import ParamsError, flatten, load_section
from colonpipe.tracking import stage_run
from colonpipe.tracking.summaries import saved_parameter_count

logger = logging.getLogger("stages.base")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="folder of instruction JSON (tiny tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="receives the saved model and processor")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section("model", args.params)
        corpus = sorted(args.corpus.glob("*.json")) if args.corpus.is_dir() else []
        if params.preset == "tiny" and not corpus:
            raise ValueError(f"{args.corpus}: no instruction *.json files to train the tiny tokenizer on")
        with stage_run("base", params=flatten(params, "model"), inputs=[args.corpus]) as log:
            out = build_base(params, corpus_files=corpus, out_dir=args.out)
            log.log_metrics({"model.parameters": saved_parameter_count(out)})
    except (ParamsError, ValueError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("base model (%s) written to %s", params.preset, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
