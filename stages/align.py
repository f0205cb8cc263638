"""Stage ``align`` (ColonGPT stage 1): train the projector on the CAP dialogues.

    python stages/align.py --base models/base \\
        --data data/coloninst/Json-file/train/ColonINST-train-cap.json \\
        --image-root data/interim/image_roots.json --out-dir models/align

Writes ``models/align/final/`` (projector + config + processor + hyperparameters),
``models/align/checkpoints/step-N/`` (resume points), ``train_metrics.json``, ``loss.csv`` and
``loss_curve.png``. Knobs: the ``align`` section of params.yaml. ``num_processes > 1`` re-runs
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

logger = logging.getLogger("stages.align")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="base model folder (stage base)")
    parser.add_argument("--data", type=Path, required=True, help="CAP instruction JSON")
    parser.add_argument("--image-root", type=Path, required=True, help="image folder or image_roots.json")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    add_launcher_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_section("align", args.params)
    except ParamsError as exc:
        logger.error("%s", exc)
        return 1
    paths = TrainPaths(base=args.base, data=args.data, image_root=args.image_root, out_dir=args.out_dir)
    rc, _ = train_stage("align", params, paths, script_argv=[__file__, *argv])
    return rc


if __name__ == "__main__":
    sys.exit(main())
