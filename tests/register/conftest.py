"""Fixtures for the register tests: the session MLflow store (``tests/conftest.py``) with a fresh model cache per test."""

from __future__ import annotations

import pytest


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
