"""Check that a registered ColonGPT serves from a fresh virtualenv built from its own requirements.

    python benchmarks/check_serving_venv.py --demo-store            # build a tiny demo store in a temp dir
    python benchmarks/check_serving_venv.py --tracking-uri sqlite:///mlruns/mlflow.db   # after `make demo`

Steps, each with its own deadline (seconds, ``--step-timeout`` scales the install ones):
1. (``--demo-store``) build the tiny preset from a few synthetic ColonINST records, log it as
   the pyfunc (``colonpipe.register.model_log``: wheel + pinned requirements) into a sqlite
   store in the temp dir, register it and alias it ``champion``;
2. download ``--model-uri`` (default ``models:/colongpt@champion``) and read its
   ``requirements.txt``;
3. ``python -m venv`` a fresh environment; ``pip install torch==<pinned>`` first (the CPU wheel
   where the package index has one), then ``pip install -r requirements.txt`` from inside the
   model folder (its relative ``artifacts/colonpipe_wheel/*.whl`` line is the colonpipe wheel),
   exactly as MLflow's virtualenv env manager does;
4. in that environment, isolated (``python -I``: no PYTHONPATH, no checkout on ``sys.path``),
   ``mlflow.pyfunc.load_model(uri)`` and one request (a generated frame, a CLS question); print
   the answer, where ``colonpipe`` was imported from, and the versions;
5. delete the temp dir (``--keep`` keeps it).

Exit code 0 when the fresh environment answered, 1 otherwise (the failing step is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUEST = r'''
import base64, io, json, sys, time
t0 = time.time()
import mlflow, pandas as pd, torch
from PIL import Image
import colonpipe
model = mlflow.pyfunc.load_model(sys.argv[1])
buf = io.BytesIO()
Image.new("RGB", (64, 48), (180, 70, 60)).save(buf, format="PNG")
frame = pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode()],
                      "question": ["Categorize the object."], "task": ["cls"]})
answers = model.predict(frame)
print(json.dumps({"answers": list(answers), "colonpipe": colonpipe.__file__, "python": sys.executable,
                  "torch": torch.__version__, "mlflow": mlflow.__version__, "seconds": round(time.time() - t0, 1)}))
'''


class StepFailed(RuntimeError):
    pass


def _step(name: str, cmd: list[str], *, timeout: float, cwd: Path | None = None, env: dict | None = None) -> str:
    """Run one step with a deadline; its stdout, or ``StepFailed`` with the output tail."""
    t0 = time.monotonic()
    shown = " ".join(a if len(a) < 80 else "<script>" for a in cmd)
    print(f"[{name}] {shown}", flush=True)
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{name}: no result within {timeout:.0f} s") from None
    took = time.monotonic() - t0
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise StepFailed(f"{name}: exit {done.returncode} after {took:.0f} s\n{tail}")
    print(f"[{name}] ok in {took:.0f} s", flush=True)
    return done.stdout


def build_demo_store(root: Path, *, name: str) -> str:
    """A sqlite store under ``root`` whose ``name@champion`` is the tiny preset; its URI."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from colonpipe.coloninst import HUMAN_PREFIX
    from colonpipe.data.templates import render_question
    from colonpipe.model.presets import build_base
    from colonpipe.params import ModelParams
    from colonpipe.register.model_log import log_pyfunc_model
    from colonpipe.register.registry import CHAMPION, register_candidate
    from colonpipe.tracking.logger import MlflowLogger
    from colonpipe.tracking.store import get_client, get_experiment_id

    records = [{"id": f"Demo/{i}.png", "image": f"{i}.png", "conversations": [
        {"from": "human", "value": HUMAN_PREFIX + render_question("cls", i % 5)},
        {"from": "gpt", "value": ["polyp", "ulcer", "erosion"][i % 3]}]} for i in range(30)]
    corpus = root / "corpus.json"
    corpus.write_text(json.dumps(records))
    model_dir = build_base(ModelParams(), corpus_files=[corpus], out_dir=root / "base")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    (root / "mlruns").mkdir()
    client = get_client(uri)
    run = client.create_run(get_experiment_id(client), run_name="register")
    info = log_pyfunc_model(MlflowLogger(client, run.info.run_id), model_dir)
    client.set_terminated(run.info.run_id)
    version = register_candidate(client, name, info.model_uri, run_id=run.info.run_id, metrics={"demo": 1.0})
    client.set_registered_model_alias(name, CHAMPION, version.version)
    print(f"[demo-store] {name} v{version.version} -> {CHAMPION} in {uri}", flush=True)
    return uri


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check(tmp: Path, *, tracking_uri: str, model_uri: str, install_timeout: float) -> dict:
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp / "model")))
    reqs = (local / "requirements.txt").read_text().split()
    print(f"[download] {model_uri}: {_dir_size(local) / 2**20:.1f} MiB; requirements: {' '.join(reqs)}", flush=True)
    torch_pin = next(r for r in reqs if r.startswith("torch=="))
    venv = tmp / "venv"
    _step("venv", [sys.executable, "-m", "venv", str(venv)], timeout=120)
    py = str(venv / "bin" / "python")
    _step("pip torch", [py, "-m", "pip", "install", "--quiet", torch_pin], timeout=install_timeout)
    _step("pip -r requirements.txt", [py, "-m", "pip", "install", "--quiet", "-r", "requirements.txt"],
          timeout=install_timeout * 2, cwd=local)
    freeze = _step("pip freeze", [py, "-m", "pip", "freeze"], timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, HF_HUB_OFFLINE="1", PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    out = _step("load + predict", [py, "-I", "-c", REQUEST, model_uri], timeout=600, cwd=tmp, env=env)
    result = json.loads(out.strip().splitlines()[-1])
    result["colonpipe_from_venv"] = result["colonpipe"].startswith(str(venv))
    result["packages"] = len(freeze.split())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-store", action="store_true", help="build a tiny demo store in the temp dir")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db"))
    parser.add_argument("--model-name", default="colongpt")
    parser.add_argument("--model-uri", default=None, help="default models:/<model-name>@champion")
    parser.add_argument("--install-timeout", type=float, default=600, help="seconds for each pip install step")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (printed)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="colonpipe-serving-check-"))
    t0 = time.monotonic()
    try:
        uri = build_demo_store(tmp, name=args.model_name) if args.demo_store else args.tracking_uri
        result = check(tmp, tracking_uri=uri, model_uri=args.model_uri or f"models:/{args.model_name}@champion",
                       install_timeout=args.install_timeout)
    except (StepFailed, OSError, ValueError, StopIteration) as exc:
        print(f"FAILED: {exc}", flush=True)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    ok = result["colonpipe_from_venv"] and len(result["answers"]) == 1
    print(f"{'OK' if ok else 'FAILED'}: fresh virtualenv answered in {time.monotonic() - t0:.0f} s total")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
