"""MlflowLogger and stage_run against a real sqlite store, read back through MlflowClient."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from colonpipe.tracking import MlflowLogger, RunLogger, stage_run
from colonpipe.hashing import sha256_path


def _download_json(client: MlflowClient, run_id: str, path: str, dst: Path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, path, str(dst))).read_text())


def test_stage_run_logs_params_metrics_artifacts_and_lineage(tracking_env, git_repo, tmp_path):
    data = git_repo / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "x.txt").write_text("hello")
    (git_repo / "plot.png").write_bytes(b"\x89PNG fake")
    params = {"finetune.lora.r": 8, "finetune.lr": 2e-4, "finetune.parts": ["a", "b"]}
    with stage_run("finetune", params=params, inputs=["data", "plot.png"]) as log:
        assert isinstance(log, RunLogger)
        log.log_metrics({"train.loss": 2.0}, step=1)
        log.log_metrics({"train.loss": 1.5}, step=2)
        log.log_artifact(data, "inputs")
        log.log_artifact(git_repo / "plot.png", "plots")
        log.set_tags({"note": "hi"})
        run_id = log.run_id

    client = MlflowClient(tracking_env)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "finetune"
    assert run.data.params == {"finetune.lora.r": "8", "finetune.lr": "0.0002",
                               "finetune.parts": '["a", "b"]'}
    history = client.get_metric_history(run_id, "train.loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"inputs", "plots", "lineage"}
    assert [a.path for a in client.list_artifacts(run_id, "inputs/sub")] == ["inputs/sub/x.txt"]

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    tags = run.data.tags
    assert tags["colonpipe.git.commit"] == head and tags["colonpipe.git.dirty"] == "false"
    assert tags["note"] == "hi" and "mlflow.parentRunId" not in tags  # run by hand: top-level
    lineage = _download_json(client, run_id, "lineage/lineage.json", tmp_path / "dl")
    assert lineage["params"]["finetune.lora.r"] == 8
    assert lineage["inputs"]["data"] == {"hash": sha256_path(data), "algo": "sha256", "source": "computed"}
    assert tags["colonpipe.input.data"] == f"sha256:{sha256_path(data)}"


def test_inputs_produced_upstream_take_the_dvc_lock_hash(tracking_env, git_repo):
    out = git_repo / "data" / "interim.parquet"
    out.parent.mkdir()
    out.write_bytes(b"12345")
    (git_repo / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  ingest:\n    cmd: x\n    outs:\n"
        "    - path: data/interim.parquet\n      hash: md5\n      md5: abc123\n      size: 5\n"
    )
    with stage_run("instruct", inputs=["data/interim.parquet"]) as log:
        run_id = log.run_id
    tags = MlflowClient(tracking_env).get_run(run_id).data.tags
    assert tags["colonpipe.input.data/interim.parquet"] == "md5:abc123"

    out.write_bytes(b"123456")  # size no longer matches the lock: the record is stale, recompute
    with stage_run("instruct", inputs=["data/interim.parquet"]) as log:
        run_id = log.run_id
    tags = MlflowClient(tracking_env).get_run(run_id).data.tags
    assert tags["colonpipe.input.data/interim.parquet"] == f"sha256:{sha256_path(out)}"


def test_failed_stage_marks_run_failed(tracking_env, git_repo):
    with pytest.raises(RuntimeError, match="boom"):
        with stage_run("train") as log:
            run_id = log.run_id
            raise RuntimeError("boom")
    assert MlflowClient(tracking_env).get_run(run_id).info.status == "FAILED"


def test_logger_rejects_non_numeric_metric_and_missing_artifact(tracking_env, git_repo):
    client = MlflowClient(tracking_env)
    exp = client.create_experiment("exp_logger_bad_input")
    log = MlflowLogger(client, client.create_run(exp).info.run_id)
    with pytest.raises(TypeError, match="acc"):
        log.log_metrics({"acc": "high"})
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        log.log_artifact(git_repo / "nope.txt")


def test_unknown_parent_run_id_is_a_clear_error(tracking_env, git_repo, monkeypatch):
    monkeypatch.setenv("COLONPIPE_PARENT_RUN_ID", "0" * 32)
    with pytest.raises(RuntimeError, match="COLONPIPE_PARENT_RUN_ID=0+: no such run"):
        with stage_run("x"):
            pass
