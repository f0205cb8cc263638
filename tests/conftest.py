"""Shared test fixtures: offline hub, seeded RNGs, single-threaded math on the 2-core CI box."""

import os
import random

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
