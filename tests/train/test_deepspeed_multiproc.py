"""DeepSpeed on 2 CPU processes (gloo, torchrun) through the real stage script, with resume.

The first run JIT-builds DeepSpeed's shm comm op (~40 s); it is cached in
``<repo>/.torch_extensions`` (gitignored) for every later run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from colonpipe.model import checkpoint_files as ck

from trainutil import write_params

REPO = Path(__file__).resolve().parents[2]


def run_finetune(params: Path, base: Path, data: Path, out: Path, tmp: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "TORCH_EXTENSIONS_DIR": str(REPO / ".torch_extensions")}
    aligned = tmp / "aligned"  # finetune needs a stage-1 projector: take the base's
    if not aligned.exists():
        from safetensors.torch import save_file

        from colonpipe.model.presets import load_base

        model, _ = load_base(base)
        aligned.mkdir()
        save_file(model.multi_modal_projector.state_dict(), str(aligned / ck.PROJECTOR_FILE))
    cmd = [sys.executable, str(REPO / "stages" / "finetune.py"), "--base", str(base), "--data", str(data),
           "--image-root", str(data.parent / "images"), "--init-from", str(aligned), "--out-dir", str(out),
           "--params", str(params)]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "train_metrics.json").read_text())


@pytest.mark.parametrize("zero_stage", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_two_process_deepspeed_trains_and_resumes(zero_stage, tiny_base, train_data, tmp_path):
    params = write_params(tmp_path / "params.yaml", "finetune", dict(
        epochs=2, batch_size=4, grad_accum=2, lr=3e-3, projector_lr=3e-3, max_length=128, save_steps=2,
        max_steps=4, num_processes=2, gradient_checkpointing=True,
        deepspeed={"enabled": True, "zero_stage": zero_stage, "offload_optimizer": False, "offload_param": False},
        parts={"vision": "frozen", "projector": "full", "llm": "lora"},
        lora={"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]}))
    out = tmp_path / "finetune"
    first = run_finetune(params, tiny_base, train_data, out, tmp_path)
    assert first["steps"] == 4 and first["samples"] == 4 * 2 * 4 * 2  # steps x accum x batch x ranks
    assert first["final_loss"] < first["first_loss"]
    step2 = out / "checkpoints" / "step-2"
    assert ck.check_dir(step2) is None and (step2 / ck.DEEPSPEED_DIR / "state").is_dir()
    assert ck.read_train_config(step2)["world_size"] == 2
    history = ck.read_state(out / "final")["history"]

    shutil.rmtree(out / "final")  # as if killed after step 2: the rerun resumes on both ranks
    again = run_finetune(params, tiny_base, train_data, out, tmp_path)
    assert again["resumed_from_step"] == 2 and again["steps"] == 4
    resumed = ck.read_state(out / "final")["history"]
    for a, b in zip(history, resumed):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=1e-4)
