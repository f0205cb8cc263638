"""The real-size phi15-siglip architecture through the real code paths, on CPU (not a CI test).

What runs, each phase in its own process (so "peak RSS" is that phase's own high-water mark):

1. ``build``: phi15-siglip at REAL size from config (SigLIP so400m-384 + Phi-1.5: 27 + 24 layers,
   ~1.8B parameters) with random weights, no download; a byte-level BPE tokenizer trained on a
   small local corpus (its ids fit in Phi-1.5's 51,200 embedding rows); the base checks; saved as
   ``models/base`` would be (float32).
2. ``zero2``: two stage-2 optimizer steps (LoRA r=128 on every LM linear, projector full, SigLIP
   frozen, gradient checkpointing, max_length 2048) through DeepSpeed ZeRO-2 in one gloo process.
3. ``plain``: the same two steps through the plain engine.
4. ``merge``: the plain run's ``final/`` (adapter + projector) merged into its base and saved.
5. ``generate``: the merged folder reloaded and four answers generated in one greedy batch.

    python benchmarks/bench_real_cpu.py [--work DIR] [--batch 2] [--new-tokens 16]

Needs about 10-15 GB of RAM and 20 GB of disk under ``--work`` (default: a temporary folder,
deleted at the end). Prints one table: phase, wall seconds, peak RSS (GiB), what it did.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("build", "zero2", "plain", "merge", "generate")
TOKENIZER_VOCAB = 4096  # a locally trained BPE; Phi-1.5's 51,200 embedding rows hold it with room to spare


def _corpus_texts(data_json: Path) -> list[str]:
    from colonpipe.model.processing import SYSTEM_PROMPT, dialogue_text
    from colonpipe.model.tokenizer import IMAGE_TOKEN, iter_dialogues

    texts = [dialogue_text(q, a).replace(IMAGE_TOKEN, "") for q, a in iter_dialogues([data_json])]
    return texts * 4 + [SYSTEM_PROMPT]


def phase_build(work: Path, args) -> str:
    import torch

    from colonpipe.model.checks import check_base
    from colonpipe.model.modeling import ColonGPTForConditionalGeneration
    from colonpipe.model.presets import config_for_preset
    from colonpipe.model.processing import ColonGPTProcessor
    from colonpipe.model.tokenizer import IMAGE_TOKEN, train_bpe_tokenizer
    from colonpipe.params import ModelParams

    from bench_train import synthetic_records

    data = synthetic_records(work / "data", 8)
    tokenizer = train_bpe_tokenizer(_corpus_texts(data), vocab_size=TOKENIZER_VOCAB, model_max_length=2048)
    params = ModelParams(preset="phi15-siglip")
    config = config_for_preset(params, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    config.text_config.bos_token_id = config.text_config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    model = ColonGPTForConditionalGeneration(config)
    processor = ColonGPTProcessor(tokenizer, image_size=config.vision_config.image_size,
                                  image_seq_length=config.image_seq_length)
    check_base(model.config, processor, work / "base")
    gen = model.generation_config
    gen.eos_token_id = gen.pad_token_id = gen.bos_token_id = processor.eos_token_id
    model.save_pretrained(work / "base")
    processor.save_pretrained(work / "base")
    n = sum(p.numel() for p in model.parameters())
    return (f"{n / 1e9:.2f}B params, {config.image_seq_length} image tokens, vocab {len(tokenizer)}/"
            f"{config.text_config.vocab_size} rows, lm_head bias {model.language_model.lm_head.bias is not None}")


def _train(work: Path, args, *, deepspeed: bool) -> str:
    from colonpipe.params import DeepSpeedParams, LoraParams, PartsParams, TrainParams
    from colonpipe.train.launch import set_single_process_env
    from colonpipe.train.trainer import TrainPaths, run_training

    if deepspeed:
        set_single_process_env()  # DeepSpeed needs the launcher variables even for one process
    p = TrainParams(
        epochs=1, batch_size=args.batch, grad_accum=1, lr=2e-4, projector_lr=2e-3, max_length=2048,
        save_steps=10**6, max_steps=2, gradient_checkpointing=True, precision="fp32", cpu_threads=0,
        parts=PartsParams(vision="frozen", projector="full", llm="lora"), lora=LoraParams(r=128, alpha=256),
        deepspeed=DeepSpeedParams(enabled=deepspeed, zero_stage=2),
    )
    name = "zero2" if deepspeed else "plain"
    m = run_training(p, TrainPaths(work / "base", work / "data" / "train.json", work / "data" / "img", work / name),
                     stage="finetune")
    return (f"2 steps x batch {args.batch}: loss {m['first_loss']:.3f} -> {m['final_loss']:.3f}, "
            f"{m['train_seconds']:.0f} s in steps, trainable {m['params_trainable'] / 1e6:.0f}M")


def phase_zero2(work: Path, args) -> str:
    return _train(work, args, deepspeed=True)


def phase_plain(work: Path, args) -> str:
    return _train(work, args, deepspeed=False)


def phase_merge(work: Path, args) -> str:
    from colonpipe.model.merge_adapter import merge_to_dir

    out = merge_to_dir(work / "plain" / "final", work / "merged")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return f"adapter + projector folded into the base: {size / 2**30:.1f} GiB on disk"


def phase_generate(work: Path, args) -> str:
    from PIL import Image

    from colonpipe.infer.generate import generate_answers
    from colonpipe.infer.load import load_for_inference

    model, processor = load_for_inference(work / "merged")
    records = json.loads((work / "data" / "train.json").read_text())[:4]
    questions = [r["conversations"][0]["value"] for r in records]
    images = [Image.open(work / "data" / "img" / r["id"]).convert("RGB") for r in records]
    t0 = time.perf_counter()
    answers = generate_answers(model, processor, questions, images, batch_size=4, max_new_tokens=args.new_tokens)
    secs = time.perf_counter() - t0
    return f"4 answers in one batch, {args.new_tokens} new tokens max, {secs:.1f} s generate: {answers[0][:30]!r}..."


def run_phase(name: str, work: Path, args) -> None:
    t0 = time.perf_counter()
    note = globals()[f"phase_{name}"](work, args)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    (work / f"phase-{name}.json").write_text(json.dumps({"wall_s": wall, "peak_rss_gib": rss, "note": note}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: temporary, deleted)")
    parser.add_argument("--batch", type=int, default=2, help="micro batch of the two training steps")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: one phase per process
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per phase")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.phase:
        run_phase(args.phase, args.work, args)
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_real_cpu."))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name in PHASES:
            cmd = [sys.executable, __file__, "--phase", name, "--work", str(work), "--batch", str(args.batch),
                   "--new-tokens", str(args.new_tokens)]
            print(f"== {name}", flush=True)
            subprocess.run(cmd, check=True, timeout=args.timeout, env=os.environ.copy())
            rows.append((name, json.loads((work / f"phase-{name}.json").read_text())))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| phase | wall s | peak RSS GiB | what |\n|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['wall_s']:.1f} | {r['peak_rss_gib']:.2f} | {r['note']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
