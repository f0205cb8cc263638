"""Run one (split, task) inference job: K worker processes, then the merge.

Workers are subprocesses (``python -m colonpipe.infer.worker``): one per GPU with
``CUDA_VISIBLE_DEVICES`` narrowed to it, or CPU processes that split the torch threads.
Each writes its own journal; the runner waits for all of them, reports a failed worker's
stderr tail, and merges only when every worker succeeded. Workers die with the runner
(``PR_SET_PDEATHSIG``), so a killed ``dvc repro`` leaves no orphan writing a journal.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

from colonpipe import atomic
from colonpipe.hashing import sha256_path
from colonpipe.data.images import ImageResolver
from colonpipe.infer.inputs import decode_code, image_identities, image_roots
from colonpipe.infer.journal import IMAGES_KEY, JOURNAL_GLOB, prepare_journal_dir, read_journals
from colonpipe.infer.merge_shards import MergeSummary, merge_predictions
from colonpipe.infer.records import load_records
from colonpipe.infer.worker import ShardResult, ShardSpec, result_path

logger = logging.getLogger(__name__)

_CODE_DIRS = ("model", "infer")  # package code whose change invalidates journals
# training-resume files in a checkpoint dir: they never change predictions, and can be large
_RESUME_STATE = {"optimizer.pt", "scheduler.pt", "deepspeed", "trainer_state.json"}


class InferenceError(RuntimeError):
    """One or more workers failed; the message holds each one's stderr tail."""


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
        IMAGES_KEY: image_identities(load_records(job.input_path), resolver),
        "model": sha256_path(job.model_dir, skip=_RESUME_STATE),
        "code": {d: sha256_path(package / d) for d in _CODE_DIRS},
        "decode": decode_code(),
        "max_new_tokens": job.max_new_tokens,
        "min_new_tokens": job.min_new_tokens,
        "device": job.device,
        "dtype": job.dtype,
        "attn_implementation": job.attn_implementation,
    }


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the runner dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def _shard_specs(job: InferJob) -> list[ShardSpec]:
    threads = 0
    if job.device == "cpu":
        total = job.cpu_threads or len(os.sched_getaffinity(0))
        threads = max(1, total // job.num_shards)
    return [
        ShardSpec(
            input_path=str(job.input_path), image_root=str(job.image_root), model_dir=str(job.model_dir),
            journal_dir=str(job.journal_dir), shard=s, num_shards=job.num_shards,
            batch_size=job.batch_size, max_new_tokens=job.max_new_tokens, device=job.device,
            dtype=job.dtype, attn_implementation=job.attn_implementation, limit=job.limit,
            threads=threads, min_new_tokens=job.min_new_tokens, progress=False,
            io_workers=1 if job.device == "cpu" else 8,  # CPU: leave the cores to the model
        )
        for s in range(job.num_shards)
    ]


def _spawn(job: InferJob, spec: ShardSpec) -> subprocess.Popen:
    journal_dir = Path(job.journal_dir)
    spec_path = journal_dir / f"shard-{spec.shard:03d}.spec.json"
    atomic.write_text(spec_path, spec.to_json())
    result_path(journal_dir, spec.shard).unlink(missing_ok=True)
    env = dict(os.environ)
    if job.device == "cuda" and job.gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = job.gpu_ids[spec.shard % len(job.gpu_ids)]
    if spec.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(spec.threads)
    log = open(journal_dir / f"shard-{spec.shard:03d}.log", "ab")  # keeps earlier attempts
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "colonpipe.infer.worker", str(spec_path)],
            stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
        )
    finally:
        log.close()


def _count_lines(journal_dir: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in journal_dir.glob(JOURNAL_GLOB))


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(job: InferJob, procs: list[subprocess.Popen], total: int) -> None:
    """Wait for every worker with one progress bar; raise ``InferenceError`` on any failure."""
    journal_dir = Path(job.journal_dir)
    bar = tqdm(total=total, initial=min(total, _count_lines(journal_dir)), desc=Path(job.out_path).name)
    while any(p.poll() is None for p in procs):
        time.sleep(1.0)
        bar.n = min(total, _count_lines(journal_dir))
        bar.refresh()
    bar.close()
    failed = [(s, p.returncode) for s, p in enumerate(procs) if p.returncode != 0]
    if failed:
        parts = [
            f"worker {s} exited with {rc}; last lines of {journal_dir / f'shard-{s:03d}.log'}:\n"
            + _tail(journal_dir / f"shard-{s:03d}.log")
            for s, rc in failed
        ]
        raise InferenceError(
            f"{len(failed)} of {len(procs)} inference workers failed for {job.input_path} "
            "(finished records are journaled; rerun to resume):\n" + "\n".join(parts)
        )


def shard_results(journal_dir: str | Path, num_shards: int) -> list[ShardResult]:
    """The ``ShardResult`` each worker of the last run left behind (absent ones skipped)."""
    out = []
    for s in range(num_shards):
        try:
            out.append(ShardResult(**json.loads(result_path(journal_dir, s).read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return out


def _log_results(job: InferJob) -> None:
    for r in shard_results(job.journal_dir, job.num_shards):
        rate = r.done / r.seconds if r.seconds else 0.0
        logger.info("shard %d: %d predicted, %d errors, %d resumed; %.1f s generating (%.1f samples/s)",
                    r.shard, r.done, r.errors, r.skipped, r.seconds, rate)


def run_inference(job: InferJob) -> MergeSummary:
    """Predict every record of ``job.input_path`` into ``job.out_path``; resumes from journals."""
    records = load_records(job.input_path, limit=job.limit)
    if not Path(job.model_dir).is_dir():
        raise FileNotFoundError(f"{job.model_dir}: model folder not found (train it first)")
    resumed = prepare_journal_dir(job.journal_dir, job_fingerprint(job))
    logger.info("%s: %d records, %d shard(s) on %s%s", job.input_path, len(records), job.num_shards,
                job.device, " (resuming)" if resumed else "")
    procs: list[subprocess.Popen] = []
    todo = len(records) - len(set(read_journals(job.journal_dir)) & set(range(len(records))))
    try:
        procs = [_spawn(job, spec) for spec in _shard_specs(job)] if todo else []
        _wait(job, procs, len(records))
        if procs:
            _log_results(job)
    finally:
        for p in procs:  # on Ctrl-C or an error: stop the rest, their journals stay valid
            if p.poll() is None:
                p.kill()
                p.wait()
    return merge_predictions(records, job.journal_dir, job.out_path)

