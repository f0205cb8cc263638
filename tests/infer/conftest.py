"""A tiny random-weight ColonGPT and a small instruction file with images, built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


QUESTIONS = [
    "<image>\nCategorize the object.",
    "<image>\nWhat category does {<12><34><56><78>} belong to?",
    "<image>\nWhere is the location of polyp?",
    "<image>\nCould you provide the category for {<1><2><300><400>}?",
]
ANSWERS = ["polyp", "ulcer", "{<12><34><56><78>}", "erosion"]


def make_dataset(root: Path, n: int, *, n_images: int = 6, corrupt: tuple[int, ...] = ()) -> Path:
    """``n`` records over ``n_images`` images (ids repeat), written to ``root/data.json``.

    Images of varied sizes live under ``root/images/Synth/``; record positions in ``corrupt``
    point at a file that is not an image.
    """
    rng = np.random.default_rng(0)
    img_dir = root / "images" / "Synth"
    img_dir.mkdir(parents=True, exist_ok=True)
    for k in range(n_images):
        arr = rng.integers(0, 256, size=(40 + 9 * k, 64 - 5 * k, 3), dtype=np.uint8)
        Image.fromarray(arr).save(img_dir / f"{k}.png")
    (img_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    records = []
    for i in range(n):
        image_id = "Synth/broken.png" if i in corrupt else f"Synth/{i % n_images}.png"
        records.append({
            "id": image_id, "image": Path(image_id).stem,
            "conversations": [{"from": "human", "value": QUESTIONS[i % len(QUESTIONS)]},
                              {"from": "gpt", "value": ANSWERS[i % len(ANSWERS)]}],
        })
    path = root / "data.json"
    path.write_text(json.dumps(records, indent=2))
    return path
