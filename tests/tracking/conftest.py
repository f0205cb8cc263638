"""A real MLflow sqlite store shared by the tracking tests (schema creation takes seconds).

Each test gets its own experiment (and model names derive from the test name), so sharing
the store is safe; ``tracking_env`` points ``MLFLOW_TRACKING_URI`` at it for the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest



@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> str:
    """URI of a session-wide sqlite store, schema already created."""
    from colonpipe.tracking.store import get_client

    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root}/mlflow.db"
    get_client(uri)
    return uri


@pytest.fixture
def tracking_env(monkeypatch, mlflow_store, request) -> str:
    """Point MLflow at the shared store with a per-test experiment; returns the URI."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"exp_{name}")
    for var in ("COLONPIPE_PARENT_RUN_ID", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
        monkeypatch.delenv(var, raising=False)
    return mlflow_store


@pytest.fixture
def git_repo(tmp_path, monkeypatch) -> Path:
    """``tmp_path`` as a git repo with one commit, and the working directory."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    (tmp_path / "README").write_text("x\n")
    for cmd in (["init", "-q"], ["add", "README"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True, env=env)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def venv_env(tracking_env):
    """Builder of subprocess environments: current env (store included), venv bin on PATH."""

    def build(**extra: str) -> dict[str, str]:
        env = {**os.environ, **extra}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    return build


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved ``tiny`` ColonGPT (random weights) and, beside it, ``images/Synth/*.png``."""
    from colonpipe.model.presets import build_base
    from colonpipe.params import ModelParams
    from tests.infer.conftest import make_dataset

    root = tmp_path_factory.mktemp("tiny")
    corpus = make_dataset(root, 16)
    return build_base(ModelParams(), corpus_files=[corpus], out_dir=root / "model")
