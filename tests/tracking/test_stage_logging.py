"""Stages log to their MLflow child run under the pipeline's parent, without touching outputs."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from colonpipe.tracking import pipeline_parent
from colonpipe.infer.task import infer_metrics
from colonpipe.model.weights import saved_parameter_count
from colonpipe.tracking.logger import log_files, numeric_leaves
from tests.evaluate.eval_cases import CLS, REC, REC_AVG, TRAIN, strip_prediction, write
from tests.infer.conftest import make_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stages():
    """Load a ``stages/<name>.py`` script as a module by path (a plain ``import evaluate``
    could resolve to another ``evaluate`` on sys.path, e.g. the tests/evaluate folder)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"colonpipe_stage_{name}", REPO / "stages" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def _children(client: MlflowClient, parent_id: str) -> dict:
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return {r.info.run_name: r for r in runs}


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path or None):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_evaluate_stage_logs_flat_metrics_files_and_plots_under_the_parent(
    tracking_env, git_repo, stages
):
    stage = stages("evaluate")

    (git_repo / "params.yaml").write_text((REPO / "params.yaml").read_text())
    write(git_repo / "pred" / "test_pred_cls.json", CLS)
    write(git_repo / "pred" / "test_pred_rec.json", REC)
    write(git_repo / "src" / "test" / "ColonINST-test-cls.json", strip_prediction(CLS))
    write(git_repo / "src" / "test" / "ColonINST-test-rec.json", strip_prediction(REC))
    write(git_repo / "train.json", TRAIN)
    argv = ["--pred-dir", "pred", "--train-json", "train.json", "--source-dir", "src",
            "--metrics-dir", "metrics", "--plots-dir", "plots"]
    with pipeline_parent("pipeline") as parent_id:
        assert stage.main(argv) == 0

    client = MlflowClient(tracking_env)
    run = _children(client, parent_id)["evaluate"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test.cls.accuracy"] == 0.5
    assert run.data.metrics["test.rec.avg_iou"] == pytest.approx(REC_AVG, abs=1e-6)
    assert run.data.params["evaluate.iou_bins"] == "20"
    assert run.data.tags["colonpipe.input.pred/test_pred_cls.json"].startswith("sha256:")
    arts = _artifacts(client, run.info.run_id)
    assert {"metrics/test.json", "metrics/val.json", "plots/test/scores.json",
            "plots/test/rec_iou_hist.png", "lineage/lineage.json"} <= arts
    plot_files = {f"plots/{p.relative_to(git_repo / 'plots').as_posix()}"
                  for p in (git_repo / "plots").rglob("*") if p.is_file()}
    assert plot_files <= arts  # every plot the stage wrote

    # logging changed no output: a rerun without a parent writes the same metrics bytes
    first = (git_repo / "metrics" / "test.json").read_bytes()
    shutil.rmtree(git_repo / "metrics")
    assert stage.main(argv) == 0
    assert (git_repo / "metrics" / "test.json").read_bytes() == first


def test_infer_stage_logs_counts_rates_and_predictions(tracking_env, git_repo, stages, tiny_model_dir):
    stage = stages("infer")

    data = git_repo / "Json-file"
    for split, n in (("val", 3), ("test", 4)):
        src = make_dataset(git_repo / "raw", n)
        (data / split).mkdir(parents=True)
        shutil.copy(src, data / split / f"ColonINST-{split}-cls.json")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["infer"].update(batch_size=4, num_shards=1, device="cpu", cpu_threads=1,
                           max_new_tokens={"cls": 4, "reg": 4, "rec": 4, "cap": 4})
    (git_repo / "params.yaml").write_text(yaml.safe_dump(params))
    argv = ["--task", "cls", "--model-dir", str(tiny_model_dir), "--data-dir", "Json-file",
            "--image-root", "raw/images", "--out-dir", "pred"]
    with pipeline_parent("pipeline") as parent_id:
        assert stage.main(argv) == 0
        (git_repo / "pred" / "test_pred_cls.json").unlink()
        assert stage.main(argv) == 0  # everything journaled: merge only, nothing generated

    client = MlflowClient(tracking_env)
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              order_by=["attributes.start_time ASC"])
    assert [r.info.run_name for r in runs] == ["infer@cls", "infer@cls"]
    first, rerun = (r.data.metrics for r in runs)
    assert (first["val.cls.records"], first["test.cls.records"], first["test.cls.errors"]) == (3, 4, 0)
    assert first["test.cls.predicted"] == 4 and first["test.cls.samples_per_s"] > 0
    assert rerun["test.cls.predicted"] == 0 and "test.cls.samples_per_s" not in rerun
    assert runs[0].data.params["infer.max_new_tokens.cls"] == "4"
    assert _artifacts(client, runs[0].info.run_id) >= {"predictions/val_pred_cls.json",
                                                        "predictions/test_pred_cls.json"}


def test_summary_helpers(tracking_env, tmp_path, tiny_model_dir):
    assert numeric_leaves({"a": {"b": 2, "ok": True, "s": "x"}, "files": {"f": 1}}, "p", skip=("files",)) \
        == {"p.a.b": 2.0}
    from colonpipe.model.presets import load_base

    model, _ = load_base(tiny_model_dir)
    assert saved_parameter_count(tiny_model_dir) == sum(p.numel() for p in model.parameters())
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        saved_parameter_count(tmp_path)
    with pytest.raises(ValueError):  # summaries and splits must line up
        infer_metrics("cls", [], splits=["val"], journal_dirs=[tmp_path], since=0.0)
    with pytest.raises(FileNotFoundError, match="no such file"):
        log_files(None, [tmp_path / "missing.json"])
