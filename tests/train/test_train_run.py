"""A short tiny training run: the loss falls, the outputs describe themselves, merges are exact."""

from __future__ import annotations

import json

import pytest
import torch

from colonpipe.params import LoraParams, PartsParams, TrainParams
from colonpipe.model import checkpoint_files as ck
from colonpipe.model.trained import load_trained
from colonpipe.model.merge_adapter import merge_to_dir
from colonpipe.train.trainer import TrainPaths, run_training

from trainutil import make_records

FAST = dict(epochs=8, batch_size=8, grad_accum=1, lr=3e-3, projector_lr=5e-3, warmup_ratio=0.1,
            max_length=128, save_steps=10, gradient_checkpointing=False)


@pytest.fixture(scope="module")
def finetuned(tiny_base, train_data, tmp_path_factory):
    """Stage 2 on the colour->label task: LoRA LM + full projector, 48 steps."""
    out = tmp_path_factory.mktemp("ft") / "finetune"
    p = TrainParams(**FAST, parts=PartsParams(llm="lora"), lora=LoraParams(r=16, alpha=32, dropout=0.0))
    metrics = run_training(p, TrainPaths(tiny_base, train_data, train_data.parent / "images", out), stage="finetune")
    return out, metrics


@pytest.fixture(scope="module")
def finetuned_full(tiny_base, train_data, tmp_path_factory):
    """The demo's setup: the whole (random, tiny) LM trains, at a higher lr."""
    out = tmp_path_factory.mktemp("ftfull") / "finetune"
    p = TrainParams(**{**FAST, "lr": 1e-2}, parts=PartsParams(llm="full"))
    metrics = run_training(p, TrainPaths(tiny_base, train_data, train_data.parent / "images", out), stage="finetune")
    return out, metrics


def test_loss_falls(finetuned, finetuned_full):
    out, metrics = finetuned
    assert metrics["steps"] == 48
    # LoRA on a *random* frozen LM cannot fit well (frozen final norm + lm_head bound the logits),
    # but the loss must still fall clearly; the fully trained LM fits the task.
    assert metrics["final_loss"] < metrics["first_loss"] - 0.5
    history = ck.read_state(out / "final")["history"]
    assert [r["step"] for r in history] == list(range(1, 49))
    _, full = finetuned_full
    assert full["final_loss"] < 0.1 * full["first_loss"]
    assert (out.parent / "finetune" / "final" / ck.ADAPTER_DIR).is_dir()


def test_projector_has_its_own_learning_rate(finetuned):
    out, _ = finetuned
    history = ck.read_state(out / "final")["history"]
    peak = max(history, key=lambda r: r["lr"])
    assert peak["lr"] == pytest.approx(3e-3) and peak["lr_projector"] == pytest.approx(5e-3)
    assert history[0]["lr"] < peak["lr"]  # warmup
    assert history[-1]["lr"] < 0.01 * peak["lr"]  # cosine to ~0


def test_outputs_are_self_describing(finetuned):
    out, metrics = finetuned
    final = out / "final"
    assert ck.check_dir(final) is None
    for name in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "projector.safetensors",
                 "config.json", "tokenizer.json", "processor_config.json", "chat_template.jinja", "train_config.json",
                 "trainer_state.json", "data_report.json"):
        assert (final / name).is_file(), name
    cfg = ck.read_train_config(final)
    assert cfg["params"]["lora"]["r"] == 16 and cfg["precision"] == "fp32" and cfg["total_steps"] == 48
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["params_trainable"] == metrics["params_trainable"] > 0
    assert (out / "loss_curve.png").stat().st_size > 1000 and (out / "loss.csv").read_text().startswith("step,loss")
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step-30", "step-40"]  # keep_checkpoints=2; the last step is final/, not step-48
    assert (out / "checkpoints" / "step-40" / ck.OPTIMIZER_FILE).is_file()


def test_load_and_merge_give_equal_logits(finetuned, tmp_path, tiny_base):
    out, _ = finetuned
    model, processor = load_trained(out / "final")
    from PIL import Image

    batch = processor.generation_batch(["<image>\nClassify the object's category."],
                                       [Image.new("RGB", (40, 30), (200, 40, 40))])
    with torch.no_grad():
        peft_logits = model(**batch).logits
    merged_dir = merge_to_dir(out / "final", tmp_path / "merged")
    from colonpipe.model.presets import load_base

    merged, _ = load_base(merged_dir)
    with torch.no_grad():
        merged_logits = merged.eval()(**batch).logits
    torch.testing.assert_close(merged_logits, peft_logits, atol=1e-5, rtol=1e-5)
    base, _ = load_base(tiny_base)
    with torch.no_grad():
        assert not torch.allclose(base.eval()(**batch).logits, merged_logits, atol=1e-3)  # training changed it


def test_greedy_answer_is_learned(finetuned_full):
    """After training, the model names the colour's label for a fresh image."""
    out, _ = finetuned_full
    assert (out / "final" / ck.FULL_PARTS_FILE).is_file()
    model, processor = load_trained(out / "final", merge=True)
    from PIL import Image

    from trainutil import COLOURS, QUESTION

    right = 0
    for label, rgb in COLOURS.items():
        batch = processor.generation_batch([QUESTION], [Image.new("RGB", (50, 40), rgb)])
        with torch.no_grad():
            ids = model.generate(**batch, max_new_tokens=5, do_sample=False)
        right += processor.decode_generated(ids[:, batch["input_ids"].shape[1]:])[0] == label
    assert right == 3


def test_bad_records_are_skipped_and_reported(tiny_base, tmp_path):
    data = make_records(tmp_path, 25, bad={1: "corrupt", 2: "missing", 3: "malformed", 4: "bomb"})
    out = tmp_path / "align"
    p = TrainParams(**{**FAST, "epochs": 1}, parts=PartsParams(llm="frozen"))
    metrics = run_training(p, TrainPaths(tiny_base, data, tmp_path / "images", out), stage="align")
    assert metrics["skipped_records"] == 4 and metrics["steps"] == 3  # 21 usable / batch 8
    report = json.loads((out / "final" / "data_report.json").read_text())["skipped"]
    reasons = {r["index"]: r["reason"] for r in report}
    assert "cannot open image" in reasons[1] and "No such file" in reasons[2] and "gpt turn" in reasons[3]
    assert "decompression bomb refused before decoding" in reasons[4]
    assert not (out / "final" / ck.ADAPTER_DIR).exists() and not (out / "final" / ck.FULL_PARTS_FILE).exists()


def test_finetune_starts_from_the_aligned_projector(tiny_base, train_data, tmp_path):
    from safetensors.torch import load_file

    from colonpipe.train.trainer import TrainRecipe

    align = tmp_path / "align"
    p = TrainParams(**{**FAST, "epochs": 1}, parts=PartsParams(llm="frozen"))
    run_training(p, TrainPaths(tiny_base, train_data, train_data.parent / "images", align), stage="align")
    recipe = TrainRecipe(TrainParams(**FAST, parts=PartsParams(llm="full")),
                         TrainPaths(tiny_base, train_data, train_data.parent / "images", tmp_path / "ft",
                                    init_from=align / "final"), stage="finetune")
    recipe.setup()
    aligned = load_file(str(align / "final" / ck.PROJECTOR_FILE))
    own = recipe.model.multi_modal_projector.state_dict()
    assert all(torch.equal(own[k], v) for k, v in aligned.items())
    recipe.cleanup()


def test_a_failed_setup_still_tears_down_the_process_group(tiny_base, tmp_path, monkeypatch):
    """setup() runs inside run_training's try: DeepSpeed's process group is destroyed even when
    the data cannot be read after it was created."""
    import socket

    import torch.distributed as dist

    from colonpipe.params import DeepSpeedParams, TrainParams

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    params = TrainParams(deepspeed=DeepSpeedParams(enabled=True, zero_stage=2))
    paths = TrainPaths(base=tiny_base, data=tmp_path / "missing.json", image_root=tmp_path, out_dir=tmp_path / "out")
    with pytest.raises(Exception, match="missing.json"):
        run_training(params, paths, stage="finetune")
    assert not dist.is_initialized()
