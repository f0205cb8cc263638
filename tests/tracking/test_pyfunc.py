"""The servable model: a tiny ColonGPT logged as pyfunc, registered, loaded and served over HTTP
(the serve test takes about 10 s, so it is not marked slow)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from colonpipe.tracking.logger import MlflowLogger
from colonpipe.tracking.model_log import log_pyfunc_model, pinned_requirements
from colonpipe.tracking.pyfunc import ServeConfig, decode_image, human_turn
from colonpipe.tracking.registry import CHAMPION, register_candidate
from colonpipe.tracking.store import get_client, get_experiment_id

QUESTION = "Categorize the object."


def _register(model_dir: Path, name: str) -> str:
    """Log ``model_dir`` as pyfunc in a fresh run, register it, alias it champion; the URI."""
    client = get_client()
    run = client.create_run(get_experiment_id(client), run_name="register")
    info = log_pyfunc_model(MlflowLogger(client, run.info.run_id), model_dir)
    client.set_terminated(run.info.run_id)
    mv = register_candidate(client, name, info.model_uri, run_id=run.info.run_id, metrics={"m": 1.0})
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    return f"models:/{name}@{CHAMPION}"


def _name(request) -> str:
    return "pyfunc_" + re.sub(r"[^A-Za-z0-9]", "_", request.node.name)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def trained_final(tmp_path, tiny_model_dir) -> Path:
    """A training output (``final/``: LoRA adapter + projector) over a *copy* of the base."""
    from peft import LoraConfig, get_peft_model

    from colonpipe.model.presets import load_base
    from colonpipe.train import checkpoint as ck
    from colonpipe.train.artifacts import save_trainables

    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    out = tmp_path / "final"
    out.mkdir()
    model, processor = load_base(base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name or "multi_modal_projector" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    save_trainables(out, peft, full_parts=[], is_main=True)
    processor.save_pretrained(out)
    ck.write_json_atomic(out / ck.TRAIN_CONFIG, {"base_dir": str(base)})
    ck.write_json_atomic(out / ck.TRAINER_STATE, {"global_step": 1})
    ck.write_manifest(out)
    return out


def test_champion_loads_without_its_base_and_answers_like_the_trained_model(
    tracking_env, tiny_model_dir, trained_final, request
):
    from colonpipe.infer.generate import generate_answers
    from colonpipe.infer.load import load_for_inference
    from colonpipe.data.images import load_rgb

    images = tiny_model_dir.parent / "images" / "Synth"
    model, processor = load_for_inference(trained_final, threads=1)
    want = generate_answers(model, processor, [f"<image>\n{QUESTION}", "<image>\nWhere is polyp?"],
                            [load_rgb(images / "0.png"), load_rgb(images / "1.png")],
                            batch_size=2, max_new_tokens=40)
    uri = _register(trained_final, _name(request))
    shutil.rmtree(trained_final.parent / "base")  # the logged model must not need it

    served = mlflow.pyfunc.load_model(uri)
    frame = pd.DataFrame({
        "image": [_b64(images / "0.png"), str(images / "1.png")],  # base64 bytes, then a path
        "question": [QUESTION, "<image>\nWhere is polyp?"],  # "<image>\n" added to the first
        "task": ["cls", None],
    })
    assert served.predict(frame) == want
    assert served.metadata.get_input_schema().input_names() == ["image", "question", "task"]
    with pytest.raises(MlflowException, match="row 0: unknown task 'seg'"):
        served.predict(frame.assign(task=["seg", "cls"]))


def test_bad_rows_are_named_and_config_picks_the_budget(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(MlflowException, match="row 3: 'image' is neither an existing file nor valid base64"):
        decode_image("%%%", row=3)
    with pytest.raises(MlflowException, match=r"row 1: .*x\.png: cannot read image"):
        decode_image(str(tmp_path / "x.png"), row=1)
    with pytest.raises(MlflowException, match="row 0: 'question' holds 2"):
        human_turn("<image> and <image>", row=0)
    assert human_turn("Where?", row=0) == "<image>\nWhere?"
    cfg = ServeConfig.from_mapping({"max_new_tokens": {"cap": 64}})
    assert [cfg.budget(t, row=0) for t in ("CAP", "rec", None, float("nan"), "")] == [64, 40, 40, 40, 40]
    with pytest.raises(ValueError, match="unknown serve config keys"):
        ServeConfig.from_mapping({"temperature": 1.0})
    reqs = pinned_requirements()
    assert all("==" in r and "+" not in r for r in reqs) and any(r.startswith("torch==") for r in reqs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def test_mlflow_models_serve_answers_a_real_request(tracking_env, venv_env, tiny_model_dir, tmp_path, request):
    uri = _register(tiny_model_dir, _name(request))
    port, log = _free_port(), tmp_path / "serve.log"
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    env = venv_env(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [mlflow_bin, "models", "serve", "-m", uri, "--env-manager", "local", "-p", str(port),
             "--host", "127.0.0.1", "-w", "1"],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/ping", proc, log)
        image = tiny_model_dir.parent / "images" / "Synth" / "2.png"
        rows = [[_b64(image), QUESTION, "cls"], [str(image), "<image>\nWhere is polyp?", "rec"]]
        status, body = _post(f"{base}/invocations", {"dataframe_split": {
            "columns": ["image", "question", "task"], "data": rows}})
        assert status == 200, body
        answers = body["predictions"]
        assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
        status, body = _post(f"{base}/invocations", {"dataframe_split": {
            "columns": ["image", "question"], "data": [["bm90IGFuIGltYWdl", QUESTION]]}})
        assert status == 400 and "row 0: base64 image (12 bytes): cannot read image" in body["message"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
