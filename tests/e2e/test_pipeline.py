"""``dvc repro`` of the whole demo pipeline in a temporary committed copy of this checkout.

One module-scoped run with small demo params (a few images, a few optimizer steps, short
captions; about 2-3 min on 2 cores) feeds every test. Read-only tests come first; the last
ones change an inference knob and rerun (``changed`` fixture), so they must stay last.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import BIN, copy_repo, e2e_env, git, ran_stages, run_dvc, set_params, skipped_stages

pytestmark = pytest.mark.slow

SMALL = {  # written into the copy's params.yaml, never this checkout's
    "demo.images_per_category": 6,
    "align.max_steps": 2, "align.save_steps": 1,
    "finetune.max_steps": 3, "finetune.save_steps": 2,
    "infer.num_shards": 1,
    "infer.max_new_tokens.cap": 16,
}
CAP_TOKENS_AFTER = 8  # the inference-only change: shorter CAP decodes (the model never stops by 16)
STAGES = ["demo", "ingest", "instruct", "base", "align", "finetune",
          "infer@cls", "infer@reg", "infer@rec", "infer@cap", "evaluate", "register"]
TASKS = ("cls", "reg", "rec", "cap")
SPLITS = ("val", "test")
SPEC_FILES = ["train/ColonINST-train-cap.json", "train/ColonINST-train-3tasks.json"] + [
    f"{s}/ColonINST-{s}-{t}.json" for s in SPLITS for t in TASKS]
METRIC_KEYS = {"cls": {"accuracy", "baseline_accuracy", "n"}, "reg": {"accuracy", "baseline_accuracy", "n"},
               "rec": {"avg_iou", "acc_iou_0.5", "baseline_avg_iou", "n"},
               "cap": {"bleu4", "rouge_l", "cider", "n"}}


def _pred_path(repo: Path, split: str, task: str) -> Path:
    model = "align" if task == "cap" else "finetune"  # params infer.cap_model: align (as the reference)
    return repo / f"models/{model}/pred/{split}_pred_{task}.json"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _client(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{repo}/mlruns/mlflow.db")


def _pipeline_runs(repo: Path) -> list[tuple]:
    """``[(parent run, {child run name: child run})]`` oldest parent first."""
    client = _client(repo)
    exp = client.get_experiment_by_name("colonpipe")
    assert exp is not None, f"{repo}/mlruns/mlflow.db: no 'colonpipe' experiment"
    parents = [r for r in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
               if "colonpipe.pipeline_key" in r.data.tags]  # the parent of one `dvc` invocation
    out = []
    for parent in parents:
        children = client.search_runs([exp.experiment_id],
                                      filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        names = [c.info.run_name for c in children]
        assert len(names) == len(set(names)), f"a stage logged twice under one parent: {sorted(names)}"
        out.append((parent, {c.info.run_name: c for c in children}))
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """``(repo, log of the first dvc repro)`` in a committed copy with ``SMALL`` params."""
    repo = copy_repo(tmp_path_factory.mktemp("pipeline"), SMALL)
    return repo, run_dvc(repo, "repro")


@pytest.fixture(scope="module")
def changed(pipeline):
    """``(repo, repro log, pred digests before)`` after an inference-only params change."""
    repo, _ = pipeline
    before = {(s, t): _sha(_pred_path(repo, s, t)) for s in SPLITS for t in TASKS}
    set_params(repo / "params.yaml", {"infer.max_new_tokens.cap": CAP_TOKENS_AFTER})
    status = run_dvc(repo, "status")
    assert "infer@cap" in status and "max_new_tokens.cap" in status, status
    return repo, run_dvc(repo, "repro"), before


def test_repro_runs_every_stage_in_dag_order(pipeline):
    _, log = pipeline
    ran = ran_stages(log)
    assert sorted(ran) == sorted(STAGES), log[-3000:]
    for earlier, later in [("demo", "ingest"), ("ingest", "instruct"), ("instruct", "base"),
                           ("base", "align"), ("align", "finetune"), ("finetune", "infer@cls"),
                           ("align", "infer@cap"), ("infer@cap", "evaluate"), ("evaluate", "register")]:
        assert ran.index(earlier) < ran.index(later), ran


def test_data_stages_write_the_spec_files(pipeline):
    repo, _ = pipeline
    for rel in ("data/interim/annotations.parquet", "data/interim/image_roots.json",
                "data/interim/ingest_report.json", "data/coloninst/stats.json"):
        assert (repo / rel).is_file(), rel
    json_dir = repo / "data/coloninst/Json-file"
    assert sorted(p.relative_to(json_dir).as_posix() for p in json_dir.rglob("*.json")) == sorted(SPEC_FILES)
    for rel in SPEC_FILES:
        records = json.loads((json_dir / rel).read_text())
        assert isinstance(records, list) and records, f"{rel}: empty"


def test_model_stages_write_base_and_final_models(pipeline):
    repo, _ = pipeline
    assert (repo / "models/base/config.json").is_file()
    assert list((repo / "models/base").glob("*.safetensors")), "models/base: no safetensors weights"
    for stage, steps in (("align", SMALL["align.max_steps"]), ("finetune", SMALL["finetune.max_steps"])):
        final = repo / f"models/{stage}/final"
        assert final.is_dir() and list(final.glob("*.safetensors")), f"{final}: no safetensors weights"
        metrics = json.loads((repo / f"models/{stage}/train_metrics.json").read_text())
        assert metrics["steps"] == steps, metrics
        assert (repo / f"models/{stage}/loss.csv").read_text().startswith("step"), stage
        assert (repo / f"models/{stage}/loss_curve.png").stat().st_size > 0


def test_infer_stages_predict_every_val_and_test_record(pipeline):
    repo, _ = pipeline
    for split in SPLITS:
        for task in TASKS:
            pred = json.loads(_pred_path(repo, split, task).read_text())
            source = json.loads((repo / f"data/coloninst/Json-file/{split}/ColonINST-{split}-{task}.json").read_text())
            assert len(pred) == len(source), (split, task)
            assert all(r["conversations"][-1]["from"] == "prediction" for r in pred), (split, task)


def test_evaluate_writes_metrics_and_plots(pipeline):
    repo, _ = pipeline
    for split in SPLITS:
        metrics = json.loads((repo / f"metrics/{split}.json").read_text())
        for task, keys in METRIC_KEYS.items():
            assert keys <= set(metrics[task]), (split, task, sorted(metrics[task]))
            assert metrics[task]["n"] == len(json.loads(_pred_path(repo, split, task).read_text()))
    for rel in ("cls_confusion.csv", "reg_confusion.csv", "rec_iou_hist.csv", "cls_by_dataset.csv",
                "cls_confusion.png", "rec_iou_hist.png", "by_dataset.png"):
        assert (repo / "plots/test" / rel).stat().st_size > 0, rel  # the dvc.yaml `plots:` sources
    shown = json.loads(run_dvc(repo, "metrics", "show", "--json"))
    assert "metrics/test.json" in json.dumps(shown)


def test_register_records_one_promotion_decision(pipeline, tmp_path, monkeypatch):
    import mlflow

    repo, _ = pipeline
    decisions = json.loads((repo / "registry.json").read_text())["decisions"]
    assert len(decisions) == 1, decisions
    first = decisions[0]
    assert first["action"] == "register" and first["promoted"] is True, first
    assert first["candidate_version"] == "1" and first["champion_after"] == "1", first
    assert first["reason"] and first["comparisons"], first
    client = _client(repo)
    champion = client.get_model_version_by_alias("colongpt", "champion")
    assert str(champion.version) == "1" and champion.run_id == first["source_run_id"]
    merged = repo / "models/finetune/merged"  # the DVC artifact: bf16, loads on its own, full card
    assert json.loads((merged / "config.json").read_text())["dtype"] == "bfloat16"
    card = (merged / "README.md").read_text()
    assert "**promoted to champion**" in card and "### test" in card and "Ingest (bad inputs" in card
    # models:/ resolves in the copy's store. Through monkeypatch, not mlflow.set_registry_uri: that exports
    # MLFLOW_REGISTRY_URI, which set_registry_uri(None) leaves behind for every later MlflowClient in this process
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", client.tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts("models:/colongpt/1", dst_path=str(tmp_path),
                                                     tracking_uri=client.tracking_uri))
    assert (local / "README.md").read_text() == card
    assert list((local / "artifacts/colonpipe_wheel").glob("colonpipe-*.whl"))
    assert "artifacts/colonpipe_wheel/" in (local / "requirements.txt").read_text()


def test_mlflow_has_one_parent_run_with_a_child_per_stage(pipeline):
    repo, _ = pipeline
    runs = _pipeline_runs(repo)
    assert len(runs) == 1, [p.info.run_name for p, _ in runs]
    parent, children = runs[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["colonpipe.dvc_command"].startswith("dvc repro")
    assert sorted(children) == sorted(STAGES), f"stages without a child run: {sorted(set(STAGES) - set(children))}"
    head = git(repo, "rev-parse", "HEAD").strip()
    for name, child in children.items():
        assert child.info.status == "FINISHED", name
        assert child.data.tags.get("colonpipe.git.commit") == head, name
        assert child.data.tags.get("colonpipe.inputs_digest"), name
        assert child.data.params, f"{name}: no params logged"
        if name != "register":  # the last stage's entry is written after it exits: no sibling left to tag it
            assert child.data.tags.get("colonpipe.dvc_lock"), f"{name}: no dvc.lock entry"


def test_summary_prints_metrics_and_decision(pipeline):
    repo, _ = pipeline
    proc = subprocess.run([str(BIN / "colonpipe"), "summary"], cwd=repo, env=e2e_env(repo),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    test_metrics = json.loads((repo / "metrics/test.json").read_text())
    assert f"test  cls  accuracy={test_metrics['cls']['accuracy']:.4f}" in proc.stdout, proc.stdout
    assert "cap" in proc.stdout and "rouge_l=" in proc.stdout, proc.stdout
    assert "colongpt v1: PROMOTED to champion" in proc.stdout, proc.stdout


def test_second_repro_runs_nothing(pipeline):
    repo, _ = pipeline
    lock = (repo / "dvc.lock").read_bytes()
    assert "Data and pipelines are up to date" in run_dvc(repo, "status")
    log = run_dvc(repo, "repro")
    assert ran_stages(log) == [], log
    assert sorted(skipped_stages(log)) == sorted(STAGES), log
    assert (repo / "dvc.lock").read_bytes() == lock
    assert len(_pipeline_runs(repo)) == 1  # a no-op repro opens no MLflow parent


# --- mutating tests: keep them last --------------------------------------------------------

def test_inference_only_change_reruns_only_its_downstream_stages(changed):
    repo, log, before = changed
    assert ran_stages(log) == ["infer@cap", "evaluate", "register"], log[-3000:]
    assert sorted(skipped_stages(log)) == sorted(set(STAGES) - {"infer@cap", "evaluate", "register"}), log
    for (split, task), digest in before.items():
        same = _sha(_pred_path(repo, split, task)) == digest
        assert same == (task != "cap"), f"{split} {task}: predictions {'kept' if same else 'rewritten'}"
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock["infer@cap"]["params"]["params.yaml"]["infer.max_new_tokens.cap"] == CAP_TOKENS_AFTER
    assert "Data and pipelines are up to date" in run_dvc(repo, "status")


def test_rerun_registers_a_second_version_and_keeps_the_champion(changed):
    repo, _, _ = changed
    decisions = json.loads((repo / "registry.json").read_text())["decisions"]
    assert len(decisions) == 2, decisions
    # CLS predictions did not change, so the primary metric ties: a tie keeps the champion.
    assert decisions[1]["candidate_version"] == "2" and decisions[1]["promoted"] is False, decisions[1]
    assert decisions[1]["champion_after"] == "1", decisions[1]
    client = _client(repo)
    assert str(client.get_model_version_by_alias("colongpt", "champion").version) == "1"
    assert {str(v.version) for v in client.search_model_versions("name='colongpt'")} == {"1", "2"}


def test_rerun_is_a_second_parent_run_with_the_rerun_stages_as_children(changed):
    repo, _, _ = changed
    runs = _pipeline_runs(repo)
    assert len(runs) == 2, [p.info.run_name for p, _ in runs]
    parent, children = runs[1]
    assert parent.info.status == "FINISHED"
    assert sorted(children) == ["evaluate", "infer@cap", "register"]
