"""Launcher selection: torchrun on CPU, the deepspeed launcher on GPUs or with a hostfile."""

from __future__ import annotations

from colonpipe.train.launch import launch_command, maybe_relaunch


def test_cpu_uses_torchrun():
    cmd = launch_command(["stages/align.py", "--x"], num_processes=2, hostfile=None, deepspeed=True,
                         gpu=False, master_port=1234)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node" in cmd
    assert cmd[cmd.index("--nproc_per_node") + 1] == "2" and cmd[-2:] == ["stages/align.py", "--x"]


def test_gpu_deepspeed_and_hostfile_use_deepspeed_launcher():
    cmd = launch_command(["s.py"], num_processes=8, hostfile=None, deepspeed=True, gpu=True, master_port=1)
    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"] and cmd[cmd.index("--num_gpus") + 1] == "8"
    cmd = launch_command(["s.py"], num_processes=8, hostfile="hosts", deepspeed=False, gpu=True, master_port=1)
    assert cmd[cmd.index("--hostfile") + 1] == "hosts"


def test_single_process_sets_deepspeed_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert maybe_relaunch(["s.py"], num_processes=1, hostfile=None, deepspeed=True) is None
    import os

    assert os.environ["WORLD_SIZE"] == "1" and os.environ["RANK"] == "0" and int(os.environ["MASTER_PORT"]) > 0
