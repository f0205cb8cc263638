"""recipes/colongpt.yaml: applied with DVC's own -S code, built through the schema, checked against
the spec's section 4 (shared/coloninst-spec.md), value by value."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from colonpipe.params import parse_params
from colonpipe.recipe import RecipeError, exp_run_command, recipe_overrides
from flows.overrides import check_point

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "colongpt.yaml"

# Spec section 4, written out: common settings, then each stage's own.
COMMON = {"epochs": 3, "weight_decay": 0.0, "warmup_ratio": 0.03, "max_length": 2048, "save_steps": 3000,
          "precision": "bf16", "gradient_checkpointing": True, "num_processes": 2, "batch_size": 16,
          "grad_accum": 2, "loss_reduction": "token", "max_records": None}
STAGE1 = {"projector_lr": 2e-4, "parts": {"vision": "frozen", "projector": "full", "llm": "frozen"}}
STAGE2 = {"lr": 2e-4, "projector_lr": 2e-3, "parts": {"vision": "frozen", "projector": "full", "llm": "lora"},
          "lora": {"r": 128, "alpha": 256, "dropout": 0.05,
                   "target_modules": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]},
          "train_splits": ["train", "val"]}


def _section(params, name):
    import dataclasses

    return dataclasses.asdict(params[name])


def test_the_recipe_applied_by_dvc_matches_spec_section_4():
    overrides = recipe_overrides(RECIPE, REPO / "params.yaml")
    raw = check_point(REPO, overrides, point="recipe colongpt")  # DVC applies -S; the schema builds it
    params = parse_params(raw, source="recipe")
    align, finetune = _section(params, "align"), _section(params, "finetune")
    for stage, want in (("align", {**COMMON, **STAGE1}), ("finetune", {**COMMON, **STAGE2})):
        got = align if stage == "align" else finetune
        for key, value in want.items():
            assert got[key] == value, f"{stage}.{key}: {got[key]!r} != spec {value!r}"
        assert got["deepspeed"]["enabled"] and got["deepspeed"]["zero_stage"] == 3, stage
        global_batch = got["batch_size"] * got["grad_accum"] * got["num_processes"]
        assert global_batch == 64, stage
    assert params["model"].preset == "phi15-siglip" and params["model"].projector_type is None  # ppc_14_7_1
    infer = params["infer"]
    assert infer.max_new_tokens == {"cls": 40, "reg": 40, "rec": 40, "cap": 512} and infer.cap_model == "align"


def test_the_printed_command_holds_every_override():
    overrides = recipe_overrides(RECIPE, REPO / "params.yaml")
    cmd = shlex.split(exp_run_command(overrides, name="colongpt"))
    assert cmd[:5] == ["dvc", "exp", "run", "-n", "colongpt"]
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "-S"] == overrides
    assert "finetune.train_splits=[train,val]" in overrides and "align.projector_lr=0.0002" in overrides
    done = subprocess.run([sys.executable, "-m", "colonpipe.cli", "recipe", str(RECIPE), "--params",
                           str(REPO / "params.yaml")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0 and shlex.split(done.stdout) == cmd, done.stderr


def test_a_bad_recipe_fails_before_anything_runs(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("finetune:\n  lora_rank: 64\n")
    with pytest.raises(RecipeError, match=r"does not have: \['finetune.lora_rank'\]"):
        recipe_overrides(bad, REPO / "params.yaml")
    bad.write_text("finetune:\n  train_splits: [train, test]\n")
    with pytest.raises(RecipeError, match="test stays held out"):
        recipe_overrides(bad, REPO / "params.yaml")
