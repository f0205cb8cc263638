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

import sys

from colonpipe.register.cards import write_training_card
from colonpipe.train.stage import stage_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return stage_main("finetune", __file__, argv, doc=__doc__,
                      data_help="CLS+REG+REC instruction JSON", init_from=True, after=write_training_card)


if __name__ == "__main__":
    sys.exit(main())
