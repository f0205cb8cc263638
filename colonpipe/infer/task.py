"""One task over its splits: resolve the runtime (device, dtype, shards) and run each split.

File layout (reference names)::

    {data_dir}/{split}/ColonINST-{split}-{task}.json      input
    {out_dir}/{split}_pred_{task}.json                    predictions
    {out_dir}/.shards-{task}/{split}/                     journals (persistent, resumable)
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from colonpipe.infer.merge_shards import MergeSummary
from colonpipe.infer.runner import InferJob, run_inference
from colonpipe.params import InferParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    device: str  # "cpu" | "cuda"
    dtype: str  # torch dtype name
    num_shards: int
    gpu_ids: tuple[str, ...]
    attn_implementation: str


def resolve_runtime(params: InferParams) -> Runtime:
    """Turn the ``auto`` knobs into concrete values for this machine."""
    import torch

    cuda = torch.cuda.is_available()
    if params.device == "cuda" and not cuda:
        raise RuntimeError("infer.device is 'cuda' but no CUDA device is visible")
    device = "cuda" if params.device == "cuda" or (params.device == "auto" and cuda) else "cpu"
    gpu_ids: tuple[str, ...] = ()
    if device == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpu_ids = tuple(v.strip() for v in visible.split(",") if v.strip()) if visible else tuple(
            str(i) for i in range(torch.cuda.device_count()))
    dtype = params.dtype
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else (
            "bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    attn = params.attn_implementation
    if attn == "flash_attention_2" and (device == "cpu" or importlib.util.find_spec("flash_attn") is None):
        logger.warning("flash_attention_2 needs flash-attn on a GPU; using sdpa")
        attn = "sdpa"
    # CPU: two 1-thread processes beat one 2-thread process on small models (measured), but
    # each holds a model copy, so auto stops at 2.
    cores = params.cpu_threads or len(os.sched_getaffinity(0))
    shards = params.num_shards or (len(gpu_ids) if device == "cuda" else min(2, cores))
    return Runtime(device, dtype, shards, gpu_ids, attn)


def task_paths(task: str, split: str, *, data_dir: Path, out_dir: Path) -> tuple[Path, Path, Path]:
    """(input JSON, prediction JSON, journal dir) of one task and split."""
    return (
        Path(data_dir) / split / f"ColonINST-{split}-{task}.json",
        Path(out_dir) / f"{split}_pred_{task}.json",
        Path(out_dir) / f".shards-{task}" / split,
    )


def infer_task(
    task: str, *, model_dir: Path, data_dir: Path, image_root: Path, out_dir: Path, params: InferParams
) -> list[MergeSummary]:
    """Predict ``task`` on every split in ``params.splits``; returns one summary per split."""
    rt = resolve_runtime(params)
    logger.info("infer %s: %s %s, %d shard(s), batch %d, attention %s", task, rt.device, rt.dtype,
                rt.num_shards, params.batch_size, rt.attn_implementation)
    summaries = []
    for split in params.splits:
        input_path, out_path, journal_dir = task_paths(task, split, data_dir=data_dir, out_dir=out_dir)
        job = InferJob(
            input_path=input_path, image_root=Path(image_root), model_dir=Path(model_dir),
            out_path=out_path, journal_dir=journal_dir, max_new_tokens=params.max_new_tokens[task],
            batch_size=params.batch_size, num_shards=rt.num_shards, device=rt.device, dtype=rt.dtype,
            attn_implementation=rt.attn_implementation, limit=params.limit,
            cpu_threads=params.cpu_threads, gpu_ids=rt.gpu_ids,
        )
        summaries.append(run_inference(job))
    return summaries
