"""Shared fixtures for the model tests: a small instruction corpus and a tiny base model built once."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

CATEGORIES = ["polyp", "ulcer", "accessory tool", "blood fresh", "erosion", "dyed lifted polyp"]


def write_corpus(folder: Path, n: int = 120, seed: int = 0) -> list[Path]:
    """ColonINST-style train JSON (CLS/REG/REC + CAP) with random boxes; returns the files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tasks, caps = [], []
    for i in range(n):
        cat = rng.choice(CATEGORIES)
        x1, y1 = rng.randint(0, 300), rng.randint(0, 300)
        box = f"{{<{x1}><{y1}><{x1 + rng.randint(5, 99)}><{y1 + rng.randint(5, 99)}>}}"
        q, a = rng.choice([
            ("Classify the object's category.", cat),
            (f"What category does {box} belong to?", cat),
            (f"Where is {cat} located?", box),
        ])
        rid = f"Synth/Train/{cat}/{i}.png"
        tasks.append({"id": rid, "image": str(i), "conversations": [
            {"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]})
        caps.append({"id": rid, "image": str(i), "conversations": [
            {"from": "human", "value": "<image>\nDescribe what you see in the image."},
            {"from": "gpt", "value": f"The image shows a {cat} in the colon. The mucosa looks normal."}]})
    files = [folder / "ColonINST-train-3tasks.json", folder / "ColonINST-train-cap.json"]
    files[0].write_text(json.dumps(tasks))
    files[1].write_text(json.dumps(caps))
    return files


@pytest.fixture(scope="session")
def corpus_files(tmp_path_factory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_base(tiny_model_dir) -> Path:
    """The shared tiny base model folder (``tests/conftest.py``: default ``model`` params, seed 0)."""
    return tiny_model_dir


@pytest.fixture
def tiny(tiny_base):
    """(model, processor) freshly loaded from the tiny base folder."""
    from colonpipe.model import load_base

    return load_base(tiny_base)
