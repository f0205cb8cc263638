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

import sys

from colonpipe.register.cards import write_training_card
from colonpipe.train.stage import stage_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return stage_main("align", __file__, argv, doc=__doc__,
                      data_help="CAP instruction JSON", init_from=False, after=write_training_card)


if __name__ == "__main__":
    sys.exit(main())
