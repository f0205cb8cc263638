"""Stage ``finetune`` (ColonGPT stage 2): LM (LoRA in the recipe) + projector on CLS+REG+REC.

    python stages/finetune.py --base models/base --init-from models/align/final \\
        --data data/coloninst/Json-file/train/ColonINST-train-3tasks.json \\
        --image-root data/interim/image_roots.json --out-dir models/finetune

Writes ``models/finetune/final/`` (adapter + projector + config + processor + hyperparameters),
``models/finetune/checkpoints/step-N/`` (resume points), ``train_metrics.json``, ``loss.csv`` and
``loss_curve.png``. Knobs: the ``finetune`` section of params.yaml. ``num_processes > 1`` re-runs
this script under torchrun / deepspeed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from colonpipe.params import ParamsError, load_section
from colonpipe.train.launch import add_launcher_args
from colonpipe.train.stage import train_stage
from colonpipe.train.trainer import TrainPaths

logger = logging.getLogger("stages.finetune")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="base model folder (stage base)")
    parser.add_argument("--data", type=Path, required=True, help="CLS+REG+REC instruction JSON")
    parser.add_argument("--image-root", type=Path, required=True, help="image folder or image_roots.json")
    parser.add_argument("--init-from", type=Path, required=True, help="aligned stage-1 output (its projector)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    add_launcher_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section("finetune", args.params)
    except ParamsError as exc:
        logger.error("%s", exc)
        return 1
    paths = TrainPaths(base=args.base, data=args.data, image_root=args.image_root, out_dir=args.out_dir,
                       init_from=args.init_from)
    rc, _ = train_stage("finetune", params, paths, script_argv=[__file__, *argv])
    return rc


if __name__ == "__main__":
    sys.exit(main())
