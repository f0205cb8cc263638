"""Kill a training stage mid-run (SIGKILL), rerun: it resumes at the checkpoint's step with the
checkpoint's optimizer state, and continues exactly as an uninterrupted run would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from colonpipe.params import load_section
from colonpipe.model import checkpoint_files as ck
from colonpipe.train.trainer import TrainPaths, TrainRecipe, run_training

from trainutil import write_params

REPO = Path(__file__).resolve().parents[2]
ALIGN = dict(epochs=50, batch_size=8, grad_accum=2, max_length=128, save_steps=3, max_steps=60,
             gradient_checkpointing=False, projector_lr=2e-3, warmup_ratio=0.1, max_records=None)


def start_stage(params: Path, paths: TrainPaths, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    cmd = [sys.executable, str(REPO / "stages" / "align.py"), "--base", str(paths.base), "--data", str(paths.data),
           "--image-root", str(paths.image_root), "--out-dir", str(paths.out_dir), "--params", str(params)]
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after_first_checkpoint(proc: subprocess.Popen, root: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ck.list_steps(root):
        if proc.poll() is not None:
            pytest.fail(f"stage exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_and_resume(tiny_base, train_data, tmp_path):
    paths = TrainPaths(tiny_base, train_data, train_data.parent / "images", tmp_path / "align")
    params_file = write_params(tmp_path / "params.yaml", "align", ALIGN)
    proc = start_stage(params_file, paths, tmp_path)
    kill_after_first_checkpoint(proc, paths.out_dir / "checkpoints")
    assert proc.returncode == -signal.SIGKILL and not (paths.out_dir / "final").exists()

    latest = ck.find_latest(paths.out_dir / "checkpoints")
    step = ck.read_state(latest)["global_step"]
    assert step > 0 and step % 3 == 0
    p = load_section("align", params_file)
    recipe = TrainRecipe(p, paths, stage="align")
    recipe.setup()
    try:
        assert recipe.state.global_step == step and recipe.state.resumed_from == step
        saved = torch.load(latest / ck.OPTIMIZER_FILE, weights_only=True)["state"]
        live = recipe.engine.optimizer.state_dict()["state"]
        assert live.keys() == saved.keys()
        for key in saved:
            torch.testing.assert_close(live[key]["exp_avg"], saved[key]["exp_avg"], rtol=0, atol=0)
            assert float(live[key]["step"]) == float(saved[key]["step"]) == step
        assert recipe.engine.lr_scheduler.last_epoch == step
    finally:
        recipe.cleanup()

    # Rerun: it continues to the end, and matches a run that was never interrupted.
    import dataclasses

    resumed = run_training(p, paths, stage="align")
    assert resumed["resumed_from_step"] == step and resumed["steps"] == 60
    history = ck.read_state(paths.out_dir / "final")["history"]
    assert [r["step"] for r in history] == list(range(1, 61))
    fresh_paths = dataclasses.replace(paths, out_dir=tmp_path / "fresh")
    run_training(p, fresh_paths, stage="align")
    fresh = ck.read_state(fresh_paths.out_dir / "final")["history"]
    for a, b in zip(history, fresh):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5), a["step"]


def test_changed_hyperparameters_do_not_resume(tiny_base, train_data, tmp_path, caplog):
    import dataclasses

    paths = TrainPaths(tiny_base, train_data, train_data.parent / "images", tmp_path / "align")
    p = load_section("align", write_params(tmp_path / "params.yaml", "align", {**ALIGN, "max_steps": 4,
                                                                              "save_steps": 2}))
    run_training(p, paths, stage="align")
    assert [s for s, _ in ck.list_steps(paths.out_dir / "checkpoints")] == [2]
    for changed, expected in ((p, 2), (dataclasses.replace(p, projector_lr=1e-3), 0),
                              (dataclasses.replace(p, max_steps=5), 0)):
        recipe = TrainRecipe(changed, paths, stage="align")
        recipe.setup()
        try:
            assert recipe.state.global_step == expected
        finally:
            recipe.cleanup()
    assert "fingerprint differs" in caplog.text


def test_changed_inputs_at_the_same_paths_do_not_resume(tiny_base, train_data, tmp_path, caplog):
    """DVC rebuilds models/base and the training JSON in place: same paths, new content -> start over."""
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    data = tmp_path / "train.json"
    shutil.copyfile(train_data, data)
    paths = TrainPaths(base, data, train_data.parent / "images", tmp_path / "align")
    p = load_section("align", write_params(tmp_path / "params.yaml", "align", {**ALIGN, "max_steps": 4,
                                                                              "save_steps": 2}))
    run_training(p, paths, stage="align")

    def resumed_step() -> int:
        recipe = TrainRecipe(p, paths, stage="align")
        recipe.setup()
        try:
            return recipe.state.global_step
        finally:
            recipe.cleanup()

    assert resumed_step() == 2  # unchanged inputs: resumes
    config = base / "generation_config.json"
    config.write_text(config.read_text().replace("\n}", ',\n  "max_length": 99\n}'))  # a rebuilt base
    assert resumed_step() == 0
    assert "fingerprint differs" in caplog.text


def test_a_tampered_checkpoint_is_never_loaded_and_resume_falls_back(tiny_base, train_data, tmp_path, caplog):
    """Same-size edits (one byte flipped) of a resume file and of a final weight file: the
    resume skips the edited step-4 (set aside as step-4.rejected) and resumes at step 2; the
    final output refuses to load, naming the file."""
    from colonpipe.model.trained import load_trained

    paths = TrainPaths(tiny_base, train_data, train_data.parent / "images", tmp_path / "align")
    p = load_section("align", write_params(tmp_path / "params.yaml", "align", {**ALIGN, "max_steps": 6,
                                                                              "save_steps": 2}))
    run_training(p, paths, stage="align")
    root = paths.out_dir / "checkpoints"
    assert [s for s, _ in ck.list_steps(root)] == [4, 2]
    for path in (root / "step-4" / ck.OPTIMIZER_FILE, paths.out_dir / "final" / ck.PROJECTOR_FILE):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    recipe = TrainRecipe(p, paths, stage="align")
    recipe.setup()
    try:
        assert recipe.state.global_step == 2 and recipe.state.resumed_from == 2
    finally:
        recipe.cleanup()
    assert "optimizer.pt does not match its sha256" in caplog.text
    assert (root / "step-4.rejected" / ck.OPTIMIZER_FILE).is_file() and not (root / "step-4").exists()
    with pytest.raises(ValueError, match=r"final: not a usable training output: file projector.safetensors "
                                         r"does not match its sha256"):
        load_trained(paths.out_dir / "final")
