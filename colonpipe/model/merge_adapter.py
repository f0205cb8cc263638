"""``colonpipe merge``: fold a trained stage's adapter and projector into one full model folder.

    colonpipe merge models/finetune/final models/finetune/merged [--base models/base] [--dtype bfloat16]

The output is a plain ``save_pretrained`` ColonGPT folder (config, safetensors, processor) that
``colonpipe.model.presets.load_base`` / ``AutoModelForImageTextToText`` load with no PEFT. It is
written beside ``<out>`` and swapped in with ``atomic.staged_dir`` (the old folder is moved aside first).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from colonpipe import atomic
from colonpipe.model.trained import load_trained

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def merge_to_dir(trained_dir: Path, out_dir: Path, *, base_dir: Path | None = None,
                 dtype: torch.dtype = torch.float32) -> Path:
    """Merge ``trained_dir`` (a ``final/`` or ``step-N/``) into a full model saved at ``out_dir``."""
    model, processor = load_trained(trained_dir, base_dir=base_dir, merge=True, dtype=dtype)
    with atomic.staged_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    logger.info("merged %s into %s (%s)", trained_dir, out_dir, dtype)
    return out_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="colonpipe merge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trained_dir", type=Path, help="a training output (final/ or checkpoints/step-N/)")
    parser.add_argument("out_dir", type=Path, help="receives the merged model folder")
    parser.add_argument("--base", type=Path, default=None, help="base model (default: recorded in train_config.json)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    args = parser.parse_args(argv)
    try:
        merge_to_dir(args.trained_dir, args.out_dir, base_dir=args.base, dtype=DTYPES[args.dtype])
    except (ValueError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    return 0
