"""Presets: phi15-siglip sizes from config alone, tiny build determinism, the pretrained loading path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import PhiConfig, PhiForCausalLM, SiglipConfig, SiglipModel

from colonpipe.model import ColonGPTForConditionalGeneration, build_base, config_for_preset, load_base
from colonpipe.model.tokenizer import iter_dialogues, train_bpe_tokenizer
from colonpipe.params import ModelParams, ParamsError, parse_params

REPO = Path(__file__).resolve().parents[2]


def test_phi15_siglip_config_on_meta_device_has_the_reference_sizes():
    cfg = config_for_preset(ModelParams(preset="phi15-siglip"))  # default hub ids: no download
    t, v = cfg.text_config, cfg.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.vocab_size, t.max_position_embeddings) == (2048, 24, 51200, 2048)
    assert (v.hidden_size, v.num_hidden_layers, v.image_size, v.patch_size) == (1152, 27, 384, 14)
    assert cfg.grid == 27 and cfg.image_seq_length == 246 and cfg.projector_type == "ppc_14_7_1"
    with torch.device("meta"):
        model = ColonGPTForConditionalGeneration(cfg)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 1.40e9 < count(model.language_model) < 1.43e9  # Phi-1.5: 1.42B
    assert 0.40e9 < count(model.vision_tower) < 0.42e9  # SigLIP so400m vision tower without head
    # ppc projector: Linear 1152->2048, one 3x3 conv 2048->2048, Linear 2048->2048 (with biases)
    expected = 1152 * 2048 + 2048 + 9 * 2048 * 2048 + 2048 + 2048 * 2048 + 2048
    assert count(model.multi_modal_projector) == expected
    assert all(p.is_meta for p in model.parameters())


def _files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_tiny_build_is_deterministic_across_processes(tiny_base, tmp_path):
    out = tmp_path / "again"
    env = {**os.environ, "PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "stages/base.py", "--corpus", str(tiny_base.parent / "corpus"), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _files_of(out) == _files_of(tiny_base)
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= set(_files_of(out))


def test_tiny_init_sincos_positions_and_width_scaled_lm(tiny):
    """Vision positions are 2-D sin/cos (same column -> same first half), LM weights ~ text_init_std."""
    from colonpipe.model.presets import SINCOS_AMPLITUDE
    from colonpipe.params import TinyModelParams

    model, _ = tiny
    t = TinyModelParams()
    pos = model.vision_tower.embeddings.position_embedding.weight.detach()
    grid, half = t.image_size // t.patch_size, t.vision_hidden // 2
    table = pos.view(grid, grid, -1)  # (row, column, dim)
    torch.testing.assert_close(table[0, :, :half], table[-1, :, :half])  # column part: same down a column
    torch.testing.assert_close(table[:, 0, half:], table[:, -1, half:])  # row part: same along a row
    assert float(pos.abs().max()) == pytest.approx(SINCOS_AMPLITUDE, rel=1e-6)
    q = model.language_model.model.layers[0].self_attn.q_proj.weight
    assert float(q.std()) == pytest.approx(t.text_init_std, rel=0.05)


def test_base_stage_reports_a_missing_corpus(tmp_path):
    sys.path.insert(0, str(REPO / "stages"))
    try:
        import base as base_stage
    finally:
        sys.path.pop(0)
    assert base_stage.main(["--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_pretrained_path_loads_local_checkpoints_exactly(tmp_path):
    """phi15-siglip code path, fed with tiny local checkpoints in the hub layout."""
    siglip = SiglipModel(SiglipConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=8)))
    siglip.save_pretrained(tmp_path / "siglip")
    (tmp_path / "siglip" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    phi = PhiForCausalLM(PhiConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, max_position_embeddings=256, bos_token_id=0,
                                   eos_token_id=0))
    phi.save_pretrained(tmp_path / "phi")
    train_bpe_tokenizer(["polyp ulcer 0123456789"] * 5, vocab_size=300, model_max_length=256).save_pretrained(
        tmp_path / "phi")
    params = ModelParams(preset="phi15-siglip", llm=str(tmp_path / "phi"), vision=str(tmp_path / "siglip"),
                         projector_type="ppc_4_2_1")
    model, proc = load_base(build_base(params, corpus_files=[], out_dir=tmp_path / "base"))
    assert model.config.image_seq_length == 21 and proc.image_size == 64
    src = siglip.vision_model.state_dict()
    for name, tensor in model.vision_tower.state_dict().items():
        torch.testing.assert_close(tensor, src[name], rtol=0, atol=0)
    for name, tensor in model.language_model.state_dict().items():
        torch.testing.assert_close(tensor, phi.state_dict()[name], rtol=0, atol=0)
    assert not hasattr(model.vision_tower, "head")  # the unused pooling head is dropped
    assert model.language_model.lm_head.bias is None  # upstream rebuilds Phi's head without bias
    assert not model.config.lm_head_bias


def test_load_base_rejects_a_folder_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_base(tmp_path)


def test_load_base_rejects_processor_model_disagreement(tiny_base, tmp_path):
    import shutil

    broken = tmp_path / "b"
    shutil.copytree(tiny_base, broken)
    cfg = json.loads((broken / "processor_config.json").read_text())
    cfg["image_seq_length"] += 1
    (broken / "processor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="processor expands"):
        load_base(broken)


def test_corpus_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        list(iter_dialogues([bad]))
    bad.write_text(json.dumps([{"id": "x"}]))
    with pytest.raises(ValueError, match="bad.json: record 0"):
        list(iter_dialogues([bad]))


def test_model_params_are_validated():
    with pytest.raises(ParamsError, match="model.tiny: tiny.projector_type: projector_type 'ppc_14_7_1': level 14 exceeds"):
        parse_params({"model": {"tiny": {"projector_type": "ppc_14_7_1"}}})
    with pytest.raises(ParamsError, match="model: projector_type: unknown projector_type 'mlp3': expected"):
        parse_params({"model": {"projector_type": "mlp3"}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_default_attention_is_sdpa_on_cpu():
    from colonpipe.model.presets import default_attn_implementation

    assert default_attn_implementation(torch.bfloat16) == default_attn_implementation(None) == "sdpa"
