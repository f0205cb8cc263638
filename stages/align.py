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
from pathlib import Path

from colonpipe.register.cards import write_training_card
from colonpipe.stage_cli import run_stage
from colonpipe.train.launch import add_launcher_args
from colonpipe.train.stage import TrainInputError, stage_inputs, train_paths, train_stage


def add_arguments(parser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="base model folder (stage base)")
    parser.add_argument("--data", type=Path, required=True, help="CAP instruction JSON (train split)")
    parser.add_argument("--image-root", type=Path, required=True, help="image folder or image_roots.json")
    parser.add_argument("--out-dir", type=Path, required=True)
    add_launcher_args(parser)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def run(args, params) -> int:  # re-run by torchrun / deepspeed when num_processes > 1
        paths = train_paths(args, params)
        rc, metrics = train_stage("align", params, paths, script_argv=[__file__, *argv])
        if rc == 0 and metrics:  # only the process that trained as rank 0 has metrics: one card
            write_training_card(paths.out_dir / "final", stage="align", params_path=args.params,
                                inputs=stage_inputs(paths))
        return rc

    return run_stage("align", __doc__, add_arguments, run, argv, errors=(TrainInputError,))


if __name__ == "__main__":
    sys.exit(main())
