"""Which model parts train, and how: ``frozen``, ``lora`` or ``full`` (one function does it).

Parts map to ColonGPT's LLaVA-style modules: ``vision`` -> ``vision_tower``, ``projector`` ->
``multi_modal_projector``, ``llm`` -> ``language_model``. LoRA targets only modules *inside*
the parts set to ``lora`` (SigLIP also has ``q_proj``/``fc1`` names, so a bare name list would
leak into the vision tower), and never ``lm_head`` unless it is named explicitly.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from peft import LoraConfig, get_peft_model
from torch import nn

from colonpipe.model.trained import PART_MODULES, base_of
from colonpipe.params import LoraParams, PartsParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts after ``configure_parts``; ``by_part`` maps part -> (trainable, frozen)."""

    trainable: int
    frozen: int
    by_part: dict[str, tuple[int, int]]

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    def as_metrics(self) -> dict[str, int]:
        out = {"params_trainable": self.trainable, "params_frozen": self.frozen}
        for part, (t, f) in self.by_part.items():
            out[f"params_trainable_{part}"], out[f"params_frozen_{part}"] = t, f
        return out


def lora_config(parts: PartsParams, lora: LoraParams) -> LoraConfig | None:
    """PEFT config targeting ``lora.target_modules`` inside every part set to ``lora``; None if none is."""
    prefixes = [PART_MODULES[name] for name in ("vision", "llm") if getattr(parts, name) == "lora"]
    if not prefixes:
        return None
    names = "|".join(re.escape(m) for m in lora.target_modules)
    # PEFT full-matches a string target against each module's dotted name.
    pattern = rf"(?:.*\.)?(?:{'|'.join(prefixes)})\..*\.(?:{names})"
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=pattern, bias="none")


def _numel(p: nn.Parameter) -> int:
    return int(getattr(p, "ds_numel", 0) or p.numel())  # ZeRO-3 partitions hide the true size


def count_params(model: nn.Module) -> ParamCounts:
    """Trainable / frozen counts in total and per part (parameters outside the parts count as 'other')."""
    by_part: dict[str, list[int]] = {}
    base = base_of(model)
    owner = {id(p): part for part, attr in PART_MODULES.items() for p in getattr(base, attr).parameters()}
    for p in model.parameters():
        slot = by_part.setdefault(owner.get(id(p), "other"), [0, 0])
        slot[0 if p.requires_grad else 1] += _numel(p)
    trainable = sum(v[0] for v in by_part.values())
    frozen = sum(v[1] for v in by_part.values())
    return ParamCounts(trainable, frozen, {k: (v[0], v[1]) for k, v in sorted(by_part.items())})


def configure_parts(model: nn.Module, parts: PartsParams, lora: LoraParams) -> tuple[nn.Module, ParamCounts]:
    """Freeze / LoRA-wrap / unfreeze each part of a ColonGPT model per ``parts``.

    Returns the model to train (a ``PeftModel`` wrapping ``model`` when any part is ``lora``)
    and its parameter counts, which are also logged.
    """
    config = lora_config(parts, lora)
    model.requires_grad_(False)
    if config is not None:
        model = get_peft_model(model, config)  # adds adapters; they alone require grad
    base = base_of(model)
    for part, attr in PART_MODULES.items():
        if getattr(parts, part) == "full":
            getattr(base, attr).requires_grad_(True)
    counts = count_params(model)
    for part, (t, f) in counts.by_part.items():
        logger.info("part %-9s %-6s trainable %12d  frozen %12d", part, getattr(parts, part, "-"), t, f)
    logger.info("parameters: trainable %d, frozen %d (%.2f%% trainable)",
                counts.trainable, counts.frozen, 100.0 * counts.trainable / max(counts.total, 1))
    return model, counts
