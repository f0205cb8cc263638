"""Shared helpers for the end-to-end tests: a committed copy of this checkout and a DVC runner.

- ``copy_repo(dst, overrides)``: tracked + untracked-not-ignored files of this checkout (so
  work in progress is tested), minus pipeline products (data/, models/, metrics/, plots/,
  mlruns/, dvc.lock, registry.json); params overrides go into the *copy's* params.yaml;
  then ``git init`` + one commit: the state of a fresh clone.
- ``run_dvc(repo, *args)``: the venv's ``dvc`` in ``repo`` with an offline, single-threaded
  environment whose MLflow store is the copy's own ``mlruns/mlflow.db``; returns stdout+stderr.
- ``ran_stages(log)`` / ``skipped_stages(log)``: stage names from a ``dvc repro`` log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv running pytest (its dvc, python, colonpipe)
# Env vars of an enclosing run that would hijack the copy's MLflow lineage.
_HIJACK = ("COLONPIPE_PARENT_RUN_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
           "DVC_EXP_NAME", "DVC_ROOT", "DVC_STAGE")

# What `dvc repro` produces: never copied, even when visible to git (dvc exp show needs that).
_PRODUCT_DIRS = {"data", "models", "metrics", "plots", "mlruns", "dvc_plots"}
_PRODUCT_FILES = {"dvc.lock", "registry.json"}


def e2e_env(repo: Path) -> dict[str, str]:
    """Environment for commands run in the copy ``repo`` (see module doc)."""
    env = {k: v for k, v in os.environ.items() if k not in _HIJACK}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false", MLFLOW_TRACKING_URI=f"sqlite:///{repo}/mlruns/mlflow.db",
    )
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".torch_extensions"))  # reuse JIT builds
    return env


def set_params(params_yaml: Path, overrides: Mapping[str, Any]) -> None:
    """Set dotted keys (``infer.max_new_tokens.cap``) in ``params_yaml``; each must exist."""
    params = yaml.safe_load(params_yaml.read_text())
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        assert leaf in node, f"{params_yaml}: no key {dotted!r} to override"
        node[leaf] = value
    params_yaml.write_text(yaml.safe_dump(params, sort_keys=False))


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.email=tests@colonpipe", "-c", "user.name=colonpipe tests",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _is_product(rel: str) -> bool:
    """A file a pipeline run writes (git shows the small uncached ones): a fresh copy starts without."""
    return rel in _PRODUCT_FILES or (rel.split("/", 1)[0] in _PRODUCT_DIRS and rel != "mlruns/.gitkeep")


def copy_repo(dst: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """A committed copy of this checkout in ``dst`` with ``overrides`` applied (see module doc)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not _is_product(rel):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    if overrides:
        set_params(dst / "params.yaml", overrides)
    git(dst, "init", "-q")
    git(dst, "add", "-A")
    git(dst, "commit", "-q", "-m", "checkout copy")
    return dst


def run_dvc(repo: Path, *args: str, timeout: float = 900) -> str:
    """``dvc <args>`` in ``repo``; asserts success and returns stdout + stderr."""
    dvc = BIN / "dvc"
    cmd = [str(dvc)] if dvc.exists() else [sys.executable, "-m", "dvc"]
    proc = subprocess.run([*cmd, *args], cwd=repo, env=e2e_env(repo), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def ran_stages(log: str) -> list[str]:
    """Stages a ``dvc repro`` log says it ran (``Running stage 'x':``), in order."""
    return re.findall(r"Running stage '([^']+)'", log)


def skipped_stages(log: str) -> list[str]:
    """Stages a ``dvc repro`` log says it did not run (unchanged, or restored from the run cache)."""
    return re.findall(r"Stage '([^']+)' (?:didn't change|is cached)", log)
