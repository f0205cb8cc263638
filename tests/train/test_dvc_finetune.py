"""``dvc repro finetune`` on the demo in a temporary committed copy of this checkout.

Runs demo -> ingest -> instruct -> base -> align -> finetune with small params, then checks the
declared outputs, DVC metrics, MLflow runs with per-step curves, and that a killed stage resumes:
a step checkpoint left behind (``checkpoints/`` is a persistent output) is picked up by the rerun.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.e2e.conftest import copy_repo, ran_stages, run_dvc

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SMALL = {"demo.images_per_category": 6,
         "align.max_steps": 4, "align.save_steps": 2,
         "finetune.max_steps": 6, "finetune.save_steps": 2}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("repo"), SMALL)
    log = run_dvc(root, "repro", "finetune")
    assert ran_stages(log)[-2:] == ["align", "finetune"], log
    return root


def test_outputs_and_metrics(repo):
    for stage, steps in (("align", 4), ("finetune", 6)):
        out = repo / "models" / stage
        metrics = json.loads((out / "train_metrics.json").read_text())
        assert metrics["steps"] == steps and metrics["params_trainable"] > 0
        assert (out / "final" / "projector.safetensors").is_file() and (out / "final" / "manifest.json").is_file()
        assert (out / "loss_curve.png").is_file() and (out / "loss.csv").is_file()
        card = (out / "final" / "README.md").read_text()  # the training-time model card
        assert "Not evaluated yet" in card and "## Lineage" in card and f"{stage}:" in card
        kept = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert kept == [f"step-{n}" for n in range(2, steps, 2)]  # the last step is final/
    config = json.loads((repo / "models/finetune/final/train_config.json").read_text())
    assert config["init_from"] == "models/align/final" and config["base_dir"] == "models/base"
    shown = run_dvc(repo, "metrics", "show")
    assert "models/finetune/train_metrics.json" in shown and "final_loss" in shown


def test_mlflow_has_both_runs_with_curves(repo):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{repo}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("colonpipe")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    for stage, steps in (("align", 4), ("finetune", 6)):
        run = runs[stage]
        assert run.data.params[f"{stage}.lora.r"] and run.data.metrics["params_trainable"] > 0
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(1, steps + 1))
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"loss_curve.png", "train_metrics.json", "final"} <= artifacts


def test_rerun_resumes_from_the_persisted_checkpoint(repo):
    assert "up to date" in run_dvc(repo, "status", "finetune")
    shutil.rmtree(repo / "models/finetune/final")  # as if the stage had been killed after step 4
    log = run_dvc(repo, "repro", "finetune")
    assert ran_stages(log) == ["finetune"], log
    metrics = json.loads((repo / "models/finetune/train_metrics.json").read_text())
    assert metrics["resumed_from_step"] == 4 and metrics["steps"] == 6
