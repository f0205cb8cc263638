"""Run one (split, task) inference job: prepare the journals, run the shards, merge.

The shards run on a pluggable executor (``colonpipe.infer.executors``): worker subprocesses on
this machine by default, Prefect task runs or work-pool deployment runs from ``flows/``. Each
shard writes its own journal; the merge runs only when every shard succeeded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from colonpipe.coloninst import read_records
from colonpipe.data.images import ImageResolver
from colonpipe.hashing import sha256_path
from colonpipe.infer.executors import ShardExecutor, SubprocessExecutor, shard_results
from colonpipe.infer.inputs import decode_code, image_identities, image_roots
from colonpipe.infer.journal import IMAGES_KEY, prepare_journal_dir, read_journals
from colonpipe.infer.merge_shards import MergeSummary, merge_predictions
from colonpipe.infer.worker import ShardSpec

logger = logging.getLogger(__name__)

_CODE_DIRS = ("model", "infer")  # package code whose change invalidates journals
# training-resume files in a checkpoint dir: they never change predictions, and can be large
_RESUME_STATE = {"optimizer.pt", "scheduler.pt", "deepspeed", "trainer_state.json"}


@dataclass(frozen=True)
class InferJob:
    """One prediction file: ``input_path`` + model -> ``out_path`` (journals in ``journal_dir``)."""

    input_path: Path
    image_root: Path
    model_dir: Path
    out_path: Path
    journal_dir: Path
    max_new_tokens: int
    batch_size: int = 32
    num_shards: int = 1
    device: str = "cpu"  # resolved: "cpu" or "cuda"
    dtype: str = "float32"  # resolved torch dtype name
    attn_implementation: str = "sdpa"
    limit: Optional[int] = None
    cpu_threads: int = 0  # total over all CPU workers; 0 = all cores
    gpu_ids: tuple[str, ...] = ()  # CUDA device ids to spread workers over (device == "cuda")
    min_new_tokens: int = 0


def job_fingerprint(job: InferJob) -> dict[str, Any]:
    """What the journals' contents depend on: input, images, model, code and decoding settings.

    ``images`` holds one identity per input position (``colonpipe.infer.inputs``); the
    journals compare it position by position, every other key as a whole
    (``journal.prepare_journal_dir``). Batch size, shard count and ``limit`` are left out on
    purpose: predictions do not depend on them (tested), so changing them resumes.
    """
    package = Path(__file__).resolve().parents[1]
    resolver = ImageResolver.from_path(job.image_root)
    return {
        "input": sha256_path(job.input_path),
        "image_roots": image_roots(resolver),
        IMAGES_KEY: image_identities(read_records(job.input_path), resolver),
        "model": sha256_path(job.model_dir, skip=_RESUME_STATE),
        "code": {d: sha256_path(package / d) for d in _CODE_DIRS},
        "decode": decode_code(),
        "max_new_tokens": job.max_new_tokens,
        "min_new_tokens": job.min_new_tokens,
        "device": job.device,
        "dtype": job.dtype,
        "attn_implementation": job.attn_implementation,
    }


def shard_specs(job: InferJob) -> list[ShardSpec]:
    """One ``ShardSpec`` per shard of ``job``, with absolute paths (a spec may cross machines).

    On CPU the job's torch threads (``cpu_threads``, 0 = every core) are split between the shards.
    """
    threads = 0
    if job.device == "cpu":
        total = job.cpu_threads or len(os.sched_getaffinity(0))
        threads = max(1, total // job.num_shards)
    paths = {name: str(Path(getattr(job, name)).resolve()) for name in ("input_path", "image_root", "model_dir", "journal_dir")}
    return [
        ShardSpec(
            **paths, shard=s, num_shards=job.num_shards,
            batch_size=job.batch_size, max_new_tokens=job.max_new_tokens, device=job.device,
            dtype=job.dtype, attn_implementation=job.attn_implementation, limit=job.limit,
            threads=threads, min_new_tokens=job.min_new_tokens, progress=False,
            io_workers=1 if job.device == "cpu" else 8,  # CPU: leave the cores to the model
        )
        for s in range(job.num_shards)
    ]


def _log_results(job: InferJob) -> None:
    for r in shard_results(job.journal_dir, job.num_shards):
        rate = r.done / r.seconds if r.seconds else 0.0
        logger.info("shard %d: %d predicted, %d errors, %d resumed; %.1f s generating (%.1f samples/s)",
                    r.shard, r.done, r.errors, r.skipped, r.seconds, rate)


def run_inference(job: InferJob, executor: Optional[ShardExecutor] = None) -> MergeSummary:
    """Predict every record of ``job.input_path`` into ``job.out_path``; resumes from journals.

    ``executor`` runs the shards (default: a :class:`SubprocessExecutor` per shard on this machine;
    ``flows.infer_shards`` has Prefect task and work-pool executors). Journals are prepared (a
    changed fingerprint restarts them) before, and merged in input order after, whichever runs them.
    """
    records = read_records(job.input_path, limit=job.limit)
    if not Path(job.model_dir).is_dir():
        raise FileNotFoundError(f"{job.model_dir}: model folder not found (train it first)")
    resumed = prepare_journal_dir(job.journal_dir, job_fingerprint(job))
    logger.info("%s: %d records, %d shard(s) on %s%s", job.input_path, len(records), job.num_shards,
                job.device, " (resuming)" if resumed else "")
    todo = len(records) - len(set(read_journals(job.journal_dir)) & set(range(len(records))))
    if todo:
        executor = executor or SubprocessExecutor(job.gpu_ids)
        executor.run(shard_specs(job), total=len(records), label=Path(job.out_path).name)
        _log_results(job)
    return merge_predictions(records, job.journal_dir, job.out_path)
