"""``colonpipe export --format llava``: a stock transformers LLaVA folder with ColonGPT's logits.

The main check loads the export in a fresh interpreter in which importing colonpipe raises, so
nothing of ours can be registered or patched there. Tolerances: the LM-head bias fold rewrites
the head as ``W + rank-1`` (:func:`fold_head_bias`), which reorders float32 sums; measured max
|logit difference| 8.6e-6 at logits up to 12 (a model with zero head bias exports bit-exactly),
so 1e-4 is asserted, and greedy tokens must be identical.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlavaForConditionalGeneration

from colonpipe.infer.load import load_for_inference
from colonpipe.model.export_llava import ExportError, export_llava, fold_head_bias, llava_processor
from colonpipe.model.base_model import build_base
from colonpipe.model.presets import load_base
from colonpipe.params import ModelParams, TinyModelParams
from colonpipe.register.model_commands import export_main
from tests.trained import save_perturbed, write_training_output

QUESTIONS = ["<image>\nCategorize the object.", "<image>\nWhere is polyp located?",
             "<image>\nWhat category does {<1><20><30><44>} belong to?"]
LOGIT_ATOL = 1e-4


def _images(folder: Path) -> list[Path]:
    """Three frames of different shapes (pad-to-square matters), saved as PNG."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate([(40, 64), (120, 77), (96, 96)]):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def bases(tmp_path_factory, corpus_files) -> dict[str, Path]:
    """Tiny bases with the two exportable projectors. The mlp one sees 100 px through 8 px patches:
    like SigLIP's 384 / 14, the grid drops a remainder, which LLaVA's token count must too."""
    root = tmp_path_factory.mktemp("bases")
    sizes = {"mlp2x_gelu": TinyModelParams(image_size=100), "linear": TinyModelParams()}
    return {p: build_base(ModelParams(projector_type=p, tiny=t), corpus_files=corpus_files, out_dir=root / p)
            for p, t in sizes.items()}


def _reference(model, processor, images: list[Path], max_new_tokens: int = 12) -> dict:
    batch = processor.generation_batch(QUESTIONS, [Image.open(p).convert("RGB") for p in images])
    with torch.no_grad():
        logits = model(**batch).logits
        tokens = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return {**batch, "logits": logits, "new_tokens": tokens[:, batch["input_ids"].shape[1]:]}


# Runs in a fresh interpreter: colonpipe cannot be imported there at all.
_FRESH = textwrap.dedent("""
    import importlib.abc, json, sys
    class _NoColonpipe(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "colonpipe" or name.startswith("colonpipe."):
                raise ImportError("colonpipe must not be imported here: " + name)
    sys.meta_path.insert(0, _NoColonpipe())
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, ref_path, out_path, threads = sys.argv[1:5]
    torch.set_num_threads(int(threads))  # the reference's: fp32 sums in the same order
    ref = torch.load(ref_path, weights_only=True)
    model, info = AutoModelForImageTextToText.from_pretrained(folder, output_loading_info=True)
    processor = AutoProcessor.from_pretrained(folder, backend="pil")
    mask = ref["attention_mask"].bool()
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                       pixel_values=ref["pixel_values"]).logits
    same_inputs, same_tokens = [], []
    for i, (image, question) in enumerate(zip(ref["images"], ref["questions"])):
        conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(conv, add_generation_prompt=True)
        enc = processor(images=[Image.open(image)], text=[text], return_tensors="pt")
        n = int(ref["attention_mask"][i].sum())
        same_inputs.append(enc["input_ids"][0].tolist() == ref["input_ids"][i, -n:].tolist()
                           and torch.equal(enc["pixel_values"][0], ref["pixel_values"][i]))
        new = model.generate(**enc, max_new_tokens=ref["new_tokens"].shape[1], do_sample=False)
        same_tokens.append(new[0, enc["input_ids"].shape[1]:].tolist() == ref["new_tokens"][i].tolist())
    json.dump({
        "model_class": type(model).__name__, "processor_class": type(processor).__name__,
        "loading": {k: sorted(v) for k, v in info.items() if k != "error_msgs"},
        "max_abs_diff": float((logits - ref["logits"])[mask].abs().max()),
        "same_inputs": same_inputs, "same_tokens": same_tokens,
        "colonpipe_modules": sorted(m for m in sys.modules if m.startswith("colonpipe")),
    }, open(out_path, "w"))
""")


def test_mlp_export_loads_without_colonpipe_and_gives_the_same_logits(bases, tmp_path):
    saved = save_perturbed(bases["mlp2x_gelu"], tmp_path / "saved")
    assert export_main([str(saved), str(tmp_path / "llava"), "--format", "llava"]) == 0
    model, processor = load_base(saved)
    images = _images(tmp_path / "img")
    ref = _reference(model.eval(), processor, images)
    assert bool(model.language_model.lm_head.bias.any())  # the fold is exercised
    torch.save({**ref, "images": [str(p) for p in images], "questions": [q.split("\n", 1)[1] for q in QUESTIONS]},
               tmp_path / "ref.pt")
    script = tmp_path / "fresh.py"
    script.write_text(_FRESH)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "llava"), str(tmp_path / "ref.pt"),
                           str(tmp_path / "got.json"), str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "got.json").read_text())
    assert (got["model_class"], got["processor_class"]) == ("LlavaForConditionalGeneration", "LlavaProcessor")
    # lm_head.bias is the zero tensor kept for runtimes whose Phi head declares one (vLLM)
    assert got["loading"] == {"missing_keys": [], "unexpected_keys": ["lm_head.bias"], "mismatched_keys": []}
    assert got["max_abs_diff"] <= LOGIT_ATOL, got
    assert got["same_inputs"] == [True] * 3  # chat template + processor == ColonGPT's ids and pixels
    assert got["same_tokens"] == [True] * 3
    assert got["colonpipe_modules"] == []


def test_training_output_is_merged_then_exported_linear(bases, tmp_path, caplog):
    final = write_training_output(bases["linear"], tmp_path / "final")
    caplog.set_level(logging.INFO)
    assert export_main([str(final), str(tmp_path / "llava"), "--format", "llava"]) == 0
    model, processor = load_for_inference(final)
    ref = _reference(model, processor, _images(tmp_path / "img"))
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path / "llava").eval()
    assert llava.config.projector_hidden_act == "linear"  # linear_2 is the identity
    with torch.no_grad():
        logits = llava(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                       pixel_values=ref["pixel_values"]).logits
    mask = ref["attention_mask"].bool()
    assert (logits - ref["logits"])[mask].abs().max() <= LOGIT_ATOL
    base, _ = load_base(bases["linear"])
    with torch.no_grad():
        untrained = base(**{k: ref[k] for k in ("input_ids", "attention_mask", "pixel_values")}).logits
    assert (untrained - ref["logits"])[mask].abs().max() > 0.1  # adapter, projector and head were merged


def test_bfloat16_export_costs_no_more_than_bfloat16_itself(bases, tmp_path):
    model, processor = load_base(save_perturbed(bases["mlp2x_gelu"], tmp_path / "saved"))
    ref = _reference(model.eval(), processor, _images(tmp_path / "img"), max_new_tokens=1)
    inputs = {k: ref[k] for k in ("input_ids", "attention_mask")}
    pixels = ref["pixel_values"].bfloat16()
    model = model.bfloat16()
    export_llava(model, processor, tmp_path / "llava16")
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path / "llava16", dtype=torch.bfloat16).eval()
    mask = ref["attention_mask"].bool()
    with torch.no_grad():
        ours = (model(**inputs, pixel_values=pixels).logits.float() - ref["logits"])[mask].abs().mean()
        theirs = (llava(**inputs, pixel_values=pixels).logits.float() - ref["logits"])[mask].abs().mean()
    # measured: 0.0181 (ColonGPT bf16) vs 0.0195 (LLaVA bf16) mean |error| against float32
    assert theirs <= 1.25 * ours, (float(ours), float(theirs))


def test_ppc_model_is_refused_before_anything_is_written(tiny_base, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    assert export_main([str(tiny_base), str(tmp_path / "out"), "--format", "llava"]) == 1
    assert "'ppc_6_3_1' has no stock-LLaVA equivalent" in caplog.text
    assert "needs the colonpipe package" in caplog.text
    assert not (tmp_path / "out").exists()
    model, processor = load_base(tiny_base)
    with pytest.raises(ExportError, match="needs the colonpipe package"):
        export_llava(model, processor, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fold_head_bias_is_exact_for_any_layernorm_output():
    """W' LN'(x) == W LN(x) + b for random x, in float64 (the identity itself, no rounding)."""
    gen = torch.Generator().manual_seed(1)
    d, v = 32, 50
    w, b = torch.randn(v, d, generator=gen, dtype=torch.float64), torch.randn(v, generator=gen, dtype=torch.float64)
    for beta in (torch.zeros(d, dtype=torch.float64), torch.randn(d, generator=gen, dtype=torch.float64)):
        gamma = torch.rand(d, generator=gen, dtype=torch.float64) + 0.5
        w_new, beta_new = fold_head_bias(w, b, gamma, beta, dtype=torch.float64)
        x = torch.randn(20, d, generator=gen, dtype=torch.float64) * 3 + 1
        before = torch.nn.functional.layer_norm(x, (d,), gamma, beta) @ w.T + b
        after = torch.nn.functional.layer_norm(x, (d,), gamma, beta_new) @ w_new.T
        assert torch.allclose(before, after, atol=1e-10, rtol=0)
    with pytest.raises(ExportError, match="zero weights"):
        fold_head_bias(w, b, torch.zeros(d), torch.zeros(d), dtype=torch.float32)


def test_chat_template_renders_the_colongpt_conversation(tiny_base):
    _, processor = load_base(tiny_base)
    llava = llava_processor(processor, patch_size=8)
    system = processor.system_prompt
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Categorize the object."}]}]
    assert llava.apply_chat_template(turn, add_generation_prompt=True) == \
        f"{system} USER: <image>\nCategorize the object. ASSISTANT:"
    dialogue = turn + [{"role": "assistant", "content": [{"type": "text", "text": "polyp"}]},
                       {"role": "user", "content": "And the box?"}]
    assert llava.apply_chat_template([{"role": "system", "content": "S."}] + dialogue) == \
        "S. USER: <image>\nCategorize the object. ASSISTANT: polyp<|endoftext|>USER: And the box? "
