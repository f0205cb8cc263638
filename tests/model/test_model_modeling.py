"""ColonGPT model: image splicing, count checks, frozen tower, save/load, batched generation."""

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText

from colonpipe.model import ColonGPTConfig, ColonGPTForConditionalGeneration, load_base

QUESTIONS = [
    "<image>\nClassify the object's category.",
    "<image>\nWhere is dyed lifted polyp located? Answer with the box of the object in pixels.",
    "<image>\nWhat category does {<12><9><242><19>} belong to?",
]


def _images():
    return [Image.new("RGB", (64, 48), (220, 40, 40)), Image.new("RGB", (30, 90), (40, 200, 60)),
            Image.new("RGB", (70, 70), (30, 30, 220))]


def test_components_follow_the_llava_layout(tiny):
    model, proc = tiny
    assert isinstance(model, ColonGPTForConditionalGeneration)
    names = {n for n, _ in model.named_children()}
    assert names == {"vision_tower", "multi_modal_projector", "language_model"}
    assert hasattr(model.language_model, "lm_head")  # a whole causal LM
    lm_linear = {n.split(".")[-1] for n, m in model.language_model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {"q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2", "lm_head"} <= lm_linear
    assert model.config._attn_implementation == "sdpa"
    assert model.language_model.config._attn_implementation == "sdpa"


def test_image_features_shape_and_splice_position(tiny):
    model, proc = tiny
    batch = proc.generation_batch(QUESTIONS[:2], _images()[:2])
    feats = model.get_image_features(batch["pixel_values"])
    assert feats.shape == (2, model.config.image_seq_length, model.config.text_config.hidden_size)
    seen = {}

    def grab(mod, args, kwargs):
        seen["emb"] = kwargs["inputs_embeds"]

    hook = model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(**batch)
    hook.remove()
    slots = batch["input_ids"] == model.config.image_token_id
    torch.testing.assert_close(seen["emb"][slots], feats.detach().reshape(-1, feats.shape[-1]))
    text_emb = model.get_input_embeddings()(batch["input_ids"])
    torch.testing.assert_close(seen["emb"][~slots], text_emb[~slots])


def test_token_feature_count_mismatch_is_a_loud_error(tiny):
    model, proc = tiny
    batch = proc.generation_batch(QUESTIONS[:2], _images()[:2])
    ids = batch["input_ids"].clone()
    ids[1, (ids[1] == model.config.image_token_id).nonzero()[0]] = proc.eos_token_id  # one slot fewer
    with pytest.raises(ValueError, match="image tokens and image features disagree"):
        model(input_ids=ids, pixel_values=batch["pixel_values"])
    with pytest.raises(ValueError, match="disagree"):
        model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"][:1])  # one image short
    with pytest.raises(ValueError, match="no pixel_values"):
        model(input_ids=batch["input_ids"])


def test_loss_trains_projector_and_lm_but_not_the_frozen_tower(tiny):
    model, proc = tiny
    model.train()
    model.vision_tower.requires_grad_(False)
    batch = proc.training_batch(QUESTIONS[:2], ["polyp", "{<1><2><30><40>}"], _images()[:2])
    out = model(**batch)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is None for p in model.vision_tower.parameters())
    assert all(p.grad is not None for p in model.multi_modal_projector.parameters())
    assert model.language_model.lm_head.weight.grad is not None


def test_save_load_round_trip_through_the_auto_class(tiny, tmp_path):
    model, proc = tiny
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ColonGPTConfig)
    again = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert type(again) is ColonGPTForConditionalGeneration
    batch = proc.training_batch(QUESTIONS, ["polyp", "{<1><2><3><4>}", "ulcer"], _images())
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    m2, p2 = load_base(tmp_path, dtype=torch.bfloat16)
    assert m2.dtype == torch.bfloat16 and p2.image_seq_length == model.config.image_seq_length


def test_batched_left_padded_generation_equals_one_at_a_time(tiny):
    model, proc = tiny
    torch.manual_seed(1)  # make the random tiny model input-sensitive: sharper logits
    with torch.no_grad():
        model.language_model.lm_head.weight.mul_(20)
    imgs = _images()
    kw = dict(max_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True)
    batch = proc.generation_batch(QUESTIONS, imgs)
    assert (batch["attention_mask"] == 0).any()  # really left-padded
    with torch.no_grad():
        out = model.generate(**batch, **kw)
    plen = batch["input_ids"].shape[1]
    for i in range(3):
        one = proc.generation_batch([QUESTIONS[i]], [imgs[i]])
        with torch.no_grad():
            ref = model.generate(**one, **kw)
        new = ref.sequences[0, one["input_ids"].shape[1]:]
        assert out.sequences[i, plen : plen + len(new)].tolist() == new.tolist()
        torch.testing.assert_close(out.logits[0][i], ref.logits[0][0], atol=1e-4, rtol=1e-4)
    firsts = {tuple(out.logits[0][i].topk(3).indices.tolist()) for i in range(3)}
    assert len(firsts) > 1  # the images/questions really change the prediction


def test_kv_cache_decode_matches_full_forward(tiny):
    model, proc = tiny
    batch = proc.generation_batch(QUESTIONS[:1], _images()[:1])
    with torch.no_grad():
        pre = model(**batch, use_cache=True)
        nxt = pre.logits[:, -1].argmax(-1, keepdim=True)
        step = model(input_ids=nxt, past_key_values=pre.past_key_values, use_cache=True)
        full = model(input_ids=torch.cat([batch["input_ids"], nxt], 1), pixel_values=batch["pixel_values"])
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], atol=1e-4, rtol=1e-4)
