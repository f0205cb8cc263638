"""The base-model checks: every way a real checkpoint can silently break the template fails loudly."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import PhiConfig, PhiForCausalLM, SiglipVisionConfig, SiglipVisionModel

from colonpipe.model import build_base, load_base
from colonpipe.model.checks import BaseModelError, check_tokenizer, check_vision
from colonpipe.model.tokenizer import train_bpe_tokenizer
from colonpipe.params import ModelParams

PHI = dict(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
           max_position_embeddings=128, bos_token_id=0, eos_token_id=0)


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siglip") / "siglip"
    SiglipVisionModel(SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=32, patch_size=8)).save_pretrained(folder)
    return folder


def _tokenizer(vocab=300):
    return train_bpe_tokenizer(["polyp ulcer erosion 0123456789"] * 5, vocab_size=vocab, model_max_length=128)


def test_a_folder_saved_by_model_save_pretrained_alone_fails_loudly(tmp_path, siglip):
    """The silent failure of the issue: no tokenizer files -> an empty tokenizer -> garbage training."""
    PhiForCausalLM(PhiConfig(**PHI)).save_pretrained(tmp_path / "phi")  # weights + config, no tokenizer
    params = ModelParams(preset="phi15-siglip", llm=str(tmp_path / "phi"), vision=str(siglip),
                         projector_type="ppc_2_1")
    with pytest.raises(BaseModelError, match=rf"tokenizer files missing in {tmp_path / 'phi'}.*"
                                             r"tokenizer\.save_pretrained"):
        build_base(params, corpus_files=[], out_dir=tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_the_same_folder_with_its_tokenizer_builds(tmp_path, siglip):
    PhiForCausalLM(PhiConfig(**PHI)).save_pretrained(tmp_path / "phi")
    _tokenizer().save_pretrained(tmp_path / "phi")
    params = ModelParams(preset="phi15-siglip", llm=str(tmp_path / "phi"), vision=str(siglip),
                         projector_type="ppc_2_1")
    model, proc = load_base(build_base(params, corpus_files=[], out_dir=tmp_path / "base"))
    assert proc.prompt_ids("<image>\nClassify.")[:3] and model.language_model.lm_head.bias is None


def test_a_saved_base_whose_tokenizer_was_deleted_fails_on_load(tiny_base, tmp_path):
    broken = tmp_path / "b"
    shutil.copytree(tiny_base, broken)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(BaseModelError, match=f"tokenizer files missing in {broken}"):
        load_base(broken)


def test_tokenizer_size_and_special_ids_are_checked(tmp_path):
    tok = _tokenizer()
    with pytest.raises(BaseModelError, match="only 100 embedding rows"):
        check_tokenizer(tok, tmp_path, embedding_rows=100)
    tok.pad_token = "<image>"
    with pytest.raises(BaseModelError, match="pad id 1 differs from eos id 0"):
        check_tokenizer(tok, tmp_path, embedding_rows=400)


def test_vision_grid_must_fit_the_projector(tiny):
    model, proc = tiny
    cfg = model.config
    cfg.vision_config.patch_size = 48  # 96 px / 48 -> a 2x2 grid, too small for ppc_6_3_1
    with pytest.raises(BaseModelError, match="2x2 patch grid.*ppc_6_3_1"):
        check_vision(cfg, proc, "models/base")


def test_processor_image_size_must_match_the_vision_config(tiny_base, tmp_path):
    broken = tmp_path / "b"
    shutil.copytree(tiny_base, broken)
    cfg = json.loads((broken / "processor_config.json").read_text())
    cfg["image_processor"]["image_size"] = 64
    (broken / "processor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaseModelError, match="processor resizes to 64 px"):
        load_base(broken)
