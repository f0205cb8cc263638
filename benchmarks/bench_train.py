"""Training speed: samples/s and tokens/s, printed as ratios against a baseline in the same run.

CPU (default): the ``tiny`` preset on synthetic CLS/REC dialogues, through the real recipe
(``run_training`` with ``max_steps``; setup is excluded, data loading is included). Configs:
- ``baseline``: batch 1, torch's default threads, eager attention, gradient checkpointing on
  (the recipe's GPU settings applied naively to the CPU);
- ``+batch8``, ``+1 thread``: one change at a time;
- ``default``: the ``finetune`` section of params.yaml (the demo's settings); ``default@all``: the
  same with all cores (faster on an idle machine, far slower when the cores are shared).

    python benchmarks/bench_train.py [--steps 30] [--json out.json]

GPU (``--gpu``): the real phi15-siglip architecture from config with random bf16 weights on
CUDA (no download), LoRA r=128 on the LM + full projector + frozen SigLIP, fused AdamW, one
synthetic batch of ``--batch`` dialogues of ``--text-tokens`` text tokens + 246 image tokens.
For eager / sdpa / flash_attention_2 (when importable) it reports samples/s per GPU, peak
memory and model FLOPs utilisation:

    MFU = flops_per_sample * samples_per_s / peak_bf16_flops
    flops_per_sample = T * (4 * N_lm + 6 * N_lora + 12 * layers * T * d)      LM: frozen weights do
                     + 2 * N_vision * P + 4 * layers_v * P^2 * d_v               forward + input-grad (4N),
                     + 3 * projector_forward_flops                               LoRA fwd+bwd (6N), attention;
                                                                                 SigLIP forward only (frozen,
                                                                                 off the grad path); projector 3x
    (T = LM tokens, P = 729 patches; activation recomputation is not counted, as MFU convention)

    python benchmarks/bench_train.py --gpu [--batch 16] [--steps 10] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense bf16, SXM


# --------------------------------------------------------------------------- CPU
def synthetic_records(root: Path, n: int) -> Path:
    """``n`` CLS / REC dialogues over coloured-disc images under ``root`` (train.json)."""
    rng = np.random.default_rng(0)
    labels = ["polyp", "ulcer", "erosion", "blood fresh"]
    (root / "img").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        arr = np.full((240, 320, 3), 180, np.uint8)
        x, y = rng.integers(40, 260), rng.integers(40, 180)
        arr[y - 30 : y + 30, x - 30 : x + 30] = rng.integers(0, 255, 3)
        Image.fromarray(arr).save(root / "img" / f"{i}.jpg")
        label = labels[i % len(labels)]
        q, a = (("<image>\nClassify the object's category.", label) if i % 2 else
                (f"<image>\nWhere is {label} located?", f"{{<{x-30}><{y-30}><{x+29}><{y+29}>}}"))
        records.append({"id": f"{i}.jpg", "image": str(i), "conversations": [
            {"from": "human", "value": q}, {"from": "gpt", "value": a}]})
    (root / "train.json").write_text(json.dumps(records))
    return root / "train.json"


def bench_cpu(steps: int) -> dict:
    from colonpipe.model.base_model import build_base
    from colonpipe.params import load_section
    from colonpipe.train.trainer import TrainPaths, run_training

    default = dataclasses.replace(load_section("finetune"), max_steps=steps, save_steps=10**9, epochs=100)
    naive = dataclasses.replace(default, batch_size=1, cpu_threads=0, attn_implementation="eager",
                                gradient_checkpointing=True)
    configs = {"baseline": naive, "+batch8": dataclasses.replace(naive, batch_size=8),
               "+1 thread": dataclasses.replace(naive, batch_size=8, cpu_threads=1), "default": default,
               "default@all": dataclasses.replace(default, cpu_threads=0)}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthetic_records(tmp / "data", 256)
        base = build_base(load_section("model"), corpus_files=[data], out_dir=tmp / "base")
        for name, p in configs.items():
            torch.set_num_threads(p.cpu_threads or os.cpu_count() or 1)
            m = run_training(p, TrainPaths(base, data, tmp / "data" / "img", tmp / name), stage="bench")
            out[name] = {"samples_per_s": m["samples_per_s"], "tokens_per_s": m["tokens_per_s"],
                         "batch": p.batch_size, "threads": p.cpu_threads or "all",
                         "attn": p.attn_implementation, "grad_ckpt": p.gradient_checkpointing}
    return out


# --------------------------------------------------------------------------- GPU
def flops_per_sample(cfg, n_lora: int, text_tokens: int) -> float:
    """Model FLOPs of one training sample (see the module docstring)."""
    t, v = cfg.text_config, cfg.vision_config
    lm_tokens = text_tokens + cfg.image_seq_length
    d_, ff = t.hidden_size, t.intermediate_size
    n_lm = t.num_hidden_layers * (4 * d_ * d_ + 2 * d_ * ff) + d_ * t.vocab_size  # matmul weights (+lm_head)
    patches = (v.image_size // v.patch_size) ** 2
    n_vis = v.num_hidden_layers * (4 * v.hidden_size**2 + 2 * v.hidden_size * v.intermediate_size)
    d, dv = t.hidden_size, v.hidden_size
    proj = 2 * patches * dv * d + 2 * 9 * d * d * (cfg.image_seq_length - 1) + 2 * cfg.image_seq_length * d * d
    lm = lm_tokens * (4 * n_lm + 6 * n_lora + 12 * t.num_hidden_layers * lm_tokens * d)
    vision = 2 * n_vis * patches + 4 * v.num_hidden_layers * patches**2 * dv
    return lm + vision + 3 * proj


def bench_gpu(batch: int, steps: int, text_tokens: int, peak_tflops: float | None) -> dict:
    import importlib.util

    from colonpipe.model.modeling import ColonGPTForConditionalGeneration
    from colonpipe.model.presets import config_for_preset
    from colonpipe.params import LoraParams, ModelParams, PartsParams
    from colonpipe.train.loss import causal_lm_loss
    from colonpipe.train.parts import configure_parts

    name = torch.cuda.get_device_name()
    peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    impls = ["eager", "sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])
    torch.backends.cuda.matmul.allow_tf32 = True
    out = {"device": name, "batch": batch, "text_tokens": text_tokens}
    for impl in impls:
        cfg = config_for_preset(ModelParams(preset="phi15-siglip"))
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            model = ColonGPTForConditionalGeneration(cfg)  # random init, directly on the GPU
        torch.set_default_dtype(torch.float32)
        model.set_attn_implementation(impl)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model, counts = configure_parts(model, PartsParams(llm="lora"), LoraParams(r=128, alpha=256, dropout=0.05))
        model.to(device="cuda", dtype=torch.bfloat16).train()  # pure bf16 (no fp32 master copy)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
        length = text_tokens + cfg.image_seq_length
        ids = torch.randint(2, 50000, (batch, length), device="cuda")
        ids[:, 40 : 40 + cfg.image_seq_length] = cfg.image_token_id
        labels = torch.full_like(ids, -100)
        labels[:, -16:] = ids[:, -16:]
        size = cfg.vision_config.image_size
        pixels = torch.randn(batch, 3, size, size, device="cuda", dtype=torch.bfloat16)
        torch.cuda.reset_peak_memory_stats()

        def step():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels).logits
            causal_lm_loss(logits, labels).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(3):
            step()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        sps = batch * steps / (time.perf_counter() - t0)
        n_lora = counts.by_part["llm"][0]
        fl = flops_per_sample(cfg, n_lora, text_tokens)
        out[impl] = {"samples_per_s": sps, "tokens_per_s": sps * length,
                     "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
                     "mfu": fl * sps / (peak * 1e12) if peak else None, "tflops_per_sample": fl / 1e12}
        del model, opt
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="timed optimizer steps (CPU 30, GPU 10)")
    ap.add_argument("--batch", type=int, default=16, help="GPU: dialogues per step")
    ap.add_argument("--text-tokens", type=int, default=96, help="GPU: text tokens besides the 246 image tokens")
    ap.add_argument("--peak-tflops", type=float, default=None, help="GPU peak bf16 TFLOPS (default by name)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.gpu:
        res = bench_gpu(args.batch, args.steps or 10, args.text_tokens, args.peak_tflops)
        print(f"{res['device']}: batch {res['batch']}, {res['text_tokens']}+246 tokens, LoRA r=128, bf16")
        print(f"{'attention':<18}{'samples/s':>10}{'tokens/s':>11}{'peak GiB':>10}{'MFU':>7}")
        for impl in ("eager", "sdpa", "flash_attention_2"):
            if impl in res:
                r = res[impl]
                mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
                print(f"{impl:<18}{r['samples_per_s']:>10.1f}{r['tokens_per_s']:>11.0f}{r['peak_mem_gib']:>10.1f}{mfu:>7}")
    else:
        res = bench_cpu(args.steps or 30)
        base = res["baseline"]["samples_per_s"]
        print(f"{'config':<12}{'batch':>6}{'threads':>8}{'attn':>7}{'ckpt':>6}{'samples/s':>11}{'tokens/s':>10}{'x base':>8}")
        for name, r in res.items():
            print(f"{name:<12}{r['batch']:>6}{str(r['threads']):>8}{r['attn']:>7}{str(r['grad_ckpt']):>6}"
                  f"{r['samples_per_s']:>11.1f}{r['tokens_per_s']:>10.0f}{r['samples_per_s'] / base:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
