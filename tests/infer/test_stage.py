"""stages/infer.py end to end on the tiny model: both splits, reference file names, resumable."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.infer.conftest import make_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path, tiny_model_dir):
    data = tmp_path / "data" / "coloninst" / "Json-file"
    for split, n in (("val", 5), ("test", 7)):
        src = make_dataset(tmp_path / "raw", n)
        (data / split).mkdir(parents=True)
        shutil.copy(src, data / split / f"ColonINST-{split}-reg.json")
    roots = tmp_path / "image_roots.json"
    roots.write_text(json.dumps({"Synth": str(tmp_path / "raw" / "images" / "Synth")}))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["infer"].update(batch_size=3, num_shards=1, device="cpu", cpu_threads=1,
                           max_new_tokens={"cls": 8, "reg": 8, "rec": 8, "cap": 16})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _run(ws, model_dir, monkeypatch):
    argv = ["stages/infer.py", "--task", "reg", "--model-dir", str(model_dir),
            "--data-dir", str(ws / "data" / "coloninst" / "Json-file"), "--image-root", str(ws / "image_roots.json"),
            "--out-dir", str(ws / "pred"), "--params", str(ws / "params.yaml")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "stages" / "infer.py"), run_name="__main__")
    return exit_info.value.code


def test_stage_writes_both_splits_and_resumes(workspace, tiny_model_dir, monkeypatch):
    assert _run(workspace, tiny_model_dir, monkeypatch) == 0
    for split, n in (("val", 5), ("test", 7)):
        out = json.loads((workspace / "pred" / f"{split}_pred_reg.json").read_text())
        assert len(out) == n and all(r["conversations"][-1]["from"] == "prediction" for r in out)
        assert (workspace / "pred" / ".shards-reg" / split / "fingerprint.json").is_file()
    first = (workspace / "pred" / "test_pred_reg.json").read_bytes()
    (workspace / "pred" / "test_pred_reg.json").unlink()  # as dvc does before a rerun
    assert _run(workspace, tiny_model_dir, monkeypatch) == 0  # all journaled: merge only
    assert (workspace / "pred" / "test_pred_reg.json").read_bytes() == first


def test_stage_reports_a_missing_model(workspace, monkeypatch, caplog):
    assert _run(workspace, workspace / "nope", monkeypatch) == 1
    assert "model folder not found" in caplog.text
