"""Process launching: one param (``num_processes``) picks in-process, torchrun or deepspeed.

- ``num_processes == 1``: the stage trains in its own process. When DeepSpeed is on, the
  launcher variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``) are set for rank 0, because DeepSpeed otherwise looks for MPI.
- ``num_processes > 1``: the stage re-runs itself under a launcher and returns its exit code:
  the ``deepspeed`` launcher on GPUs with DeepSpeed on, or with a ``hostfile`` (multi-node,
  ``num_processes`` GPUs per node); otherwise ``torchrun`` (gloo on CPU, nccl on GPU). CPU ranks
  get ``OMP_NUM_THREADS = cores // processes`` (unset, two ranks on two cores run ~5x slower).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank layout from the launcher's environment (a lone process is rank 0 of 1)."""
    env = os.environ
    return DistInfo(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def is_launched() -> bool:
    """True inside a process started by torchrun / the deepspeed launcher."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """Accept the ``--local_rank`` argument the deepspeed launcher appends to the script."""
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_single_process_env() -> None:
    """Launcher variables for a lone rank 0 (kept where already set)."""
    defaults = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def launch_command(script_argv: list[str], *, num_processes: int, hostfile: str | None,
                   deepspeed: bool, gpu: bool, master_port: int) -> list[str]:
    """The launcher command line that runs ``script_argv`` (script path + args) on every rank."""
    if hostfile or (gpu and deepspeed):
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--master_port", str(master_port)]
        if hostfile:
            cmd += ["--hostfile", hostfile]
        return cmd + ["--num_gpus", str(num_processes), *script_argv]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
            "--nproc_per_node", str(num_processes), "--master_addr", "127.0.0.1",
            "--master_port", str(master_port), *script_argv]


def maybe_relaunch(script_argv: list[str], *, num_processes: int, hostfile: str | None,
                   deepspeed: bool) -> int | None:
    """Run ``script_argv`` under a launcher when more than one process is asked for.

    Returns the launcher's exit code, or ``None`` when the caller should train in-process
    (one process, or already inside a launched rank).
    """
    if is_launched() or (num_processes <= 1 and not hostfile):
        if deepspeed:
            set_single_process_env()
        return None
    gpu = torch.cuda.is_available()
    env = dict(os.environ)
    if not gpu:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    cmd = launch_command(script_argv, num_processes=num_processes, hostfile=hostfile,
                         deepspeed=deepspeed, gpu=gpu, master_port=free_port())
    logger.info("launching %d processes: %s", num_processes, " ".join(cmd))
    return subprocess.run(cmd, env=env, check=False).returncode
