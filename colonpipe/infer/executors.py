"""Where an inference job's shards run: the pluggable half of ``runner.run_inference``.

A ``ShardExecutor`` takes the job's ``ShardSpec`` list and returns when every shard has finished,
raising ``InferenceError`` (naming each failed shard and why) when any did not. Each shard writes
its own fsync'd journal, so whatever finished before a failure is kept and a rerun resumes.

- :class:`SubprocessExecutor` (the default, what the ``infer`` stage uses): one
  ``python -m colonpipe.infer.worker`` process per shard, ``CUDA_VISIBLE_DEVICES`` narrowed to
  one GPU each, or CPU processes sharing the torch threads. Workers die with the runner
  (``PR_SET_PDEATHSIG``) and are killed on an error or Ctrl-C, so no orphan writes a journal.
- ``flows.infer_shards`` adds executors that run shards as Prefect task runs or as deployment
  runs on a work pool.
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
from pathlib import Path
from typing import Protocol, Sequence

from tqdm import tqdm

from colonpipe import atomic
from colonpipe.infer.journal import JOURNAL_GLOB
from colonpipe.infer.worker import ShardResult, ShardSpec, result_path

logger = logging.getLogger(__name__)


class InferenceError(RuntimeError):
    """One or more shards failed; the message says which and why (a worker's stderr tail)."""


class ShardExecutor(Protocol):
    """Runs every shard of one job to the end; ``InferenceError`` when any failed."""

    def run(self, specs: Sequence[ShardSpec], *, total: int, label: str) -> None: ...


def shard_results(journal_dir: str | Path, num_shards: int) -> list[ShardResult]:
    """The ``ShardResult`` each worker of the last run left behind (absent ones skipped)."""
    out = []
    for s in range(num_shards):
        try:
            out.append(ShardResult(**json.loads(result_path(journal_dir, s).read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return out


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the runner dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def _count_lines(journal_dir: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in journal_dir.glob(JOURNAL_GLOB))


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class SubprocessExecutor:
    """One worker subprocess per shard on this machine (see the module docstring).

    ``gpu_ids``: CUDA device ids to spread CUDA shards over (shard ``s`` gets
    ``gpu_ids[s % len]``); ``poll_s``: how often progress and exits are checked.
    """

    def __init__(self, gpu_ids: Sequence[str] = (), *, poll_s: float = 1.0) -> None:
        self.gpu_ids = tuple(gpu_ids)
        self.poll_s = poll_s

    def _spawn(self, spec: ShardSpec) -> subprocess.Popen:
        journal_dir = Path(spec.journal_dir)
        spec_path = journal_dir / f"shard-{spec.shard:03d}.spec.json"
        atomic.write_text(spec_path, spec.to_json())
        result_path(journal_dir, spec.shard).unlink(missing_ok=True)
        env = dict(os.environ)
        if spec.device == "cuda" and self.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu_ids[spec.shard % len(self.gpu_ids)]
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

    def run(self, specs: Sequence[ShardSpec], *, total: int, label: str) -> None:
        if not specs:
            return
        journal_dir = Path(specs[0].journal_dir)
        procs: list[subprocess.Popen] = []
        try:
            procs = [self._spawn(spec) for spec in specs]
            bar = tqdm(total=total, initial=min(total, _count_lines(journal_dir)), desc=label)
            while any(p.poll() is None for p in procs):
                time.sleep(self.poll_s)
                bar.n = min(total, _count_lines(journal_dir))
                bar.refresh()
            bar.close()
        finally:
            for p in procs:  # on Ctrl-C or an error: stop the rest, their journals stay valid
                if p.poll() is None:
                    p.kill()
                    p.wait()
        failed = [(spec.shard, p.returncode) for spec, p in zip(specs, procs) if p.returncode != 0]
        if failed:
            parts = [f"worker {s} exited with {rc}; last lines of {journal_dir / f'shard-{s:03d}.log'}:\n"
                     + _tail(journal_dir / f"shard-{s:03d}.log") for s, rc in failed]
            raise InferenceError(
                f"{len(failed)} of {len(procs)} inference workers failed for {specs[0].input_path} "
                "(finished records are journaled; rerun to resume):\n" + "\n".join(parts)
            )
