"""``models:/`` references: resolved in the project's MLflow store, downloaded once, then cached."""

from __future__ import annotations

import json
import shutil

import mlflow
import pytest

from colonpipe.infer.predict import predict_images
from colonpipe.infer.load import load_for_inference
from colonpipe.register.model_commands import predict_main
from colonpipe.register.model_ref import ModelRefError, resolve_model
from colonpipe.tracking.logger import MlflowLogger
from colonpipe.register.model_log import log_pyfunc_model
from colonpipe.register.registry import CHAMPION, register_candidate
from colonpipe.tracking.store import get_client, get_experiment_id

NAME = "colongpt_ref_test"


def test_champion_is_downloaded_once_and_answers_like_the_source(store, tiny_model_dir, tmp_path, capsys,
                                                                 monkeypatch):
    source = shutil.copytree(tiny_model_dir, tmp_path / "source")
    frame = tiny_model_dir.parent / "corpus" / "images" / "Synth" / "1.png"
    model, processor = load_for_inference(source)
    want = next(predict_images(model, processor, [frame], "<image>\nCategorize the object.", max_new_tokens=40))
    client = get_client()
    run = client.create_run(get_experiment_id(client), run_name="register")
    info = log_pyfunc_model(MlflowLogger(client, run.info.run_id), source)
    client.set_terminated(run.info.run_id)
    mv = register_candidate(client, NAME, info.model_uri, run_id=run.info.run_id, metrics={"m": 1.0})
    client.set_registered_model_alias(NAME, CHAMPION, mv.version)
    shutil.rmtree(source)  # the registry's copy must be what answers

    assert predict_main([str(frame), "--model", f"models:/{NAME}@{CHAMPION}", "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out) == want.to_json()
    cached = resolve_model(f"models:/{NAME}/{mv.version}")
    assert cached.parent.name == NAME and cached.name == f"v{mv.version}"
    assert (cached / "config.json").is_file() and (cached / "model.safetensors").is_file()
    assert [p.name for p in cached.parent.iterdir()] == [f"v{mv.version}"]  # no temp folder left behind

    def no_download(**kwargs):
        raise AssertionError(f"downloaded again: {kwargs}")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    assert resolve_model(f"models:/{NAME}@{CHAMPION}") == cached


def test_bad_references_name_the_problem(store, tmp_path):
    with pytest.raises(ModelRefError, match="expected models:/<name>@<alias> or models:/<name>/<version>"):
        resolve_model("models:/a/b/c")
    with pytest.raises(ModelRefError, match=r"models:/nobody@champion: not found in the MLflow store sqlite:///"):
        resolve_model("models:/nobody@champion")
    with pytest.raises(ModelRefError, match="no such model folder"):
        resolve_model(tmp_path / "absent")
