"""The ColonGPT-v1 converter on synthetic tiny checkpoints written with the upstream names and config.

The reference forward below is written from the spec's architecture description (section 3) with
plain torch ops plus transformers' own SigLIP and Phi blocks; it never calls colonpipe's modules:
SigLIP penultimate hidden states -> Linear+GELU -> 2x2 grid -> avg-pool to each level -> one shared
3x3 conv on levels > 1 -> flatten row-major, concatenate -> Linear -> spliced at the image tokens
-> Phi decoder -> lm_head without bias.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import PhiConfig, PhiForCausalLM, SiglipVisionConfig, SiglipVisionModel

from colonpipe.model import load_base
from colonpipe.model.converters.colongpt_v1 import convert_colongpt_v1
from colonpipe.model.tokenizer import train_bpe_tokenizer

TOWER = "model.vision_tower.vision_tower.vision_model."  # upstream (Bunny-style SigLIP) prefix
GRID, LEVELS = 4, (2, 1)  # image 32 px / patch 8; ppc_2_1 -> 4 + 1 = 5 image tokens
PHI = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
           max_position_embeddings=128, partial_rotary_factor=0.5, bos_token_id=0, eos_token_id=0,
           hidden_act="gelu_new", layer_norm_eps=1e-5)
VISION = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=32,
              patch_size=8)


def _randomised(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.2 for k, v in module.state_dict().items()}


def _upstream_config() -> dict:
    return {**PHI, "architectures": ["ColongptPhiForCausalLM"], "model_type": "colongpt-phi",
            "mm_projector_type": "ppc_2_1", "mm_hidden_size": VISION["hidden_size"],
            "mm_vision_tower": "cache/downloaded-weights/siglip-so400m-patch14-384", "image_aspect_ratio": "pad",
            "tune_mm_mlp_adapter": False, "use_s2": False, "unfreeze_vision_tower": False,
            "tokenizer_model_max_length": 2048, "tokenizer_padding_side": "right", "torch_dtype": "bfloat16"}


def _projector(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d, dv = PHI["hidden_size"], VISION["hidden_size"]
    shapes = {"token_trans_layer.0.weight": (d, dv), "token_trans_layer.0.bias": (d,),
              "conv.weight": (d, d, 3, 3), "conv.bias": (d,), "linear_layer.weight": (d, d), "linear_layer.bias": (d,)}
    return {f"model.mm_projector.model.{k}": torch.randn(s, generator=g) * 0.2 for k, s in shapes.items()}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A tiny SigLIP folder (config + weights), a tiny Phi state, a projector, a tokenizer."""
    root = tmp_path_factory.mktemp("v1")
    vcfg = SiglipVisionConfig(**VISION)
    tower = SiglipVisionModel(vcfg)
    tower.load_state_dict(_randomised(tower, 1))
    tower.save_pretrained(root / "siglip")
    phi = PhiForCausalLM(PhiConfig(**PHI))
    phi_state = _randomised(phi, 2)
    tok = train_bpe_tokenizer(["polyp ulcer erosion ASSISTANT: USER: chat assistant"] * 8, vocab_size=300,
                              model_max_length=128)
    return {"root": root, "tower": tower, "phi_state": phi_state, "projector": _projector(3), "tok": tok}


def _write_merged(folder, parts, *, extra=None, drop=None):
    folder.mkdir(parents=True)
    state = {k: v for k, v in parts["phi_state"].items() if k != "lm_head.bias"}  # upstream head: no bias
    state |= {f"{TOWER}{k}": v for k, v in parts["tower"].state_dict().items()}
    state |= parts["projector"] | (extra or {})
    for k in drop or ():
        del state[k]
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(_upstream_config()))
    parts["tok"].save_pretrained(folder)
    return {k: v.to(torch.bfloat16).float() for k, v in state.items()}


def reference_logits(w: dict[str, torch.Tensor], input_ids, pixels, image_id: int) -> torch.Tensor:
    """Spec section 3, by hand: see the module docstring. ``w`` holds upstream-named tensors."""
    tower = SiglipVisionModel(SiglipVisionConfig(**VISION))
    tower.load_state_dict({k[len(TOWER):]: v for k, v in w.items() if k.startswith(TOWER)})
    feats = tower(pixels, output_hidden_states=True).hidden_states[-2]  # penultimate layer, all patches
    p = "model.mm_projector.model."
    x = F.gelu(F.linear(feats, w[p + "token_trans_layer.0.weight"], w[p + "token_trans_layer.0.bias"]))
    b, n, d = x.shape
    grid = x.transpose(1, 2).reshape(b, d, GRID, GRID)
    levels = []
    for lv in LEVELS:
        y = F.adaptive_avg_pool2d(grid, lv)
        if lv > 1:
            y = F.conv2d(y, w[p + "conv.weight"], w[p + "conv.bias"], padding=1)
        levels.append(y.flatten(2).transpose(1, 2))
    image = F.linear(torch.cat(levels, 1), w[p + "linear_layer.weight"], w[p + "linear_layer.bias"])
    phi = PhiForCausalLM(PhiConfig(**PHI))
    phi.load_state_dict({k: v for k, v in w.items() if k.startswith("model.") and "mm_projector" not in k
                         and "vision_tower" not in k}, strict=False)
    embeds = F.embedding(input_ids, w["model.embed_tokens.weight"]).clone()
    for i in range(b):
        embeds[i, input_ids[i] == image_id] = image[i]
    hidden = phi.model(inputs_embeds=embeds).last_hidden_state
    return F.linear(hidden, w["lm_head.weight"])  # upstream rebuilds lm_head without bias


def _inputs(image_id: int):
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(2, 300, (2, 12), generator=g)
    ids[:, 3:8] = image_id  # 5 image tokens per sample
    return ids, torch.randn(2, 3, 32, 32, generator=g)


def test_merged_checkpoint_logits_equal_the_reference_forward(parts, tmp_path):
    weights = _write_merged(tmp_path / "ColonGPT-v1", parts)
    out = convert_colongpt_v1(tmp_path / "ColonGPT-v1", tmp_path / "base", vision=str(parts["root"] / "siglip"))
    model, proc = load_base(out)
    assert model.language_model.lm_head.bias is None and model.config.image_seq_length == 5
    ids, pixels = _inputs(proc.image_token_id)
    with torch.no_grad():
        got = model(input_ids=ids, pixel_values=pixels).logits
        want = reference_logits(weights, ids, pixels, proc.image_token_id)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    record = json.loads((out / "conversion.json").read_text())
    assert record["variant"] == "merged" and all(".head." in k for k in record["dropped"])


def test_lora_checkpoint_is_merged_onto_its_base(parts, tmp_path):
    base = tmp_path / "phi-1.5"  # the base LLM as the hub ships it: lm_head with bias, native Phi names
    base.mkdir()
    save_file(parts["phi_state"], str(base / "model.safetensors"))
    (base / "config.json").write_text(json.dumps({**PHI, "model_type": "phi"}))
    parts["tok"].save_pretrained(base)
    lora = tmp_path / "ColonGPT-phi1.5-siglip-lora-stg2"
    lora.mkdir()
    (lora / "config.json").write_text(json.dumps(_upstream_config()))
    (lora / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "fc1"], "lora_dropout": 0.05}))
    g = torch.Generator().manual_seed(5)
    adapter, want = {}, dict(parts["phi_state"])
    for layer in range(PHI["num_hidden_layers"]):
        for mod, (o, i) in {"self_attn.q_proj": (32, 32), "mlp.fc1": (64, 32)}.items():
            a, b = torch.randn(4, i, generator=g), torch.randn(o, 4, generator=g)
            name = f"model.layers.{layer}.{mod}"
            adapter[f"base_model.model.{name}.lora_A.weight"] = a
            adapter[f"base_model.model.{name}.lora_B.weight"] = b
            want[f"{name}.weight"] = want[f"{name}.weight"] + (b @ a) * 2.0  # alpha / r
    save_file(adapter, str(lora / "adapter_model.safetensors"))
    torch.save({f"base_model.model.{k}": v for k, v in parts["projector"].items()}, lora / "non_lora_trainables.bin")
    out = convert_colongpt_v1(lora, tmp_path / "base", llm=str(base), vision=str(parts["root"] / "siglip"))
    model, proc = load_base(out)
    want |= parts["projector"] | {f"{TOWER}{k}": v for k, v in parts["tower"].state_dict().items()}
    ids, pixels = _inputs(proc.image_token_id)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, pixel_values=pixels).logits,
                                   reference_logits(want, ids, pixels, proc.image_token_id), rtol=1e-4, atol=1e-5)
    record = json.loads((out / "conversion.json").read_text())
    assert record["variant"] == "lora" and record["dropped"] == ["lm_head.bias"]


def test_unknown_and_missing_tensors_are_named(parts, tmp_path):
    _write_merged(tmp_path / "odd", parts, extra={"model.vision_resampler.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="model.vision_resampler.weight"):
        convert_colongpt_v1(tmp_path / "odd", tmp_path / "b1", vision=str(parts["root"] / "siglip"))
    _write_merged(tmp_path / "short", parts, drop=["model.layers.1.mlp.fc2.weight"])
    with pytest.raises(ValueError, match=r"missing \['language_model.model.layers.1.mlp.fc2.weight'\]"):
        convert_colongpt_v1(tmp_path / "short", tmp_path / "b2", vision=str(parts["root"] / "siglip"))
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()


def test_unsupported_config_fields_fail_loudly(parts, tmp_path):
    _write_merged(tmp_path / "ckpt", parts)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg |= {"image_aspect_ratio": "anyres", "mm_patch_merge_type": "spatial"}
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="mm_patch_merge_type.*anyres|anyres.*mm_patch_merge_type"):
        convert_colongpt_v1(tmp_path / "ckpt", tmp_path / "b", vision=str(parts["root"] / "siglip"))


def test_a_pickle_with_code_is_refused(tmp_path):
    import pickle

    from colonpipe.model.converters.weights import load_tensor_file

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ValueError, match="refused"):
        load_tensor_file(tmp_path / "pytorch_model.bin")
