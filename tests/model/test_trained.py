"""Trained-artifact I/O: the self-contained PEFT adapter (projector and full parts as
``modules_to_save``, base by absolute path) loads in a fresh process with plain transformers + peft."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from colonpipe.model import checkpoint_files as ck
from colonpipe.model.presets import load_base
from colonpipe.model.trained import load_trainables, load_trained, save_trainables
from colonpipe.params import LoraParams, PartsParams
from colonpipe.train.parts import configure_parts

QUESTION = "<image>\nClassify the object's category."


def _trained_dir(base: Path, out: Path, parts: PartsParams) -> Path:
    """A training output with random (non-zero) LoRA, projector and full-part weights."""
    model, _ = load_base(base)
    model, _ = configure_parts(model, parts, LoraParams(r=4, alpha=8, dropout=0.0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    out.mkdir(parents=True)
    full = [part for part in ("vision", "llm") if getattr(parts, part) == "full"]
    save_trainables(out, model, full_parts=full, is_main=True)
    _, processor = load_base(base)
    processor.save_pretrained(out)
    ck.write_json(out / ck.TRAIN_CONFIG, {"base_dir": os.path.relpath(base), "fingerprint": "t"})
    ck.write_json(out / ck.TRAINER_STATE, {"global_step": 1})
    ck.write_manifest(out)
    return out


def _batch(processor):
    return processor.generation_batch([QUESTION, QUESTION], [Image.new("RGB", (40, 30), (200, 60, 60)),
                                                              Image.new("RGB", (30, 50), (20, 160, 90))])


FRESH = textwrap.dedent("""
    import json, sys, torch
    import colonpipe.model  # registers colongpt with the Auto classes; nothing else of colonpipe
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from PIL import Image
    adapter = sys.argv[1]
    base = json.load(open(adapter + "/adapter_config.json"))["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), adapter).eval()
    processor = AutoProcessor.from_pretrained(base)
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Classify the object's category."}]}]
    text = processor.apply_chat_template(conv, add_generation_prompt=True)
    images = [Image.new("RGB", (40, 30), (200, 60, 60)), Image.new("RGB", (30, 50), (20, 160, 90))]
    batch = processor(images=images, text=[text, text])
    with torch.no_grad():
        logits = model(**batch).logits
    loaded = sorted(m for m in sys.modules if m.startswith("colonpipe"))
    torch.save({"logits": logits, "modules": loaded}, sys.argv[2])
""")


@pytest.mark.parametrize("parts", [PartsParams(llm="lora"), PartsParams(vision="full", llm="lora")],
                         ids=["lora", "lora+full-vision"])
def test_adapter_alone_restores_the_trained_model_in_a_fresh_process(tiny_base, tmp_path, monkeypatch, parts):
    monkeypatch.chdir(tiny_base.parent)  # train_config.json names the base relatively, as the stages do
    final = _trained_dir(tiny_base, tmp_path / "final", parts)
    adapter = final / ck.ADAPTER_DIR
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_base.resolve())
    expected = {"multi_modal_projector"} | ({"vision_tower"} if parts.vision == "full" else set())
    assert set(config["modules_to_save"]) == expected
    keys = load_file(str(adapter / "adapter_model.safetensors"))
    assert any(k.startswith("base_model.model.multi_modal_projector.") for k in keys)

    model, processor = load_trained(final)
    with torch.no_grad():
        want = model(**_batch(processor)).logits
    out = tmp_path / "fresh.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", FRESH, str(adapter), str(out)], check=True, env=env, timeout=300,
                   cwd=tmp_path)
    got = torch.load(out, weights_only=True)
    outside = [m for m in got["modules"] if m != "colonpipe" and not m.startswith("colonpipe.model")]
    leaves = {"colonpipe.atomic", "colonpipe.hashing", "colonpipe.coloninst", "colonpipe.taxonomy",
              "colonpipe.projector_types", "colonpipe.params"}  # what colonpipe.model sits on
    assert set(outside) <= leaves, outside
    torch.testing.assert_close(got["logits"], want, rtol=0, atol=1e-5)
    base_model, _ = load_base(tiny_base)
    with torch.no_grad():
        assert (base_model(**_batch(processor)).logits - want).abs().max() > 1e-3  # the training shows


def test_resume_loads_a_self_contained_adapter_into_the_training_model(tiny_base, tmp_path):
    parts = PartsParams(llm="lora")
    final = _trained_dir(tiny_base, tmp_path / "final", parts)
    fresh, _ = configure_parts(load_base(tiny_base)[0], parts, LoraParams(r=4, alpha=8, dropout=0.0))
    load_trainables(fresh, final)  # modules_to_save copies skipped, projector from projector.safetensors
    merged, processor = load_trained(final, merge=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(**_batch(processor)).logits, merged(**_batch(processor)).logits,
                                   rtol=0, atol=1e-5)
