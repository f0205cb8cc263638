"""Stage ``base``: build the base ColonGPT (model + processor) that align/finetune start from.

    python stages/base.py --corpus data/coloninst/Json-file/train --out models/base

``tiny`` trains its BPE tokenizer on every ``*.json`` instruction file under ``--corpus``;
``phi15-siglip`` loads the pretrained LLM and vision tower named in ``params.yaml`` (model section).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from colonpipe.model import build_base
from colonpipe.model.weights import saved_parameter_count
from colonpipe.params import flatten
from colonpipe.stage_cli import run_stage
from colonpipe.tracking import stage_run

logger = logging.getLogger("stages.base")


def add_arguments(parser) -> None:
    parser.add_argument("--corpus", type=Path, required=True, help="folder of instruction JSON (tiny tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="receives the saved model and processor")


def run(args, params) -> None:
    corpus = sorted(args.corpus.glob("*.json")) if args.corpus.is_dir() else []
    if params.preset == "tiny" and not corpus:
        raise ValueError(f"{args.corpus}: no instruction *.json files to train the tiny tokenizer on")
    with stage_run("base", params=flatten(params, "model"), inputs=[args.corpus]) as log:
        out = build_base(params, corpus_files=corpus, out_dir=args.out)
        log.log_metrics({"model.parameters": saved_parameter_count(out)})
    logger.info("base model (%s) written to %s", params.preset, out)


def main(argv: list[str] | None = None) -> int:
    return run_stage("model", __doc__, add_arguments, run, argv, errors=(ValueError, OSError), name="base")


if __name__ == "__main__":
    sys.exit(main())
