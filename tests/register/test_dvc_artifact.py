"""The DVC ``colongpt`` artifact is the register stage's merged folder, and it loads on its own:
``dvc artifacts get`` of it from a git clone (data from a local DVC remote) gives a folder that
transformers loads (after ``import colonpipe.model``) with the trained model's logits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import yaml
from PIL import Image

from colonpipe.model.merge_adapter import merge_to_dir
from colonpipe.model.presets import load_base
from tests.trained import write_training_output

REPO = Path(__file__).resolve().parents[2]
QUESTION = "<image>\nCategorize the object."

LOAD = textwrap.dedent("""
    import sys, torch
    import colonpipe.model  # registers colongpt with the Auto classes
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(sys.argv[1])
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Categorize the object."}]}]
    batch = processor(images=[Image.new("RGB", (40, 30), (200, 60, 60))],
                      text=[processor.apply_chat_template(conv, add_generation_prompt=True)])
    with torch.no_grad():
        torch.save(model(**batch).logits, sys.argv[2])
""")


def _run(cmd: list[str], cwd: Path, env: dict) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"


def test_the_artifact_is_an_out_of_the_register_stage():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    path = dvc["artifacts"]["colongpt"]["path"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in dvc["stages"]["register"]["outs"]]
    assert path in outs and "--merged-out " + path in dvc["stages"]["register"]["cmd"]


def test_dvc_artifacts_get_gives_a_folder_that_loads_on_its_own(tiny_model_dir, tmp_path, git_repo):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    source = merge_to_dir(write_training_output(tiny_model_dir, tmp_path / "final"), tmp_path / "merged",
                          dtype=torch.bfloat16)
    repo = git_repo
    artifacts = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]  # the project's own entry
    path = artifacts["colongpt"]["path"]
    stage = {"cmd": f"python -c \"import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])\" {source} {path}",
             "outs": [path]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"register": stage}, "artifacts": artifacts}))
    for cmd in (["dvc", "init", "-q"], ["dvc", "repro", "-q"],
                ["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], ["dvc", "push", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "model"],
                ["git", "tag", "-a", "colongpt@v0.1.0", "-m", "register"]):  # a version, as `gto register` tags it
        _run(cmd, repo, env)
    out = tmp_path / "got"
    _run(["dvc", "artifacts", "get", str(repo), "colongpt", "-o", str(out)], tmp_path, env)
    assert {"config.json", "model.safetensors", "processor_config.json", "chat_template.jinja"} <= \
        {p.name for p in out.iterdir()}

    logits = tmp_path / "logits.pt"
    fresh = {**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    _run([sys.executable, "-c", LOAD, str(out), str(logits)], tmp_path, fresh)
    model, processor = load_base(source, dtype=torch.float32)
    batch = processor.generation_batch([QUESTION], [Image.new("RGB", (40, 30), (200, 60, 60))])
    with torch.no_grad():
        want = model.eval()(**batch).logits
    torch.testing.assert_close(torch.load(logits, weights_only=True), want, rtol=0, atol=1e-5)
