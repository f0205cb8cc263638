"""Freezing / LoRA per part: trainable counts equal hand-computed ones (tiny and phi15-siglip)."""

from __future__ import annotations

import pytest
import torch

from colonpipe.model.presets import load_base
from colonpipe.params import LoraParams, ModelParams, PartsParams
from colonpipe.train.params_count import count_for_preset
from colonpipe.train.parts import configure_parts, lora_config

from trainutil import TINY


def lora_linear(r: int, fan_in: int, fan_out: int) -> int:
    return r * (fan_in + fan_out)  # A: r x in, B: out x r, no bias


def phi_lora(r: int, d: int, ff: int, layers: int) -> int:
    """LoRA on q,k,v,dense (d->d) and fc1 (d->ff), fc2 (ff->d) of every layer."""
    return layers * (4 * lora_linear(r, d, d) + 2 * lora_linear(r, d, ff))


def ppc_projector(v: int, d: int) -> int:
    """Linear v->d, one shared 3x3 conv d->d, Linear d->d (all with bias)."""
    return (v * d + d) + (9 * d * d + d) + (d * d + d)


def test_tiny_lora_count_matches_hand_computation(tiny_base):
    model, _ = load_base(tiny_base)
    model, counts = configure_parts(model, PartsParams(llm="lora"), LoraParams(r=8, alpha=16))
    t = TINY
    expected_lora = phi_lora(8, t.text_hidden, t.text_intermediate, t.text_layers)
    expected_proj = ppc_projector(t.vision_hidden, t.text_hidden)
    assert counts.by_part["llm"][0] == expected_lora
    assert counts.by_part["projector"] == (expected_proj, 0)
    assert counts.by_part["vision"][0] == 0
    assert counts.trainable == expected_lora + expected_proj
    names = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert names and all(".language_model." in n for n in names)  # SigLIP q_proj/fc1 untouched
    assert not any("lm_head" in n for n in names)


def test_full_and_frozen_parts(tiny_base):
    model, _ = load_base(tiny_base)
    total = sum(p.numel() for p in model.parameters())
    lm = sum(p.numel() for p in model.language_model.parameters())
    proj = sum(p.numel() for p in model.multi_modal_projector.parameters())
    model, counts = configure_parts(model, PartsParams(llm="full"), LoraParams())
    assert counts.trainable == lm + proj and counts.frozen == total - lm - proj
    model, _ = load_base(tiny_base)
    _, counts = configure_parts(model, PartsParams(llm="frozen"), LoraParams())
    assert counts.trainable == proj  # stage 1: projector only


def test_lora_targets_only_lora_parts():
    assert lora_config(PartsParams(llm="full"), LoraParams()) is None
    cfg = lora_config(PartsParams(llm="lora"), LoraParams(target_modules=["q_proj", "fc1"]))
    assert "language_model" in cfg.target_modules and "vision_tower" not in cfg.target_modules


def test_phi15_siglip_r128_counts_from_config():
    """Spec recipe: LoRA r=128 on q,k,v,dense,fc1,fc2 of 24 layers (d=2048, ff=8192) + ppc projector."""
    counts = count_for_preset(ModelParams(preset="phi15-siglip"), PartsParams(llm="lora"),
                              LoraParams(r=128, alpha=256, dropout=0.05))
    lora = phi_lora(128, 2048, 8192, 24)
    proj = ppc_projector(1152, 2048)
    assert lora == 113_246_208 and proj == 44_308_480
    assert counts.trainable == lora + proj == 157_554_688
    d, ff, vocab, layers = 2048, 8192, 51200, 24
    phi = (vocab * d + layers * (2 * d + 4 * (d * d + d) + (d * ff + ff) + (ff * d + d)) + 2 * d
           + d * vocab)  # lm_head without a bias, as upstream rebuilds it
    v, vff, vl = 1152, 4304, 27
    siglip = (3 * 14 * 14 * v + v) + 729 * v + vl * (4 * v + 4 * (v * v + v) + (v * vff + vff) + (vff * v + v)) + 2 * v
    assert counts.by_part["llm"] == (lora, phi)
    assert counts.by_part["vision"] == (0, siglip)
    assert counts.frozen == phi + siglip == 1_831_206_768


def test_count_uses_no_memory():
    """The phi15-siglip count runs on the meta device (no weights are allocated)."""
    from colonpipe.model.modeling import ColonGPTForConditionalGeneration
    from colonpipe.model.presets import config_for_preset

    with torch.device("meta"):
        net = ColonGPTForConditionalGeneration(config_for_preset(ModelParams(preset="phi15-siglip")))
    assert all(p.is_meta for p in net.parameters())


@pytest.mark.parametrize("bad", [dict(parts=PartsParams("frozen", "frozen", "frozen")),
                                 dict(warmup_ratio=1.5), dict(batch_size=0)])
def test_train_params_validation(bad):
    from colonpipe.params import ParamsError, TrainParams

    with pytest.raises(ParamsError, match="TrainParams: "):
        TrainParams(**bad)  # checked when built
