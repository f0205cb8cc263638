"""Trained-looking tiny models for the export / predict / registry tests.

Training itself is tested elsewhere; here a model only has to differ from its random base the
way a trained one does: non-zero LoRA B, a moved projector and, what the LLaVA export must
fold, a non-zero lm_head bias and a final LayerNorm that is not (1, 0).
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

from colonpipe.model.presets import load_base
from colonpipe.model import checkpoint_files as ck
from colonpipe.model.trained import save_trainables

_MOVED = ("multi_modal_projector", "lm_head", "final_layernorm")


def perturb_(model: torch.nn.Module, *, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Add seeded noise to the projector, LM head and final LayerNorm (and LoRA B), in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or any(part in name for part in _MOVED):
                p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


def save_perturbed(base_dir: Path, out_dir: Path, *, seed: int = 0) -> Path:
    """A saved ColonGPT folder: ``base_dir`` with :func:`perturb_` applied."""
    model, processor = load_base(base_dir, dtype=torch.float32)
    perturb_(model, seed=seed)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def write_lora_output(base_dir: Path, out_dir: Path, *, seed: int = 0):
    """A ``final/``-style folder over ``base_dir``: a LoRA adapter with non-zero B (so the adapter
    matters) and a moved projector. Returns ``(out_dir, the PEFT model in eval mode, processor)``."""
    out_dir.mkdir(parents=True)
    model, processor = load_base(base_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name or "multi_modal_projector" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    save_trainables(out_dir, peft, full_parts=[], is_main=True)
    processor.save_pretrained(out_dir)
    ck.write_json(out_dir / ck.TRAIN_CONFIG, {"base_dir": str(base_dir)})
    ck.write_json(out_dir / ck.TRAINER_STATE, {"global_step": 1})
    ck.write_manifest(out_dir)
    return out_dir, peft.eval(), processor


def write_training_output(base_dir: Path, out_dir: Path, *, seed: int = 0) -> Path:
    """A ``final/``-style folder over ``base_dir``: LoRA adapter + projector + head/LayerNorm as full parts.

    The LM head and final LayerNorm travel in ``full_parts.safetensors`` (as with ``parts.llm:
    full``), so a merge must apply adapter, projector and full parts for the logits to match.
    """
    out_dir.mkdir(parents=True)
    model, processor = load_base(base_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"]))
    perturb_(peft, seed=seed)
    save_trainables(out_dir, peft, full_parts=[], is_main=True)
    head = {f"language_model.{k}": v for k, v in model.language_model.state_dict().items()
            if k.startswith(("lm_head.", "model.final_layernorm."))}
    save_file({k: v.contiguous() for k, v in head.items()}, str(out_dir / ck.FULL_PARTS_FILE))
    processor.save_pretrained(out_dir)
    ck.write_json(out_dir / ck.TRAIN_CONFIG, {"base_dir": str(base_dir)})
    ck.write_json(out_dir / ck.TRAINER_STATE, {"global_step": 1})
    ck.write_manifest(out_dir)
    return out_dir
