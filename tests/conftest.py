"""Shared test fixtures: offline hub, seeded RNGs, single-threaded math on the 2-core CI box."""

import os
import random
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
    yield


@pytest.fixture(scope="session", autouse=True)
def _throwaway_mlflow_store(tmp_path_factory):
    """Stages log to MLflow: tests that run them (in process or as subprocesses) write to a
    session store in the temp dir, never to the checkout's ``mlruns/``. Tests that need their
    own store set ``MLFLOW_TRACKING_URI`` themselves (monkeypatch or a subprocess env)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        yield
        return
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlruns')}/mlflow.db"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> str:
    """URI of a session-wide sqlite store, schema already created."""
    from colonpipe.tracking.store import get_client  # lazy: keeps mlflow out of tests that need no store

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
    """The one shared tiny model: the ``tiny`` preset (default ``model`` params, random weights,
    seed 0) saved like ``models/base`` at ``<root>/model``; its tokenizer corpus and frames beside
    it at ``<root>/corpus/data.json`` and ``<root>/corpus/images/Synth/*.png``."""
    from colonpipe.model.base_model import build_base
    from colonpipe.params import ModelParams
    from tests.infer.conftest import make_dataset

    root = tmp_path_factory.mktemp("tiny")
    corpus = make_dataset(root / "corpus", 16)
    return build_base(ModelParams(), corpus_files=[corpus], out_dir=root / "model")
