"""The model card: real inputs (ingest report, evaluate's metrics files, the promotion rule, the
repo's params.yaml), parsed back offline with huggingface_hub's own ModelCard / ModelCardData."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData
from PIL import Image

from colonpipe.data.ingest import ingest
from colonpipe.evaluate.suite import evaluate_splits
from colonpipe.params import IngestParams, RegisterParams, SourceParams
from colonpipe.register.model_card import METRICS, read_metrics, write_model_card
from colonpipe.tracking.lineage import stage_lineage
from colonpipe.register.registry import Decision
from colonpipe.register.rule import decide, load_metrics
from tests.evaluate.eval_cases import CLS, REC, TRAIN, strip_prediction, write

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir) -> dict:
    """What a pipeline run leaves behind, each file written by the function that writes it."""
    root = tmp_path_factory.mktemp("run")
    src = root / "raw" / "Synth"
    for i in range(3):
        (src / "polyp").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(
            src / "polyp" / f"{i}.png")
    (src / "polyp" / "corrupt.png").write_bytes(b"not an image")
    ingest(IngestParams(sources=[SourceParams(name="Synth", root=str(src), format="class_folders",
                                              categories={"polyp": "polyp"})], workers=1),
           root / "interim", progress=False)
    data = root / "Json-file"
    for split in ("val", "test"):
        for task, records in (("cls", CLS), ("rec", REC)):
            write(root / "pred" / f"{split}_pred_{task}.json", records)
            write(data / split / f"ColonINST-{split}-{task}.json", strip_prediction(records))
    train = write(data / "train" / "ColonINST-train-3tasks.json", TRAIN)
    evaluate_splits(root / "pred", metrics_dir=root / "metrics", plots_dir=root / "plots", splits=["val", "test"],
                    tasks=["cls", "rec"], source_dir=data, train_json=train)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    rule = replace(RegisterParams(), guards={}, floors={"test.cls.accuracy": 0.3})
    candidate = load_metrics([root / "metrics" / "test.json", root / "metrics" / "val.json"])
    promoted, reason, comps = decide(rule, candidate, None)
    decision = Decision("colongpt", "register", "1", None, promoted, reason, comps, "1" if promoted else None, None,
                        time="2026-12-01T00:00:00+0000").to_json()
    lineage = {**stage_lineage("finetune", params=params["finetune"], inputs=[train, root / "interim"],
                               root=root, lockfile=root / "dvc.lock"),
               "ingest": json.loads((root / "interim" / "ingest_report.json").read_text())}
    model_dir = root / "model"
    model_dir.mkdir()
    shutil.copy(tiny_model_dir / "config.json", model_dir)
    return {"root": root, "model_dir": model_dir, "params": params, "decision": decision, "lineage": lineage,
            "metrics": read_metrics(root / "metrics", root / "plots")}


def _write(run: dict, **override) -> Path:
    args = {k: run[k] for k in ("lineage", "metrics", "decision", "params")}
    return write_model_card(run["model_dir"], **{**args, **override})


def test_card_round_trips_offline_and_its_numbers_are_the_metrics_files(run):
    path = _write(run)
    card = ModelCard.load(path)  # strict: an invalid model-index raises here
    ModelCardData(**card.data.to_dict())  # and its metadata re-validates
    data = card.data
    assert (data.license, data.license_name, data.pipeline_tag, data.library_name) == \
        ("other", "research-only", "image-text-to-text", "transformers")
    assert {"colonpipe", "colonoscopy", "medical", "preset-tiny"} <= set(data.tags)
    assert data.base_model is None  # the tiny preset starts from random weights
    files = {split: json.loads((run["root"] / "metrics" / f"{split}.json").read_text()) for split in ("val", "test")}
    want = {(split, metric, files[split][task][metric]) for split in files for task in ("cls", "rec")
            for metric in METRICS[task]}
    assert {(r.dataset_split, r.metric_type, r.metric_value) for r in data.eval_results} == want
    for split, task, base in [("test", "cls", "baseline_accuracy"), ("test", "rec", "baseline_avg_iou")]:
        assert f"{files[split][task][base]:.4f}" in card.text  # baselines sit next to the numbers
    by_dataset = json.loads((run["root"] / "plots" / "test" / "scores.json").read_text())["cls"]["by_dataset"]
    for name, group in by_dataset.items():
        assert f"| {name} | {group['n']} | {group['mean']:.4f} |" in card.text
    assert "| dataset | n | accuracy |" in card.text and "| dataset | n | avg_iou |" in card.text
    index = {(r["task"]["name"], r["dataset"]["config"], r["dataset"]["split"]): [m["type"] for m in r["metrics"]]
             for r in card.data.to_dict()["model-index"][0]["results"]}
    assert index[("CLS (classification)", "cls", "test")] == ["accuracy"]  # one task per model-index entry
    assert len(index) == 4


def test_card_states_lineage_decision_and_limits(run):
    text = ModelCard.load(_write(run)).text
    lineage = run["lineage"]
    for h in lineage["inputs"].values():
        assert f"{h['algo']}:{h['hash']}" in text
    totals = lineage["ingest"]["totals"]
    assert totals["skipped"] == 1  # the planted corrupt image
    assert f"| {totals['images_kept']} | {totals['rows']} | 1 | 0 |" in text
    assert "corrupt_image: 1" in text
    assert run["decision"]["reason"] in text and "**promoted to champion**" in text
    assert "not a medical device" in text and "Research use only" in text
    assert yaml.safe_load(text.split("```yaml\n")[1].split("```")[0]) == run["params"]  # params travel along


def test_card_is_a_pure_function_of_its_inputs(run, tmp_path):
    first = _write(run).read_bytes()
    assert _write(run).read_bytes() == first
    real = {**run["params"], "model": {**run["params"]["model"], "preset": "phi15-siglip",
                                        "vision": str(tmp_path / "local-siglip")}}  # a local path is no hub id
    card = ModelCard.load(_write(run, params=real, decision=None))
    assert card.data.base_model == ["microsoft/phi-1_5"]
    assert "Not registered." in card.text
    hub = {**real, "model": {**real["model"], "vision": "google/siglip-so400m-patch14-384"}}
    assert ModelCard.load(_write(run, params=hub)).data.base_model == \
        ["microsoft/phi-1_5", "google/siglip-so400m-patch14-384"]


# --------------------------------------------------------------------------- wiring (cards.py)
def test_training_output_gets_a_card_of_what_training_knows(run, tiny_model_dir, tmp_path, monkeypatch):
    from colonpipe.model import checkpoint_files as ck
    from colonpipe.register.cards import write_training_card
    from tests.trained import write_training_output

    final = write_training_output(tiny_model_dir, tmp_path / "final")
    monkeypatch.chdir(run["root"])
    write_training_card(final, stage="finetune", params_path=REPO / "params.yaml",
                        inputs=["Json-file/train/ColonINST-train-3tasks.json"],
                        ingest_report=run["root"] / "interim" / "ingest_report.json")
    text = (final / "README.md").read_text()
    assert "Not evaluated yet" in text and "Not registered." in text and "## Lineage" in text
    assert "Ingest (bad inputs are skipped" in text and "Json-file/train/ColonINST-train-3tasks.json" in text
    assert "lora:" in text  # the params section
    card = ModelCard.load(final / "README.md")
    assert card.data.pipeline_tag == "image-text-to-text" and not card.data.eval_results
    assert ck.check_dir(final) is None  # the manifest was rewritten and covers the card
    assert "README.md" in json.loads((final / ck.MANIFEST).read_text())["files"]


def test_registered_model_is_bf16_merged_carries_the_wheel_and_the_full_card(run, tiny_model_dir, tmp_path,
                                                                             tracking_env):
    import mlflow
    from safetensors import safe_open
    from transformers import AutoModelForImageTextToText

    from colonpipe.register.cards import CardSources
    from colonpipe.register.registry import register_model
    from colonpipe.tracking.logger import MlflowLogger
    from colonpipe.tracking.store import get_client, get_experiment_id
    from tests.trained import write_training_output

    final = write_training_output(tiny_model_dir, tmp_path / "final")
    client = get_client()
    mrun = client.create_run(get_experiment_id(client), run_name="register")
    rule = replace(RegisterParams(), model_name="card_wiring", guards={}, floors={})
    sources = CardSources(metrics_dir=run["root"] / "metrics", plots_dir=run["root"] / "plots",
                          params_path=REPO / "params.yaml", ingest_report=run["root"] / "interim" / "ingest_report.json")
    decision = register_model(rule, MlflowLogger(client, mrun.info.run_id),
                              metrics_paths=[run["root"] / "metrics" / "test.json"], model_dir=final,
                              registry_path=tmp_path / "registry.json", merged_dir=tmp_path / "merged", card=sources)
    client.set_terminated(mrun.info.run_id)
    assert decision.promoted
    merged = tmp_path / "merged"
    with safe_open(str(merged / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}
    import colonpipe.model  # noqa: F401  (registers colongpt)
    AutoModelForImageTextToText.from_pretrained(merged)  # loads on its own
    local = Path(mlflow.artifacts.download_artifacts(f"models:/card_wiring/{decision.candidate_version}",
                                                     dst_path=str(tmp_path / "dl")))
    card = (local / "README.md").read_text()
    assert card == (merged / "README.md").read_text()
    assert "**promoted to champion**" in card and "### test" in card and "Ingest (bad inputs" in card
    wheels = list((local / "artifacts" / "colonpipe_wheel").glob("colonpipe-*.whl"))
    assert len(wheels) == 1, sorted(str(p.relative_to(local)) for p in local.rglob("*"))
    reqs = (local / "requirements.txt").read_text().splitlines()
    assert f"artifacts/colonpipe_wheel/{wheels[0].name}" in reqs and any(r.startswith("torch==") for r in reqs)
    logged = local / "artifacts" / "merged" / "model.safetensors"  # MLflow keeps the folder's name
    assert logged.stat().st_size == (merged / "model.safetensors").stat().st_size  # stored once, in bf16
