"""Session fixtures for training tests: synthetic records and a tiny base model (see trainutil)."""

from __future__ import annotations

from pathlib import Path

import pytest

from colonpipe.model.base_model import build_base
from colonpipe.params import ModelParams
from trainutil import TINY, make_records


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> Path:
    return make_records(tmp_path_factory.mktemp("traindata"), 48)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, train_data) -> Path:
    """A very small ``tiny`` preset saved like ``models/base`` (4x4 grid, 5 image tokens)."""
    out = tmp_path_factory.mktemp("tinybase") / "base"
    return build_base(ModelParams(tiny=TINY), corpus_files=[train_data], out_dir=out)
