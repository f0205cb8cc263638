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
