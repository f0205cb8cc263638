"""The servable model: a tiny ColonGPT logged as pyfunc, registered, loaded, and served over real HTTP
(``mlflow models serve --env-manager local``): ONE server (module-scoped, about 10 s to start)
answers good requests and every hostile probe, each an HTTP 400 with a clear message, and still
answers a good request afterwards."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from colonpipe.tracking.logger import MlflowLogger
from colonpipe.register.model_log import log_pyfunc_model, pinned_requirements
from colonpipe.register.registry import CHAMPION, register_candidate
from colonpipe.register.serve_config import ServeConfig
from colonpipe.register.serve_input import decode_image, human_turn
from colonpipe.tracking.store import get_client, get_experiment_id
from flows.dvc_cli import kill_group
from tests.bombs import ERROR_SIDE, WARNING_SIDE, b64, png_bomb
from tests.trained import write_lora_output

pytestmark = pytest.mark.integration

QUESTION = "Categorize the object."
NOT_BASE64 = "'image' is not valid base64 image data nor an absolute path under the serve config's image_roots"
NO_FILE = "'image' names no readable image file under the serve config's image_roots"
REFUSED = "decompression bomb refused before decoding"


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


def _png(size=(24, 16), seed=0, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def trained_final(tmp_path, tiny_model_dir) -> Path:
    """A training output (``final/``: LoRA adapter + projector) over a *copy* of the base."""
    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    return write_lora_output(base, tmp_path / "final")[0]


def test_champion_loads_without_its_base_and_answers_like_the_trained_model(
    tracking_env, tiny_model_dir, trained_final, request
):
    from colonpipe.data.images import load_rgb
    from colonpipe.infer.generate import generate_answers
    from colonpipe.infer.load import load_for_inference

    from colonpipe.model.merge_adapter import merge_to_dir

    images = tiny_model_dir.parent / "corpus" / "images" / "Synth"
    # the registry stores the merged weights once, in bf16 (served in the serve config's fp32)
    stored = merge_to_dir(trained_final, trained_final.parent / "bf16", dtype=torch.bfloat16)
    model, processor = load_for_inference(stored, threads=1)
    want = generate_answers(model, processor, [f"<image>\n{QUESTION}", "<image>\nWhere is polyp?"],
                            [load_rgb(images / "0.png"), load_rgb(images / "1.png")],
                            batch_size=2, max_new_tokens=40)
    uri = _register(trained_final, _name(request))
    shutil.rmtree(trained_final.parent / "base")  # the logged model must not need it

    served = mlflow.pyfunc.load_model(uri, model_config={"image_roots": [str(images)]})
    frame = pd.DataFrame({
        "image": [_b64(images / "0.png"), str(images / "1.png")],  # base64 bytes, then an allowed path
        "question": [QUESTION, "<image>\nWhere is polyp?"],  # "<image>\n" added to the first
        "task": ["cls", None],
    })
    assert served.predict(frame) == want
    assert served.metadata.get_input_schema().input_names() == ["image", "question", "task"]
    with pytest.raises(MlflowException, match="row 0: unknown task 'seg'"):
        served.predict(frame.assign(task=["seg", "cls"]))
    with pytest.raises(MlflowException, match=r"row 1: 'image' is not valid base64 image data \(this model takes "
                                              r"no file paths: its serve config lists no image_roots\)"):
        mlflow.pyfunc.load_model(uri).predict(frame)


def test_bad_rows_are_named_and_config_picks_the_budget(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    allowed = ServeConfig(image_roots=[str(tmp_path)])
    with pytest.raises(MlflowException, match=r"row 3: 'image' is not valid base64 image data \(this model "
                                              r"takes no file paths"):
        decode_image("%%%", row=3)
    with pytest.raises(MlflowException, match=r"row 1: image file \(9 bytes\): cannot open image "
                                              r"\(not a known image format\)$"):
        decode_image(str(tmp_path / "x.png"), row=1, config=allowed)
    with pytest.raises(MlflowException, match="row 0: 'question' holds 2"):
        human_turn("<image> and <image>", row=0)
    assert human_turn("Where?", row=0) == "<image>\nWhere?"
    cfg = ServeConfig.from_mapping({"max_new_tokens": {"cap": 64}})
    assert [cfg.budget(t, row=0) for t in ("CAP", "rec", None, float("nan"), "")] == [64, 40, 40, 40, 40]
    with pytest.raises(ValueError, match="unknown serve config keys"):
        ServeConfig.from_mapping({"temperature": 1.0})
    reqs = pinned_requirements()
    assert all("==" in r and "+" not in r for r in reqs) and any(r.startswith("torch==") for r in reqs)


def test_serve_config_defaults_take_base64_only_and_bad_values_are_refused():
    cfg = ServeConfig()
    assert cfg.image_roots == ()
    assert (cfg.max_rows, cfg.max_image_bytes, cfg.max_pixels, cfg.max_question_chars) == (
        32, 16 * 2**20, 25_000_000, 2000)
    mapping = ServeConfig(image_roots="/data/images/").to_mapping()
    assert mapping["image_roots"] == ["/data/images"] and ServeConfig.from_mapping(mapping).image_roots == (
        "/data/images",)
    for bad, needle in [({"image_roots": ["data/images"]}, "absolute"), ({"image_roots": ["/"]}, "whole file system"),
                        ({"image_roots": ["/tmp/.."]}, "whole file system"), ({"max_rows": 0}, "max_rows"),
                        ({"max_pixels": "many"}, "max_pixels"), ({"max_image_bytes": True}, "max_image_bytes"),
                        ({"threads": -1}, "threads")]:
        with pytest.raises(ValueError, match=needle):
            ServeConfig.from_mapping(bad)


# --------------------------------------------------------------------------- one real server
LIMITS = {"max_rows": 4, "max_image_bytes": 64 * 1024, "max_pixels": 1_000_000, "max_question_chars": 300}


@dataclass(frozen=True)
class Server:
    url: str
    root: Path  # holds the allowed folder and files outside it
    allowed: Path  # the only image root
    log: Path
    proc: subprocess.Popen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
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


def _files(root: Path) -> Path:
    """The allowed root with good, hostile and unreadable entries; secrets beside it."""
    allowed = root / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "ok.png").write_bytes(_png(seed=1))
    (allowed / "sub" / "ok.jpg").write_bytes(_png(seed=2, fmt="JPEG"))
    (allowed / "big.png").write_bytes(_png((200, 200), seed=3))  # > 64 KiB of noise
    (allowed / "bomb.png").write_bytes(png_bomb(ERROR_SIDE, ERROR_SIDE))
    (allowed / "folder.png").mkdir()
    os.mkfifo(allowed / "fifo.png")  # opening it for reading would block a naive server forever
    secret = root / "secret.png"
    secret.write_bytes(_png(seed=4))  # a valid image: refused for where it is, not for what it is
    secret.chmod(0o600)
    (allowed / "link_in.png").symlink_to(allowed / "ok.png")
    (allowed / "link_out.png").symlink_to(secret)
    (allowed / "dir_out").symlink_to(root, target_is_directory=True)
    return allowed


@pytest.fixture(scope="module")
def server(mlflow_store, tiny_model_dir, tmp_path_factory):
    """``mlflow models serve`` of the tiny champion, image root and small limits set at serve time."""
    root = tmp_path_factory.mktemp("serve")
    allowed = _files(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_store)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", "exp_pyfunc_serve_probes")
        uri = _register(tiny_model_dir, "pyfunc_serve_probes")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "MLFLOW_PYFUNC_INFERENCE_CONFIG": json.dumps({"image_roots": [str(allowed)], **LIMITS})}
    port, log = _free_port(), root / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
             "-p", str(port), "--host", "127.0.0.1", "-w", "1"],
            env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/ping", proc, log)
        yield Server(f"{base}/invocations", root, allowed, log, proc)
    finally:
        kill_group(proc, grace_s=20)  # the server's whole process group, every wait with a deadline


def _rows(server: Server, rows: list[list], columns=("image", "question", "task")) -> tuple[int, dict]:
    return _post(server.url, {"dataframe_split": {"columns": list(columns), "data": rows}})


def _refused(server: Server, image, *, question=QUESTION, task="cls") -> str:
    """POST one row, assert HTTP 400 and that nothing submitted or on disk is echoed; the message."""
    status, body = _rows(server, [[image, question, task]])
    assert status == 400, body
    message = body["message"]
    assert str(server.root) not in message and "stack_trace" not in body
    assert not (isinstance(image, str) and len(image) > 8 and image in message)
    return message


def _good(server: Server) -> list[list]:
    """Four rows: base64 PNG, base64 JPEG (starts with '/9j/', not a path), allowed path, allowed symlink."""
    ok = server.allowed / "ok.png"
    return [[_b64(ok), QUESTION, "cls"], [_b64(server.allowed / "sub/ok.jpg"), "Where is polyp?", "rec"],
            [str(ok), QUESTION, None], [str(server.allowed / "link_in.png"), QUESTION, "reg"]]


def _answers(server: Server) -> list[str]:
    status, body = _rows(server, _good(server))
    assert status == 200, body
    assert len(body["predictions"]) == 4 and all(isinstance(a, str) for a in body["predictions"])
    return body["predictions"]


def test_the_server_answers_base64_and_paths_under_its_root(server):
    rows = _good(server)
    assert rows[1][0].startswith("/9j/")
    answers = _answers(server)
    assert answers[0] == answers[2] == answers[3]  # the same image by base64, by path, by symlink (greedy)


@pytest.mark.parametrize("probe", ["/etc/passwd", "secret", "/proc/self/environ", "dotdot", "dotdot-deep"])
def test_paths_outside_the_root_are_never_opened(server, probe):
    image = {"secret": str(server.root / "secret.png"),  # a 0600 file of the serving user, a valid PNG
             "dotdot": f"{server.allowed}/../secret.png",
             "dotdot-deep": f"{server.allowed}/sub/../../../../../etc/passwd"}.get(probe, probe)
    assert _refused(server, image) == f"row 0: {NOT_BASE64}"


@pytest.mark.parametrize("probe", ["missing.png", "sub/missing.png", "folder.png", "fifo.png", "link_out.png",
                                   "dir_out/secret.png", "unreadable.png"])
def test_missing_and_unreadable_files_under_the_root_give_one_error(server, probe):
    if probe == "unreadable.png":
        if os.geteuid() == 0:
            pytest.skip("root reads a 0000 file; folder.png and fifo.png stand for unreadable files here")
        path = server.allowed / probe
        path.write_bytes(_png(seed=5))
        path.chmod(0)
    assert _refused(server, str(server.allowed / probe)) == f"row 0: {NO_FILE}"


def test_limits_give_400_naming_the_serve_config_key(server):
    ok = _b64(server.allowed / "ok.png")
    status, body = _rows(server, [[ok, QUESTION, "cls"]] * 5)
    assert status == 400 and body["message"] == (
        "request has 5 rows; this model answers at most 4 per request (serve config max_rows)")
    big = server.allowed / "big.png"
    for image in (_b64(big), str(big)):
        message = _refused(server, image)
        assert message.startswith("row 0: image is ")
        assert message.endswith("bytes; the limit is 65,536 (serve config max_image_bytes)")
    message = _refused(server, ok, question="x" * 301)
    assert message == "row 0: 'question' is 301 characters; the limit is 300 (serve config max_question_chars)"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [ERROR_SIDE, WARNING_SIDE, 2000], ids=["pil-error", "pil-warning", "serve-limit"])
def test_pixel_bombs_are_refused_from_the_header(server, side):
    message = _refused(server, b64(png_bomb(side, side)))
    assert message.startswith("row 0: base64 image (") and REFUSED in message and "max_pixels" in message
    if side == 2000:
        assert "2000x2000 = 4,000,000 pixels, over the limit of 1,000,000" in message
    assert _refused(server, str(server.allowed / "bomb.png")).startswith("row 0: image file (69 bytes): " + REFUSED)


@pytest.mark.parametrize("image,needle", [
    ("%%% not base64 %%%", NOT_BASE64), ("QUJD", "cannot open image (not a known image format)"),
    ("data:image/png;base64,@@@@", NOT_BASE64), ("", "'image' must be a non-empty base64 string"),
])
def test_garbage_images_give_400(server, image, needle):
    assert needle in _refused(server, image)


@pytest.mark.parametrize("row,needle", [
    ([123, QUESTION, "cls"], "row 0: 'image' must be a non-empty base64 string, got int"),
    ([None, QUESTION, "cls"], "row 0: 'image' must be a non-empty base64 string, got NoneType"),
    ([["a", "b"], QUESTION, "cls"], "row 0: 'image' must be a non-empty base64 string, got list"),
    (["QUJD", 123, "cls"], "row 0: 'question' must be a non-empty string, got int"),
    (["QUJD", None, "cls"], "row 0: 'question' must be a non-empty string, got NoneType"),
    (["QUJD", QUESTION, 7], "row 0: unknown task 7 (known: cls, reg, rec, cap)"),
    (["QUJD", QUESTION, "seg"], "row 0: unknown task 'seg' (known: cls, reg, rec, cap)"),
    (["QUJD", QUESTION, "x" * 5000], "row 0: unknown task 'xxxx"),
])
def test_wrong_types_and_values_give_400(server, row, needle):
    status, body = _rows(server, [row])
    assert status == 400 and body["message"].startswith(needle) and len(body["message"]) < 200, body


def test_malformed_requests_give_400(server):
    status, body = _rows(server, [["QUJD", QUESTION]], columns=("image", "prompt"))
    assert status == 400 and "question" in body["message"]
    status, body = _post(server.url, {"dataframe_split": {"columns": ["image"], "data": "not rows"}})
    assert status == 400


def test_the_server_still_answers_after_every_probe(server):
    first = _answers(server)
    for image in ("/etc/passwd", str(server.allowed / "fifo.png"), b64(png_bomb(ERROR_SIDE, ERROR_SIDE))):
        _refused(server, image)
    assert _answers(server) == first
    assert server.proc.poll() is None
