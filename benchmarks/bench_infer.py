"""Inference throughput: the reference's batch-1 loop vs colonpipe's batched + sharded path.

Both run in one invocation on the same records, images and model, with the same greedy
decoding forced to a fixed answer length (``min_new_tokens == max_new_tokens``, like the
~12-token CLS/REG/REC answers), so the work per sample is identical.

- baseline: one sample at a time, no bucketing, in this process (how upstream runs);
- ours (CPU): ``run_inference`` end to end - worker subprocesses, length buckets, journals,
  merge - timed from start to the merged file (worker start-up and model load included);
- ours (``--gpu``): ``run_shard`` on one GPU (the per-GPU unit), generation loop timed
  after the model load; real-size phi15-siglip architecture with random bf16 weights.

    python benchmarks/bench_infer.py                      # 2 CPU cores, tiny preset
    python benchmarks/bench_infer.py --gpu --records 2048 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colonpipe.data.images import ImageResolver, load_rgb
from colonpipe.infer.generate import generate_batch
from colonpipe.infer.load import load_for_inference
from colonpipe.coloninst import image_and_question, read_records
from colonpipe.infer.journal import read_journals
from colonpipe.infer.executors import shard_results
from colonpipe.infer.runner import InferJob, run_inference
from colonpipe.infer.worker import ShardSpec, run_shard

QUESTIONS = [  # one CLS, REG and REC template each (spec section 2)
    "<image>\nClassify the object's category.",
    "<image>\nWhat category does {<123><95><242><195>} belong to?",
    "<image>\nWhere is the location of adenoma?",
    "<image>\nCould you provide the category for {<12><340><288><401>}?",
    "<image>\nPlease specify the coordinates of polyp.",
]
ANSWERS = ["polyp", "adenoma", "{<123><95><242><195>}", "ulcer", "{<12><340><288><401>}"]


def make_records(root: Path, n: int, *, image_size: tuple[int, int]) -> Path:
    """``n`` records over ``n // 2`` JPEG images of about ``image_size`` (ids repeat, like EDD2020)."""
    rng = np.random.default_rng(0)
    img_dir = root / "images" / "Bench"
    img_dir.mkdir(parents=True, exist_ok=True)
    n_img = max(1, n // 2)
    w, h = image_size
    for k in range(n_img):
        arr = rng.integers(0, 256, size=(h + k % 7 * 9, w - k % 5 * 11, 3), dtype=np.uint8)
        Image.fromarray(arr).save(img_dir / f"{k}.jpg", quality=90)
    records = [{"id": f"Bench/{i % n_img}.jpg", "image": str(i % n_img),
                "conversations": [{"from": "human", "value": QUESTIONS[i % len(QUESTIONS)]},
                                  {"from": "gpt", "value": ANSWERS[i % len(ANSWERS)]}]} for i in range(n)]
    path = root / "records.json"
    path.write_text(json.dumps(records))
    return path


def build_tiny(root: Path, corpus: Path) -> Path:
    from colonpipe.model.base_model import build_base
    from colonpipe.params import ModelParams

    return build_base(ModelParams(), corpus_files=[corpus], out_dir=root / "model")


def build_real_size(root: Path, corpus: Path) -> Path:
    """phi15-siglip architecture (1.8B) with random weights, saved in bf16; no download needed.

    The tokenizer is a BPE trained on the benchmark prompts (Phi's own is not on this machine);
    its prompts are a little longer than Phi's, so the numbers err on the slow side.
    """
    from colonpipe.model.modeling import ColonGPTForConditionalGeneration
    from colonpipe.model.presets import config_for_preset
    from colonpipe.model.processing import SYSTEM_PROMPT, ColonGPTProcessor
    from colonpipe.model.tokenizer import IMAGE_TOKEN, train_bpe_tokenizer
    from colonpipe.params import ModelParams

    texts = [SYSTEM_PROMPT] + [t["value"].replace(IMAGE_TOKEN, "") for r in read_records(corpus)
                               for t in r["conversations"]]
    tok = train_bpe_tokenizer(texts, vocab_size=4096, model_max_length=2048)
    config = config_for_preset(ModelParams(preset="phi15-siglip"), image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN))
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = ColonGPTForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = tok.eos_token_id
    out = root / "model"
    model.save_pretrained(out)
    ColonGPTProcessor(tok, image_size=config.vision_config.image_size,
                      image_seq_length=config.image_seq_length).save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


def baseline(model_dir: Path, records_path: Path, image_root: Path, n: int, *, device: str, dtype: str,
             new_tokens: int, threads: int) -> dict:
    """Reference-style loop: load, preprocess and generate one sample at a time.

    Returns wall ``loop`` and ``cpu`` seconds (model loaded beforehand) and the ``answers``.
    """
    model, processor = load_for_inference(model_dir, device=device, dtype=dtype, threads=threads)
    resolver = ImageResolver.from_path(image_root)
    records = read_records(records_path)[:n]
    answers = []
    warm = image_and_question(records[0])
    generate_batch(model, processor, [processor.prompt_ids(warm[1])],
                   processor.preprocess_images([load_rgb(resolver.resolve(warm[0]))]), max_new_tokens=2)
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for rec in records:
        image_id, question = image_and_question(rec)
        pixels = processor.preprocess_images([load_rgb(resolver.resolve(image_id))])
        answers += generate_batch(model, processor, [processor.prompt_ids(question)], pixels,
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    _sync(device)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"loop": seconds, "cpu": cpu, "answers": answers}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def ours_cpu(args, model_dir: Path, records_path: Path, image_root: Path, work: Path) -> dict:
    """run_inference end to end; also the steady rate from the workers' own generation timers."""
    job = InferJob(input_path=records_path, image_root=image_root, model_dir=model_dir,
                   out_path=work / "pred.json", journal_dir=work / ".shards", max_new_tokens=args.new_tokens,
                   min_new_tokens=args.new_tokens, batch_size=args.batch_size, num_shards=args.shards,
                   device="cpu", dtype="float32", cpu_threads=len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    run_inference(job)
    wall = time.perf_counter() - start
    results = shard_results(job.journal_dir, job.num_shards)
    answers = [r["conversations"][-1]["value"] for r in json.loads(job.out_path.read_text())]
    return {"wall": wall, "loop": max(r.seconds for r in results),  # shards run in parallel
            "cpu": sum(r.cpu_seconds for r in results), "answers": answers}


def ours_gpu(args, model_dir: Path, records_path: Path, image_root: Path, work: Path) -> dict:
    """run_shard on one GPU: the generation loop timed after the model load, and with it."""
    spec = ShardSpec(input_path=str(records_path), image_root=str(image_root), model_dir=str(model_dir),
                     journal_dir=str(work / ".shards"), shard=0, num_shards=1, batch_size=args.batch_size,
                     max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, device="cuda",
                     dtype="bfloat16", attn_implementation=args.attn, io_workers=args.io_workers)
    start = time.perf_counter()
    result = run_shard(spec)
    wall = time.perf_counter() - start
    done = read_journals(spec.journal_dir)
    return {"wall": wall, "loop": result.seconds, "cpu": result.cpu_seconds,
            "answers": [done[i].get("prediction", "") for i in range(len(done))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="real-size model, bf16, one CUDA device")
    parser.add_argument("--records", type=int,
                        help="records for our path (default 4096 CPU, where worker start-up is a small share; 2048 GPU)")
    parser.add_argument("--baseline-records", type=int, help="records for the batch-1 loop (default 128)")
    parser.add_argument("--batch-size", type=int, help="default 32 CPU / 128 GPU")
    parser.add_argument("--shards", type=int, default=2, help="CPU worker processes")
    parser.add_argument("--baseline-threads", type=int, default=1,
                        help="torch threads of the batch-1 loop (1 is its fastest for the tiny model)")
    parser.add_argument("--new-tokens", type=int, default=12, help="forced answer length")
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--io-workers", type=int, default=8)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    gpu = args.gpu
    args.records = args.records or (2048 if gpu else 4096)
    args.baseline_records = min(args.records, args.baseline_records or 128)
    args.batch_size = args.batch_size or (128 if gpu else 32)
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device visible")
    if args.work_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench_infer.") as tmp:
            return run(args, Path(tmp))
    return run(args, args.work_dir)


def run(args, work: Path) -> None:
    """Build data and model under ``work``, time both paths, print the table."""
    gpu = args.gpu
    records_path = make_records(work / "data", args.records, image_size=(620, 540) if gpu else (160, 140))
    image_root = work / "data" / "images"
    model_dir = build_real_size(work, records_path) if gpu else build_tiny(work, records_path)
    device, dtype = ("cuda", "bfloat16") if gpu else ("cpu", "float32")

    def run_baseline() -> dict:
        return baseline(model_dir, records_path, image_root, args.baseline_records, device=device, dtype=dtype,
                        new_tokens=args.new_tokens, threads=0 if gpu else args.baseline_threads)

    # The baseline runs before AND after our path and keeps its faster time, so load from
    # other processes on a shared machine cannot inflate the ratio.
    before = run_baseline()
    ours = (ours_gpu if gpu else ours_cpu)(args, model_dir, records_path, image_root, work)
    after = run_baseline()
    report(args, min(before, after, key=lambda r: r["loop"]), ours)


def report(args, base: dict, ours: dict) -> None:
    """Print the markdown table (and write --json).

    Wall rates depend on what else runs on the machine; samples per CPU-second do much less,
    so both are shown (on an idle box the wall ratio approaches the CPU ratio x cores used).
    """
    n, nb = args.records, args.baseline_records
    where = torch.cuda.get_device_name() if args.gpu else f"{len(os.sched_getaffinity(0))} CPU cores"
    what = (f"batched bs={args.batch_size}, 1 GPU (run_shard)" if args.gpu
            else f"batched bs={args.batch_size} + {args.shards} shards (run_inference)")
    rows = [("reference-style batch-1 loop (model loaded)", nb, base["loop"], base["cpu"]),
            (f"{what}, generation loop (model loaded)", n, ours["loop"], ours["cpu"]),
            (f"{what}, end to end (start-up + load + merge)", n, ours["wall"], None)]
    base_rate, base_cpu_rate = nb / base["loop"], nb / base["cpu"]
    print(f"\ninference benchmark on {where}; {args.new_tokens} forced new tokens per sample\n")
    print("| path | samples | wall s | samples/s | vs baseline | samples per CPU-s | vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for name, count, secs, cpu in rows:
        cpu_cols = f"{count / cpu:.1f} | {count / cpu / base_cpu_rate:.1f}x" if cpu else "- | -"
        print(f"| {name} | {count} | {secs:.1f} | {count / secs:.1f} | {count / secs / base_rate:.1f}x | {cpu_cols} |")
    same = sum(a == b for a, b in zip(base["answers"], ours["answers"])) / len(base["answers"])
    print(f"\nidentical answers on the {nb} shared records: {same:.0%}")
    if args.json:
        args.json.write_text(json.dumps({"device": where, "rows": rows, "identical_answers": same,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
