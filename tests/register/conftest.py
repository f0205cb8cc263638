"""Fixtures for the register tests: a tiny saved ColonGPT with frames beside it, a throwaway MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from colonpipe.model.presets import build_base
from colonpipe.params import ModelParams
from colonpipe.tracking.store import get_client
from tests.infer.conftest import make_dataset


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The ``tiny`` preset (random weights) at ``<root>/model``; frames under ``<root>/corpus/images/Synth``."""
    root = tmp_path_factory.mktemp("tiny")
    corpus = make_dataset(root / "corpus", 16)
    return build_base(ModelParams(), corpus_files=[corpus], out_dir=root / "model")


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> str:
    """URI of a session-wide sqlite store, schema created once (it takes seconds)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlruns')}/mlflow.db"
    get_client(uri)
    return uri


@pytest.fixture
def store(mlflow_store, tmp_path, monkeypatch) -> str:
    """The session store and a fresh model cache for one test; returns the tracking URI."""
    uri = mlflow_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "register-tests")
    monkeypatch.setenv("COLONPIPE_CACHE", str(tmp_path / "cache"))
    for var in ("COLONPIPE_PARENT_RUN_ID", "DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
        monkeypatch.delenv(var, raising=False)
    return uri
