"""Real-size ColonGPT (random weights) on a CUDA GPU: bf16 forward and cached generation per attention backend."""

import importlib.util

import pytest
import torch

from colonpipe.model import ColonGPTForConditionalGeneration, config_for_preset
from colonpipe.model.presets import default_attn_implementation
from colonpipe.params import ModelParams

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

BACKENDS = ["sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])


@pytest.mark.parametrize("attn", BACKENDS)
def test_phi15_siglip_bf16_forward_and_generate(attn):
    cfg = config_for_preset(ModelParams(preset="phi15-siglip"))
    cfg._attn_implementation = attn
    with torch.device("cuda"):
        model = ColonGPTForConditionalGeneration(cfg).to(torch.bfloat16).eval()
    assert model.language_model.config._attn_implementation == attn
    b, n_img, prompt = 2, cfg.image_seq_length, 40
    ids = torch.randint(100, 50000, (b, prompt + n_img), device="cuda")
    ids[:, 10 : 10 + n_img] = cfg.image_token_id
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding on row 0
    pixels = torch.randn(b, 3, 384, 384, device="cuda")
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        gen = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4,
                             do_sample=False, pad_token_id=50256, eos_token_id=50256)
    assert out.logits.shape == (b, prompt + n_img, 51200) and torch.isfinite(out.logits.float()).all()
    assert gen.shape[1] <= ids.shape[1] + 4


def test_default_attention_prefers_flash_on_gpu_only_for_16_bit():
    expected = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    assert default_attn_implementation(torch.bfloat16) == expected
    assert default_attn_implementation(torch.float32) == "sdpa"
