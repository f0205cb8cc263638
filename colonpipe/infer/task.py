"""One task over its splits: resolve the runtime (device, dtype, shards) and run each split.

File layout (reference names)::

    {data_dir}/{split}/ColonINST-{split}-{task}.json      input
    {out_dir}/{split}_pred_{task}.json                    predictions
    {out_dir}/.shards-{task}/{split}/                     journals (persistent, resumable)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from colonpipe.coloninst import instruction_path, prediction_file
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
        instruction_path(data_dir, split, task),
        Path(out_dir) / prediction_file(split, task),
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


def _shard_rate(journal_dir: Path, since: float) -> tuple[int, float]:
    """(records generated, samples/s) from the shard results written after ``since``."""
    done, seconds = 0, 0.0
    for path in sorted(Path(journal_dir).glob("shard-*.result.json")):
        if path.stat().st_mtime < since:
            continue  # left by an earlier run (this one only merged)
        result = json.loads(path.read_text())
        done += int(result.get("done", 0))
        seconds = max(seconds, float(result.get("seconds", 0.0)))  # shards run in parallel
    return done, (done / seconds if seconds > 0 else 0.0)


def infer_metrics(task: str, summaries: Sequence[MergeSummary], *, splits: Sequence[str],
                  journal_dirs: Sequence[Path], since: float) -> dict[str, float]:
    """``{split}.{task}.records|errors|predicted[|samples_per_s]`` for each split's summary.

    ``predicted`` counts records generated in this run (resumed ones excluded);
    ``samples_per_s`` is their generation throughput (absent when nothing was generated).
    """
    metrics: dict[str, float] = {}
    for split, summary, journal in zip(splits, summaries, journal_dirs, strict=True):
        key = f"{split}.{task}"
        done, rate = _shard_rate(journal, since)
        metrics.update({f"{key}.records": summary.records, f"{key}.errors": summary.errors,
                        f"{key}.predicted": done})
        if done:
            metrics[f"{key}.samples_per_s"] = rate
    return metrics
