"""Helpers for training tests: a learnable synthetic instruction set, a tiny preset, params files.

The images are flat colours plus noise; the CLS answer is a function of the colour, so a tiny
random model can learn it in a few dozen steps (the loss must fall).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from colonpipe.params import TinyModelParams
from tests.bombs import write_bomb

COLOURS = {"polyp": (200, 40, 40), "ulcer": (40, 200, 40), "erosion": (40, 40, 200)}
QUESTION = "<image>\nClassify the object's category."


def make_records(root: Path, n: int, *, bad: dict[int, str] | None = None) -> Path:
    """``n`` CLS records (one image each) under ``root``; ``bad`` maps a position to a
    defect: ``"corrupt"`` (not an image), ``"missing"`` (no file), ``"malformed"`` (no gpt turn)
    or ``"bomb"`` (a decompression bomb: a PNG header declaring 1e10 pixels)."""
    rng = np.random.default_rng(0)
    img_dir = root / "images" / "Synth"
    img_dir.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    records = []
    for i in range(n):
        label = names[i % len(names)]
        arr = np.clip(np.array(COLOURS[label]) + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
        path = img_dir / f"{i}.png"
        Image.fromarray(arr).save(path)
        turns = [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": label}]
        kind = (bad or {}).get(i)
        if kind == "corrupt":
            path.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
        elif kind == "missing":
            path.unlink()
        elif kind == "malformed":
            turns = turns[:1]
        elif kind == "bomb":
            write_bomb(path)
        records.append({"id": f"Synth/{i}.png", "image": str(i), "conversations": turns})
    out = root / "train.json"
    out.write_text(json.dumps(records))
    return out


TINY = TinyModelParams(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                       vision_intermediate=64, text_hidden=64, text_layers=2, text_heads=2,
                       text_intermediate=128, vocab_size=400, max_position=256, projector_type="ppc_2_1")




def write_params(path: Path, section: str, overrides: dict) -> Path:
    """The repo's params.yaml with ``section`` updated by ``overrides`` (other sections must stay valid)."""
    repo = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((repo / "params.yaml").read_text())
    data[section] = {**data[section], **overrides}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
