"""Trainable / frozen parameter counts of a preset + parts setup, from config alone (no weights).

    python -m colonpipe.train.params_count            # phi15-siglip, finetune recipe (LoRA r=128)

The model is built on torch's ``meta`` device, so even the 1.8B phi15-siglip costs no memory and
needs no download; ``configure_parts`` (the same function training uses) then sets each part.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch

from colonpipe.model.modeling import ColonGPTForConditionalGeneration
from colonpipe.model.presets import config_for_preset
from colonpipe.params import LoraParams, ModelParams, PartsParams
from colonpipe.train.parts import ParamCounts, configure_parts

logger = logging.getLogger(__name__)


def count_for_preset(model: ModelParams, parts: PartsParams, lora: LoraParams) -> ParamCounts:
    """Counts for ``model``'s preset with ``parts``/``lora`` applied, computed on the meta device."""
    config = config_for_preset(model)
    with torch.device("meta"):
        net = ColonGPTForConditionalGeneration(config)
        _, counts = configure_parts(net, parts, lora)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["phi15-siglip", "tiny"], default="phi15-siglip")
    parser.add_argument("--llm", choices=["frozen", "lora", "full"], default="lora")
    parser.add_argument("--r", type=int, default=128)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    counts = count_for_preset(ModelParams(preset=args.preset), PartsParams(llm=args.llm),
                              LoraParams(r=args.r, alpha=2 * args.r))
    print(json.dumps({"trainable": counts.trainable, "frozen": counts.frozen, "total": counts.total,
                      "by_part": counts.by_part}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
